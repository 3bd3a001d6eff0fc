'use strict';
// portway for Node: the Engine class over the N-API addon (build/portway.node).

const path = require('node:path');

const native = require(path.join(__dirname, '..', 'build', 'portway.node'));

/** An error from portway: `.code` is the status name, e.g. 'PORTWAY_BUSY'. */
class PortwayError extends Error {
  constructor(message, code, status) {
    super(message);
    this.name = 'PortwayError';
    this.code = code;
    this.status = status;
  }
}
native.setErrorClass(PortwayError);

/** The options of registerHttp and their kinds (portway_http_options in camelCase). */
const HTTP_OPTIONS = {
  maxConnectionsPerHost: 'u32', maxHeaderBytes: 'u32', maxBodyBytes: 'u64', connectTimeoutMs: 'u32',
  readTimeoutMs: 'u32', poolIdleTimeoutMs: 'u32', followRedirects: 'boolean', maxRedirects: 'u32',
  retries: 'u32', retryBaseBackoffMs: 'u32', userAgent: 'string', http2PriorKnowledge: 'boolean',
  http1Only: 'boolean', decompress: 'boolean', bundledRootsOnly: 'boolean', extraCaPemPath: 'string',
  proxy: 'string', dangerAcceptInvalidCerts: 'boolean',
};

/** An RFC 9110 token: what a method and a header name must be. */
const TOKEN = /^[A-Z!#$%&'*+.^_`|~0-9a-z-]+$/;

// Completions, delivered by the addon in batches (see "completions -> JS" in src/addon.c):
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

/** Rejection of an aborted request: `name === 'AbortError'`, `cause` = the signal's reason. */
class AbortError extends Error {
  constructor(message = 'The operation was aborted', options) {
    super(message, options);
    this.name = 'AbortError';
    this.code = 'ABORT_ERR';
  }
}

const U32_MAX = 0xffffffff;

function optU32(v, name) {
  if (v === undefined || v === null) return undefined;
  if (!Number.isInteger(v) || v < 0 || v > U32_MAX) throw new TypeError(`${name} must be an integer in 0..2^32-1`);
  return v;
}

function timeoutOf(opts) {
  const t = opts && opts.timeoutMs;
  return t === undefined || t === null ? 0 : optU32(t, 'timeoutMs');
}

function toBytes(p) {
  if (p === undefined || p === null) return Buffer.alloc(0);
  if (typeof p === 'string') return Buffer.from(p);
  if (p instanceof Uint8Array) return p;
  if (ArrayBuffer.isView(p)) return new Uint8Array(p.buffer, p.byteOffset, p.byteLength);
  if (p instanceof ArrayBuffer) return new Uint8Array(p);
  throw new TypeError('payload must be a Buffer, Uint8Array, ArrayBuffer or string');
}

function abortError(signal) {
  return new AbortError('The operation was aborted', { cause: signal.reason });
}

// PORTWAY_LOG_DEBUG (1) .. PORTWAY_LOG_ERROR (4)
const LOG_LEVELS = { debug: 1, info: 2, warn: 3, error: 4 };

function logLevelOf(v) {
  if (v === undefined || v === null) return LOG_LEVELS.info;
  const n = LOG_LEVELS[v];
  if (n === undefined) throw new TypeError("logLevel must be 'debug', 'info', 'warn' or 'error'");
  return n;
}

// portway_inflight_json's snake_case keys, as the rest of this API spells them.
function inflightEntry(r) {
  return {
    id: r.id,
    userData: r.user_data,
    handler: r.handler,
    stage: r.stage,
    stageHandler: r.stage_handler,
    state: r.state,
    ageMs: r.age_ms,
  };
}

class Engine {
  /**
   * @param {{runtimeThreads?: number, poolWorkers?: number, maxInFlight?: number,
   *          defaultTimeoutMs?: number, maxPayload?: number,
   *          onLog?: (level: 'debug'|'info'|'warn'|'error', message: string) => void,
   *          logLevel?: 'debug'|'info'|'warn'|'error'}} [opts]
   */
  constructor(opts = {}) {
    const onLog = opts.onLog;
    if (onLog !== undefined && onLog !== null && typeof onLog !== 'function') throw new TypeError('onLog must be a function');
    this._n = new native.NativeEngine(
      optU32(opts.runtimeThreads, 'runtimeThreads'),
      optU32(opts.poolWorkers, 'poolWorkers'),
      optU32(opts.maxInFlight, 'maxInFlight'),
      optU32(opts.defaultTimeoutMs, 'defaultTimeoutMs'),
      opts.maxPayload === undefined ? undefined : Number(opts.maxPayload),
      onLog || undefined,
      logLevelOf(opts.logLevel),
    );
    this._n._res = []; // promise settlers by waiter slot (see deliver)
    this._n._rej = [];
    this._n._bat = []; // submitMany: the results array by waiter slot
    this._ids = new Map();
    this._heads = new Map(); // http(): request heads by method and URL string (no headers/body)
    this._closed = null;
  }

  /** One request through the addon; the promise is settled by deliver. */
  _submit1(handlerId, bytes, timeoutMs) {
    const n = this._n;
    const slot = n.submit(handlerId, bytes, timeoutMs);
    return new Promise((resolve, reject) => {
      n._res[slot] = resolve;
      n._rej[slot] = reject;
    });
  }

  /** The id of handler `name` (cached); throws PortwayError PORTWAY_NOT_FOUND. */
  lookup(name) {
    if (typeof name === 'number') return name;
    let id = this._ids.get(name);
    if (id === undefined) {
      id = this._n.lookup(String(name));
      this._ids.set(name, id);
    }
    return id;
  }

  /** Submits one request; resolves to {id, data, code, meta, queuedNs, runNs}. */
  submit(handler, payload, opts) {
    const signal = opts && opts.signal;
    if (signal && signal.aborted) return Promise.reject(abortError(signal));
    let p;
    try {
      p = this._submit1(this.lookup(handler), toBytes(payload), timeoutOf(opts));
    } catch (e) {
      return Promise.reject(e);
    }
    if (!signal) return p;
    const id = this._n.lastId();
    return this._withSignal(p, signal, () => this._n.cancel(id));
  }

  /** One batch through the addon (all Buffers/Uint8Arrays); settled by deliver. */
  _submitBatch(handlerId, arr, timeoutMs) {
    const n = this._n;
    const slot = n.submitMany(handlerId, arr, timeoutMs);
    if (typeof slot !== 'number') return Promise.reject(slot); // partly accepted: cancelled
    if (slot === 0) return Promise.resolve([]);
    const results = new Array(arr.length);
    return new Promise((resolve, reject) => {
      n._res[slot] = resolve;
      n._rej[slot] = reject;
      n._bat[slot] = results;
    });
  }

  /** Submits every payload in one batch call; resolves to the completions in order. All or
   *  nothing: rejects with the first failure (`err.index`); a partly accepted batch is cancelled. */
  submitMany(handler, payloads, opts) {
    const signal = opts && opts.signal;
    if (signal && signal.aborted) return Promise.reject(abortError(signal));
    let p;
    let count = 0;
    try {
      const arr = Array.isArray(payloads) ? payloads : Array.from(payloads);
      count = arr.length;
      for (let i = 0; i < arr.length; i++) {
        const x = arr[i];
        if (!(x instanceof Uint8Array)) {
          // copy-on-demand normalisation; the common case (all Buffers) is untouched
          const norm = arr === payloads ? arr.slice() : arr;
          for (let j = i; j < norm.length; j++) norm[j] = toBytes(norm[j]);
          p = this._submitBatch(this.lookup(handler), norm, timeoutOf(opts));
          break;
        }
      }
      if (!p) p = this._submitBatch(this.lookup(handler), arr, timeoutOf(opts));
    } catch (e) {
      return Promise.reject(e);
    }
    if (!signal) return p;
    // An accepted batch is all of `payloads`, and the engine gives one batch consecutive ids
    // (Engine::submit_batch takes them with one fetch_add), ending at lastId(). Abort cancels
    // each of them, rejects at once, and the batch's completions are absorbed.
    const last = count > 0 ? this._n.lastId() : 0;
    return this._withSignal(p, signal, () => {
      for (let id = last - count + 1; count > 0 && id <= last; id++) this._n.cancel(id);
    });
  }

  _withSignal(p, signal, cancel) {
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        cancel();
        reject(abortError(signal));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      p.then(
        (v) => {
          signal.removeEventListener('abort', onAbort);
          resolve(v);
        },
        (e) => {
          signal.removeEventListener('abort', onAbort);
          reject(signal.aborted ? abortError(signal) : e);
        },
      );
    });
  }

  /** Outbound HTTP through the "http" handler. */
  async http(opts) {
    const { method = 'GET', url, headers, body, timeoutMs, signal, handler = 'http' } = opts || {};
    // The common case (a URL string, no headers, no body) reuses the head built before for the
    // same method and URL: the engine copies the payload at submit, so the Buffer is reusable.
    const key = typeof url === 'string' && typeof method === 'string' && headers === undefined &&
      (body === undefined || body === null) ? `${method.length}:${method} ${url}` : undefined;
    if (key !== undefined) {
      const cached = this._heads.get(key);
      if (cached !== undefined) {
        const c = await this.submit(handler, cached, { timeoutMs, signal });
        return new HttpResponse(c);
      }
    }
    const u = new URL(url);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new TypeError(`unsupported URL scheme ${u.protocol}`);
    if (!TOKEN.test(method)) throw new TypeError('invalid method');
    const bodyBytes = body === undefined || body === null ? null : toBytes(body);
    let head = `${method} ${u.href} HTTP/1.1\r\n`;
    let hasHost = false;
    let hasLength = false;
    const pairs = headers === undefined ? [] : Array.isArray(headers) ? headers
      : headers instanceof Map || (typeof headers.entries === 'function' && !(headers.constructor === Object))
        ? Array.from(headers.entries()) : Object.entries(headers);
    for (const [k, v] of pairs) {
      const key = String(k);
      const val = String(v);
      // RFC 9110 token names; a ':' or space would split the name and let a caller set any header.
      if (!TOKEN.test(key)) {
        throw new TypeError(`invalid header name ${JSON.stringify(key)}: a name must be a non-empty RFC 9110 token (letters, digits and !#$%&'*+-.^_\`|~)`);
      }
      if (/[\r\n\0]/.test(val)) throw new TypeError(`invalid value for header ${JSON.stringify(key)}: CR, LF and NUL are not allowed`);
      const lk = key.toLowerCase();
      if (lk === 'host') hasHost = true;
      if (lk === 'content-length' || lk === 'transfer-encoding') hasLength = true;
      head += `${key}: ${val}\r\n`;
    }
    if (!hasHost) head = head.replace('\r\n', `\r\nHost: ${u.host}\r\n`);
    if (bodyBytes && !hasLength) head += `Content-Length: ${bodyBytes.length}\r\n`;
    head += '\r\n';
    const payload = bodyBytes ? Buffer.concat([Buffer.from(head, 'latin1'), bodyBytes]) : Buffer.from(head, 'latin1');
    if (key !== undefined) {
      if (this._heads.size >= 256) this._heads.clear();
      this._heads.set(key, payload);
    }
    const c = await this.submit(handler, payload, { timeoutMs, signal });
    return new HttpResponse(c);
  }

  /** Registers a pipeline of stages (handler names or ids); returns its id. */
  pipeline(name, stages) {
    const id = this._n.pipeline(String(name), stages.map((s) => this.lookup(s)));
    this._ids.set(name, id);
    return id;
  }

  /**
   * Registers another http handler `name` with its own connection pool and options (the
   * fields of portway_http_options in camelCase; see index.d.ts). Use it with
   * `http({ ..., handler: name })`.
   */
  registerHttp(name, options = {}) {
    if (options === null || typeof options !== 'object') throw new TypeError('options must be an object');
    for (const [k, v] of Object.entries(options)) {
      const kind = HTTP_OPTIONS[k];
      if (kind === undefined) {
        throw new TypeError(`unknown http option ${k}; known: ${Object.keys(HTTP_OPTIONS).join(', ')}`);
      }
      if (v === undefined || v === null) continue;
      const ok = kind === 'u32' ? Number.isInteger(v) && v >= 0 && v <= 0xffffffff
        : kind === 'u64' ? Number.isSafeInteger(v) && v >= 0
          : typeof v === kind;
      if (!ok) throw new TypeError(`http option ${k} must be ${kind === 'u32' || kind === 'u64' ? 'a non-negative integer' : `a ${kind}`}`);
    }
    const id = this._n.registerHttp(String(name), options);
    this._ids.set(name, id);
    return id;
  }

  /** At most `n` calls of handler `name` run at once (0 = no limit). */
  setConcurrency(name, n) {
    this._n.setConcurrency(this.lookup(name), optU32(n, 'limit'));
  }

  /** Cancels one request by id (see `submit(..).id` on the completion, or lastId). */
  cancel(id) {
    return this._n.cancel(id);
  }

  cancelAll() {
    this._n.cancelAll();
  }

  stats() {
    return this._n.stats();
  }

  /** Prometheus text exposition (portway_metrics_text): counters, gauges, histograms. */
  metricsText() {
    return this._n.metricsText();
  }

  /** Counts and latency percentiles of one handler (name or id). Nanosecond figures are
   *  Numbers: exact up to 2^53 ns (~104 days summed), rounded beyond. */
  handlerStats(name) {
    return this._n.handlerStats(this.lookup(name));
  }

  /** Requests in flight, oldest first, at most `limit` of them:
   *  { total, requests: [{ id, userData, handler, stage, stageHandler, state, ageMs }] }. */
  inflight({ limit = 100 } = {}) {
    const snap = JSON.parse(this._n.inflightJson(optU32(limit, 'limit')));
    return { total: snap.total, requests: snap.requests.map(inflightEntry) };
  }

  /** Shuts down (drain or cancel), waits for every completion, frees the engine. Idempotent;
   *  a later call with `drain: false` escalates a pending drain to a cancel. */
  close(opts = {}) {
    const drain = opts.drain !== false;
    const t = opts.timeoutMs === undefined ? 5000 : optU32(opts.timeoutMs, 'timeoutMs');
    if (this._closed) {
      if (!drain) this._n.close(false, 0);
      return this._closed;
    }
    this._closed = this._n.close(drain, t);
    return this._closed;
  }
}

class HttpResponse {
  constructor(c) {
    this.status = c.code;
    // The handler reports the HTTP version as the last meta pair, ':http-version'.
    const meta = c.meta;
    const last = meta.length > 0 ? meta[meta.length - 1] : undefined;
    this.httpVersion = last !== undefined && last[0] === ':http-version' ? last[1] : '';
    this.headers = this.httpVersion === '' ? meta : meta.slice(0, -1);
    this.body = c.data;
    this.id = c.id;
    this.queuedNs = c.queuedNs;
    this.runNs = c.runNs;
  }

  /** The first header named `name` (case-insensitive), or undefined. */
  header(name) {
    const n = name.toLowerCase();
    const h = this.headers.find(([k]) => k.toLowerCase() === n);
    return h ? h[1] : undefined;
  }

  text() {
    return this.body.toString('utf8');
  }

  json() {
    return JSON.parse(this.text());
  }
}

module.exports = {
  Engine,
  PortwayError,
  AbortError,
  HttpResponse,
  version: native.version,
  abiVersion: native.abiVersion,
  statusStr: native.statusStr,
};
