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

test('setPolicy validates its options; unsupported ones are refused by the library', async () => {
  const eng = new Engine(opts());
  assert.throws(() => eng.setPolicy('echo', { adaptive: true }), (e) =>
    e.code === 'PORTWAY_INVALID_ARGUMENT' && /not supported yet/.test(e.message));
  assert.throws(() => eng.setPolicy('echo', { hedgeAfterMs: 20 }), (e) =>
    e.code === 'PORTWAY_INVALID_ARGUMENT' && /never hedged/.test(e.message));
  assert.throws(() => eng.setPolicy('http', { hedgeAfterMs: 20, hedgeBudgetPercent: 101 }), (e) =>
    e.code === 'PORTWAY_INVALID_ARGUMENT' && /at most 100/.test(e.message));
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

test('hedging: a GET still running after hedgeAfterMs is sent again; the first answer wins', async () => {
  let seen = 0;
  const held = [];
  const live = http.createServer((req, res) => {
    seen += 1;
    if (seen === 1) held.push(res); // the first request never gets an answer
    else res.end('fast');
  });
  await new Promise((r) => live.listen(0, '127.0.0.1', r));
  const eng = new Engine(opts());
  try {
    eng.setPolicy('http', { hedgeAfterMs: 20, hedgeAfterP95: false, hedgeBudgetPercent: 100 });
    const r = await eng.http({ url: `http://127.0.0.1:${live.address().port}/item` });
    assert.equal(r.status, 200);
    assert.deepEqual(r.headers.filter(([k]) => k === 'portway-hedge'), [['portway-hedge', 'won']]);
    const s = eng.policyState('http');
    assert.deepEqual([s.hedgesStarted, s.hedgesWon, s.hedgesCancelled], [1, 1, 1]);
    assert.equal(seen, 2);
  } finally {
    await eng.close({ drain: false });
    for (const res of held) res.end();
    live.closeAllConnections();
    await new Promise((r) => live.close(r));
  }
});
