'use strict';
// Bad input is refused with a TypeError or RangeError carrying code 'PORTWAY_INVALID_ARGUMENT'
// (never coerced, never undefined behaviour in C), and the cross-binding decisions of
// README "Statuses and decisions" hold.
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { Engine, PortwayError } = require('..');

function opts() {
  return { runtimeThreads: 1, poolWorkers: 1 };
}

/** assert.throws / rejects matcher: `Ctor` with the binding's invalid-argument code. */
function invalid(Ctor) {
  return (e) => {
    assert.ok(e instanceof Ctor, `${e && e.name}: ${e && e.message} is not a ${Ctor.name}`);
    assert.equal(e.code, 'PORTWAY_INVALID_ARGUMENT');
    assert.equal(e.status, 1);
    return true;
  };
}

test('cancel(id): only integers 0..2^53-1; the rest throws, no UB and no N-API error', async () => {
  const eng = new Engine(opts());
  for (const bad of [-1, NaN, 1e30, 1.5, Infinity, -Infinity, 2 ** 53]) {
    assert.throws(() => eng.cancel(bad), invalid(RangeError), String(bad));
  }
  for (const bad of ['abc', '5', null, undefined, {}, 5n]) {
    assert.throws(() => eng.cancel(bad), invalid(TypeError), String(bad));
  }
  assert.equal(eng.cancel(0), false); // no request has id 0
  assert.equal(eng.cancel(2 ** 53 - 1), false);
  const p = eng.submit('sleep', '10000').then(() => 'ok', (e) => e.code);
  assert.equal(eng.cancel(eng._n.lastId()), true);
  assert.equal(await p, 'PORTWAY_CANCELLED');
  await eng.close();
  assert.throws(() => eng.cancel(-1), invalid(RangeError)); // also once closed
});

test('handler: a name (string) or an id (integer); null is not the handler "null"', async () => {
  const eng = new Engine(opts());
  for (const bad of [null, undefined, {}, true, ['echo']]) {
    await assert.rejects(eng.submit(bad, 'x'), invalid(TypeError), String(bad));
    await assert.rejects(eng.submitMany(bad, ['x']), invalid(TypeError), String(bad));
  }
  for (const bad of [-1, 1.5, NaN, 2 ** 32]) {
    await assert.rejects(eng.submit(bad, 'x'), invalid(RangeError), String(bad));
  }
  const echo = eng.lookup('echo');
  assert.equal((await eng.submit(echo, 'by id')).data.toString(), 'by id');
  assert.throws(() => eng.setConcurrency('echo', -1), invalid(RangeError));
  assert.throws(() => eng.setConcurrency('echo', undefined), invalid(TypeError));
  assert.throws(() => eng.handlerStats(1.5), invalid(RangeError));
  assert.throws(() => eng.pipeline(null, ['echo']), invalid(TypeError));
  assert.throws(() => eng.pipeline('p', 'echo'), invalid(TypeError));
  assert.throws(() => eng.pipeline('p', [-1]), invalid(RangeError));
  await eng.close();
});

test('names are read whole: a long one is refused with its true length, a NUL is refused', async () => {
  const eng = new Engine(opts());
  // 400 bytes: the core's limit is 256, and its message must quote the real length (the
  // addon once cut names at 299 bytes, so the message said 299).
  const long = 'n'.repeat(400);
  assert.throws(() => eng.registerHttp(long), (e) => e.code === 'PORTWAY_INVALID_ARGUMENT' && /\b400 bytes/.test(e.message));
  assert.throws(() => eng.pipeline(long, ['echo']), (e) => e.code === 'PORTWAY_INVALID_ARGUMENT' && /\b400 bytes/.test(e.message));
  // multi-byte: 300 characters of 3 bytes each are 900 bytes
  assert.throws(() => eng.pipeline('\u20ac'.repeat(300), ['echo']), /\b900 bytes/);
  assert.throws(() => eng.lookup(long), (e) => e.code === 'PORTWAY_NOT_FOUND' && e.message.includes(long));
  // A name with a NUL would reach C cut at the NUL ('echo\0x' would find 'echo'): refused.
  for (const f of [() => eng.lookup('echo\0x'), () => eng.pipeline('p\0q', ['echo']),
    () => eng.registerHttp('h\0i'), () => eng.registerHttp('h2', { userAgent: 'a\0b' })]) {
    assert.throws(f, invalid(TypeError));
  }
  assert.throws(() => eng.lookup('p'), { code: 'PORTWAY_NOT_FOUND' }); // nothing was registered
  // a name of exactly the limit still works
  const max = 'm'.repeat(256);
  assert.equal(typeof eng.pipeline(max, ['echo']), 'number');
  assert.equal(eng._n.lookup(max), eng.lookup(max));
  await eng.close();
});

test('payloads: Buffers, typed arrays, ArrayBuffers, strings; nothing coerced', async () => {
  const eng = new Engine(opts());
  for (const bad of [null, 5, {}, [1, 2], true]) {
    await assert.rejects(eng.submit('echo', bad), invalid(TypeError), String(bad));
    await assert.rejects(eng.submitMany('echo', [bad]), invalid(TypeError), String(bad));
  }
  // payloads itself: an array or iterable, not a string (it would be split in characters)
  for (const bad of [5, 'ab', null, undefined, { length: 2 }]) {
    await assert.rejects(eng.submitMany('echo', bad), invalid(TypeError), String(bad));
  }
  const set = await eng.submitMany('echo', new Set(['a', 'b']));
  assert.deepEqual(set.map((c) => c.data.toString()), ['a', 'b']);
  assert.equal((await eng.submit('echo')).data.length, 0); // no payload: empty
  await eng.close();
});

test('engine options: every one checked, none coerced', () => {
  const cases = [
    ['maxPayload', -1, RangeError], ['maxPayload', 1.5, RangeError], ['maxPayload', 'x', TypeError],
    ['maxPayload', 0, RangeError], ['maxPayload', null, TypeError], ['maxPayload', '64', TypeError],
    ['maxInFlight', 0, RangeError], ['maxInFlight', 2 ** 32, RangeError], ['maxInFlight', NaN, RangeError],
    ['runtimeThreads', -1, RangeError], ['runtimeThreads', 1025, RangeError], ['runtimeThreads', '2', TypeError],
    ['poolWorkers', 0.5, RangeError], ['poolWorkers', false, TypeError],
    ['defaultTimeoutMs', -5, RangeError], ['defaultTimeoutMs', Infinity, RangeError],
    ['logLevel', 'verbose', TypeError], ['logLevel', 2, TypeError], ['logLevel', 'toString', TypeError],
    ['onLog', 'console', TypeError], ['onLog', null, TypeError],
  ];
  for (const [key, value, Ctor] of cases) {
    assert.throws(() => new Engine({ ...opts(), [key]: value }), invalid(Ctor), `${key}: ${String(value)}`);
  }
  assert.throws(() => new Engine(5), invalid(TypeError));
  assert.throws(() => new Engine(null), invalid(TypeError));
});

test('maxPayload is applied exactly (2^40 + 1 is not rounded or wrapped)', async () => {
  const eng = new Engine({ ...opts(), maxPayload: 3 });
  await assert.rejects(eng.submit('echo', 'four'), { code: 'PORTWAY_PAYLOAD_TOO_LARGE' });
  assert.equal((await eng.submit('echo', 'abc')).data.toString(), 'abc');
  await eng.close();
  const big = new Engine({ ...opts(), maxPayload: 2 ** 40 + 1 });
  assert.equal((await big.submit('echo', 'x')).data.toString(), 'x');
  await big.close();
});

test('timeoutMs: undefined = engine default; 0, negative, fractional, NaN refused', async () => {
  const eng = new Engine({ ...opts(), defaultTimeoutMs: 20 });
  for (const bad of [0, -1, 1.5, NaN, 2 ** 32, Infinity]) {
    await assert.rejects(eng.submit('echo', 'x', { timeoutMs: bad }), invalid(RangeError), String(bad));
    await assert.rejects(eng.submitMany('echo', ['x'], { timeoutMs: bad }), invalid(RangeError), String(bad));
    await assert.rejects(eng.http({ url: 'http://127.0.0.1:9/', timeoutMs: bad }), invalid(RangeError), String(bad));
  }
  for (const bad of ['5', null]) {
    await assert.rejects(eng.submit('echo', 'x', { timeoutMs: bad }), invalid(TypeError), String(bad));
  }
  // undefined: the engine default (20 ms here) applies
  await assert.rejects(eng.submit('sleep', '10000'), { code: 'PORTWAY_TIMEOUT' });
  await assert.rejects(eng.submit('sleep', '10000', { timeoutMs: undefined }), { code: 'PORTWAY_TIMEOUT' });
  assert.equal((await eng.submit('sleep', '1', { timeoutMs: 10000 })).code, 0);
  await eng.close();
});

test('submit options: an object with an AbortSignal; close options checked', async () => {
  const eng = new Engine(opts());
  await assert.rejects(eng.submit('echo', 'x', 500), invalid(TypeError));
  await assert.rejects(eng.submit('echo', 'x', { signal: {} }), invalid(TypeError));
  await assert.rejects(eng.submitMany('echo', ['x'], { signal: 'no' }), invalid(TypeError));
  await assert.rejects(eng.close({ drain: 'yes' }), invalid(TypeError));
  await assert.rejects(eng.close({ timeoutMs: -1 }), invalid(RangeError));
  assert.equal((await eng.submit('echo', 'still open')).data.toString(), 'still open');
  await eng.close();
});

// The cross-binding table (README "Statuses and decisions").
test('decision: an unknown handler name is PORTWAY_NOT_FOUND', async () => {
  const eng = new Engine(opts());
  await assert.rejects(eng.submit('no-such-handler', 'x'), (e) => e instanceof PortwayError && e.code === 'PORTWAY_NOT_FOUND');
  await eng.close();
});

test('decision: submit after close is PORTWAY_SHUTDOWN, before and after the engine is freed', async () => {
  const eng = new Engine(opts());
  const closing = eng.close();
  await assert.rejects(eng.submit('echo', 'x'), { code: 'PORTWAY_SHUTDOWN' });
  await closing;
  for (const p of [eng.submit('echo', 'x'), eng.submitMany('echo', ['x']), eng.http({ url: 'http://127.0.0.1:9/' })]) {
    await assert.rejects(p, (e) => e instanceof PortwayError && e.code === 'PORTWAY_SHUTDOWN' && e.status === 3);
  }
});

test('decision: a relative URL in http() is PORTWAY_INVALID_ARGUMENT', async () => {
  const server = http.createServer((req, res) => res.end('ok'));
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const eng = new Engine(opts());
  try {
    for (const url of ['/relative', 'relative/path', '', 42]) {
      await assert.rejects(eng.http({ url }), invalid(TypeError), String(url));
    }
    const base = `http://127.0.0.1:${server.address().port}`;
    assert.equal((await eng.http({ url: `${base}/` })).text(), 'ok');
  } finally {
    await eng.close();
    server.close();
  }
});
