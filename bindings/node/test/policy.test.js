'use strict';
// setPolicy / policyState / PORTWAY_UNAVAILABLE (issue 16). No timing is asserted: the rate is
// one token a day, or the breaker's cooldown is waited out (a lower bound).
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const net = require('node:net');
const { Engine } = require('..');

const A_DAY = 1 / 86400;

function opts() {
  return { runtimeThreads: 2, poolWorkers: 2 };
}

test('rate limit: waits without a thread, times out at once past the deadline, lifts', async () => {
  const eng = new Engine(opts());
  eng.setPolicy('echo', { ratePerS: A_DAY, burst: 1 });
  assert.equal((await eng.submit('echo', 'first')).data.toString(), 'first');
  await assert.rejects(eng.submit('echo', 'late', { timeoutMs: 60000 }), (e) => {
    assert.equal(e.code, 'PORTWAY_TIMEOUT');
    assert.match(e.message, /rate limit/);
    return true;
  });
  const waiting = eng.submit('echo', 'waits');
  const s = eng.policyState('echo');
  assert.equal(s.waiting, 1);
  assert.equal(s.rateTimeouts, 1);
  assert.equal(s.breakerState, 'closed');
  eng.setPolicy('echo', {});
  assert.equal((await waiting).data.toString(), 'waits');
  await eng.close();
});

test('circuit breaker: open is PORTWAY_UNAVAILABLE, one trial closes it', async () => {
  const live = http.createServer((req, res) => res.end('up'));
  await new Promise((r) => live.listen(0, '127.0.0.1', r));
  const dead = net.createServer();
  await new Promise((r) => dead.listen(0, '127.0.0.1', r));
  const deadPort = dead.address().port;
  await new Promise((r) => dead.close(r));
  const eng = new Engine(opts());
  try {
    eng.setPolicy('http', { breakerFailures: 2, breakerCooldownMs: 50 });
    const down = { url: `http://127.0.0.1:${deadPort}/` };
    for (let i = 0; i < 2; i++) await assert.rejects(eng.http(down), { code: 'PORTWAY_CONNECT_ERROR' });
    assert.equal(eng.policyState('http').breakerState, 'open');
    const up = { url: `http://127.0.0.1:${live.address().port}/` };
    await assert.rejects(eng.http(up), { code: 'PORTWAY_UNAVAILABLE' });
    await new Promise((r) => setTimeout(r, 80)); // past the cooldown: the next request is the trial
    assert.equal(eng.policyState('http').breakerState, 'half-open');
    assert.equal((await eng.http(up)).status, 200);
    const s = eng.policyState('http');
    assert.deepEqual([s.breakerState, s.breakerTrips, s.breakerRejected], ['closed', 1, 1]);
  } finally {
    await eng.close({ drain: false });
    live.closeAllConnections();
    await new Promise((r) => live.close(r));
  }
});

test('setPolicy takes an adaptive limit and refuses its bad combinations', async () => {
  const eng = new Engine(opts());
  try {
    eng.setPolicy('echo', { adaptive: true, minConcurrency: 2, maxConcurrency: 50 });
    assert.equal(eng.policyState('echo').concurrencyLimit, 20); // where it starts
    assert.equal((await eng.submit('echo', 'hi')).data.toString(), 'hi');
    eng.setPolicy('echo', { adaptive: true, maxConcurrency: 8 });
    assert.equal(eng.policyState('echo').concurrencyLimit, 8);
    assert.throws(() => eng.setPolicy('echo', { minConcurrency: 4 }), (e) =>
      e.code === 'PORTWAY_INVALID_ARGUMENT' && /set adaptive too/.test(e.message));
    assert.throws(() => eng.setPolicy('echo', { adaptive: true, minConcurrency: 4, maxConcurrency: 3 }), (e) =>
      e.code === 'PORTWAY_INVALID_ARGUMENT' && /ceiling 3/.test(e.message));
    assert.throws(() => eng.setPolicy('echo', { adaptive: 1 }), { code: 'PORTWAY_INVALID_ARGUMENT' });
    assert.throws(() => eng.setPolicy('echo', { minConcurrency: 1.5 }), { code: 'PORTWAY_INVALID_ARGUMENT' });
    assert.equal(eng.policyState('echo').concurrencyLimit, 8, 'refusals change nothing');
    eng.setPolicy('echo', {});
    assert.equal(eng.policyState('echo').concurrencyLimit, 0);
  } finally {
    await eng.close();
  }
});

test('setPolicy validates its options; unsupported ones are refused by the library', async () => {
  const eng = new Engine(opts());
  assert.throws(() => eng.setPolicy('echo', { hedgeAfterMs: 20 }), { code: 'PORTWAY_INVALID_ARGUMENT' });
  assert.throws(() => eng.setPolicy('echo', { ratePerSecond: 5 }), { code: 'PORTWAY_INVALID_ARGUMENT' });
  assert.throws(() => eng.setPolicy('echo', { burst: -1 }), { code: 'PORTWAY_INVALID_ARGUMENT' });
  assert.throws(() => eng.setPolicy('echo', { ratePerS: '5' }), { code: 'PORTWAY_INVALID_ARGUMENT' });
  assert.throws(() => eng.setPolicy('echo', { ratePerS: NaN }), { code: 'PORTWAY_INVALID_ARGUMENT' });
  assert.throws(() => eng.setPolicy('echo', null), { code: 'PORTWAY_INVALID_ARGUMENT' });
  assert.throws(() => eng.setPolicy('nope', {}), { code: 'PORTWAY_NOT_FOUND' });
  eng.setPolicy('echo', { maxConcurrency: 3 });
  assert.equal(eng.policyState('echo').concurrencyLimit, 3);
  eng.setConcurrency('echo', 2);
  assert.equal(eng.policyState('echo').concurrencyLimit, 2);
  await eng.close();
});
