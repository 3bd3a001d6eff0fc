'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { Engine } = require('..');

test('100,000 echoes through submitMany', async () => {
  // one batch of 100,000 needs more slots than the default 65,536
  const eng = new Engine({ runtimeThreads: 2, poolWorkers: 2, maxInFlight: 131072 });
  const n = 100000;
  const payloads = new Array(n);
  for (let i = 0; i < n; i++) payloads[i] = Buffer.from(String(i));
  const cs = await eng.submitMany('echo', payloads);
  assert.equal(cs.length, n);
  for (let i = 0; i < n; i += 997) assert.equal(cs[i].data.toString(), String(i));
  assert.equal(cs[n - 1].data.toString(), String(n - 1));
  const s = eng.stats();
  assert.equal(s.completed.PORTWAY_OK, n);
  assert.equal(s.inFlight, 0);
  await eng.close();
});

test('10,000 concurrent submit', async () => {
  const eng = new Engine({ runtimeThreads: 2, poolWorkers: 2 });
  const n = 10000;
  const ps = [];
  for (let i = 0; i < n; i++) ps.push(eng.submit(i % 2 ? 'echo' : 'sleep', i % 2 ? String(i) : '5'));
  const cs = await Promise.all(ps);
  for (let i = 1; i < n; i += 2) assert.equal(cs[i].data.toString(), String(i));
  assert.equal(new Set(cs.map((c) => c.id)).size, n);
  assert.equal(eng.stats().inFlight, 0);
  await eng.close();
});

test('maxInFlight backpressure: 100 workers over 16 slots, retry on BUSY', async () => {
  const eng = new Engine({ runtimeThreads: 2, poolWorkers: 2, maxInFlight: 16 });
  const total = 1000;
  let next = 0;
  let done = 0;
  let busy = 0;
  const worker = async () => {
    while (next < total) {
      next++;
      for (;;) {
        try {
          await eng.submit('sleep', '1');
          done++;
          break;
        } catch (e) {
          if (e.code !== 'PORTWAY_BUSY') throw e;
          busy++;
          await new Promise((r) => setTimeout(r, 1));
        }
      }
    }
  };
  await Promise.all(Array.from({ length: 100 }, worker));
  assert.equal(done, total);
  assert.ok(busy > 0, 'some submits met PORTWAY_BUSY');
  assert.equal(eng.stats().rejectedBusy, busy);
  assert.equal(eng.stats().inFlight, 0);
  await eng.close();
});
