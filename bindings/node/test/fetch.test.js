'use strict';
// eng.fetch against Node's global fetch (undici): the same program (fixtures/fetch-program.js)
// runs with each, against the same local servers, and every observable must agree; then what
// only portway has (timeoutMs, handler, the PortwayError cause, cancellation of the request).
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { getEventListeners } = require('node:events');
const net = require('node:net');
const { Engine, PortwayError } = require('..');
const { program, startServers } = require('./fixtures/fetch-program.js');

// Where eng.fetch differs from undici on purpose (bindings/node/README.md "fetch"), each with
// what portway gives instead; every other case must be identical.
const KNOWN = {
  // The http handler sends whole bodies with a Content-Length: a stream is read into memory
  // first, so the server sees a length where undici sent chunks.
  'stream body': (pw, un) => {
    assert.equal(pw.seen.headers['content-length'], '8');
    delete pw.seen.headers['content-length'];
    delete pw.res.headers;
    delete un.res.headers;
    pw.res.text = un.res.text = undefined;
    assert.deepEqual(pw, un);
  },
  // undici's cause has an empty message; ours says what happened.
  'redirect 307 of a stream body': (pw, un) => {
    assert.equal(un.rejected.causeMessage, '');
    assert.equal(pw.rejected.causeMessage, 'Cannot follow a redirect with a streamed request body');
    pw.rejected.causeMessage = '';
    assert.deepEqual(pw, un);
  },
  // Abort after a clone: in Node the tee makes the original report 'Body is unusable' (and
  // its stream end empty) while the clone reports the abort; here both report the abort, as
  // an unread body without a clone does. Neither gives the body.
  'abort after response cloned': (pw, un) => {
    assert.equal(un.copy.err.name, 'AbortError');
    assert.equal(pw.copy.err.name, 'AbortError');
    assert.match(un.text.err.message, /Body is unusable/);
    for (const m of ['text', 'json', 'arrayBuffer', 'bytes', 'blob', 'formData']) {
      assert.deepEqual(pw[m].err.name, 'AbortError', m);
    }
    assert.equal(pw.stream.name, 'AbortError');
  },
  // The handler does not report reason phrases: statuses without a standard one get ''
  // (Node's server sends 'unknown').
  ...Object.fromEntries([599, 600, 999].map((s) => [`status ${s}`, (pw, un) => {
    assert.equal(un.statusText, 'unknown');
    assert.equal(pw.statusText, '');
    assert.deepEqual({ ...pw, statusText: '' }, { ...un, statusText: '' });
    assert.equal(pw.status, s);
  }])),
  // The cause is the PortwayError (checked below), not Node's socket error.
  'connection refused': (pw, un) => {
    assert.match(un.rejected.causeMessage, /ECONNREFUSED/);
    assert.equal(pw.rejected.causeMessage, undefined); // a PortwayError: its message is not compared
    delete un.rejected.causeMessage;
    delete pw.rejected.causeMessage;
    assert.deepEqual(pw, un);
  },
};

/** Runs `f(eng, srv)` with a fresh engine and servers, closing both afterwards. */
async function withEngine(f) {
  const srv = await startServers();
  const eng = new Engine({ runtimeThreads: 1, poolWorkers: 1 });
  try {
    return await f(eng, srv);
  } finally {
    await eng.close();
    await srv.close();
  }
}

/** Every case agrees, but for the KNOWN differences; and the program saw what it should, so
 *  the agreement is not two identical failures. */
function agree(portway, undici, base) {
  assert.deepEqual(Object.keys(portway), Object.keys(undici));
  assert.ok(Object.keys(undici).length > 80);
  for (const name of Object.keys(undici)) {
    if (KNOWN[name]) KNOWN[name](portway[name], undici[name]);
    else assert.deepEqual(portway[name], undici[name], `case ${JSON.stringify(name)}`);
  }
  assert.equal(undici.get.res.url, `${base}/echo?q=1`);
  assert.equal(undici['redirect 303 POST'].seen.method, 'GET');
  assert.equal(undici['redirect 307 POST'].seen.body, 'payload');
  assert.equal(undici['redirect cross-origin drops credentials'].res.type, 'cors');
  assert.equal(undici['redirect chain of 21'].rejected.causeMessage, 'redirect count exceeded');
  assert.equal(undici['abort in flight'].rejected.name, 'AbortError');
  assert.equal(undici['status 204'].nullBody, true);
  assert.equal(undici.gzip.text, 'unzipped '.repeat(100));
}

test('the same program gives the same record with global fetch and with eng.fetch', async () => {
  await withEngine(async (eng, srv) => {
    const undici = await program(fetch, srv);
    // The one line a user changes:
    const portway = await program((input, init) => eng.fetch(input, init), srv);
    agree(portway, undici, srv.base);
  });
});

test('the same over https, with a test CA', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'portway-fetch-'));
  try {
    const ssl = (...args) => spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
    if (ssl('version').status !== 0) {
      t.skip('no openssl command to make the test CA');
      return;
    }
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
    for (const r of [
      ssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=portway test CA',
        '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign'),
      ssl('req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1'),
      (fs.writeFileSync(path.join(dir, 'ext'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n'),
      ssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
        '-out', 'server.pem', '-days', '2', '-extfile', 'ext')),
    ]) assert.equal(r.status, 0, r.stderr);
    const r = spawnSync(process.execPath, [path.join(__dirname, 'fixtures', 'fetch-https.js'),
      ...['ca.pem', 'server.key', 'server.pem'].map((f) => path.join(dir, f))],
    { encoding: 'utf8', env: { ...process.env, NODE_EXTRA_CA_CERTS: path.join(dir, 'ca.pem') }, timeout: 120000 });
    assert.equal(r.status, 0, r.stderr);
    const { base, undici, portway } = JSON.parse(r.stdout);
    assert.match(base, /^https:/);
    agree(portway, undici, base);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a network error is TypeError("fetch failed") whose cause is the PortwayError', async () => {
  await withEngine(async (eng, srv) => {
    const err = await eng.fetch(srv.closedUrl).then(() => assert.fail('resolved'), (e) => e);
    assert.ok(err instanceof TypeError);
    assert.equal(err.message, 'fetch failed');
    assert.ok(err.cause instanceof PortwayError);
    assert.equal(err.cause.code, 'PORTWAY_CONNECT_ERROR');
  });
});

test('a closed engine fails the fetch with cause PORTWAY_SHUTDOWN, whatever was cached', async () => {
  const srv = await startServers();
  try {
    for (const warm of [false, true]) {
      const eng = new Engine({ runtimeThreads: 1, poolWorkers: 1 });
      if (warm) await (await eng.fetch(`${srv.base}/echo`)).text(); // the handler id is cached
      await eng.close();
      const err = await eng.fetch(`${srv.base}/echo`).then(() => assert.fail('resolved'), (e) => e);
      assert.ok(err instanceof TypeError, `warm=${warm}: ${err}`);
      assert.equal(err.cause.code, 'PORTWAY_SHUTDOWN');
    }
  } finally {
    await srv.close();
  }
});

test('timeoutMs fails the fetch with cause PORTWAY_TIMEOUT', async () => {
  await withEngine(async (eng, srv) => {
    const err = await eng.fetch(`${srv.base}/hold`, { timeoutMs: 50 }).then(() => assert.fail('resolved'), (e) => e);
    assert.ok(err instanceof TypeError);
    assert.equal(err.cause.code, 'PORTWAY_TIMEOUT');
    // A bad timeout is the binding's own argument error, not a network error.
    await assert.rejects(eng.fetch(`${srv.base}/echo`, { timeoutMs: 0 }), { name: 'RangeError', code: 'PORTWAY_INVALID_ARGUMENT' });
  });
});

test('an abort cancels the portway request: its connection is closed', async () => {
  await withEngine(async (eng, srv) => {
    const ac = new AbortController();
    const held = srv.nextHold();
    const p = eng.fetch(`${srv.base}/hold`, { signal: ac.signal });
    await held;
    const closed = new Promise((resolve) => srv.held[0].socket.once('close', resolve));
    ac.abort();
    await assert.rejects(p, { name: 'AbortError' });
    await closed; // the handler dropped the request (HTTP/1: the connection is closed)
    assert.equal(eng.inflight().total, 0);
  });
});

test('one long-lived signal over many fetches: no abort listener stays once bodies are read', async () => {
  await withEngine(async (eng, srv) => {
    const ac = new AbortController();
    for (let i = 0; i < 30; i++) await (await eng.fetch(`${srv.base}/json`, { signal: ac.signal })).json();
    assert.equal(getEventListeners(ac.signal, 'abort').length, 0);
    const unread = await eng.fetch(`${srv.base}/json`, { signal: ac.signal });
    assert.equal(getEventListeners(ac.signal, 'abort').length, 1); // until read, it may abort the body
    await unread.arrayBuffer();
    assert.equal(getEventListeners(ac.signal, 'abort').length, 0);
  });
});

test('non-ASCII header bytes show as Latin-1 chars, as in Node, not a rejection', async () => {
  // A raw server: Node's http server cannot send UTF-8 header bytes.
  const server = net.createServer((sock) => sock.once('data', () => sock.end(Buffer.concat([
    Buffer.from('HTTP/1.1 200 OK\r\nx-utf8: '), Buffer.from('ü€', 'utf8'),
    Buffer.from('\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok'),
  ]))));
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}/`;
  const eng = new Engine({ runtimeThreads: 1, poolWorkers: 1 });
  try {
    const want = (await fetch(url)).headers.get('x-utf8');
    assert.equal(want, Buffer.from('ü€', 'utf8').toString('latin1'));
    const r = await eng.fetch(url);
    assert.equal(r.headers.get('x-utf8'), want);
    assert.equal(await r.text(), 'ok');
  } finally {
    await eng.close();
    server.close();
  }
});

test('init.handler picks an http handler added with registerHttp', async () => {
  await withEngine(async (eng, srv) => {
    eng.registerHttp('fetch-small', { maxBodyBytes: 10 });
    const ok = await eng.fetch(`${srv.base}/status/200`, { handler: 'fetch-small' });
    assert.equal(await ok.text(), 'status 200');
    const err = await eng.fetch(`${srv.base}/json`, { handler: 'fetch-small' }).then(() => assert.fail('resolved'), (e) => e);
    assert.equal(err.cause.code, 'PORTWAY_BODY_TOO_LARGE');
    // An unknown handler is a usage error, the PortwayError itself.
    await assert.rejects(eng.fetch(`${srv.base}/echo`, { handler: 'nope' }), { name: 'PortwayError', code: 'PORTWAY_NOT_FOUND' });
  });
});

test('a body buffer reused by the caller at once: every hop sends the bytes given', async () => {
  await withEngine(async (eng, srv) => {
    const buf = Buffer.from('original');
    const p = eng.fetch(`${srv.base}/redirect/307?to=/echo/again`, { method: 'POST', body: buf });
    buf.fill(0x78);
    const r = await p;
    assert.equal(r.redirected, true);
    assert.equal((await r.json()).body, 'original');
  });
});

test('clone keeps url, redirected and type; a consumed body cannot be cloned', async () => {
  await withEngine(async (eng, srv) => {
    const r = await eng.fetch(`${srv.base}/redirect/302?to=${encodeURIComponent(`${srv.other}/echo/c`)}`);
    const c = r.clone();
    assert.ok(c instanceof Response);
    assert.deepEqual([c.url, c.redirected, c.type, c.status], [`${srv.other}/echo/c`, true, 'cors', 200]);
    assert.equal(await c.text(), await r.text());
    assert.throws(() => r.clone(), TypeError);
  });
});

test('arrayBuffer hands over the body memory only when no clone shares it', async () => {
  await withEngine(async (eng, srv) => {
    const r = await eng.fetch(`${srv.base}/json`);
    const c = r.clone();
    new Uint8Array(await r.arrayBuffer()).fill(0x2a);
    assert.deepEqual(await c.json(), { a: [1, 2, { b: 'ü' }] });
    const alone = await eng.fetch(`${srv.base}/json`);
    const ab = await alone.arrayBuffer();
    assert.equal(Buffer.from(ab).toString(), JSON.stringify({ a: [1, 2, { b: 'ü' }] }));
    await assert.rejects(alone.arrayBuffer(), TypeError); // read once, as any body
  });
});

test('bad init is a TypeError, as fetch gives', async () => {
  await withEngine(async (eng, srv) => {
    await assert.rejects(eng.fetch(`${srv.base}/echo`, { redirect: 'follow-me' }), TypeError);
    await assert.rejects(eng.fetch(`${srv.base}/echo`, { signal: {} }), TypeError);
    await assert.rejects(eng.fetch(`${srv.base}/echo`, 5), TypeError);
    await assert.rejects(eng.fetch('ftp://example.com/'), TypeError);
  });
});

test('eng.fetch from ESM', () => {
  const src = `import { Engine } from ${JSON.stringify(path.join(__dirname, '..', 'index.mjs'))};
    import http from 'node:http';
    const s = http.createServer((q, r) => r.end('esm')).listen(0, '127.0.0.1', async () => {
      const eng = new Engine();
      const r = await eng.fetch('http://127.0.0.1:' + s.address().port + '/');
      console.log(r instanceof Response, await r.text());
      await eng.close();
      s.close();
    });`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', src], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'true esm');
});

test('loading portway does not load the platform fetch; the first response is still a Response', () => {
  // Node's global Response is a lazy getter that loads its whole fetch implementation (HTTP/2,
  // TLS, ...): a program that never fetches must not pay for it by loading portway.
  const src = `const { Engine } = require(${JSON.stringify(path.join(__dirname, '..'))});
    const loaded = () => process.moduleLoadList.some((m) => m.includes('undici'));
    const before = loaded();
    const s = require('node:http').createServer((q, r) => r.end('cjs')).listen(0, '127.0.0.1', async () => {
      const eng = new Engine();
      const r = await eng.fetch('http://127.0.0.1:' + s.address().port + '/');
      console.log(before, r instanceof Response, Object.prototype.toString.call(r), r.statusText, await r.text());
      await eng.close();
      s.close();
    });`;
  const r = spawnSync(process.execPath, ['-e', src], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'false true [object Response] OK cjs');
});
