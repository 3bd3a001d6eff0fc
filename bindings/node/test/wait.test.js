'use strict';
// submit(.., { wait }): a submit refused for want of an in-flight slot waits for one instead
// of rejecting with PORTWAY_BUSY (the buffered-channel send), in submission order.
const test = require('node:test');
const assert = require('node:assert/strict');
const { Engine, PortwayError, AbortError } = require('..');

const HANG = { timeout: 30000 }; // a waiter never served fails by this limit instead of hanging

function engine(maxInFlight) {
  return new Engine({ runtimeThreads: 1, poolWorkers: 1, maxInFlight });
}

test('without wait a full engine answers PORTWAY_BUSY; with wait the submit goes through', HANG, async () => {
  const eng = engine(1);
  const first = eng.submit('sleep', '30');
  await assert.rejects(eng.submit('echo', 'x'), { code: 'PORTWAY_BUSY' });
  await assert.rejects(eng.submit('echo', 'x', { wait: 0 }), { code: 'PORTWAY_BUSY' });
  const payload = Buffer.from('waited');
  const p = eng.submit('echo', payload, { wait: Infinity });
  payload.fill(0); // the payload was taken at submit(), as without wait
  assert.equal((await p).data.toString(), 'waited');
  assert.equal((await first).code, 0);
  await eng.close();
});

test('waiters are served in submission order', HANG, async () => {
  const eng = engine(1);
  const first = eng.submit('sleep', '20');
  const order = [];
  const ps = [1, 2, 3, 4].map((i) => eng.submit('echo', String(i), { wait: 60000 }).then((c) => order.push(c.data.toString())));
  await Promise.all([first, ...ps]);
  assert.deepEqual(order, ['1', '2', '3', '4']);
  await eng.close();
});

test('the wait ends with PORTWAY_BUSY when no slot is released in time', HANG, async () => {
  const eng = engine(1);
  const long = eng.submit('sleep', '60000').catch((e) => e.code);
  await assert.rejects(eng.submit('echo', 'x', { wait: 10 }), (e) => e instanceof PortwayError && e.code === 'PORTWAY_BUSY' && /10 ms/.test(e.message));
  eng.cancelAll();
  assert.equal(await long, 'PORTWAY_CANCELLED');
  assert.equal((await eng.submit('echo', 'free again', { wait: 10 })).data.toString(), 'free again');
  await eng.close();
});

test('slots released by absorbed completions (a partly accepted batch) serve the waiters', HANG, async () => {
  const eng = engine(2);
  const long = eng.submit('sleep', '60000').catch((e) => e.code);
  // one slot left: the batch gets a prefix of one, cancelled; its completion sends no record
  await assert.rejects(eng.submitMany('sleep', ['60000', '60000']), (e) => e.code === 'PORTWAY_BUSY' && e.accepted === 1);
  const c = await eng.submit('echo', 'through', { wait: Infinity });
  assert.equal(c.data.toString(), 'through');
  eng.cancelAll();
  assert.equal(await long, 'PORTWAY_CANCELLED');
  await eng.close();
});

test('abort while waiting: AbortError, and the request is never submitted', HANG, async () => {
  const eng = engine(1);
  const long = eng.submit('sleep', '60000').catch((e) => e.code);
  const ac = new AbortController();
  const p = eng.submit('echo', 'never', { wait: Infinity, signal: ac.signal });
  ac.abort();
  await assert.rejects(p, AbortError);
  eng.cancelAll();
  await long;
  assert.equal(eng.handlerStats('echo').submitted, 0);
  await eng.close();
});

test('close() rejects the waiters with PORTWAY_SHUTDOWN', HANG, async () => {
  const eng = engine(1);
  eng.submit('sleep', '60000').catch(() => {});
  const p = eng.submit('echo', 'x', { wait: Infinity });
  const closing = eng.close({ drain: false });
  await assert.rejects(p, { code: 'PORTWAY_SHUTDOWN' });
  await closing;
});

test('wait: a number of ms, 0..2^31-1 or Infinity', async () => {
  const eng = engine(4);
  for (const bad of [-1, 1.5, NaN, 2 ** 31, -Infinity]) {
    await assert.rejects(eng.submit('echo', 'x', { wait: bad }), (e) => e instanceof RangeError && e.code === 'PORTWAY_INVALID_ARGUMENT', String(bad));
  }
  for (const bad of ['10', null, true]) {
    await assert.rejects(eng.submit('echo', 'x', { wait: bad }), (e) => e instanceof TypeError && e.code === 'PORTWAY_INVALID_ARGUMENT', String(bad));
  }
  await assert.rejects(eng.submitMany('echo', ['x'], { wait: 10 }), TypeError);
  await eng.close();
});
