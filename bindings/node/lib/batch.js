'use strict';
// eng.batch's result: the items of one or more native batches (src/batch.c) as columns over
// one data buffer each. Items are read on demand: nothing is built per item until asked for.

const native = require('./native.js');
const { PortwayError, invalidArg } = require('./errors.js');

// Per-item fields of a part's columns (src/batch.c): data start, length, status, code, meta
// count, index of its first meta pair in the part's `hdrs` (NUL-separated keys and values).
const COLS = 6;

/** The results of `Engine#batch`, in submit order. Item i is a Buffer (a slice of one data
 *  buffer: no copy) when its status is PORTWAY_OK; `get(i)` of a failed item throws its error. */
class BatchResult {
  /** @param {Array<{data: Buffer, cols: Float64Array, hdrs: string|undefined, pairs?: string[]}>} parts
   *  @param {number} chunk items per part (the last may have fewer) */
  constructor(parts, chunk, length) {
    this._parts = parts;
    this._chunk = chunk;
    this._length = length;
    this._p = undefined; // the part _at found last
  }

  /** The number of items. */
  get length() {
    return this._length;
  }

  /** The column base of item `i` in its part, which it leaves in this._p (no array per call:
   *  get() runs once per item). A RangeError outside 0..length-1. */
  _at(i) {
    if (!Number.isInteger(i) || i < 0 || i >= this._length) {
      throw invalidArg(RangeError, `index ${i} is out of range (the batch has ${this._length} items)`);
    }
    const k = Math.floor(i / this._chunk);
    this._p = this._parts[k];
    return (i - k * this._chunk) * COLS;
  }

  /** Item i's response bytes; throws the item's PortwayError when it failed. */
  get(i) {
    const b = this._at(i);
    const p = this._p;
    if (p.cols[b + 2] !== 0) throw this.error(i);
    const start = p.cols[b];
    return p.data.subarray(start, start + p.cols[b + 1]);
  }

  /** Item i's status name: 'PORTWAY_OK', 'PORTWAY_TIMEOUT', 'PORTWAY_CANCELLED', ... */
  status(i) {
    const b = this._at(i);
    const p = this._p;
    return native.statusStr(p.cols[b + 2]);
  }

  /** Item i's handler code (the HTTP status for http items; 0 when the handler sets none). */
  code(i) {
    const b = this._at(i);
    const p = this._p;
    return p.cols[b + 3];
  }

  /** Item i's meta pairs (response headers for http items), in order. */
  headers(i) {
    const b = this._at(i);
    const p = this._p;
    const mc = p.cols[b + 4];
    if (mc === 0) return [];
    if (p.pairs === undefined) p.pairs = p.hdrs.split('\0'); // once per part, on first use
    const s = 2 * p.cols[b + 5];
    const out = new Array(mc);
    for (let m = 0; m < mc; m++) out[m] = [p.pairs[s + 2 * m], p.pairs[s + 2 * m + 1]];
    return out;
  }

  /** The PortwayError of a failed item (`index` = i, message from the engine), or undefined. */
  error(i) {
    const b = this._at(i);
    const p = this._p;
    const st = p.cols[b + 2];
    if (st === 0) return undefined;
    const start = p.cols[b];
    const msg = p.data.toString('utf8', start, start + p.cols[b + 1]) || native.statusStr(st);
    const e = new PortwayError(msg, native.statusStr(st), st);
    e.index = i;
    return e;
  }

  /** True when every item's status is PORTWAY_OK. */
  get ok() {
    for (const p of this._parts) for (let b = 2; b < p.cols.length; b += COLS) if (p.cols[b] !== 0) return false;
    return true;
  }

  /** The indexes of the failed items, ascending. */
  failures() {
    const out = [];
    for (let k = 0; k < this._parts.length; k++) {
      const c = this._parts[k].cols;
      for (let b = 2, i = k * this._chunk; b < c.length; b += COLS, i++) if (c[b] !== 0) out.push(i);
    }
    return out;
  }

  /** Throws the error of the first failed item (lowest index); does nothing when all are ok. */
  throwFirst() {
    const f = this.failures();
    if (f.length > 0) throw this.error(f[0]);
  }

  /** The items' Buffers in order (throws at the first failed item, as get does). Walks the
   *  parts directly: the bounds checks of get() are per batch here, not per item. */
  *[Symbol.iterator]() {
    for (let k = 0, i = 0; k < this._parts.length; k++) {
      const { data, cols } = this._parts[k];
      for (let b = 0; b < cols.length; b += COLS, i++) {
        if (cols[b + 2] !== 0) throw this.error(i);
        yield data.subarray(cols[b], cols[b] + cols[b + 1]);
      }
    }
  }
}

module.exports = { BatchResult };
