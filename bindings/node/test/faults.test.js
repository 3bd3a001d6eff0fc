'use strict';
// Failures inside the addon's delivery path (an N-API call that fails) must still settle every
// promise they concern, with a PortwayError: nothing may wait forever. The failures are made on
// purpose through the test-only fault points of build/faults/portway.node (`make test` builds
// it with -DPORTWAY_FAULT_INJECTION; see NativeEngine#_fault in src/addon.c), loaded here under
// a copy of lib/, so the addon users get is never involved.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.join(__dirname, '..');
const faultBuild = path.join(root, 'build', 'faults', 'portway.node');
if (!fs.existsSync(faultBuild)) throw new Error(`${faultBuild} is missing: run \`make test\` (or \`make faults\`)`);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'portway-faults-'));
fs.mkdirSync(path.join(dir, 'lib'));
fs.mkdirSync(path.join(dir, 'build'));
// Every module of lib/ (index.js requires its siblings, e.g. fetch.js).
fs.cpSync(path.join(root, 'lib'), path.join(dir, 'lib'), { recursive: true });
fs.copyFileSync(faultBuild, path.join(dir, 'build', 'portway.node'));
const { Engine, PortwayError } = require(path.join(dir, 'lib', 'index.js'));
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));

// A promise that never settles fails the test by this limit instead of hanging the suite.
const HANG = { timeout: 30000 };

function engine() {
  return new Engine({ runtimeThreads: 1, poolWorkers: 1 });
}

function internal(e) {
  assert.ok(e instanceof PortwayError, `${e}`);
  assert.equal(e.code, 'PORTWAY_INTERNAL');
  return true;
}

test('fault build: the fault points exist only there', () => {
  const eng = engine();
  assert.equal(typeof eng._n._fault, 'function');
  assert.equal(typeof new (require('..').Engine)()._n._fault, 'undefined');
  return eng.close();
});

test('a failed delivery step rejects the promises of its records', HANG, async () => {
  const eng = engine();
  eng._n._fault('flush', 1);
  await assert.rejects(eng.submit('echo', 'a'), (e) => internal(e) && /handed to JavaScript/.test(e.message));
  // a batch: rejected once; its completions after the failed step are absorbed
  eng._n._fault('flush', 1);
  await assert.rejects(eng.submitMany('sleep', ['1', '100', '150']), internal);
  // a completion error in the failed step keeps its own status
  eng._n._fault('flush', 1);
  await assert.rejects(eng.submit('sleep', '10000', { timeoutMs: 1 }), { code: 'PORTWAY_TIMEOUT' });
  // and the engine goes on
  assert.equal((await eng.submit('echo', 'after')).data.toString(), 'after');
  assert.deepEqual((await eng.submitMany('echo', ['x', 'y'])).map((c) => c.data.toString()), ['x', 'y']);
  await eng.close();
});

test('a body that cannot be copied into a Buffer rejects its request', HANG, async () => {
  const eng = engine();
  const big = Buffer.alloc(100000, 7); // past the 64 KiB arena: napi_create_buffer_copy
  eng._n._fault('bufferCopy', 1);
  await assert.rejects(eng.submit('echo', big), (e) => internal(e) && typeof e.requestId === 'number');
  eng._n._fault('bufferCopy', 1);
  await assert.rejects(eng.submitMany('echo', ['a', big, 'b']), (e) => internal(e) && e.index === 1);
  const [a, b] = await Promise.all([eng.submit('echo', 'small'), eng.submit('echo', big)]);
  assert.equal(a.data.toString(), 'small');
  assert.ok(b.data.equals(big));
  await eng.close();
});

test('a failed notify call (JS thread) does not leave delivery stuck', HANG, async () => {
  const eng = engine();
  eng._n._fault('notify', 1); // echo completes inline: the hook runs inside submit
  assert.equal((await eng.submit('echo', 'one')).data.toString(), 'one');
  assert.equal((await eng.submit('echo', 'two')).data.toString(), 'two');
  await eng.close();
});

test('a failed notify call (engine thread) is repeated by the next call into the addon', HANG, async () => {
  const eng = engine();
  eng._n._fault('notify', 1);
  let done = false;
  const p = eng.submit('sleep', '1').then((c) => {
    done = true;
    return c;
  });
  // Nothing else would ever wake the JS side for this completion; any call does.
  while (!done) {
    await new Promise((r) => setTimeout(r, 5));
    eng.stats();
  }
  assert.equal((await p).code, 0);
  assert.equal((await eng.submit('sleep', '1')).code, 0); // and the hook works again
  await eng.close();
});

test('submitMany abort cancels the ids the batch got, not an assumed range', HANG, async () => {
  const eng = engine();
  eng._n._fault('batchGap', 1); // an unrelated request takes an id inside the batch's range
  const ac = new AbortController();
  const p = eng.submitMany('sleep', ['10000', '10000', '10000'], { signal: ac.signal });
  const batchIds = eng.inflight().requests.filter((r) => r.userData !== 0).map((r) => r.id);
  const gapId = eng.inflight().requests.find((r) => r.userData === 0).id;
  assert.equal(batchIds.length, 3);
  assert.ok(gapId > batchIds[0] && gapId < batchIds[2], 'the ids are not consecutive');
  const cancelled = [];
  const cancel = eng._n.cancel.bind(eng._n);
  eng._n.cancel = (id) => {
    cancelled.push(id);
    return cancel(id);
  };
  ac.abort();
  await assert.rejects(p, { name: 'AbortError' });
  assert.deepEqual(cancelled.sort((a, b) => a - b), batchIds);
  // the unrelated request still runs; every request of the batch was cancelled
  const left = eng.inflight().requests;
  assert.deepEqual(left.filter((r) => r.state !== 'ready').map((r) => r.id).filter((id) => id !== gapId), []);
  eng.cancelAll();
  await eng.close();
  assert.equal(eng.handlerStats === undefined, false);
});
