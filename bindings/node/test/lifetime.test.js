'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { Worker } = require('node:worker_threads');
const { Engine } = require('..');

const fixture = (name) => path.join(__dirname, 'fixtures', name);

function runNode(file, timeout = 30000) {
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [fixture(file)], { encoding: 'utf8', timeout });
  return { ...r, ms: Date.now() - t0 };
}

test('process.exit() from a completion with 10,000 requests in flight exits 0', () => {
  const r = runNode('exit-in-flight.js');
  assert.equal(r.signal, null, `killed by ${r.signal}; stderr: ${r.stderr}`);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(r.ms < 10000, `took ${r.ms} ms`);
});

test('synchronous process.exit() with 10,000 requests in flight exits 0', () => {
  const r = runNode('exit-sync.js');
  assert.equal(r.signal, null, `killed by ${r.signal}; stderr: ${r.stderr}`);
  assert.equal(r.status, 0, r.stderr);
});

test('a script ends by itself after its last request', () => {
  const r = runNode('ends-by-itself.js', 15000);
  assert.equal(r.signal, null, 'hung: killed by the timeout');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'done 2 last');
});

test('idle and dropped engines do not keep the process alive', () => {
  const r = runNode('idle-engine.js', 15000);
  assert.equal(r.signal, null, 'hung: killed by the timeout');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'idle ok');
});

function runWorker(data) {
  return new Promise((resolve, reject) => {
    const w = new Worker(fixture('worker.js'), { workerData: data });
    let msg;
    w.on('message', (m) => {
      msg = m;
      if (m.open) w.terminate();
    });
    w.on('error', reject);
    w.on('exit', (code) => resolve({ msg, code }));
  });
}

test('two worker_threads use the addon at once, beside the main thread', async () => {
  const eng = new Engine({ runtimeThreads: 1, poolWorkers: 1 });
  const main = eng.submitMany('echo', Array.from({ length: 5000 }, () => Buffer.from('m')));
  const [a, b] = await Promise.all([runWorker({ tag: 'a', n: 20000 }), runWorker({ tag: 'b', n: 20000 }), main]);
  assert.deepEqual(a, { msg: { ok: true, count: 20000 }, code: 0 });
  assert.deepEqual(b, { msg: { ok: true, count: 20000 }, code: 0 });
  assert.equal((await main).length, 5000);
  await eng.close();
});

test('terminating a worker with requests in flight frees its engine', async () => {
  const r = await runWorker({ tag: 'c', n: 100, leaveOpen: true });
  assert.equal(r.msg.ok, true);
  assert.equal(r.code, 1); // terminate() exit code
  // and the main thread still works
  const eng = new Engine({ runtimeThreads: 1, poolWorkers: 1 });
  assert.equal((await eng.submit('echo', 'still')).data.toString(), 'still');
  await eng.close();
});

test('an engine dropped without close is collected (needs --expose-gc to assert)', async () => {
  if (typeof global.gc !== 'function') {
    // exercise the path anyway: many short-lived engines
    for (let i = 0; i < 5; i++) {
      const e = new Engine({ runtimeThreads: 1, poolWorkers: 1 });
      await e.submit('echo', 'x');
    }
    return;
  }
  for (let i = 0; i < 5; i++) {
    const e = new Engine({ runtimeThreads: 1, poolWorkers: 1 });
    await e.submit('echo', 'x');
  }
  global.gc();
});
