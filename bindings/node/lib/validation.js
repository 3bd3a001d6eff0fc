'use strict';
// Checks of the options and values callers pass in. Numbers meant for the addon are not
// checked here: the addon checks each (integer, in range) with no coercion.

const { invalidArg } = require('./errors.js');

/** `opts` as given: undefined or an object (a typo'd call like submit(h, p, 500) is refused). */
function optionsOf(opts, what) {
  if (opts === undefined) return {};
  if (opts === null || typeof opts !== 'object') throw invalidArg(TypeError, `${what} must be an object`);
  return opts;
}

/** `opts.signal`: undefined or an AbortSignal. */
function signalOf(opts) {
  const s = opts.signal;
  if (s === undefined) return undefined;
  if (!(s instanceof AbortSignal)) throw invalidArg(TypeError, 'signal must be an AbortSignal');
  return s;
}

// setTimeout's largest delay; `wait` also takes Infinity (no limit).
const WAIT_MAX = 0x7fffffff;

/** `wait` in ms: 0 (the default) = fail at once with PORTWAY_BUSY, Infinity = no limit. */
function waitOf(opts) {
  const w = opts.wait;
  if (w === undefined) return 0;
  if (typeof w !== 'number') throw invalidArg(TypeError, 'wait must be a number of milliseconds');
  if (w === Infinity) return w;
  if (!Number.isInteger(w) || w < 0 || w > WAIT_MAX) {
    throw invalidArg(RangeError, `wait must be an integer from 0 to ${WAIT_MAX}, or Infinity (got ${w})`);
  }
  return w;
}

/** Payload bytes: undefined = empty; strings as UTF-8; nothing else is coerced. */
function toBytes(p) {
  if (p === undefined) return Buffer.alloc(0);
  if (typeof p === 'string') return Buffer.from(p);
  if (p instanceof Uint8Array) return p;
  if (ArrayBuffer.isView(p)) return new Uint8Array(p.buffer, p.byteOffset, p.byteLength);
  if (p instanceof ArrayBuffer) return new Uint8Array(p);
  throw invalidArg(TypeError, 'payload must be a Buffer, Uint8Array, ArrayBuffer, ArrayBufferView or string');
}

// PORTWAY_LOG_DEBUG (1) .. PORTWAY_LOG_ERROR (4)
const LOG_LEVELS = { debug: 1, info: 2, warn: 3, error: 4 };

/** The C log level of `logLevel` (default 'info'). */
function logLevelOf(v) {
  if (v === undefined) return LOG_LEVELS.info;
  const n = typeof v === 'string' && Object.hasOwn(LOG_LEVELS, v) ? LOG_LEVELS[v] : undefined;
  if (n === undefined) throw invalidArg(TypeError, "logLevel must be 'debug', 'info', 'warn' or 'error'");
  return n;
}

module.exports = { optionsOf, signalOf, waitOf, toBytes, logLevelOf };
