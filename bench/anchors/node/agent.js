'use strict';
// W3 anchor from Node: N GETs through node:http with a keep-alive Agent (maxSockets =
// CONCURRENCY), CONCURRENCY requests in flight. Prints one JSON line.
//   node agent.js URL N CONCURRENCY
const http = require('node:http');

const [url, n, conc] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
if (!url || !(n > 0) || !(conc > 0)) {
  console.error('usage: node agent.js URL N CONCURRENCY');
  process.exit(2);
}
const agent = new http.Agent({ keepAlive: true, maxSockets: conc });
let failed = 0;

function get() {
  return new Promise((resolve) => {
    const req = http.get(url, { agent, timeout: 30000 }, (res) => {
      if (res.statusCode !== 200) failed++;
      res.on('data', () => {});
      res.on('end', resolve);
      res.on('error', (e) => { if (failed++ === 0) console.error(`agent.js: ${e}`); resolve(); });
    });
    req.on('error', (e) => { if (failed++ === 0) console.error(`agent.js: ${e}`); resolve(); });
  });
}

async function run(total) {
  let left = total;
  const worker = async () => {
    while (left > 0) {
      left--;
      await get();
    }
  };
  await Promise.all(Array.from({ length: conc }, worker));
}

(async () => {
  await run(conc);
  failed = 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await run(n);
  const secs = (performance.now() - t0) / 1000;
  const cu = process.cpuUsage(c0);
  const cpu = (cu.user + cu.system) / 1e6;
  agent.destroy();
  console.log(JSON.stringify({ n, secs, rate: n / secs, cpu_s: cpu, failed, concurrency: conc }));
  if (failed) process.exitCode = 1;
})();
