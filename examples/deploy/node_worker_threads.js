'use strict';
// worker_threads with one portway engine per thread (docs/DEPLOYING.md).
//   node examples/deploy/node_worker_threads.js [threads=2] [n=200]
// An Engine belongs to the thread (JS environment) that made it: its promises settle on that
// thread's event loop, so it cannot be handed to another thread. Each worker makes its own,
// fans n "sleep" and n "echo" requests out, checks the echoes, closes its engine and posts its
// result; the main thread prints them and fails if any is wrong.
const path = require('node:path');
const { Worker, isMainThread, parentPort, workerData, threadId } = require('node:worker_threads');

const pkg = process.env.PORTWAY_NODE_PACKAGE || path.join(__dirname, '..', '..', 'bindings', 'node');

if (isMainThread) {
  const threads = Number(process.argv[2] || 2);
  const n = Number(process.argv[3] || 200);
  const runs = Array.from({ length: threads }, () => new Promise((resolve, reject) => {
    const w = new Worker(__filename, { workerData: { n } });
    w.once('message', resolve);
    w.once('error', reject);
    w.once('exit', (code) => { if (code !== 0) reject(new Error(`worker exited with ${code}`)); });
  }));
  Promise.all(runs).then((results) => {
    const want = (n * (n - 1)) / 2;
    for (const r of results) console.log(`thread ${r.threadId}: ${r.ok}/${n} sleeps ok, echo sum ${r.sum}`);
    if (results.some((r) => r.ok !== n || r.sum !== want)) {
      console.error(`wrong results (want ${n} ok and sum ${want})`);
      process.exitCode = 1;
    }
  }, (err) => {
    console.error(err);
    process.exitCode = 1;
  });
} else {
  const { Engine } = require(pkg);
  (async () => {
    const eng = new Engine();
    const { n } = workerData;
    const [sleeps, echoes] = await Promise.all([
      eng.submitMany('sleep', Array(n).fill(Buffer.from('20'))),
      eng.submitMany('echo', Array.from({ length: n }, (_, i) => Buffer.from(String(i)))),
    ]);
    const sum = echoes.reduce((acc, c) => acc + Number(c.data.toString()), 0);
    await eng.close();
    parentPort.postMessage({ threadId, ok: sleeps.length, sum });
  })();
}
