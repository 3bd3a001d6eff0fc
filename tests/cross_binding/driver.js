'use strict';
// Cross-binding driver for the Node binding: runs every case of cases.json (argv[2]) and prints
// one JSON object {case name: {status, detail}}. The status is `err.code` of a PortwayError or
// of an argument error carrying a PORTWAY_ code, the error's name for anything else
// (TypeError, ...), PORTWAY_OK for a success. Cancel returns a boolean: true is PORTWAY_OK,
// false (nothing in flight had that id) PORTWAY_NOT_FOUND.
const fs = require('node:fs');
const path = require('node:path');

const { Engine, PortwayError } = require(process.env.PORTWAY_NODE_PACKAGE ||
  path.join(__dirname, '..', '..', 'bindings', 'node'));

// An id no fresh engine has issued.
const NEVER_ISSUED_ID = 2 ** 40;

async function runCase(c) {
  const opts = {};
  if (c.max_payload != null) opts.maxPayload = c.max_payload;
  if (c.default_timeout_ms != null) opts.defaultTimeoutMs = c.default_timeout_ms;
  const eng = new Engine(opts);
  try {
    if (c.op === 'cancel_unknown') {
      return { status: eng.cancel(NEVER_ISSUED_ID) ? 'PORTWAY_OK' : 'PORTWAY_NOT_FOUND', detail: '' };
    }
    const sub = c.timeout_ms != null ? { timeoutMs: c.timeout_ms } : {};
    if (c.op === 'submit_after_close') await eng.close();
    if (c.op === 'http') {
      await eng.http({ method: 'GET', url: c.url, ...sub });
    } else {
      await eng.submit(c.handler, Buffer.from(c.payload), sub);
    }
    return { status: 'PORTWAY_OK', detail: '' };
  } catch (err) {
    if (err instanceof PortwayError) return { status: err.code, detail: err.message };
    // Argument errors are TypeError/RangeError (JS cannot make them PortwayErrors too) that
    // carry the status in `code`, as bindings/node/README.md documents.
    if (err && typeof err.code === 'string' && err.code.startsWith('PORTWAY_')) {
      return { status: err.code, detail: `${err.name}: ${err.message}` };
    }
    return { status: (err && err.name) || String(err), detail: (err && err.message) || '' };
  } finally {
    await eng.close();
  }
}

async function main() {
  const { cases } = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  const out = {};
  for (const c of cases) out[c.name] = await runCase(c);
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((err) => {
  console.error(err);
  process.exit(2);
});
