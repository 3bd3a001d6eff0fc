'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { Engine, PortwayError } = require('..');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// One sample line of the exposition: `name{labels} value` -> value, or undefined.
function sample(text, series) {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

test('metricsText counts echoes; histogram counts equal completions', async () => {
  const eng = new Engine({ runtimeThreads: 2, poolWorkers: 1 });
  const n = 37;
  for (let i = 0; i < 10; i++) await eng.submit('echo', `one ${i}`);
  await eng.submitMany('echo', Array.from({ length: n - 10 }, (_, i) => Buffer.from(`b${i}`)));
  const text = eng.metricsText();
  assert.equal(typeof text, 'string');
  assert.ok(text.endsWith('\n'));
  assert.ok(text.includes(`portway_requests_submitted_total{handler="echo"} ${n}\n`), text);
  assert.equal(sample(text, 'portway_requests_completed_total{handler="echo",status="PORTWAY_OK"}'), n);
  for (const h of ['portway_queue_wait_seconds', 'portway_run_seconds']) {
    assert.equal(sample(text, `${h}_count{handler="echo"}`), n, h);
    assert.equal(sample(text, `${h}_bucket{handler="echo",le="+Inf"}`), n, h);
    assert.equal(sample(text, `${h}_count{handler="sleep"}`), 0, h);
  }
  // agrees with stats()
  const s = eng.stats();
  assert.equal(sample(text, 'portway_engine_accepted_total'), s.accepted);
  assert.equal(sample(text, 'portway_engine_completed_total{status="PORTWAY_OK"}'), s.completed.PORTWAY_OK);
  assert.equal(sample(text, 'portway_in_flight'), 0);
  // every non-comment line is `series value`
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    assert.match(line, /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+0-9.eE]+|\+Inf|NaN$/, line);
  }
  await eng.close();
  assert.throws(() => eng.metricsText(), (e) => e instanceof PortwayError && e.code === 'PORTWAY_SHUTDOWN');
});

test('handlerStats: sleep p50 is at least the sleep; completed lists nonzero statuses only', async () => {
  const eng = new Engine({ runtimeThreads: 2, poolWorkers: 1 });
  const ms = 40;
  await Promise.all([eng.submit('sleep', String(ms)), eng.submit('sleep', String(ms)), eng.submit('sleep', String(ms))]);
  await assert.rejects(eng.submit('sleep', '5000', { timeoutMs: 20 }), { code: 'PORTWAY_TIMEOUT' });
  const st = eng.handlerStats('sleep');
  assert.equal(st.id, eng.lookup('sleep'));
  assert.equal(st.submitted, 4);
  assert.deepEqual(st.completed, { PORTWAY_OK: 3, PORTWAY_TIMEOUT: 1 });
  for (const k of ['queueWait', 'run']) {
    assert.deepEqual(Object.keys(st[k]).sort(), ['count', 'maxNs', 'p50Ns', 'p90Ns', 'p99Ns', 'sumNs']);
    for (const v of Object.values(st[k])) assert.equal(typeof v, 'number');
  }
  assert.equal(st.run.count, 4);
  assert.ok(st.run.p50Ns >= ms * 1e6, `p50 ${st.run.p50Ns} ns < ${ms} ms`);
  assert.ok(st.run.p90Ns >= st.run.p50Ns && st.run.p99Ns >= st.run.p90Ns && st.run.maxNs >= st.run.p99Ns);
  assert.ok(st.run.sumNs >= 3 * ms * 1e6);
  // by id too; an untouched handler has zeros and an empty completed
  assert.deepEqual(eng.handlerStats(eng.lookup('sleep')).completed, st.completed);
  const h = eng.handlerStats('http');
  assert.equal(h.submitted, 0);
  assert.deepEqual(h.completed, {});
  assert.equal(h.run.count, 0);
  assert.throws(() => eng.handlerStats('nope'), (e) => e instanceof PortwayError && e.code === 'PORTWAY_NOT_FOUND');
  assert.throws(() => eng.handlerStats(9999), (e) => e instanceof PortwayError && e.code === 'PORTWAY_UNKNOWN_HANDLER');
  await eng.close();
});

test('inflight shows a long sleep running with a growing age, then nothing', async () => {
  const eng = new Engine({ runtimeThreads: 2, poolWorkers: 1 });
  assert.deepEqual(eng.inflight(), { total: 0, requests: [] });
  const p = eng.submit('sleep', '600');
  const id = eng._n.lastId();
  await sleep(100);
  const a = eng.inflight();
  assert.equal(a.total, 1);
  assert.equal(a.requests.length, 1);
  const r = a.requests[0];
  assert.equal(r.id, id);
  assert.equal(r.handler, 'sleep');
  assert.equal(r.stageHandler, 'sleep');
  assert.equal(r.stage, 0);
  assert.equal(r.state, 'running');
  assert.equal(typeof r.userData, 'number');
  assert.ok(r.ageMs >= 90, `age ${r.ageMs}`);
  await sleep(150);
  const b = eng.inflight({ limit: 10 }).requests[0];
  assert.equal(b.id, id);
  assert.ok(b.ageMs >= r.ageMs + 100, `age ${r.ageMs} -> ${b.ageMs}`);
  const c = await p;
  assert.equal(c.id, id);
  assert.deepEqual(eng.inflight(), { total: 0, requests: [] });
  await eng.close();
});

test('inflight: limit caps the list (oldest first), total counts all; large snapshots grow the buffer', async () => {
  const eng = new Engine({ runtimeThreads: 2, poolWorkers: 1 });
  const ps = [];
  for (let i = 0; i < 300; i++) ps.push(eng.submit('sleep', '5000').catch((e) => e.code));
  await sleep(20);
  const two = eng.inflight({ limit: 2 });
  assert.equal(two.total, 300);
  assert.equal(two.requests.length, 2);
  assert.ok(two.requests[0].id < two.requests[1].id);
  assert.ok(two.requests[0].ageMs >= two.requests[1].ageMs);
  const all = eng.inflight({ limit: 1000 }); // tens of KB: past the first buffer
  assert.equal(all.requests.length, 300);
  assert.deepEqual(all.requests.slice(0, 2).map((x) => x.id), two.requests.map((x) => x.id));
  assert.equal(eng.inflight({ limit: 0 }).requests.length, 0);
  assert.throws(() => eng.inflight({ limit: -1 }), RangeError);
  assert.throws(() => eng.inflight({ limit: 1.5 }), RangeError);
  eng.cancelAll();
  assert.ok((await Promise.all(ps)).every((x) => x === 'PORTWAY_CANCELLED'));
  assert.deepEqual(eng.inflight(), { total: 0, requests: [] });
  await eng.close();
});

test('onLog: engine start and shutdown at info, on the JS thread, all seen when close() resolves', async () => {
  const logs = [];
  const eng = new Engine({
    runtimeThreads: 1,
    poolWorkers: 1,
    onLog(level, message) {
      assert.equal(this, undefined);
      logs.push([level, message]);
    },
  });
  await eng.submit('echo', 'x');
  // Delivery is asynchronous (a threadsafe function): the start event arrives on its own.
  for (let i = 0; i < 100 && logs.length === 0; i++) await sleep(10);
  assert.equal(logs.length, 1, JSON.stringify(logs));
  assert.equal(logs[0][0], 'info');
  assert.match(logs[0][1], /^engine started: 1 runtime thread\(s\), 1 pool worker\(s\)/);
  await eng.close();
  const shut = logs.filter(([, m]) => /^shutdown/.test(m));
  assert.equal(shut.length, 1, JSON.stringify(logs));
  assert.equal(shut[0][0], 'info');
  assert.ok(logs.every(([l, m]) => ['debug', 'info', 'warn', 'error'].includes(l) && typeof m === 'string'));
  const n = logs.length;
  await eng.close(); // idempotent; nothing more
  await sleep(10);
  assert.equal(logs.length, n);
});

test('onLog: logLevel filters; bad options throw', async () => {
  const logs = [];
  const eng = new Engine({ runtimeThreads: 1, poolWorkers: 1, logLevel: 'warn', onLog: (l, m) => logs.push([l, m]) });
  await eng.submit('echo', 'x');
  await eng.close();
  assert.deepEqual(logs, []);
  const dbg = [];
  const e2 = new Engine({ runtimeThreads: 1, poolWorkers: 1, logLevel: 'debug', onLog: (l, m) => dbg.push([l, m]) });
  await e2.close({ drain: false });
  assert.deepEqual(dbg.map(([l]) => l), ['info', 'info']);
  assert.throws(() => new Engine({ logLevel: 'verbose', onLog() {} }), TypeError);
  assert.throws(() => new Engine({ onLog: 'console' }), TypeError);
  // no onLog: fine, and close() resolves without a log flush
  const e3 = new Engine({ runtimeThreads: 1, poolWorkers: 1, logLevel: 'debug' });
  await e3.close();
});

const fixture = path.join(__dirname, 'fixtures', 'log-lifetime.js');
function runFixture(mode, flags = []) {
  const r = spawnSync(process.execPath, [...flags, fixture, mode], { encoding: 'utf8', timeout: 15000 });
  assert.equal(r.signal, null, `${mode}: killed by ${r.signal} (hung?); stderr: ${r.stderr}`);
  assert.equal(r.status, 0, `${mode}: ${r.stderr}`);
  return r.stdout.trim().split('\n');
}

test('onLog keeps nothing alive: idle engines, an unheld close(), process.exit() in flight', () => {
  assert.ok(runFixture('idle').includes('idle ok'));
  assert.deepEqual(runFixture('close-unheld'), ['info engine started', 'info shutdown', 'closed']);
  runFixture('exit-in-flight');
  assert.deepEqual(runFixture('worker'), ['worker exit 1']);
});

test('an exception thrown by onLog is an uncaught exception', () => {
  assert.deepEqual(runFixture('throw'), ['uncaught engine started', 'uncaught shutdown', 'closed']);
});

test('an engine whose onLog closes over it is still collected', () => {
  assert.deepEqual(runFixture('gc', ['--expose-gc']), ['collected']);
});
