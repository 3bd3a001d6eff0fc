'use strict';
// eng.fetch(input, init): the WHATWG fetch() shape over a portway http handler, so code written
// for Node's global fetch (undici) moves over by swapping one name. The request goes out as
// one portway http payload per hop; redirects are followed here, by the Fetch standard's rules,
// because the core follows them only per handler (at registration) and fetch needs a mode per
// request. The response body is in memory when the promise resolves (the handler delivers whole
// bodies), and the Response is a real global Response built from it.

const { STATUS_CODES } = require('node:http');
const { PortwayError } = require('./errors.js');

/** The Fetch standard's limit on redirects followed ("redirect count exceeded" past it). */
const MAX_REDIRECTS = 20;

/** An RFC 9110 token: what a method must be. */
const TOKEN = /^[A-Z!#$%&'*+.^_`|~0-9a-z-]+$/;

/** Methods the Fetch standard upper-cases when given in any case (PATCH is not one). */
const NORMALIZED_METHODS = new Set(['DELETE', 'GET', 'HEAD', 'OPTIONS', 'POST', 'PUT']);

/** Methods fetch refuses outright. */
const FORBIDDEN_METHODS = new Set(['CONNECT', 'TRACE', 'TRACK']);

/** Statuses whose response has no body (Fetch "null body status"). */
const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);

/** Headers dropped when a redirect turns the request into a bodiless GET. */
const BODY_HEADERS = ['content-encoding', 'content-language', 'content-location', 'content-type'];

/** Credentials not carried to another origin on a redirect (the standard names Authorization;
 *  undici, and so Node's fetch, also drops these two). */
const CROSS_ORIGIN_DROPPED = ['authorization', 'proxy-authorization', 'cookie'];

const NON_ASCII = /[^\x00-\x7f]/;

const REDIRECT_MODES = new Set(['follow', 'manual', 'error']);

/** Headers mutators that throw as those of a fetched response do. */
const IMMUTABLE = {};
for (const m of ['append', 'set', 'delete']) {
  IMMUTABLE[m] = {
    value() {
      throw new TypeError('immutable');
    },
  };
}

/** Removes the abort listener of a response collected unread (see FetchResponse#watch). */
const unwatched = new FinalizationRegistry(({ signal, onAbort }) => signal.removeEventListener('abort', onAbort));

/** The rejection of a second read of a body, worded as Node's. */
function bodyUnusable() {
  return Promise.reject(new TypeError('Body is unusable: Body has already been read'));
}

/**
 * The Response eng.fetch resolves to. It is a Response (`instanceof Response`, and every
 * member of Response.prototype is its own here) whose `url`, `redirected` and `type` are those
 * of a fetched response (a constructed one has '', false and 'default', read-only). Its body
 * bytes are already in memory, so it is built lazily: the platform's Response constructor is
 * not run at all (its argument conversions and internal state cost more than the rest of a
 * small fetch, and far more while that code is not yet optimised, e.g. in a short-lived
 * process); `text()`, `json()`, `arrayBuffer()` and `bytes()` decode the bytes directly; the
 * headers are a Headers filled in on first use; and the first use of `body` (or `blob()`,
 * `formData()`, or any read of a null body) creates a real Response over the bytes that serves
 * every later use, so stream semantics are exactly the platform's. The prototype is linked to
 * Response on the first fetch (see linkResponse), so loading portway does not load the
 * platform's fetch implementation.
 */
class FetchResponse {
  #status;
  #statusText;
  #headers = undefined; // the Headers, made on first use
  #url;
  #redirected;
  #type;
  #bytes; // the body (a Uint8Array), or null for a null-body response
  #meta; // response header pairs not yet copied into `headers`, or null
  #used = false; // read by text()/json()/arrayBuffer()/bytes() before any #real
  #shared = false; // #bytes is also another response's (clone): never hand its memory over
  #real; // the Response over #bytes that owns the body once it is needed as a stream
  #signal; // the request's signal while its abort can still error the body, else undefined
  #ctl; // the controller of #real's body stream, when made while #signal was watched

  constructor(bytes, status, statusText, meta, url, redirected, type, signal) {
    this.#status = status;
    this.#statusText = statusText;
    this.#bytes = bytes;
    this.#meta = meta;
    this.#url = url;
    this.#redirected = redirected;
    this.#type = type;
    if (signal !== undefined && bytes !== null && !signal.aborted) this.#watch(signal);
  }

  /** As in Node's fetch, aborting the request's signal after the response arrived errors a
   *  body not yet read with the signal's reason. The listener holds the response weakly and
   *  goes when the body has been read here or the response is collected. */
  #watch(signal) {
    this.#signal = signal;
    const ref = new WeakRef(this);
    const onAbort = () => ref.deref()?.#abort(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    unwatched.register(this, { signal, onAbort }, this);
    this.#unwatch = () => {
      signal.removeEventListener('abort', onAbort);
      unwatched.unregister(this);
    };
  }

  #unwatch = undefined;
  #aborted = false; // the signal aborted before the body was read: reads reject

  #abort(reason) {
    this.#unwatch = undefined;
    if (this.#used) return;
    this.#delegate();
    this.#signal = undefined;
    this.#aborted = true;
    if (this.#ctl !== undefined) this.#ctl.error(reason);
  }

  /** The rejection a body read gets before any reading, as Node's: an unusable body (read,
   *  or its stream locked), then an aborted one (a DOMException whatever the reason; the
   *  stream itself errors with the reason). Undefined when the read may go on. */
  #refusal() {
    if (this.bodyUsed || (this.#real !== undefined && this.#real.body.locked)) return bodyUnusable();
    if (this.#aborted) return Promise.reject(new DOMException('The operation was aborted.', 'AbortError'));
    return undefined;
  }

  /** The HTTP status, 200..999. */
  get status() {
    return this.#status;
  }

  get ok() {
    return this.#status >= 200 && this.#status <= 299;
  }

  /** The reason phrase: the standard one for HTTP/1.x, '' for HTTP/2. */
  get statusText() {
    return this.#statusText;
  }

  /** The final URL, after redirects, without its fragment. */
  get url() {
    return this.#url;
  }

  /** True when at least one redirect was followed. */
  get redirected() {
    return this.#redirected;
  }

  /** 'basic', or 'cors' once a redirect left the first URL's origin (Fetch "response
   *  tainting", as Node's fetch reports it). */
  get type() {
    return this.#type;
  }

  /** The response headers, copied in from the handler's pairs on first use, then read-only
   *  like a fetched response's (the platform gives no way to make a Headers immutable, so its
   *  mutators are shadowed on the instance). */
  get headers() {
    let h = this.#headers;
    if (h === undefined) {
      h = this.#headers = new Headers();
      const meta = this.#meta;
      this.#meta = null;
      for (let i = 0; i < meta.length; i++) h.append(meta[i][0], meta[i][1]);
      Object.defineProperties(h, IMMUTABLE);
    }
    return h;
  }

  /** The Response that owns the body from now on (created on first need, marked read when
   *  the body was already read here; for a null body, one with no body). */
  #delegate() {
    if (this.#real === undefined) {
      const type = this.headers.get('content-type');
      const init = type === null ? undefined : { headers: { 'content-type': type } };
      if (this.#signal !== undefined && !this.#used) {
        // A stream this response can still error when the signal aborts.
        const bytes = this.#bytes;
        const stream = new ReadableStream({
          start: (c) => {
            this.#ctl = c;
          },
          pull: (c) => {
            c.enqueue(new Uint8Array(bytes));
            c.close();
          },
        }, { highWaterMark: 0 });
        this.#real = new Response(stream, init);
      } else {
        this.#real = new Response(this.#bytes, init);
        if (this.#used) this.#real.arrayBuffer().catch(() => {}); // disturbed, as here
      }
    }
    return this.#real;
  }

  get body() {
    return this.#bytes === null ? null : this.#delegate().body;
  }

  get bodyUsed() {
    return this.#real === undefined ? this.#used : this.#real.bodyUsed;
  }

  /** Takes the body bytes for one read, or undefined when they were read before. */
  #take() {
    if (this.#used) return undefined;
    this.#used = true;
    if (this.#unwatch !== undefined) {
      this.#unwatch();
      this.#unwatch = undefined;
      this.#signal = undefined;
    }
    return this.#bytes;
  }

  text() {
    if (this.#bytes === null) return this.#delegate().text();
    const no = this.#refusal();
    if (no !== undefined) return no;
    if (this.#real !== undefined) return this.#real.text();
    const b = this.#take();
    // UTF-8 decode as the Fetch standard does it: a leading BOM is dropped.
    const t = Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8');
    return Promise.resolve(t.charCodeAt(0) === 0xfeff ? t.slice(1) : t);
  }

  json() {
    if (this.#bytes === null) return this.#delegate().json();
    return this.text().then(JSON.parse);
  }

  arrayBuffer() {
    if (this.#bytes === null) return this.#delegate().arrayBuffer();
    const no = this.#refusal();
    if (no !== undefined) return no;
    if (this.#real !== undefined) return this.#real.arrayBuffer();
    const b = this.#take();
    // The handler's body has an ArrayBuffer of its own, read once: it is handed over, no copy.
    if (!this.#shared && b.byteOffset === 0 && b.byteLength === b.buffer.byteLength) return Promise.resolve(b.buffer);
    return Promise.resolve(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  }

  bytes() {
    if (this.#bytes === null) return this.#delegate().bytes();
    const no = this.#refusal();
    if (no !== undefined) return no;
    if (this.#real !== undefined) return this.#real.bytes();
    const b = this.#take();
    return Promise.resolve(new Uint8Array(b)); // a copy: a clone may share the bytes
  }

  blob() {
    if (this.#bytes === null) return this.#delegate().blob();
    return this.#refusal() ?? this.#delegate().blob();
  }

  formData() {
    if (this.#bytes === null) return this.#delegate().formData();
    return this.#refusal() ?? this.#delegate().formData();
  }

  /** A copy that keeps url/redirected/type (Response#clone would return a plain Response).
   *  The bytes are never written to, so the copy shares them. */
  clone() {
    if (this.bodyUsed || (this.#real !== undefined && this.#real.body.locked)) {
      throw new TypeError('Response.clone: Body has already been consumed.');
    }
    const meta = [];
    for (const pair of this.headers) meta.push(pair);
    this.#shared = true;
    const c = new FetchResponse(this.#bytes, this.status, this.statusText, meta, this.#url, this.#redirected,
      this.#type, this.#signal);
    c.#shared = true;
    return c;
  }
}

/** Makes FetchResponse a Response, once, on the first response: the global Response is a lazy
 *  getter that loads the platform's whole fetch implementation (HTTP/2, TLS, ...), which a
 *  program that never fetches should not pay for when it loads portway. */
let linked = false;
function linkResponse() {
  Object.setPrototypeOf(FetchResponse.prototype, Response.prototype);
  Object.setPrototypeOf(FetchResponse, Response);
  linked = true;
}

/** The network error fetch rejects with: TypeError('fetch failed') carrying the cause. */
function networkError(cause) {
  return new TypeError('fetch failed', { cause });
}

/** `s` as a fetch method: a token, standard ones upper-cased, CONNECT/TRACE/TRACK refused. */
function methodOf(s) {
  const m = String(s);
  if (!TOKEN.test(m)) throw new TypeError(`'${m}' is not a valid HTTP method.`);
  const up = m.toUpperCase();
  if (FORBIDDEN_METHODS.has(up)) throw new TypeError(`'${m}' HTTP method is unsupported.`);
  return NORMALIZED_METHODS.has(up) ? up : m;
}

// Request targets by their URL string (the URL is never mutated: a redirect makes a new one),
// and the payloads of bodiless GETs without headers by URL, as `http()` keeps its heads:
// parsing, serialising and building them again is a good part of a small fetch's cost.
// Cleared when full.
const CACHE_MAX = 256;
const urls = new Map();
const getHeads = new Map();

/** A parsed URL with what a request derives from it, worked out once: `href` without its
 *  fragment (what goes on the wire and into `response.url`) and whether it is http(s). */
function targetOf(url) {
  const p = url.protocol;
  return { url, href: withoutFragment(url), web: p === 'http:' || p === 'https:' };
}

/** The request target: an absolute URL, no credentials (as fetch requires). */
function urlOf(input) {
  if (typeof input === 'string') {
    let t = urls.get(input);
    if (t === undefined) {
      t = targetOf(parseUrl(input));
      if (urls.size >= CACHE_MAX) urls.clear();
      urls.set(input, t);
    }
    return t;
  }
  return targetOf(parseUrl(input));
}

function parseUrl(input) {
  let u;
  try {
    u = new URL(input);
  } catch (e) {
    throw new TypeError(`Failed to parse URL from ${input}`, { cause: e });
  }
  if (u.username !== '' || u.password !== '') {
    throw new TypeError(`Request cannot be constructed from a URL that includes credentials: ${input}`);
  }
  return u;
}

/** `href` without its fragment: what goes on the wire and into `response.url`. */
function withoutFragment(u) {
  const h = u.href;
  const i = h.indexOf('#');
  return i < 0 ? h : h.slice(0, i);
}

/** The body as bytes plus the content type it implies and whether it was a stream (a stream
 *  cannot be sent again on a 307/308 redirect, as in Node's fetch). Strings, binary data and
 *  URLSearchParams are converted at once (the bytes are copied into the payload before fetch()
 *  returns, so the caller may reuse its buffer); anything else (Blob, FormData, a
 *  ReadableStream with `duplex: 'half'`, an async iterable) goes through the platform's own
 *  body extraction, so it is accepted, typed and refused exactly as Node's fetch does, and is
 *  read whole into memory: then the result is a promise. */
function bodyOf(body, duplex) {
  if (typeof body === 'string') return { bytes: Buffer.from(body), type: 'text/plain;charset=UTF-8', stream: false };
  if (body instanceof Uint8Array) return { bytes: body, type: null, stream: false };
  if (ArrayBuffer.isView(body)) {
    return { bytes: new Uint8Array(body.buffer, body.byteOffset, body.byteLength), type: null, stream: false };
  }
  if (body instanceof ArrayBuffer) return { bytes: new Uint8Array(body), type: null, stream: false };
  if (body instanceof URLSearchParams) {
    return { bytes: Buffer.from(body.toString()), type: 'application/x-www-form-urlencoded;charset=UTF-8', stream: false };
  }
  const stream = body instanceof ReadableStream || (body !== null && typeof body === 'object' &&
    typeof body[Symbol.asyncIterator] === 'function');
  const init = { method: 'POST', body };
  if (duplex !== undefined) init.duplex = duplex;
  const r = new Request('http://portway.invalid/', init);
  const type = r.headers.get('content-type');
  return r.arrayBuffer().then((ab) => ({ bytes: new Uint8Array(ab), type, stream }));
}

/** The request as fetch would send it: { url, method, headers, body, stream, redirect, signal },
 *  or a promise of it when the body must be read first (a Request's, a Blob, a stream).
 *  `headers` is a Headers, or null for none (the common case, kept free of a Headers). */
function requestOf(input, init) {
  if (init !== undefined && (init === null || typeof init !== 'object')) {
    throw new TypeError('fetch: init must be an object');
  }
  const o = init === undefined ? {} : init;
  if (input instanceof Request) {
    const r = init === undefined ? input : new Request(input, init);
    const { url, href, web } = urlOf(r.url);
    const req = {
      url, href, web, method: r.method, headers: new Headers(r.headers), body: null, stream: false,
      redirect: r.redirect, signal: r.signal,
    };
    if (r.body === null) return req;
    return r.arrayBuffer().then((ab) => ({ ...req, body: new Uint8Array(ab) }));
  }
  if (typeof input !== 'string' && !(input instanceof URL)) {
    // fetch stringifies any other input (an object with toString, ...), as the URL parser does.
    input = String(input);
  }
  const { url, href, web } = urlOf(input);
  const method = o.method === undefined ? 'GET' : methodOf(o.method);
  let headers = o.headers === undefined ? null : new Headers(o.headers);
  const redirect = o.redirect === undefined ? 'follow' : o.redirect;
  if (!REDIRECT_MODES.has(redirect)) {
    throw new TypeError(`fetch: redirect must be 'follow', 'manual' or 'error' (got ${JSON.stringify(String(redirect))})`);
  }
  const signal = o.signal === undefined || o.signal === null ? undefined : o.signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw new TypeError('fetch: signal must be an AbortSignal');
  const req = { url, href, web, method, headers, body: null, stream: false, redirect, signal };
  if (o.body === undefined || o.body === null) return req;
  if (method === 'GET' || method === 'HEAD') throw new TypeError('Request with GET/HEAD method cannot have body.');
  const withBody = (b) => {
    if (b.type !== null && (headers === null || !headers.has('content-type'))) {
      if (headers === null) req.headers = headers = new Headers();
      headers.set('content-type', b.type);
    }
    req.body = b.bytes;
    req.stream = b.stream;
    return req;
  };
  const b = bodyOf(o.body, o.duplex);
  return b instanceof Promise ? b.then(withBody) : withBody(b);
}

/** One hop as a portway http payload: the request head in absolute form, then the body. The
 *  handler adds Host (from the URL) and User-Agent; Content-Length is set here from the body
 *  (0 for a bodiless POST or PUT, as fetch sends). */
function payloadOf(req) {
  if (req.method === 'GET' && req.body === null && req.headers === null) {
    const { href } = req;
    let p = getHeads.get(href);
    if (p === undefined) {
      p = Buffer.from(`GET ${href} HTTP/1.1\r\naccept: */*\r\n\r\n`, 'latin1');
      if (getHeads.size >= CACHE_MAX) getHeads.clear();
      getHeads.set(href, p);
    }
    return p;
  }
  let head = `${req.method} ${req.href} HTTP/1.1\r\n`;
  let accept = false;
  if (req.headers !== null) {
    for (const [k, v] of req.headers) {
      if (k === 'content-length' || k === 'host' || k === 'transfer-encoding') continue;
      if (k === 'accept') accept = true;
      head += `${k}: ${v}\r\n`;
    }
  }
  if (!accept) head += 'accept: */*\r\n';
  const n = req.body === null ? 0 : req.body.length;
  if (n > 0 || req.method === 'POST' || req.method === 'PUT') head += `content-length: ${n}\r\n`;
  head += '\r\n';
  const h = Buffer.from(head, 'latin1');
  return n > 0 ? Buffer.concat([h, req.body]) : h;
}

/** A Response from a completion of the http handler. */
function responseOf(c, req, redirected, type) {
  const status = c.code;
  if (status < 200 || status > 999) {
    // Not a final status (the handler takes 1xx as interim); only a broken server sends these.
    throw networkError(new Error(`invalid HTTP status ${status} from ${req.url.origin}`));
  }
  const meta = c.meta;
  let version = '';
  const n = meta.length;
  if (n > 0 && meta[n - 1][0] === ':http-version') {
    version = meta[n - 1][1];
    meta.pop(); // the completion's own array, read no more after this
  }
  for (let i = 0; i < meta.length; i++) {
    const v = meta[i][1];
    // Header values are bytes; fetch shows each as one char (Latin-1), and a Headers value
    // cannot hold more (it throws). The addon hands them over decoded as UTF-8: re-encode.
    if (NON_ASCII.test(v)) meta[i] = [meta[i][0], Buffer.from(v, 'utf8').toString('latin1')];
  }
  // The handler does not report the reason phrase: HTTP/1.x gets the standard one (what Node's
  // http server sends unless told otherwise), HTTP/2 has none.
  const statusText = version === 'HTTP/2' ? '' : STATUS_CODES[status] || '';
  const nullBody = req.method === 'HEAD' || NULL_BODY_STATUSES.has(status);
  if (!linked) linkResponse();
  return new FetchResponse(nullBody ? null : c.data, status, statusText, meta, req.href, redirected, type, req.signal);
}

/** The request for the next hop after the redirect completion `c` of `req`, following the
 *  Fetch standard's HTTP-redirect fetch; null when there is no Location (the response is then
 *  returned as is). */
function redirectOf(req, c) {
  const loc = locationOf(c.meta);
  if (loc === undefined) return null;
  let next;
  try {
    next = new URL(loc, req.url);
  } catch (e) {
    throw networkError(e);
  }
  if (next.protocol !== 'http:' && next.protocol !== 'https:') {
    throw networkError(new Error('URL scheme must be a HTTP(S) scheme'));
  }
  if (next.hash === '' && req.url.hash !== '') next.hash = req.url.hash;
  const status = c.code;
  let { method, body } = req;
  const headers = new Headers(req.headers ?? undefined);
  if (((status === 301 || status === 302) && method === 'POST') || (status === 303 && method !== 'GET' && method !== 'HEAD')) {
    method = 'GET';
    body = null;
    for (const h of BODY_HEADERS) headers.delete(h);
  } else if (body !== null && req.stream) {
    // Node's fetch cannot replay a stream body either.
    throw networkError(new Error('Cannot follow a redirect with a streamed request body'));
  }
  if (next.origin !== req.url.origin) for (const h of CROSS_ORIGIN_DROPPED) headers.delete(h);
  return { ...req, ...targetOf(next), method, headers, body };
}

function locationOf(meta) {
  for (let i = 0; i < meta.length; i++) if (meta[i][0] === 'location') return meta[i][1];
  return undefined;
}

function isRedirect(status) {
  return status === 301 || status === 302 || status === 303 || status === 307 || status === 308;
}

/**
 * `eng.fetch(input, init)`: see Engine#fetch in index.d.ts and bindings/node/README.md. Resolves
 * to a Response for every HTTP status; rejects with TypeError('fetch failed', { cause }) for a
 * network error (cause: the PortwayError, or an Error naming the redirect problem), with the
 * signal's reason when aborted, and with a TypeError for bad input.
 */
async function fetch(eng, input, init) {
  // Until the first await all runs synchronously: a body given as bytes is in the payload
  // (copied) before fetch() returns.
  let req = requestOf(input, init);
  if (req instanceof Promise) req = await req;
  if (!req.web) {
    // Node's fetch also has data: and blob: URLs; portway's http handler has neither.
    throw networkError(new Error('unknown scheme'));
  }
  const o = init === undefined || init === null ? {} : init;
  let handler;
  try {
    handler = eng.lookup(o.handler === undefined ? 'http' : o.handler);
  } catch (e) {
    // An unknown handler is the caller's mistake; a closed engine fails like a refused submit.
    throw e instanceof PortwayError && e.code !== 'PORTWAY_NOT_FOUND' ? networkError(e) : e;
  }
  const { timeoutMs } = o;
  // timeoutMs bounds the whole fetch, redirects included: each hop gets what is left.
  const deadline = timeoutMs === undefined ? undefined : performance.now() + timeoutMs;
  const { signal } = req;
  let cur = req;
  let type = 'basic';
  for (let hops = 0; ; hops++) {
    if (signal !== undefined && signal.aborted) throw signal.reason;
    let t = timeoutMs;
    if (deadline !== undefined && hops > 0) {
      t = Math.ceil(deadline - performance.now());
      if (t <= 0) {
        throw networkError(new PortwayError(`fetch of ${req.url.href} timed out after ${timeoutMs} ms`, 'PORTWAY_TIMEOUT', 7));
      }
    }
    const payload = payloadOf(cur);
    // Later hops (307/308) resend the body: from this private copy, not the caller's buffer.
    if (cur.body !== null) cur.body = payload.subarray(payload.length - cur.body.length);
    let c;
    try {
      // Without a signal, straight to the engine's submit: eng.submit would only check again
      // what is known here (a handler id, a Buffer, no wait) and add no abort wiring.
      c = await (signal === undefined ? eng._submit1(handler, payload, t) : eng.submit(handler, payload, { timeoutMs: t, signal }));
    } catch (e) {
      if (signal !== undefined && signal.aborted) throw signal.reason;
      throw e instanceof PortwayError ? networkError(e) : e;
    }
    if (!isRedirect(c.code) || cur.redirect === 'manual') return responseOf(c, cur, hops > 0, type);
    if (cur.redirect === 'error') throw networkError(new Error('unexpected redirect'));
    const next = redirectOf(cur, c);
    if (next === null) return responseOf(c, cur, hops > 0, type);
    if (hops + 1 > MAX_REDIRECTS) throw networkError(new Error('redirect count exceeded'));
    if (next.url.origin !== req.url.origin) type = 'cors';
    cur = next;
  }
}

module.exports = { fetch, FetchResponse };
