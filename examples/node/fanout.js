'use strict';
// HTTP fan-out through portway: N GETs against a local server, `inflight` at a time, with a
// progress line and a latency summary; then the same run through Node's http keep-alive agent
// and fetch for comparison. Falls back to "sleep" requests when the library has no "http"
// handler yet.
//   node examples/node/fanout.js [total=20000] [inflight=64]
const http = require('node:http');
const path = require('node:path');
const { Engine } = require(path.join(__dirname, '..', '..', 'bindings', 'node'));

const total = Number(process.argv[2] || 20000);
const inflight = Number(process.argv[3] || 64);

function summary(name, lat, ms) {
  lat.sort((a, b) => a - b);
  const q = (p) => (lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] || 0).toFixed(2);
  console.log(`${name.padEnd(16)} ${String(lat.length).padStart(6)} req in ${ms.toFixed(0).padStart(6)} ms = ` +
    `${Math.round((lat.length * 1000) / ms).toString().padStart(7)} req/s   p50 ${q(0.5)} ms  p99 ${q(0.99)} ms  max ${q(1)} ms`);
}

async function run(name, one) {
  const lat = [];
  let next = 0;
  let lastPrint = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < total) {
      next++;
      const s = performance.now();
      await one();
      lat.push(performance.now() - s);
      if (process.stderr.isTTY && lat.length - lastPrint >= 1000) {
        lastPrint = lat.length;
        process.stderr.write(`\r${name}: ${lat.length}/${total}`);
      }
    }
  };
  await Promise.all(Array.from({ length: inflight }, worker));
  if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
  summary(name, lat, performance.now() - t0);
}

(async () => {
  const eng = new Engine();
  let hasHttp = true;
  try {
    eng.lookup('http');
  } catch (e) {
    if (e.code !== 'PORTWAY_NOT_FOUND') throw e;
    hasHttp = false;
  }
  if (!hasHttp) {
    console.log('no "http" handler in this build: fanning out "sleep" requests (1 ms) instead');
    await run('portway sleep', () => eng.submit('sleep', '1'));
    await eng.close();
    return;
  }
  const body = Buffer.alloc(64, 'x');
  const server = http.createServer((req, res) => res.end(body));
  server.keepAliveTimeout = 60000;
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${server.address().port}/item`;
  console.log(`${total} GETs, ${inflight} in flight, against ${url}`);

  await run('portway http', async () => {
    const r = await eng.http({ url });
    if (r.status !== 200) throw new Error(`status ${r.status}`);
  });

  const agent = new http.Agent({ keepAlive: true, maxSockets: inflight });
  await run('node http agent', () => new Promise((resolve, reject) => {
    http.get(url, { agent }, (res) => {
      res.on('data', () => {});
      res.on('end', resolve);
    }).on('error', reject);
  }));
  agent.destroy();

  await run('fetch', async () => {
    const r = await fetch(url);
    await r.arrayBuffer();
  });

  await eng.close();
  server.closeAllConnections();
  server.close();
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
