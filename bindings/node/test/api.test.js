'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { Engine, PortwayError, AbortError, version, abiVersion, statusStr } = require('..');

function opts() {
  return { runtimeThreads: 2, poolWorkers: 2 };
}

test('module exports', () => {
  assert.match(version, /^\d+\.\d+\.\d+/);
  assert.equal(abiVersion, 1);
  assert.equal(statusStr(2), 'PORTWAY_BUSY');
});

test('submit echo resolves a completion', async () => {
  const eng = new Engine(opts());
  const c = await eng.submit('echo', Buffer.from('hi'));
  assert.ok(Buffer.isBuffer(c.data));
  assert.equal(c.data.toString(), 'hi');
  assert.equal(typeof c.id, 'number');
  assert.ok(c.id > 0);
  assert.equal(c.code, 0);
  assert.deepEqual(c.meta, []);
  assert.equal(typeof c.queuedNs, 'number');
  assert.equal(typeof c.runNs, 'number');
  // strings, Uint8Array, empty payloads
  assert.equal((await eng.submit('echo', 'str')).data.toString(), 'str');
  assert.deepEqual([...(await eng.submit('echo', new Uint8Array([1, 2, 3]))).data], [1, 2, 3]);
  assert.equal((await eng.submit('echo')).data.length, 0);
  await eng.close();
});

test('submitMany returns completions in order', async () => {
  const eng = new Engine(opts());
  const cs = await eng.submitMany('echo', [Buffer.from('a'), 'b', new Uint8Array([99])]);
  assert.deepEqual(cs.map((c) => c.data.toString()), ['a', 'b', 'c']);
  assert.deepEqual(await eng.submitMany('echo', []), []);
  await eng.close();
});

test('completions delivered together: bodies past the delivery arena, own ArrayBuffers', async () => {
  // The addon hands completions to JS in batches through a 64 KiB arena; bodies that overflow
  // it, or exceed it alone, take other paths. Every body must still be its own Buffer.
  const eng = new Engine(opts());
  const sizes = [0, 10, 70000, 5, 200000, 65536, 1, 40000, 40000, 3];
  const payloads = sizes.map((n, i) => Buffer.alloc(n, 97 + i));
  const check = (cs) => {
    assert.equal(cs.length, sizes.length);
    cs.forEach((c, i) => {
      assert.ok(c.data.equals(payloads[i]), `body ${i}`);
      assert.equal(c.data.byteOffset, 0);
      assert.equal(c.data.buffer.byteLength, sizes[i]);
      assert.deepEqual(Object.keys(c), ['id', 'data', 'code', 'meta', 'queuedNs', 'runNs']);
    });
  };
  check(await Promise.all(payloads.map((p) => eng.submit('echo', p))));
  check(await eng.submitMany('echo', payloads));
  // singles and batches interleaved in one drain
  const [a, many, b] = await Promise.all([eng.submit('echo', 'x'), eng.submitMany('echo', payloads), eng.submit('echo', 'y')]);
  check(many);
  assert.equal(a.data.toString() + b.data.toString(), 'xy');
  await eng.close();
});

test('submitMany rejects at the first failure with its index; the rest is absorbed', async () => {
  const eng = new Engine(opts());
  await assert.rejects(eng.submitMany('sleep', ['1', '5000', '1'], { timeoutMs: 500 }), (e) => {
    assert.ok(e instanceof PortwayError);
    assert.equal(e.code, 'PORTWAY_TIMEOUT');
    assert.equal(e.index, 1);
    assert.equal(typeof e.requestId, 'number');
    return true;
  });
  assert.equal((await eng.submit('echo', 'after')).data.toString(), 'after');
  await eng.close();
});

test('unknown handler is a PortwayError NOT_FOUND', async () => {
  const eng = new Engine(opts());
  await assert.rejects(eng.submit('nope', 'x'), (e) => e instanceof PortwayError && e.code === 'PORTWAY_NOT_FOUND');
  assert.throws(() => eng.lookup('nope'), { code: 'PORTWAY_NOT_FOUND' });
  assert.equal(typeof eng.lookup('echo'), 'number');
  await eng.close();
});

test('timeouts reject with PORTWAY_TIMEOUT', async () => {
  const eng = new Engine(opts());
  await assert.rejects(eng.submit('sleep', '2000', { timeoutMs: 30 }), (e) => {
    assert.ok(e instanceof PortwayError);
    assert.equal(e.code, 'PORTWAY_TIMEOUT');
    assert.equal(e.name, 'PortwayError');
    assert.ok(e.message.length > 0);
    return true;
  });
  const eng2 = new Engine({ ...opts(), defaultTimeoutMs: 30 });
  await assert.rejects(eng2.submit('sleep', '2000'), { code: 'PORTWAY_TIMEOUT' });
  const c = await eng2.submit('sleep', '1');
  assert.equal(c.data.length, 0);
  await eng.close();
  await eng2.close();
});

test('AbortSignal already aborted rejects without submitting', async () => {
  const eng = new Engine(opts());
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(eng.submit('sleep', '1000', { signal: ac.signal }), (e) => e.name === 'AbortError' && e instanceof AbortError);
  assert.equal(eng.stats().submitted, 0);
  await eng.close();
});

test('AbortSignal during a request cancels the native request', async () => {
  const eng = new Engine(opts());
  const ac = new AbortController();
  const t0 = Date.now();
  const p = eng.submit('sleep', '5000', { signal: ac.signal });
  setTimeout(() => ac.abort(), 20);
  await assert.rejects(p, { name: 'AbortError' });
  assert.ok(Date.now() - t0 < 2000);
  // the native request was cancelled: its completion says CANCELLED
  for (let i = 0; i < 100 && eng.stats().completed.PORTWAY_CANCELLED === 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(eng.stats().completed.PORTWAY_CANCELLED, 1);
  // a signal that never fires does not disturb a normal request
  const ac2 = new AbortController();
  assert.equal((await eng.submit('echo', 'ok', { signal: ac2.signal })).data.toString(), 'ok');
  ac2.abort(); // after settle: no effect
  await eng.close();
});

test('AbortSignal on submitMany cancels every native request of the batch', async () => {
  const eng = new Engine(opts());
  const before = await eng.submit('echo', 'x'); // an earlier request must not be touched
  assert.equal(before.data.toString(), 'x');
  const ac = new AbortController();
  const p = eng.submitMany('sleep', ['5000', '5000', '5000', '5000'], { signal: ac.signal });
  const other = eng.submit('sleep', '30'); // a later request must not be touched either
  setTimeout(() => ac.abort(), 20);
  await assert.rejects(p, { name: 'AbortError' });
  assert.equal((await other).data.length, 0);
  for (let i = 0; i < 100 && eng.stats().completed.PORTWAY_CANCELLED < 4; i++) await new Promise((r) => setTimeout(r, 10));
  const st = eng.stats();
  assert.equal(st.completed.PORTWAY_CANCELLED, 4);
  assert.equal(st.completed.PORTWAY_OK, 2);
  await eng.close();
});

test('AbortSignal.timeout works', async () => {
  const eng = new Engine(opts());
  await assert.rejects(eng.submit('sleep', '5000', { signal: AbortSignal.timeout(20) }), { name: 'AbortError' });
  await eng.close();
});

test('cancel by id and cancelAll', async () => {
  const eng = new Engine(opts());
  const ps = [eng.submit('sleep', '5000'), eng.submit('sleep', '5000')];
  const ps2 = ps.map((p) => p.then(() => 'ok', (e) => e.code));
  eng.cancelAll();
  assert.deepEqual(await Promise.all(ps2), ['PORTWAY_CANCELLED', 'PORTWAY_CANCELLED']);
  assert.equal(eng.cancel(123456789), false);
  await eng.close();
});

test('PORTWAY_BUSY with a small maxInFlight', async () => {
  const eng = new Engine({ ...opts(), maxInFlight: 4 });
  const ps = [];
  for (let i = 0; i < 4; i++) ps.push(eng.submit('sleep', '50'));
  await assert.rejects(eng.submit('sleep', '50'), (e) => e instanceof PortwayError && e.code === 'PORTWAY_BUSY');
  // a batch that does not fit is rejected as a whole
  await assert.rejects(eng.submitMany('echo', ['a']), { code: 'PORTWAY_BUSY' });
  await Promise.all(ps);
  // slots come back after delivery
  const partial = [eng.submit('sleep', '50'), eng.submit('sleep', '50')];
  await assert.rejects(eng.submitMany('sleep', ['50', '50', '50']), (e) => e.code === 'PORTWAY_BUSY' && e.accepted === 2);
  await Promise.all(partial);
  assert.equal((await eng.submit('echo', 'again')).data.toString(), 'again');
  assert.ok(eng.stats().rejectedBusy >= 2);
  await eng.close();
});

test('payload too large', async () => {
  const eng = new Engine({ ...opts(), maxPayload: 8 });
  await assert.rejects(eng.submit('echo', Buffer.alloc(9)), { code: 'PORTWAY_PAYLOAD_TOO_LARGE' });
  await eng.close();
});

test('pipeline and setConcurrency', async () => {
  const eng = new Engine(opts());
  const id = eng.pipeline('echo2', ['echo', 'echo']);
  assert.equal(typeof id, 'number');
  assert.equal((await eng.submit('echo2', 'pp')).data.toString(), 'pp');
  assert.equal((await eng.submit(id, 'pq')).data.toString(), 'pq');
  const slow = eng.pipeline('slow', ['sleep']);
  eng.setConcurrency('slow', 1);
  const t0 = Date.now();
  await Promise.all([eng.submit(slow, '60'), eng.submit(slow, '60'), eng.submit(slow, '60')]);
  assert.ok(Date.now() - t0 >= 170, `concurrency 1 serialises: ${Date.now() - t0} ms`);
  assert.throws(() => eng.pipeline('bad', []), { code: 'PORTWAY_INVALID_ARGUMENT' });
  assert.throws(() => eng.setConcurrency('nope', 1), { code: 'PORTWAY_NOT_FOUND' });
  await eng.close();
});

test('stats', async () => {
  const eng = new Engine(opts());
  await eng.submitMany('echo', ['a', 'b', 'c']);
  const s = eng.stats();
  assert.equal(s.submitted, 3);
  assert.equal(s.accepted, 3);
  assert.equal(s.completed.PORTWAY_OK, 3);
  assert.equal(s.inFlight, 0);
  for (const k of ['rejectedBusy', 'queued', 'running', 'ready', 'unreleased', 'poolWorkers']) assert.equal(typeof s[k], 'number');
  assert.equal(s.poolWorkers, 2);
  await eng.close();
});

test('close: drain lets work finish, idempotent, then calls fail', async () => {
  const eng = new Engine(opts());
  const p = eng.submit('sleep', '50');
  const c1 = eng.close({ drain: true, timeoutMs: 5000 });
  const c2 = eng.close();
  assert.equal(c1, c2);
  await c1;
  assert.equal((await p).data.length, 0);
  await eng.close();
  await assert.rejects(eng.submit('echo', 'x'), { code: 'PORTWAY_SHUTDOWN' });
  assert.throws(() => eng.stats(), { code: 'PORTWAY_SHUTDOWN' });
});

test('close: cancel now and escalation', async () => {
  const eng = new Engine(opts());
  const p = eng.submit('sleep', '5000').then(() => 'ok', (e) => e.code);
  await eng.close({ drain: false });
  assert.equal(await p, 'PORTWAY_CANCELLED');
  const eng2 = new Engine(opts());
  const q = eng2.submit('sleep', '5000').then(() => 'ok', (e) => e.code);
  const closing = eng2.close({ drain: true, timeoutMs: 0 });
  // submits during shutdown are refused
  await assert.rejects(eng2.submit('echo', 'x'), { code: 'PORTWAY_SHUTDOWN' });
  eng2.close({ drain: false });
  await closing;
  assert.equal(await q, 'PORTWAY_CANCELLED');
});

test('drain deadline cancels what is left', async () => {
  const eng = new Engine(opts());
  const p = eng.submit('sleep', '5000').then(() => 'ok', (e) => e.code);
  const t0 = Date.now();
  await eng.close({ drain: true, timeoutMs: 50 });
  assert.ok(Date.now() - t0 < 2000);
  assert.equal(await p, 'PORTWAY_CANCELLED');
});

test('bad arguments throw TypeError or RangeError', async () => {
  const eng = new Engine(opts());
  await assert.rejects(eng.submit('echo', 42), TypeError);
  assert.throws(() => new Engine({ maxInFlight: -1 }), RangeError);
  assert.throws(() => new Engine({ maxInFlight: 0 }), { code: 'PORTWAY_INVALID_ARGUMENT' });
  await eng.close();
});

test('ESM entry', async () => {
  const m = await import('../index.mjs');
  assert.equal(typeof m.Engine, 'function');
  assert.equal(m.PortwayError, require('..').PortwayError);
  assert.equal(m.default.Engine, m.Engine);
});
