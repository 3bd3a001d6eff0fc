'use strict';
// W3 anchor from Node: N GETs through node:http with a keep-alive Agent (maxSockets =
// CONCURRENCY), CONCURRENCY requests in flight. Prints one JSON line.
//   node agent.js URL N CONCURRENCY [CA_PEM]
// With CA_PEM (W3-TLS): node:https with a keep-alive https.Agent trusting that CA. Node's
// Agent speaks HTTP/1.1 only (HTTP/2 is the separate node:http2 session API), so this anchor
// opens up to CONCURRENCY TLS connections.
const fs = require('node:fs');

const [url, n, conc, caPem] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4]), process.argv[5]];
if (!url || !(n > 0) || !(conc > 0)) {
  console.error('usage: node agent.js URL N CONCURRENCY [CA_PEM]');
  process.exit(2);
}
const http = require(caPem ? 'node:https' : 'node:http');
const agent = new http.Agent({ keepAlive: true, maxSockets: conc, ...(caPem ? { ca: fs.readFileSync(caPem) } : {}) });
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
