'use strict';
// The Engine class: the public API over the addon's NativeEngine. Promises live here (by waiter
// slot, settled by lib/native.js's deliver); submits refused for want of a slot can wait here.

const native = require('./native.js');
const { PortwayError, invalidArg, abortError } = require('./errors.js');
const { optionsOf, signalOf, waitOf, toBytes, logLevelOf } = require('./validation.js');
const { checkHttpOptions, requestPayload, HttpResponse } = require('./http.js');
const { fetch } = require('./fetch.js');
const { BatchResult } = require('./batch.js');

// portway_config_new's max_in_flight (eng.batch sizes its parts from the engine's).
const DEFAULT_MAX_IN_FLIGHT = 65536;
// eng.batch: items per native batch, and native batches in flight at once. Parts of a few
// thousand items keep the engine's and JS's working sets in cache (65,536-item parts ran at
// under half the rate), and more than one in flight overlaps the engine's work with JS reading.
const BATCH_PART = 4096;
const BATCH_PARTS_IN_FLIGHT = 4;
// http(): request heads kept for reuse (plain requests: no headers, no body).
const HEADS_MAX = 256;

const httpResponseOf = (c) => new HttpResponse(c);

/** The options of setPolicy and their kinds (portway_policy in camelCase). */
const POLICY_OPTIONS = {
  maxConcurrency: 'u32', adaptive: 'boolean', minConcurrency: 'u32', ratePerS: 'number', burst: 'u32',
  hedgeAfterMs: 'u32', hedgeAfterP95: 'boolean', hedgeBudgetPercent: 'u32', breakerFailures: 'u32',
  breakerCooldownMs: 'u32',
};

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
  constructor(opts) {
    const o = optionsOf(opts, 'Engine options');
    const onLog = o.onLog;
    if (onLog !== undefined && typeof onLog !== 'function') throw invalidArg(TypeError, 'onLog must be a function');
    // The numbers go to the addon as given: it checks each (integer, in range), no coercion.
    this._n = new native.NativeEngine(
      o.runtimeThreads,
      o.poolWorkers,
      o.maxInFlight,
      o.defaultTimeoutMs,
      o.maxPayload,
      onLog,
      logLevelOf(o.logLevel),
    );
    this._n._res = []; // promise settlers by waiter slot (see deliver)
    this._n._rej = [];
    this._n._bat = []; // submitMany: the results array by waiter slot
    // eng.batch: src/batch.c hands over a whole batch's columns (or an Error) by waiter slot.
    this._n._batchDone = function batchDone(slot, data, cols, hdrs) {
      const resolve = this._res[slot];
      const reject = this._rej[slot];
      this._res[slot] = undefined;
      this._rej[slot] = undefined;
      if (cols === undefined) reject(data);
      else resolve({ data, cols, hdrs });
    };
    this._maxInFlight = o.maxInFlight === undefined ? DEFAULT_MAX_IN_FLIGHT : o.maxInFlight;
    // submit(.., { wait }) refused with PORTWAY_BUSY: waiting in order for a slot (see _park).
    this._parked = [];
    this._n._onRelease = () => this._retryParked();
    this._ids = new Map();
    this._heads = new Map(); // http(): request heads by method, then URL string (no headers/body)
    this._headCount = 0;
    this._closed = null;
    // Per-tick coalescing: one flush (one portway_submit_batch) queued per tick.
    this._flushQueued = false;
    this._slot = 0;
    this._flush = () => {
      this._flushQueued = false;
      this._n.flush();
    };
  }

  /** One request through the addon, coalesced with the others of this tick (see
   *  src/coalesce.c); the promise is settled by deliver. Its waiter slot is left in
   *  this._slot: the request's handle for cancelSlot until the engine gives it an id. */
  _submit1(handlerId, bytes, timeoutMs) {
    const n = this._n;
    const slot = n.enqueue(handlerId, bytes, timeoutMs);
    if (!this._flushQueued) {
      this._flushQueued = true;
      queueMicrotask(this._flush);
    }
    this._slot = slot;
    return new Promise((resolve, reject) => {
      n._res[slot] = resolve;
      n._rej[slot] = reject;
    });
  }

  /** A canceller of the request in waiter slot `slot` (just submitted): cancels it while the
   *  slot is still that request's (its reject function still registered), whether it is queued
   *  for the flush or already in the engine. */
  _slotCanceller(slot) {
    const n = this._n;
    const rej = n._rej[slot];
    return () => {
      if (n._rej[slot] === rej) n.cancelSlot(slot);
    };
  }

  /** The id of handler `name` (cached); throws PortwayError PORTWAY_NOT_FOUND. A number is
   *  taken as an id as it is (checked where it is used). */
  lookup(name) {
    if (typeof name === 'number') return name;
    if (typeof name !== 'string') throw invalidArg(TypeError, 'handler must be a handler name (string) or id (number)');
    let id = this._ids.get(name);
    if (id === undefined) {
      id = this._n.lookup(name);
      this._ids.set(name, id);
    }
    return id;
  }

  /** Submits one request; resolves to {id, data, code, meta, queuedNs, runNs}. With
   *  `wait: ms`, a submit refused for want of a slot (PORTWAY_BUSY) waits up to `ms` for one. */
  submit(handler, payload, opts) {
    let p;
    let signal;
    let parked;
    try {
      const o = optionsOf(opts, 'submit options');
      signal = signalOf(o);
      const wait = waitOf(o);
      const hid = this.lookup(handler);
      const bytes = toBytes(payload);
      if (signal && signal.aborted) return Promise.reject(abortError(signal));
      if (wait > 0 && this._parked.length > 0) {
        parked = this._park(hid, bytes, o.timeoutMs, wait); // behind the earlier waiters
      } else {
        if (wait === 0) {
          p = this._submit1(hid, bytes, o.timeoutMs);
        } else {
          // Submitted at once (after the queued ones), so that a PORTWAY_BUSY can park it.
          try {
            const slot = this._n.submit(hid, bytes, o.timeoutMs);
            this._slot = slot;
            p = new Promise((resolve, reject) => {
              this._n._res[slot] = resolve;
              this._n._rej[slot] = reject;
            });
          } catch (e) {
            if (!(e instanceof PortwayError) || e.code !== 'PORTWAY_BUSY') throw e;
            parked = this._park(hid, bytes, o.timeoutMs, wait);
          }
        }
      }
    } catch (e) {
      return Promise.reject(e);
    }
    if (parked) {
      if (!signal) return parked.promise;
      return this._withSignal(parked.promise, signal, () => this._unpark(parked, signal));
    }
    if (!signal) return p;
    return this._withSignal(p, signal, this._slotCanceller(this._slot));
  }

  /** Keeps a submit refused with PORTWAY_BUSY until a drain releases a slot (_retryParked) or
   *  `wait` ms pass (then it rejects with that PORTWAY_BUSY). portway_submit_wait would block
   *  the JS thread, and slots are only released on the JS thread (after polling): it would
   *  always wait in vain, so the waiting happens here. The payload is copied: the caller may
   *  reuse its buffer as soon as submit() returns, as without `wait`. */
  _park(hid, bytes, timeoutMs, wait) {
    const entry = { hid, bytes: Buffer.from(bytes), timeoutMs, id: 0, timer: undefined, promise: undefined };
    entry.promise = new Promise((resolve, reject) => {
      entry.resolve = resolve;
      entry.reject = reject;
    });
    if (wait !== Infinity) {
      entry.timer = setTimeout(() => {
        this._unpark(entry);
        entry.reject(new PortwayError(`no in-flight slot was released within ${wait} ms`, 'PORTWAY_BUSY', 2));
      }, wait);
    }
    this._parked.push(entry);
    if (this._parked.length === 1) this._n.watchRelease(true);
    return entry;
  }

  /** Takes `entry` off the waiting list; if it was already submitted (abort), cancels it. */
  _unpark(entry) {
    const i = this._parked.indexOf(entry);
    if (i >= 0) {
      this._parked.splice(i, 1);
      if (entry.timer !== undefined) clearTimeout(entry.timer);
      if (this._parked.length === 0) this._n.watchRelease(false);
    } else if (entry.id !== 0) {
      this._n.cancel(entry.id);
    }
  }

  /** Slots were released: submits the waiting requests in order while slots are free. */
  _retryParked() {
    const q = this._parked;
    while (q.length > 0) {
      const e = q[0];
      let slot;
      try {
        slot = this._n.submit(e.hid, e.bytes, e.timeoutMs);
      } catch (err) {
        if (err instanceof PortwayError && err.code === 'PORTWAY_BUSY') return;
        this._unpark(e);
        e.reject(err);
        continue;
      }
      this._unpark(e);
      e.id = this._n.lastId();
      this._n._res[slot] = e.resolve;
      this._n._rej[slot] = e.reject;
    }
  }

  /** One batch through the addon (all Buffers/Uint8Arrays); settled by deliver. */
  _submitBatch(handlerId, arr, timeoutMs, ids) {
    const n = this._n;
    const slot = n.submitMany(handlerId, arr, timeoutMs, ids);
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
    let p;
    let signal;
    let ids;
    try {
      const o = optionsOf(opts, 'submitMany options');
      signal = signalOf(o);
      if (o.wait !== undefined) throw invalidArg(TypeError, 'submitMany takes no wait option (submit does)');
      if (payloads === null || typeof payloads !== 'object' || typeof payloads[Symbol.iterator] !== 'function') {
        throw invalidArg(TypeError, 'payloads must be an array (or iterable) of payloads');
      }
      const hid = this.lookup(handler);
      let arr = Array.isArray(payloads) ? payloads : Array.from(payloads);
      if (signal && signal.aborted) return Promise.reject(abortError(signal));
      for (let i = 0; i < arr.length; i++) {
        if (!(arr[i] instanceof Uint8Array)) {
          // copy-on-demand normalisation; the common case (all Buffers) is untouched
          if (arr === payloads) arr = arr.slice();
          for (let j = i; j < arr.length; j++) arr[j] = toBytes(arr[j]);
          break;
        }
      }
      // With a signal the addon writes the batch's ids here: abort cancels exactly those.
      ids = signal && arr.length > 0 ? new Float64Array(arr.length) : undefined;
      p = this._submitBatch(hid, arr, o.timeoutMs, ids);
    } catch (e) {
      return Promise.reject(e);
    }
    if (!signal) return p;
    // Abort cancels each request of the batch, rejects at once, and the batch's completions
    // are absorbed.
    return this._withSignal(p, signal, () => {
      if (ids) for (const id of ids) if (id !== 0) this._n.cancel(id);
    });
  }

  /**
   * Submits every payload to one handler as a batch and resolves, once every item has
   * completed, to a BatchResult: each item's bytes (slices of one buffer), status, code and
   * headers, in submit order. A failed item does not reject the batch: see `failures()`,
   * `throwFirst()`. Rejects only when the batch is refused (PORTWAY_BUSY when the slots for
   * its first part are not free, ...) or aborted. Long lists (over maxInFlight included) are
   * split into native batches transparently (see _runBatch).
   */
  batch(handler, payloads, opts) {
    let signal;
    let hid;
    let arr;
    let timeoutMs;
    try {
      const o = optionsOf(opts, 'batch options');
      signal = signalOf(o);
      timeoutMs = o.timeoutMs;
      if (o.wait !== undefined) throw invalidArg(TypeError, 'batch takes no wait option (submit does)');
      if (payloads === null || typeof payloads !== 'object' || typeof payloads[Symbol.iterator] !== 'function') {
        throw invalidArg(TypeError, 'payloads must be an array (or iterable) of payloads');
      }
      hid = this.lookup(handler);
      arr = Array.isArray(payloads) ? payloads : Array.from(payloads);
      for (let i = 0; i < arr.length; i++) {
        if (!(arr[i] instanceof Uint8Array)) {
          if (arr === payloads) arr = arr.slice();
          for (let j = i; j < arr.length; j++) arr[j] = toBytes(arr[j]);
          break;
        }
      }
      if (signal && signal.aborted) return Promise.reject(abortError(signal));
    } catch (e) {
      return Promise.reject(e);
    }
    const run = { ids: undefined, aborted: false };
    const p = this._runBatch(hid, arr, timeoutMs, run);
    if (!signal) return p;
    return this._withSignal(p, signal, () => {
      run.aborted = true; // no further part is submitted
      for (const ids of run.ids) for (const id of ids) this._n.cancel(id);
    });
  }

  /** Submits `arr` in parts of at most BATCH_PART items, up to BATCH_PARTS_IN_FLIGHT at once
   *  (within a quarter of maxInFlight) so the engine works on one while JS reads another.
   *  A part refused with PORTWAY_BUSY while earlier ones run waits for the oldest to finish;
   *  refused with nothing of the batch running (or any other refusal), the batch rejects and
   *  its running parts are cancelled. */
  async _runBatch(hid, arr, timeoutMs, run) {
    const n = this._n;
    // One eng.batch takes at most a quarter of the in-flight slots at a time, so that a few
    // run side by side with other requests: with maxInFlight 65536, four parts of 4096.
    const quarter = Math.max(1, Math.floor(this._maxInFlight / 4));
    const part = Math.min(BATCH_PART, quarter);
    const partsInFlight = Math.max(1, Math.min(BATCH_PARTS_IN_FLIGHT, Math.floor(quarter / part)));
    const nparts = Math.ceil(arr.length / part);
    const parts = new Array(nparts);
    const running = []; // [index, promise, ids] in submit order
    run.ids = new Set();
    let next = 0;
    try {
      while (next < nparts || running.length > 0) {
        while (next < nparts && !run.aborted && running.length < partsInFlight) {
          const s = next * part;
          const k = Math.min(part, arr.length - s);
          const items = s === 0 && k === arr.length ? arr : arr.slice(s, s + k);
          const offsets = new Float64Array(k + 1);
          let total = 0;
          for (let j = 0; j < k; j++) {
            offsets[j] = total;
            total += items[j].byteLength;
          }
          offsets[k] = total;
          const ids = new Float64Array(1); // the batch id: cancelling it reaches every item
          let slot;
          try {
            slot = n.batchSubmit(hid, Buffer.concat(items, total), offsets, timeoutMs, ids);
          } catch (e) {
            if (running.length > 0 && e instanceof PortwayError && e.code === 'PORTWAY_BUSY') break;
            throw e;
          }
          run.ids.add(ids);
          const p = new Promise((resolve, reject) => {
            n._res[slot] = resolve;
            n._rej[slot] = reject;
          });
          running.push([next, p, ids]);
          next++;
        }
        if (running.length === 0) break; // aborted
        const [i, p, ids] = running[0];
        parts[i] = await p;
        running.shift();
        run.ids.delete(ids);
      }
    } catch (e) {
      for (const [, , ids] of running) for (const id of ids) this._n.cancel(id);
      throw e;
    }
    return new BatchResult(parts, part, arr.length);
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

  /** Outbound HTTP through the "http" handler. Not an async function: one promise (the
   *  submit's, mapped to an HttpResponse) per request instead of three; a bad argument still
   *  rejects rather than throws. */
  http(opts) {
    let p;
    try {
      const o = optionsOf(opts, 'http request');
      const { method = 'GET', url, headers, body } = o;
      // The common case (a URL string, no headers, no body) reuses the head built before for
      // the same method and URL: the engine copies the payload at submit, so the Buffer is
      // reusable. Found by method, then by the URL string itself (its hash is kept by V8): no
      // key string is built per call.
      const plain = typeof url === 'string' && typeof method === 'string' && headers === undefined &&
        (body === undefined || body === null);
      const byUrl = plain ? this._heads.get(method) : undefined;
      let payload = byUrl === undefined ? undefined : byUrl.get(url);
      if (payload === undefined) {
        payload = requestPayload(method, url, headers, body);
        if (plain) this._keepHead(method, url, payload);
      }
      p = this._submitOne(o.handler === undefined ? 'http' : o.handler, payload, o.timeoutMs, signalOf(o));
    } catch (e) {
      return Promise.reject(e);
    }
    return p.then(httpResponseOf);
  }

  /** Keeps the request head of a plain `method` `url` request for the next http() call; at
   *  most HEADS_MAX of them (all dropped when full). */
  _keepHead(method, url, payload) {
    if (this._headCount >= HEADS_MAX) {
      this._heads.clear();
      this._headCount = 0;
    }
    let byUrl = this._heads.get(method);
    if (byUrl === undefined) this._heads.set(method, (byUrl = new Map()));
    byUrl.set(url, payload);
    this._headCount++;
  }

  /** submit() without a `wait`, its options already read: the request coalesced with this
   *  tick's others; `signal` aborts it. */
  _submitOne(handler, bytes, timeoutMs, signal) {
    const hid = this.lookup(handler);
    if (signal && signal.aborted) return Promise.reject(abortError(signal));
    const p = this._submit1(hid, bytes, timeoutMs);
    if (!signal) return p;
    return this._withSignal(p, signal, this._slotCanceller(this._slot));
  }

  /** WHATWG fetch through an http handler: resolves to a global Response (lib/fetch.js). */
  fetch(input, init) {
    return fetch(this, input, init);
  }

  /** Registers a pipeline of stages (handler names or ids); returns its id. */
  pipeline(name, stages) {
    if (typeof name !== 'string') throw invalidArg(TypeError, 'pipeline name must be a string');
    if (!Array.isArray(stages)) throw invalidArg(TypeError, 'stages must be an array of handler names or ids');
    const id = this._n.pipeline(name, stages.map((s) => this.lookup(s)));
    this._ids.set(name, id);
    return id;
  }

  /**
   * Registers another http handler `name` with its own connection pool and options (the
   * fields of portway_http_options in camelCase; see index.d.ts). Use it with
   * `http({ ..., handler: name })`.
   */
  registerHttp(name, options = {}) {
    checkHttpOptions(options);
    const id = this._n.registerHttp(String(name), options);
    this._ids.set(name, id);
    return id;
  }

  /** At most `n` calls of handler `name` run at once (0 = no limit). */
  setConcurrency(name, n) {
    this._n.setConcurrency(this.lookup(name), n);
  }
  /**
   * Sets every policy of handler `name` at once (options left out are off): `maxConcurrency`,
   * or with `adaptive` a latency-driven limit between `minConcurrency` and `maxConcurrency`
   * (0 = 1000), a token-bucket rate limit (`ratePerS`, `burst`) and a circuit breaker
   * (`breakerFailures`, `breakerCooldownMs`). Hedging is refused (PORTWAY_INVALID_ARGUMENT)
   * until implemented, as are `minConcurrency` above 1 without `adaptive` or above
   * `maxConcurrency`, and `adaptive` on a pipeline. Invalid settings change nothing.
   */
  setPolicy(name, options = {}) {
    if (options === null || typeof options !== 'object') throw invalidArg(TypeError, 'options must be an object');
    for (const [k, v] of Object.entries(options)) {
      const kind = POLICY_OPTIONS[k];
      if (kind === undefined) {
        throw invalidArg(TypeError, `unknown policy option ${k}; known: ${Object.keys(POLICY_OPTIONS).join(', ')}`);
      }
      if (v === undefined || v === null) continue;
      const ok = kind === 'u32' ? Number.isInteger(v) && v >= 0 && v <= 0xffffffff : typeof v === kind;
      if (!ok) throw invalidArg(TypeError, `policy option ${k} must be ${kind === 'u32' ? 'an integer from 0 to 4294967295' : `a ${kind}`}`);
    }
    this._n.setPolicy(this.lookup(name), options);
  }

  /** The live figures of handler `name`'s policies. */
  policyState(name) {
    return this._n.policyState(this.lookup(name));
  }


  /** Cancels one request by id (an integer from 0 to 2^53-1; anything else throws). */
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
  inflight(opts) {
    const snap = JSON.parse(this._n.inflightJson(optionsOf(opts, 'inflight options').limit));
    return { total: snap.total, requests: snap.requests.map(inflightEntry) };
  }

  /** Shuts down (drain or cancel), waits for every completion, frees the engine. Idempotent;
   *  a later call with `drain: false` escalates a pending drain to a cancel. */
  close(opts) {
    let drain;
    let t;
    try {
      const o = optionsOf(opts, 'close options');
      if (o.drain !== undefined && typeof o.drain !== 'boolean') throw invalidArg(TypeError, 'drain must be a boolean');
      drain = o.drain !== false;
      t = o.timeoutMs === undefined ? 5000 : o.timeoutMs; // checked by the addon
    } catch (e) {
      return Promise.reject(e);
    }
    if (this._closed) {
      if (!drain) this._n.close(false, 0);
      return this._closed;
    }
    try {
      this._closed = this._n.close(drain, t);
    } catch (e) {
      return Promise.reject(e);
    }
    // Waiting submits will find no slot: the engine takes no more work.
    for (const e of this._parked.slice()) {
      this._unpark(e);
      e.reject(new PortwayError('engine is closed', 'PORTWAY_SHUTDOWN', 3));
    }
    return this._closed;
  }
}

module.exports = { Engine, BatchResult };
