'use strict';
// Per-tick coalescing (src/coalesce.c): the submits of one tick reach the engine in one
// portway_submit_batch call, and still behave one by one (cancel, abort, refusals, order).
const test = require('node:test');
const assert = require('node:assert/strict');
const { Engine, PortwayError } = require('..');

const tick = () => new Promise((r) => setImmediate(r));
// [portway_submit_batch calls made by flushes, requests flushed] since the engine started
const flushes = (eng) => eng._n._coalesceStats();
// Handler names resolved before the tick under test: the first lookup of a name is a call
// into the addon, and every such call flushes the queue first.
const warm = (eng) => ['echo', 'sleep'].forEach((h) => eng.lookup(h));

async function waitFor(cond) {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(cond());
}

test('the submits of one tick go to the engine in one batch call, in order', async () => {
  const eng = new Engine({ runtimeThreads: 2, poolWorkers: 2 });
  warm(eng);
  const ps = [];
  for (let i = 0; i < 300; i++) ps.push(eng.submit(i % 3 === 0 ? 'sleep' : 'echo', i % 3 === 0 ? '1' : String(i)));
  assert.deepEqual(flushes(eng), [0, 0]); // nothing reached the engine yet
  const cs = await Promise.all(ps);
  assert.deepEqual(flushes(eng), [1, 300]);
  for (let i = 0; i < 300; i++) if (i % 3 !== 0) assert.equal(cs[i].data.toString(), String(i));
  for (let i = 1; i < 300; i++) assert.ok(cs[i].id > cs[i - 1].id, 'ids in submission order');
  // the next tick is a batch of its own
  await Promise.all([eng.submit('echo', 'a'), eng.submit('echo', 'b')]);
  assert.deepEqual(flushes(eng), [2, 302]);
  await eng.close();
});

test('every other call flushes first: stats, lastId, submitMany order, close', async () => {
  const eng = new Engine({ runtimeThreads: 2, poolWorkers: 2 });
  const p1 = eng.submit('echo', 'x');
  assert.equal(eng.stats().submitted, 1); // stats sees the submit made before it
  const id1 = eng._n.lastId();
  assert.ok(id1 > 0);
  const many = eng.submitMany('echo', ['y']);
  const p2 = eng.submit('echo', 'z');
  const big = eng.submit('echo', Buffer.alloc(64 * 1024, 1)); // over the queue's limit: submitted at once
  const p3 = eng.submit('echo', 'w');
  const closed = eng.close(); // the queued submit before it is accepted, and drains
  const [c1, [cm], c2, cb, c3] = await Promise.all([p1, many, p2, big, p3]);
  assert.equal(c1.id, id1);
  assert.ok(c1.id < cm.id && cm.id < c2.id && c2.id < cb.id && cb.id < c3.id, 'submission order kept');
  assert.equal(cb.data.length, 64 * 1024);
  await closed;
  await assert.rejects(eng.submit('echo', 'late'), { code: 'PORTWAY_SHUTDOWN' });
});

test('abort before the flush: AbortError, never submitted, exactly one settlement', async () => {
  const eng = new Engine({ runtimeThreads: 2, poolWorkers: 2 });
  warm(eng);
  const ac = new AbortController();
  const a = eng.submit('echo', 'a');
  const p = eng.submit('sleep', '5000', { signal: ac.signal });
  const b = eng.submit('echo', 'b');
  ac.abort();
  await assert.rejects(p, { name: 'AbortError' });
  assert.equal((await a).data.toString(), 'a');
  assert.equal((await b).data.toString(), 'b');
  assert.deepEqual(flushes(eng), [1, 2]); // the aborted one was taken out of the batch
  assert.equal(eng.stats().submitted, 2);
  assert.equal(eng.stats().inFlight, 0);
  // The request itself (below the AbortError) completes once, PORTWAY_CANCELLED.
  let settled = 0;
  const inner = eng._submit1(eng.lookup('sleep'), Buffer.from('5000'), undefined);
  const cancel = eng._slotCanceller(eng._slot);
  const seen = inner.then(
    () => settled++,
    (e) => {
      settled++;
      return e;
    },
  );
  cancel();
  cancel(); // a second cancel finds nothing
  const e = await seen;
  assert.ok(e instanceof PortwayError);
  assert.equal(e.code, 'PORTWAY_CANCELLED');
  await tick();
  assert.equal(settled, 1);
  assert.equal(eng.stats().submitted, 2);
  await eng.close();
});

test('abort after the flush cancels the engine request by the id the flush gave it', async () => {
  const eng = new Engine({ runtimeThreads: 2, poolWorkers: 2 });
  const ac = new AbortController();
  const p = eng.submit('sleep', '5000', { signal: ac.signal });
  const other = eng.submit('sleep', '5000');
  await tick();
  assert.deepEqual(flushes(eng), [1, 2]);
  ac.abort();
  await assert.rejects(p, { name: 'AbortError' });
  await waitFor(() => eng.stats().completed.PORTWAY_CANCELLED === 1 && eng.stats().inFlight === 1);
  assert.equal(eng.stats().running, 1); // only the aborted one was cancelled
  eng.cancelAll();
  await assert.rejects(other, { code: 'PORTWAY_CANCELLED' });
  await eng.close();
});

test('refusals at the flush reject their own request with the right code', async () => {
  const eng = new Engine({ runtimeThreads: 2, poolWorkers: 2, maxInFlight: 4, maxPayload: 16 });
  // payload over maxPayload in the middle: only that one is refused
  const r = await Promise.allSettled([eng.submit('echo', 'a'), eng.submit('echo', 'x'.repeat(17)), eng.submit('echo', 'c')]);
  assert.equal(r[0].value.data.toString(), 'a');
  assert.equal(r[1].reason.code, 'PORTWAY_PAYLOAD_TOO_LARGE');
  assert.ok(r[1].reason instanceof PortwayError);
  assert.match(r[1].reason.message, /payload/);
  assert.equal(r[2].value.data.toString(), 'c');
  // an unknown handler id
  await assert.rejects(eng.submit(123456, 'q'), { code: 'PORTWAY_UNKNOWN_HANDLER' });
  // more than maxInFlight in one tick: the first 4 run, the other 6 are PORTWAY_BUSY
  const ps = [];
  for (let i = 0; i < 10; i++) ps.push(eng.submit('sleep', '20'));
  const out = await Promise.allSettled(ps);
  assert.deepEqual(out.map((x) => x.status), [...Array(4).fill('fulfilled'), ...Array(6).fill('rejected')]);
  for (const x of out.slice(4)) assert.equal(x.reason.code, 'PORTWAY_BUSY');
  assert.equal(eng.stats().rejectedBusy, 6);
  assert.equal(eng.stats().inFlight, 0);
  await eng.close();
});

test('a refusal in the middle of a flush counts every request once, and each settles once', async () => {
  const eng = new Engine({ runtimeThreads: 2, poolWorkers: 2, maxPayload: 16 });
  warm(eng);
  const before = eng.stats();
  // One tick: refused by the engine's own check (unknown handler id), then by the C
  // boundary's length check (payload over maxPayload), each with valid requests after it.
  const settled = new Array(6).fill(0);
  const ps = [
    eng.submit('echo', 'a'),
    eng.submit(123456, 'q'),
    eng.submit('echo', 'b'),
    eng.submit('echo', 'x'.repeat(17)),
    eng.submit('echo', 'c'),
    eng.submit('echo', 'd'),
  ].map((p, i) => p.finally(() => settled[i]++));
  const out = await Promise.allSettled(ps);
  assert.deepEqual(out.map((x) => x.status), ['fulfilled', 'rejected', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
  assert.equal(out[1].reason.code, 'PORTWAY_UNKNOWN_HANDLER');
  assert.equal(out[3].reason.code, 'PORTWAY_PAYLOAD_TOO_LARGE');
  assert.deepEqual([0, 2, 4, 5].map((i) => out[i].value.data.toString()), ['a', 'b', 'c', 'd']);
  await tick();
  assert.deepEqual(settled, [1, 1, 1, 1, 1, 1]);
  // one flush of 6 requests, in three calls (each refusal ends a call)
  assert.deepEqual(flushes(eng), [3, 6]);
  const s = eng.stats();
  assert.equal(s.submitted - before.submitted, 6);
  assert.equal(s.accepted - before.accepted, 4);
  assert.equal(s.rejectedInvalid - before.rejectedInvalid, 2);
  assert.equal(s.submitted, s.accepted + s.rejectedBusy + s.rejectedShutdown + s.rejectedInvalid);
  assert.equal(s.inFlight, 0);
  await eng.close();
});
