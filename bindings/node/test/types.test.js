'use strict';
// index.d.ts against the C contract and the TypeScript compiler.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { Engine, statusStr } = require('..');
const { headerStatuses } = require('../scripts/status-names.js');

const root = path.join(__dirname, '..');
const names = headerStatuses(fs.readFileSync(path.join(root, '..', '..', 'include', 'portway.h'), 'utf8'));

test('StatusName in index.d.ts is the status list of include/portway.h', () => {
  const r = spawnSync(process.execPath, [path.join(root, 'scripts', 'status-names.js'), '--check'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.ok(names.includes('PORTWAY_BUFFER_TOO_SMALL'));
});

test('the runtime agrees: statusStr and stats().completed name the same statuses', async () => {
  assert.deepEqual(names.map((_, i) => statusStr(i)), names);
  const eng = new Engine({ runtimeThreads: 1, poolWorkers: 1 });
  assert.deepEqual(Object.keys(eng.stats().completed), names);
  await eng.close();
});

test('index.d.ts and a use of every API compile with tsc --strict', () => {
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  assert.ok(fs.existsSync(tsc), 'typescript (a devDependency) is not installed: run npm install');
  const r = spawnSync(process.execPath, [tsc, '--strict', '--noEmit', '--skipLibCheck', 'false',
    '--target', 'es2022', '--module', 'commonjs', '--moduleResolution', 'node', '--types', 'node',
    '--exactOptionalPropertyTypes', path.join(__dirname, 'types', 'usage.ts')], { cwd: root, encoding: 'utf8' });
  assert.equal(r.status, 0, `tsc:\n${r.stdout}${r.stderr}`);
});
