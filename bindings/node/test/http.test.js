'use strict';
// HTTP through the "http" handler. Skipped (with the reason) while the library has no "http"
// handler; they run by themselves once it lands.
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const net = require('node:net');
const asyncHooks = require('node:async_hooks');
const { Engine, PortwayError } = require('..');

function httpAvailable() {
  const eng = new Engine({ runtimeThreads: 1, poolWorkers: 1 });
  try {
    eng.lookup('http');
    return true;
  } catch (e) {
    if (e.code === 'PORTWAY_NOT_FOUND') return false;
    throw e;
  } finally {
    eng.close();
  }
}

const skip = httpAvailable() ? false : 'the "http" handler is not in this build of portway yet (lookup: PORTWAY_NOT_FOUND)';

let server;
let base;
let eng;

test.describe('http', { skip }, () => {
  test.before(async () => {
    server = http.createServer((req, res) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        if (req.url === '/hello') {
          res.setHeader('X-Test', 'yes');
          res.setHeader('Content-Type', 'text/plain');
          res.end('hello world');
        } else if (req.url === '/echo') {
          res.setHeader('Content-Type', 'application/json');
          res.end(JSON.stringify({ method: req.method, headers: req.headers, body: body.toString() }));
        } else if (req.url === '/slow') {
          setTimeout(() => res.end('late'), 2000);
        } else {
          res.statusCode = 404;
          res.end('not found');
        }
      });
    });
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${server.address().port}`;
    eng = new Engine({ runtimeThreads: 2, poolWorkers: 2 });
  });
  test.after(async () => {
    if (eng) await eng.close({ drain: false });
    if (server) {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  test('GET: status, headers, body, text()', async () => {
    const r = await eng.http({ url: `${base}/hello` });
    assert.equal(r.status, 200);
    assert.equal(r.text(), 'hello world');
    assert.ok(Buffer.isBuffer(r.body));
    assert.ok(Array.isArray(r.headers));
    assert.equal(r.header('x-test'), 'yes');
    assert.ok(r.headers.some(([k, v]) => k.toLowerCase() === 'content-type' && v === 'text/plain'));
    // The version comes apart from the headers.
    assert.equal(r.httpVersion, 'HTTP/1.1');
    assert.ok(!r.headers.some(([k]) => k === ':http-version'));
  });

  test('POST with headers and body, json()', async () => {
    const r = await eng.http({
      method: 'POST',
      url: `${base}/echo`,
      headers: { 'Content-Type': 'application/json', 'X-A': '1' },
      body: JSON.stringify({ a: 1 }),
    });
    assert.equal(r.status, 200);
    const j = r.json();
    assert.equal(j.method, 'POST');
    assert.equal(j.headers['x-a'], '1');
    assert.equal(j.body, '{"a":1}');
  });

  test('404 is a response, not an error', async () => {
    const r = await eng.http({ url: `${base}/missing` });
    assert.equal(r.status, 404);
    assert.equal(r.text(), 'not found');
  });

  test('connection refused is PORTWAY_CONNECT_ERROR', async () => {
    const s = net.createServer();
    await new Promise((r) => s.listen(0, '127.0.0.1', r));
    const port = s.address().port;
    await new Promise((r) => s.close(r));
    await assert.rejects(eng.http({ url: `http://127.0.0.1:${port}/` }), (e) => e instanceof PortwayError && e.code === 'PORTWAY_CONNECT_ERROR');
  });

  test('timeout is PORTWAY_TIMEOUT', async () => {
    await assert.rejects(eng.http({ url: `${base}/slow`, timeoutMs: 100 }), { code: 'PORTWAY_TIMEOUT' });
  });

  test('abort during a request', async () => {
    const ac = new AbortController();
    const p = eng.http({ url: `${base}/slow`, signal: ac.signal });
    setTimeout(() => ac.abort(), 50);
    await assert.rejects(p, { name: 'AbortError' });
  });

  test('repeated requests: each method and URL gets its own head, URL objects are read each time', async () => {
    // http() reuses the request head of an earlier call with the same method and URL string.
    const get = async (o) => (await eng.http(o)).json();
    assert.equal((await get({ url: `${base}/echo` })).method, 'GET');
    assert.equal((await get({ url: `${base}/echo`, method: 'DELETE' })).method, 'DELETE');
    const again = await get({ url: `${base}/echo` });
    assert.equal(again.method, 'GET');
    assert.equal(again.headers.host, new URL(base).host);
    assert.equal((await get({ url: `${base}/echo`, headers: { 'X-A': '1' } })).headers['x-a'], '1');
    const u = new URL(`${base}/hello`);
    assert.equal((await eng.http({ url: u })).text(), 'hello world');
    u.pathname = '/echo';
    assert.equal((await get({ url: u })).method, 'GET');
    // a cached "GET <base>/ x" must not let the invalid method "GET <base>/" with URL "x" through
    assert.equal((await eng.http({ url: `${base}/ x` })).status, 404);
    await assert.rejects(eng.http({ url: 'x', method: `GET ${base}/` }), TypeError);
    await assert.rejects(eng.http({ url: `${base}/echo`, method: 'G T' }), TypeError);
  });

  test('200 concurrent GETs', async () => {
    const rs = await Promise.all(Array.from({ length: 200 }, () => eng.http({ url: `${base}/hello` })));
    assert.ok(rs.every((r) => r.status === 200 && r.text() === 'hello world'));
  });
});

test('registerHttp: options reach the handler, bad ones throw', async () => {
  const e = new Engine({ runtimeThreads: 1, poolWorkers: 1 });
  const srv = http.createServer((req, res) => {
    res.setHeader('x-accept', String(req.headers['accept-encoding']));
    res.end('0123456789');
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${srv.address().port}/`;
  try {
    e.registerHttp('small', { maxBodyBytes: 4, decompress: false, readTimeoutMs: 5000, proxy: '' });
    await assert.rejects(e.http({ url, handler: 'small' }), (err) => err.code === 'PORTWAY_BODY_TOO_LARGE');
    e.registerHttp('roomy', { maxBodyBytes: 100 });
    const r = await e.http({ url, handler: 'roomy' });
    assert.equal(r.text(), '0123456789');
    assert.equal(r.header('x-accept'), 'gzip, br, zstd, deflate');
    assert.throws(() => e.registerHttp('x', { nope: 1 }), /unknown http option nope/);
    assert.throws(() => e.registerHttp('x', { retries: -1 }), TypeError);
    assert.throws(() => e.registerHttp('x', { http1Only: true, http2PriorKnowledge: true }),
      (err) => err.code === 'PORTWAY_INVALID_ARGUMENT');
  } finally {
    srv.close();
    await e.close();
  }
});

test('http() validates its input', async () => {
  const e = new Engine({ runtimeThreads: 1, poolWorkers: 1 });
  await assert.rejects(e.http({ url: 'ftp://x/' }), TypeError);
  await assert.rejects(e.http({ url: 'http://x/', method: 'GE T' }), TypeError);
  // header names are RFC 9110 tokens: a ':' used to split {'X:Y': '1'} into header X = "Y: 1"
  for (const name of ['X:Y', 'X Y', '', 'X\0', 'é', '(x)']) {
    await assert.rejects(e.http({ url: 'http://x/', headers: { [name]: '1' } }), /RFC 9110 token/);
  }
  for (const value of ['a\0b', 'a\rb', 'a\nb']) {
    await assert.rejects(e.http({ url: 'http://x/', headers: [['X-A', value]] }), /CR, LF and NUL/);
  }
  await assert.rejects(e.http({ url: 'http://x/', headers: { 'X-Bad': 'a\r\nb' } }), TypeError);
  await e.close();
});

test('http(): two promises per request (the submit and its response), heads kept per method and URL', async () => {
  // W3 from Node: http() is on the hot path, so it is not an async function wrapping submit()
  // (three promises per request before). The echo handler answers with the request head.
  const e = new Engine({ runtimeThreads: 1, poolWorkers: 1 });
  try {
    const url = 'http://127.0.0.1:9/x';
    await e.http({ url, handler: 'echo' });
    let made = 0;
    const hook = asyncHooks.createHook({ init(id, type) { if (type === 'PROMISE') made++; } });
    hook.enable();
    const p = e.http({ url, handler: 'echo' });
    hook.disable();
    assert.equal(made, 2);
    assert.match((await p).text(), /^GET http:\/\/127\.0\.0\.1:9\/x HTTP\/1\.1\r\nHost: 127\.0\.0\.1:9\r\n/);
    // Bad input still rejects (never throws).
    const bad = e.http({ url: 'nope' });
    await assert.rejects(bad, TypeError);
    await assert.rejects(e.http(5), TypeError);
    // More plain heads than are kept: each request still carries its own method and URL.
    const urls = Array.from({ length: 300 }, (_, i) => `http://127.0.0.1:9/p${i}`);
    for (const method of ['GET', 'DELETE']) {
      const rs = await Promise.all(urls.map((u) => e.http({ url: u, method, handler: 'echo' })));
      rs.forEach((r, i) => assert.ok(r.text().startsWith(`${method} ${urls[i]} HTTP/1.1\r\n`)));
    }
    assert.ok(e._headCount <= 256);
  } finally {
    await e.close();
  }
});
