'use strict';
// Writes the package.json of the prebuilt npm tarball (make dist-node):
//   node tools/dist_package_json.js bindings/node/package.json OUT
// It is the binding's own manifest without its scripts (the install script would run cargo),
// with the prebuilt addon in "files", and os/cpu set to this platform so that npm refuses the
// tarball on another one instead of failing later at require().
const fs = require('node:fs');

const [src, out] = process.argv.slice(2);
if (!src || !out) {
  console.error('usage: node tools/dist_package_json.js SRC_PACKAGE_JSON OUT');
  process.exit(2);
}
const pkg = JSON.parse(fs.readFileSync(src, 'utf8'));
delete pkg.scripts;
pkg.files = ['lib/', 'build/portway.node', 'index.mjs', 'index.d.ts'];
pkg.os = [process.platform];
pkg.cpu = [process.arch];
fs.writeFileSync(out, JSON.stringify(pkg, null, 2) + '\n');
