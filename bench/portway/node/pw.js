'use strict';
// The portway side of `make bench` from Node (bindings/node). Prints one JSON line.
//   node pw.js overhead N BATCH        W1: N empty "echo" requests, submitMany in batches of
//                                      BATCH, two batches in flight
//   node pw.js submit N WINDOW         W1: N empty "echo" requests through submit, WINDOW
//                                      promises in flight (each tick's submits coalesced into
//                                      one batch call by the binding)
//   node pw.js batch N BATCH           W1: N empty "echo" requests through eng.batch in lists of
//                                      BATCH, two in flight, every result read as a Buffer
//   node pw.js http URL N CONCURRENCY [CA_PEM]
//                                      W3: N GETs through Engine.http, CONCURRENCY in flight;
//                                      with CA_PEM (W3-TLS) through an http handler registered
//                                      with extraCaPemPath: CA_PEM
//   node pw.js fetch URL N CONCURRENCY [CA_PEM]
//                                      W3: the same through Engine.fetch, each body read with
//                                      arrayBuffer() (what a fetch user does; http has it read)
// PORTWAY_NODE (env): the directory of the binding to load (default: bindings/node).
const path = require('node:path');
const { Engine } = require(process.env.PORTWAY_NODE || path.join(__dirname, '..', '..', '..', 'bindings', 'node'));

async function overhead(n, batch) {
  const eng = new Engine({ poolWorkers: 2 });
  const payloads = new Array(batch).fill(Buffer.alloc(0));
  const run = async (total) => {
    let done = 0;
    let submitted = 0;
    const inFlight = [];
    while (done < total) {
      while (submitted < total && inFlight.length < 2) {
        const k = Math.min(batch, total - submitted);
        inFlight.push(eng.submitMany('echo', payloads.slice(0, k)));
        submitted += k;
      }
      done += (await inFlight.shift()).length;
    }
  };
  await run(Math.min(10 * batch, n));
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await run(n);
  const secs = (performance.now() - t0) / 1000;
  const cu = process.cpuUsage(c0);
  const cpu = (cu.user + cu.system) / 1e6;
  await eng.close();
  console.log(JSON.stringify({ n, secs, rate: n / secs, cpu_s: cpu, failed: 0, batch }));
}

// Runs `run(total)` once as a warm-up, then timed; prints the JSON line.
async function timed(eng, n, run, extra) {
  await run(Math.min(10 * 4096, n));
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await run(n);
  const secs = (performance.now() - t0) / 1000;
  const cu = process.cpuUsage(c0);
  await eng.close();
  console.log(JSON.stringify({ n, secs, rate: n / secs, cpu_s: (cu.user + cu.system) / 1e6, failed: 0, ...extra }));
}

async function submit(n, windowSize) {
  const eng = new Engine({ poolWorkers: 2 });
  const empty = Buffer.alloc(0);
  await timed(eng, n, async (total) => {
    let left = total;
    const worker = async () => {
      while (left > 0) {
        left--;
        await eng.submit('echo', empty);
      }
    };
    await Promise.all(Array.from({ length: windowSize }, worker));
  }, { window: windowSize });
}

async function batch(n, size) {
  const eng = new Engine({ poolWorkers: 2 });
  const payloads = new Array(size).fill(Buffer.alloc(0));
  let bytes = 0;
  await timed(eng, n, async (total) => {
    let done = 0;
    let submitted = 0;
    const inFlight = [];
    while (done < total) {
      while (submitted < total && inFlight.length < 2) {
        const k = Math.min(size, total - submitted);
        inFlight.push(eng.batch('echo', k === size ? payloads : payloads.slice(0, k)));
        submitted += k;
      }
      const r = await inFlight.shift();
      for (const b of r) bytes += b.length; // the host's work to get every result as a Buffer
      done += r.length;
    }
  }, { batch: size });
  if (bytes !== 0) throw new Error('echo of empty payloads returned bytes');
}

// The two W3 request shapes: one GET, resolved when its body is in hand.
const GETS = {
  http: async (eng, url, handler) => (await eng.http({ url, timeoutMs: 30000, handler })).status,
  fetch: async (eng, url, handler) => {
    const r = await eng.fetch(url, { timeoutMs: 30000, handler });
    await r.arrayBuffer();
    return r.status;
  },
};

async function http(url, n, conc, get, caPem) {
  const eng = new Engine();
  let handler = 'http';
  if (caPem) {
    handler = 'http-bench-ca';
    eng.registerHttp(handler, { extraCaPemPath: caPem });
  }
  let failed = 0;
  const run = async (total) => {
    let left = total;
    const worker = async () => {
      while (left > 0) {
        left--;
        try {
          if ((await get(eng, url, handler)) !== 200) failed++;
        } catch (e) {
          if (failed++ === 0) console.error(`pw.js: ${e}`);
        }
      }
    };
    await Promise.all(Array.from({ length: conc }, worker));
  };
  await run(conc);
  failed = 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await run(n);
  const secs = (performance.now() - t0) / 1000;
  const cu = process.cpuUsage(c0);
  const cpu = (cu.user + cu.system) / 1e6;
  await eng.close();
  console.log(JSON.stringify({ n, secs, rate: n / secs, cpu_s: cpu, failed, concurrency: conc }));
  if (failed) process.exitCode = 1;
}

const a = process.argv.slice(2);
let p;
if (a.length >= 3 && a[0] === 'overhead') p = overhead(Number(a[1]), Number(a[2]));
else if (a.length >= 3 && a[0] === 'submit') p = submit(Number(a[1]), Number(a[2]));
else if (a.length >= 3 && a[0] === 'batch') p = batch(Number(a[1]), Number(a[2]));
else if (a.length >= 4 && Object.hasOwn(GETS, a[0])) p = http(a[1], Number(a[2]), Number(a[3]), GETS[a[0]], a[4]);
else {
  console.error('usage: node pw.js overhead|submit|batch N BATCH | http|fetch URL N CONCURRENCY [CA_PEM]');
  process.exit(2);
}
p.catch((e) => {
  console.error(e);
  process.exit(1);
});
