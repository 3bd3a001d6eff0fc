'use strict';
// Node `cluster` with one portway engine per worker process (docs/DEPLOYING.md).
//   node examples/deploy/node_cluster.js
// Env: PORT (default 8000), WORKERS (default 2), METRICS_PORT (default 9200: each worker's
// Prometheus text on the first free port of METRICS_PORT..METRICS_PORT+WORKERS-1).
//   GET /fanout?n=50&ms=20   n "sleep" and n "echo" requests in flight at once; answers
//                            {pid, n, ok, sum}: ok counts the sleeps that succeeded, sum adds up
//                            the echoed numbers 0..n-1
// cluster workers are new processes (not fork() copies), so each makes its own Engine; the
// primary makes none. SIGTERM/SIGINT to the primary: workers stop accepting, finish what is in
// flight, close their engines and exit; the primary exits once they all have.
const cluster = require('node:cluster');
const http = require('node:http');
const path = require('node:path');

const PORT = Number(process.env.PORT || 8000);
const WORKERS = Number(process.env.WORKERS || 2);
const METRICS_PORT = Number(process.env.METRICS_PORT || 9200);
// Bounds of /fanout's query, so one request cannot take every slot or minute.
const MAX_N = 10000;
const MAX_MS = 10000;

if (cluster.isPrimary) {
  let listening = 0;
  for (let i = 0; i < WORKERS; i++) cluster.fork();
  cluster.on('listening', () => {
    if (++listening === WORKERS) console.log(`cluster ready: ${WORKERS} workers on 127.0.0.1:${PORT}`);
  });
  let stopping = false;
  cluster.on('exit', (worker, code, signal) => {
    if (!stopping) {
      console.error(`worker ${worker.process.pid} died (${signal || code}); starting another`);
      cluster.fork();
    }
  });
  const stop = () => {
    stopping = true;
    for (const w of Object.values(cluster.workers)) w.send('stop');
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  const { Engine } = require(process.env.PORTWAY_NODE_PACKAGE || path.join(__dirname, '..', '..', 'bindings', 'node'));
  const eng = new Engine();

  async function fanout(n, ms) {
    const [sleeps, echoes] = await Promise.all([
      eng.submitMany('sleep', Array(n).fill(Buffer.from(String(ms))), { timeoutMs: 30000 }),
      eng.submitMany('echo', Array.from({ length: n }, (_, i) => Buffer.from(String(i))), { timeoutMs: 30000 }),
    ]);
    const sum = echoes.reduce((acc, c) => acc + Number(c.data.toString()), 0);
    return { pid: process.pid, n, ok: sleeps.length, sum };
  }

  function reply(res, status, type, body) {
    res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  }

  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://localhost');
    if (url.pathname === '/fanout') {
      const n = Number(url.searchParams.get('n') || 50);
      const ms = Number(url.searchParams.get('ms') || 20);
      if (!Number.isInteger(n) || n < 1 || n > MAX_N || !Number.isInteger(ms) || ms < 0 || ms > MAX_MS) {
        return reply(res, 400, 'text/plain', `n in 1..${MAX_N}, ms in 0..${MAX_MS}\n`);
      }
      fanout(n, ms).then(
        (r) => reply(res, 200, 'application/json', JSON.stringify(r) + '\n'),
        (err) => reply(res, 500, 'text/plain', `${err.code || err.name}: ${err.message}\n`));
    } else if (url.pathname === '/metrics') {
      reply(res, 200, 'text/plain; version=0.0.4', eng.metricsText());
    } else {
      reply(res, 404, 'text/plain', 'not found\n');
    }
  });
  server.listen(PORT, '127.0.0.1');

  // This worker's metrics on the first free port of the range (a dead worker frees its port
  // for its replacement). Prometheus scrapes every port and sums. `exclusive`: a cluster
  // worker's listen() otherwise shares the port through the primary, which would hand each
  // scrape to any worker.
  const listenMetrics = (port) => metrics.listen({ port, host: '127.0.0.1', exclusive: true });
  const metrics = http.createServer((req, res) => reply(res, 200, 'text/plain; version=0.0.4', eng.metricsText()));
  let metricsPort = METRICS_PORT;
  metrics.on('error', (err) => {
    if (err.code === 'EADDRINUSE' && metricsPort < METRICS_PORT + WORKERS - 1) listenMetrics(++metricsPort);
    else console.error(`worker ${process.pid}: no metrics port: ${err.message}`);
  });
  metrics.on('listening', () => console.log(`worker ${process.pid}: portway metrics on 127.0.0.1:${metricsPort}/metrics`));
  listenMetrics(metricsPort);

  process.on('message', async (msg) => {
    if (msg !== 'stop') return;
    server.close();
    metrics.close();
    await eng.close({ drain: true, timeoutMs: 10000 });
    process.disconnect();
  });
}
