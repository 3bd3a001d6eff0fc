'use strict';
// fetch() through portway: code written for Node's global fetch runs on portway's engine by
// swapping one name. Starts its own local server, so it runs anywhere:
//   node examples/node/fetch.js
const http = require('node:http');
const path = require('node:path');
const { Engine, PortwayError } = require(path.join(__dirname, '..', '..', 'bindings', 'node'));

/** A toy API: GET /items/1, POST /items (JSON echo), /old redirects, /slow never answers. */
function startServer() {
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      if (req.url === '/old') return res.writeHead(301, { location: '/items/1' }).end();
      if (req.url === '/slow') return undefined; // held until the client gives up
      res.setHeader('content-type', 'application/json');
      if (req.method === 'POST') return res.writeHead(201).end(JSON.stringify({ created: JSON.parse(body) }));
      if (req.url === '/items/1') return res.end(JSON.stringify({ id: 1, name: 'first' }));
      return res.writeHead(404).end(JSON.stringify({ error: 'no such item' }));
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

// Written for fetch; `fetch` is whichever one it is given.
async function useTheApi(fetch, base) {
  const item = await (await fetch(`${base}/items/1`)).json();
  console.log('GET  /items/1 ->', item);

  const res = await fetch(`${base}/items`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'second' }),
  });
  console.log('POST /items   ->', res.status, res.statusText, await res.json());

  const moved = await fetch(`${base}/old`);
  console.log('GET  /old     ->', moved.status, 'from', new URL(moved.url).pathname, 'redirected:', moved.redirected);

  const missing = await fetch(`${base}/items/9`); // an HTTP error status is still a response
  console.log('GET  /items/9 ->', missing.status, missing.ok);

  try {
    await fetch(`${base}/slow`, { signal: AbortSignal.timeout(200) });
  } catch (err) {
    console.log('GET  /slow    ->', err.name); // TimeoutError: the signal's reason, as fetch gives
  }
  return [item.id, res.status, moved.redirected, missing.status];
}

async function main() {
  const server = await startServer();
  const base = `http://127.0.0.1:${server.address().port}`;
  const eng = new Engine();

  console.log('== global fetch');
  const expected = await useTheApi(fetch, base);
  console.log('== portway');
  const got = await useTheApi((input, init) => eng.fetch(input, init), base); // the one-line swap
  if (JSON.stringify(got) !== JSON.stringify(expected)) throw new Error(`portway gave ${got}, fetch ${expected}`);

  // portway's own additions: a deadline in ms, and the PortwayError behind a network error.
  try {
    await eng.fetch(`${base}/slow`, { timeoutMs: 200 });
  } catch (err) {
    if (!(err instanceof TypeError && err.cause instanceof PortwayError)) throw err;
    console.log('timeoutMs     ->', err.message, '/', err.cause.code); // fetch failed / PORTWAY_TIMEOUT
  }

  await eng.close();
  server.closeAllConnections();
  server.close();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
