'use strict';
// setPolicy / policyState / PORTWAY_UNAVAILABLE (issue 16). No timing is asserted: the rate is
// one token a day, or the breaker's cooldown is waited out (a lower bound).
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
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

test('circuit breaker: one per origin; open is PORTWAY_UNAVAILABLE, one trial closes it', async () => {
  let down = true;
  const flaky = http.createServer((req, res) => {
    res.statusCode = down ? 503 : 200;
    res.end(down ? 'down' : 'up');
  });
  const other = http.createServer((req, res) => res.end('other'));
  await new Promise((r) => flaky.listen(0, '127.0.0.1', r));
  await new Promise((r) => other.listen(0, '127.0.0.1', r));
  const eng = new Engine(opts());
  try {
    eng.setPolicy('http', { breakerFailures: 2, breakerCooldownMs: 50 });
    const origin = `http://127.0.0.1:${flaky.address().port}`;
    const f = { url: `${origin}/` };
    for (let i = 0; i < 2; i++) assert.equal((await eng.http(f)).status, 503);
    assert.equal(eng.policyState('http').breakerState, 'open');
    await assert.rejects(eng.http(f), (e) => {
      assert.equal(e.code, 'PORTWAY_UNAVAILABLE');
      assert.ok(e.message.includes(origin), e.message);
      return true;
    });
    // Another origin on the same handler is still served.
    assert.equal((await eng.http({ url: `http://127.0.0.1:${other.address().port}/` })).status, 200);
    assert.equal(eng.policyState('http').breakerOpen, 1);
    down = false;
    await new Promise((r) => setTimeout(r, 80)); // past the cooldown: the next request is the trial
    assert.equal(eng.policyState('http').breakerState, 'half-open');
    assert.equal((await eng.http(f)).status, 200);
    const s = eng.policyState('http');
    assert.deepEqual([s.breakerState, s.breakerOpen, s.breakerTrips, s.breakerRejected], ['closed', 0, 1, 1]);
  } finally {
    await eng.close({ drain: false });
    for (const srv of [flaky, other]) {
      srv.closeAllConnections();
      await new Promise((r) => srv.close(r));
    }
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
    assert.deepEqual([s.hedgesStarted, s.hedgesWon, s.hedgesCancelled, s.hedgesSkipped], [1, 1, 1, 0]);
    assert.equal(seen, 2);
  } finally {
    await eng.close({ drain: false });
    for (const res of held) res.end();
    live.closeAllConnections();
    await new Promise((r) => live.close(r));
  }
});
