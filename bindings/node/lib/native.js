'use strict';
// The N-API addon (build/portway.node), set up for the rest of lib/: the error class it throws
// and the function it hands completions to.

const path = require('node:path');
const { PortwayError } = require('./errors.js');

const native = require(path.join(__dirname, '..', 'build', 'portway.node'));
native.setErrorClass(PortwayError);

// Completions, delivered by the addon in batches (see src/delivery.c):
// `this` is the NativeEngine; record i is nums[i*10 .. i*10+9] = slot, id, code, body offset in
// `arena` (-1: rejected with errs[i]), body length, meta count, queuedNs, runNs, batch position
// (-1: single request), last (1: the batch is complete); `hdrs` holds the meta keys and values
// in order, each followed by NUL.
function deliver(n, nums, arena, hdrs, errs) {
  const res = this._res;
  const rej = this._rej;
  const bat = this._bat;
  const parts = hdrs === undefined ? undefined : hdrs.split('\0');
  let hp = 0;
  for (let i = 0, b = 0; i < n; i++, b += 10) {
    const slot = nums[b];
    const pos = nums[b + 8];
    const off = nums[b + 3];
    if (off < 0) {
      const reject = rej[slot];
      res[slot] = undefined;
      rej[slot] = undefined;
      if (pos >= 0) bat[slot] = undefined;
      reject(errs === undefined ? undefined : errs[i]);
      continue;
    }
    const len = nums[b + 4];
    // Its own ArrayBuffer, as before (not a slice of a shared pool).
    const data = Buffer.allocUnsafeSlow(len);
    if (len > 0) arena.copy(data, 0, off, off + len);
    const mc = nums[b + 5];
    const meta = new Array(mc);
    for (let k = 0; k < mc; k++, hp += 2) meta[k] = [parts[hp], parts[hp + 1]];
    const c = { id: nums[b + 1], data, code: nums[b + 2], meta, queuedNs: nums[b + 6], runNs: nums[b + 7] };
    if (pos < 0) {
      const resolve = res[slot];
      res[slot] = undefined;
      rej[slot] = undefined;
      resolve(c);
    } else {
      const results = bat[slot];
      results[pos] = c;
      if (nums[b + 9] === 1) {
        const resolve = res[slot];
        res[slot] = undefined;
        rej[slot] = undefined;
        bat[slot] = undefined;
        resolve(results);
      }
    }
  }
}
native.setDeliver(deliver);

module.exports = native;
