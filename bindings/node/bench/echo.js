'use strict';
// No-op (empty echo) requests/s through submit (a window of concurrent promises) and
// submitMany (batches).   node bench/echo.js [total=200000] [window=1024] [batch=4096]
const { Engine } = require('..');
const total = Number(process.argv[2] || 200000);
const windowSize = Number(process.argv[3] || 1024);
const batch = Number(process.argv[4] || 4096);

(async () => {
  const eng = new Engine();
  const empty = Buffer.alloc(0);
  for (let i = 0; i < 3; i++) await eng.submitMany('echo', new Array(batch).fill(empty)); // warm-up

  let t0 = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < total) {
      next++;
      await eng.submit('echo', empty);
    }
  };
  await Promise.all(Array.from({ length: windowSize }, worker));
  let ms = performance.now() - t0;
  console.log(`submit      ${total} echoes, ${windowSize} in flight: ${Math.round((total * 1000) / ms)} req/s`);

  const payloads = new Array(batch).fill(empty);
  t0 = performance.now();
  let done = 0;
  while (done < total) {
    await eng.submitMany('echo', payloads);
    done += batch;
  }
  ms = performance.now() - t0;
  console.log(`submitMany ${done} echoes, batches of ${batch}: ${Math.round((done * 1000) / ms)} req/s`);
  await eng.close();
})();
