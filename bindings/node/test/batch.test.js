'use strict';
// eng.batch: one native batch per part, results as a BatchResult (lib/batch.js, src/batch.c).
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const net = require('node:net');
const { Engine, PortwayError, BatchResult } = require('..');
const { requestPayload } = require('../lib/http.js');

async function waitFor(cond) {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(cond());
}

test('batch: items in submit order, slices of one buffer, every accessor', async () => {
  const eng = new Engine({ runtimeThreads: 2, poolWorkers: 2 });
  const n = 10000;
  const big = (i) => `item ${i} `.repeat(4);
  const payloads = Array.from({ length: n }, (_, i) => (i % 3 === 0 ? Buffer.from(big(i)) : i % 3 === 1 ? `s${i}` : new Uint8Array(0)));
  const r = await eng.batch('echo', payloads);
  assert.ok(r instanceof BatchResult);
  assert.equal(r.length, n);
  assert.equal(r.ok, true);
  assert.deepEqual(r.failures(), []);
  r.throwFirst(); // nothing failed: no throw
  const got = [...r];
  for (let i = 0; i < n; i++) {
    const want = i % 3 === 0 ? big(i) : i % 3 === 1 ? `s${i}` : '';
    assert.equal(got[i].toString(), want);
  }
  assert.ok(Buffer.isBuffer(r.get(0)));
  // no copy per item: items are slices of one data buffer (larger than Buffer's 8 KiB pool)
  const total = got.slice(0, 2001).reduce((t, b) => t + b.length, 0);
  assert.ok(total > 16 * 1024);
  assert.equal(r.get(0).buffer, r.get(1).buffer);
  assert.equal(r.get(0).buffer, r.get(2000).buffer);
  assert.ok(r.get(0).buffer.byteLength >= total);
  assert.equal(r.status(5), 'PORTWAY_OK');
  assert.equal(r.code(5), 0);
  assert.deepEqual(r.headers(5), []);
  assert.equal(r.error(5), undefined);
  assert.throws(() => r.get(n), RangeError);
  assert.throws(() => r.status(-1), RangeError);
  assert.throws(() => r.get(1.5), RangeError);
  const empty = await eng.batch('echo', []);
  assert.equal(empty.length, 0);
  assert.equal(empty.ok, true);
  assert.deepEqual([...empty], []);
  // any iterable; ArrayBuffer and typed-array payloads
  const it = await eng.batch('echo', new Set([new Uint16Array([0x4241]).buffer, new Uint8Array([67])]));
  assert.deepEqual([...it].map(String), ['AB', 'C']);
  assert.equal(eng.stats().inFlight, 0);
  await eng.close();
});

test('batch: lists longer than maxInFlight are split transparently, order kept', async () => {
  const eng = new Engine({ runtimeThreads: 2, poolWorkers: 2, maxInFlight: 64 });
  const n = 1000;
  const r = await eng.batch('echo', Array.from({ length: n }, (_, i) => String(i)));
  assert.equal(r.length, n);
  assert.deepEqual([...r].map(String), Array.from({ length: n }, (_, i) => String(i)));
  assert.equal(eng.stats().completed.PORTWAY_OK, n);
  assert.equal(eng.stats().rejectedBusy, 0);
  // batches side by side: each takes at most a quarter of the slots, none is refused
  const both = await Promise.all([1, 2, 3].map(() => eng.batch('echo', new Array(200).fill('x'))));
  for (const b of both) assert.equal(b.length, 200);
  assert.equal(eng.stats().rejectedBusy, 0);
  await eng.close();
});

test('batch: per-item failures and timeouts do not reject the batch', async () => {
  const eng = new Engine({ runtimeThreads: 2, poolWorkers: 2 });
  const r = await eng.batch('sleep', ['1', '5000', '2', '5000'], { timeoutMs: 100 });
  assert.equal(r.length, 4);
  assert.equal(r.ok, false);
  assert.deepEqual(r.failures(), [1, 3]);
  assert.equal(r.status(0), 'PORTWAY_OK');
  assert.equal(r.status(1), 'PORTWAY_TIMEOUT');
  assert.equal(r.get(0).length, 0);
  assert.throws(() => r.get(1), (e) => e instanceof PortwayError && e.code === 'PORTWAY_TIMEOUT' && e.index === 1);
  assert.match(r.error(3).message, /deadline/);
  assert.equal(r.error(3).status, 7);
  assert.throws(() => r.throwFirst(), (e) => e.code === 'PORTWAY_TIMEOUT' && e.index === 1);
  assert.throws(() => [...r], { code: 'PORTWAY_TIMEOUT' });
  await eng.close();
});

test('batch: a refused batch rejects with its code and nothing of it runs', async () => {
  const one = new Engine({ runtimeThreads: 2, poolWorkers: 2 });
  // an item the handler refuses at submit: the whole batch (one part) is refused
  await assert.rejects(one.batch('sleep', ['1', 'soon']), (e) => e instanceof PortwayError && e.code === 'PORTWAY_INVALID_ARGUMENT' && /soon/.test(e.message));
  assert.equal(one.stats().accepted, 0);
  await one.close();
  // split into parts (one item each with 4 slots): a later part's refusal rejects the batch
  // after the earlier parts ran
  const eng = new Engine({ runtimeThreads: 2, poolWorkers: 2, maxInFlight: 4 });
  await assert.rejects(eng.batch('sleep', ['1', 'soon']), { code: 'PORTWAY_INVALID_ARGUMENT' });
  await waitFor(() => eng.stats().inFlight === 0);
  assert.equal(eng.stats().accepted, 1);
  // no free slot: PORTWAY_BUSY
  const held = [1, 2, 3, 4].map(() => eng.submit('sleep', '5000').catch((e) => e.code));
  await new Promise((r) => setImmediate(r));
  await assert.rejects(eng.batch('echo', ['a']), { code: 'PORTWAY_BUSY' });
  eng.cancelAll();
  assert.deepEqual(await Promise.all(held), new Array(4).fill('PORTWAY_CANCELLED'));
  // bad arguments
  await assert.rejects(eng.batch('echo', 'abc'), TypeError);
  await assert.rejects(eng.batch('echo', [1]), TypeError);
  await assert.rejects(eng.batch('echo', ['a'], { timeoutMs: -1 }), RangeError);
  await assert.rejects(eng.batch('echo', ['a'], { wait: 1 }), TypeError);
  await assert.rejects(eng.batch('nope', ['a']), { code: 'PORTWAY_NOT_FOUND' });
  await waitFor(() => eng.stats().inFlight === 0);
  await eng.close();
});

test('batch: an abort cancels every item, rejects with AbortError, settles once', async () => {
  const eng = new Engine({ runtimeThreads: 2, poolWorkers: 2, maxInFlight: 64 });
  const ac = new AbortController();
  // 20 items, parts of 16 (a quarter of 64): the part in flight is cancelled, the next one
  // never submitted
  const p = eng.batch('sleep', new Array(20).fill('5000'), { signal: ac.signal });
  setTimeout(() => ac.abort(), 20);
  await assert.rejects(p, { name: 'AbortError' });
  await waitFor(() => eng.stats().inFlight === 0);
  assert.equal(eng.stats().completed.PORTWAY_CANCELLED, 16);
  assert.equal(eng.stats().accepted, 16);
  const pre = new AbortController();
  pre.abort();
  await assert.rejects(eng.batch('echo', ['x'], { signal: pre.signal }), { name: 'AbortError' });
  assert.equal(eng.stats().accepted, 16);
  await eng.close();
});

test('batch: http items with their codes, headers and bodies', async () => {
  const server = http.createServer((req, res) => {
    if (req.url === '/hello') {
      res.setHeader('X-Test', 'yes');
      res.end('hello world');
    } else {
      res.statusCode = 404;
      res.end('not found');
    }
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${server.address().port}`;
  const closed = net.createServer();
  await new Promise((r) => closed.listen(0, '127.0.0.1', r));
  const deadPort = closed.address().port;
  await new Promise((r) => closed.close(r));
  const eng = new Engine({ runtimeThreads: 2, poolWorkers: 2 });
  try {
    const r = await eng.batch('http', [
      requestPayload('GET', `${base}/hello`),
      requestPayload('GET', `${base}/missing`),
      requestPayload('GET', `http://127.0.0.1:${deadPort}/`),
      requestPayload('GET', `${base}/hello`),
    ], { timeoutMs: 10000 });
    assert.equal(r.code(0), 200);
    assert.equal(r.get(0).toString(), 'hello world');
    assert.ok(r.headers(0).some(([k, v]) => k.toLowerCase() === 'x-test' && v === 'yes'));
    assert.equal(r.status(1), 'PORTWAY_OK');
    assert.equal(r.code(1), 404);
    assert.equal(r.get(1).toString(), 'not found');
    assert.equal(r.status(2), 'PORTWAY_CONNECT_ERROR');
    assert.deepEqual(r.headers(2), []);
    assert.deepEqual(r.failures(), [2]);
    assert.ok(r.headers(3).some(([k]) => k.toLowerCase() === 'x-test'));
    assert.deepEqual(r.headers(0), r.headers(3));
  } finally {
    await eng.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});

test('batch: close({ drain: false }) completes a batch in flight with its items CANCELLED', async () => {
  const eng = new Engine({ runtimeThreads: 2, poolWorkers: 2 });
  const p = eng.batch('sleep', ['5000', '1', '5000']);
  await new Promise((r) => setTimeout(r, 50));
  await eng.close({ drain: false });
  const r = await p;
  assert.equal(r.status(0), 'PORTWAY_CANCELLED');
  assert.equal(r.status(1), 'PORTWAY_OK');
  assert.deepEqual(r.failures(), [0, 2]);
});

test('batch: a later part refused by a close begun meanwhile rejects PORTWAY_SHUTDOWN, once', async () => {
  // maxInFlight 4: parts of one item, one in flight at a time. close() drains the part in
  // flight (it runs); the next part finds the engine closed.
  const eng = new Engine({ runtimeThreads: 2, poolWorkers: 2, maxInFlight: 4 });
  let settled = 0;
  const p = eng.batch('sleep', ['30', '30', '30']).finally(() => settled++);
  const closed = eng.close();
  await assert.rejects(p, (e) => e instanceof PortwayError && e.code === 'PORTWAY_SHUTDOWN');
  await closed; // the drain ends: nothing of the batch is left holding a slot
  await new Promise((r) => setImmediate(r));
  assert.equal(settled, 1);
  assert.throws(() => eng.stats(), { code: 'PORTWAY_SHUTDOWN' });
});
