'use strict';
// scripts/build.sh: a release build (what `npm install` makes) is stripped; a debug build keeps
// its symbols for debugging. Built into a temporary directory from the debug static library.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const root = path.join(__dirname, '..');
const lib = path.join(root, '..', '..', 'target', 'debug', 'libportway.a');

function build(out, env) {
  const r = spawnSync('sh', [path.join(root, 'scripts', 'build.sh')], {
    encoding: 'utf8',
    env: { ...process.env, PORTWAY_SKIP_CARGO: '1', PORTWAY_LIB: lib, PORTWAY_ADDON_OUT: out, ...env },
  });
  assert.equal(r.status, 0, `build.sh failed:\n${r.stdout}${r.stderr}`);
}

function sections(file) {
  const r = spawnSync('readelf', ['-S', '-W', file], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

test('a release build is stripped; a debug build is not; both load', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'portway-build-'));
  try {
    const rel = path.join(dir, 'release', 'portway.node');
    const dbg = path.join(dir, 'debug', 'portway.node');
    build(rel, { PORTWAY_PROFILE: 'release' });
    build(dbg, { PORTWAY_PROFILE: 'debug' });
    const rs = sections(rel);
    assert.doesNotMatch(rs, /\.symtab|\.debug_/, 'release build has symbols or debug info');
    assert.match(sections(dbg), /\.debug_info/);
    assert.ok(fs.statSync(rel).size < fs.statSync(dbg).size / 2);
    // stripped, it still loads and exports the module (dynamic symbols are kept)
    const m = require(rel);
    assert.equal(typeof m.NativeEngine, 'function');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
