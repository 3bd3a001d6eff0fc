#!/usr/bin/env node
'use strict';
// Keeps `StatusName` in index.d.ts equal to `enum portway_status` in include/portway.h, so the
// type cannot drift from the C contract: `node scripts/status-names.js` rewrites the block
// between the status-names markers; `--check` exits 1 (and says what differs) when it is stale.
// test/types.test.js runs the check.
const fs = require('node:fs');
const path = require('node:path');

const here = path.join(__dirname, '..');
const header = path.join(here, '..', '..', 'include', 'portway.h');
const dts = path.join(here, 'index.d.ts');
const BEGIN = '// <status-names> generated from include/portway.h by scripts/status-names.js: do not edit';
const END = '// </status-names>';

/** The status names of `enum portway_status`, in value order. */
function headerStatuses(text) {
  const m = /enum portway_status\b[^{]*\{([\s\S]*?)\};/.exec(text);
  if (!m) throw new Error(`${header}: enum portway_status not found`);
  const names = [];
  for (const [, name, value] of m[1].matchAll(/^\s*(PORTWAY_[A-Z0-9_]+)\s*=\s*(\d+)\s*,/gm)) {
    if (Number(value) !== names.length) throw new Error(`${name} = ${value}: values are not 0, 1, 2, ...`);
    names.push(name);
  }
  if (names.length === 0) throw new Error(`${header}: no statuses in enum portway_status`);
  return names;
}

function block(names) {
  return [BEGIN, 'export type StatusName =', ...names.map((n, i) => `  | '${n}'${i === names.length - 1 ? ';' : ''}`), END].join('\n');
}

function main() {
  const names = headerStatuses(fs.readFileSync(header, 'utf8'));
  const text = fs.readFileSync(dts, 'utf8');
  const start = text.indexOf(BEGIN);
  const end = text.indexOf(END);
  if (start < 0 || end < start) throw new Error(`${dts}: the status-names markers are missing`);
  const current = text.slice(start, end + END.length);
  const wanted = block(names);
  if (process.argv.includes('--check')) {
    if (current !== wanted) {
      process.stderr.write(`${dts}: StatusName differs from include/portway.h; run node scripts/status-names.js\n` +
        `expected:\n${wanted}\n`);
      process.exit(1);
    }
    return;
  }
  if (current !== wanted) fs.writeFileSync(dts, text.slice(0, start) + wanted + text.slice(end + END.length));
}

module.exports = { headerStatuses };
if (require.main === module) main();
