'use strict';
// eng.fetch(input, init): the WHATWG fetch() shape over a portway http handler, so code written
// for Node's global fetch (undici) moves over by swapping one name. The request goes out as
// one portway http payload per hop; redirects are followed here, by the Fetch standard's rules,
// because the core follows them only per handler (at registration) and fetch needs a mode per
// request. The response body is in memory when the promise resolves (the handler delivers whole
// bodies), and the Response is a real global Response built from it.

const { STATUS_CODES } = require('node:http');

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

const REDIRECT_MODES = new Set(['follow', 'manual', 'error']);

let PortwayError; // from ./index.js, required lazily (index.js requires this file)

/** A Response whose `url`, `redirected` and `type` are those of a fetched response (a
 *  constructed Response has url '', redirected false and type 'default', all read-only). */
class FetchResponse extends Response {
  #url;
  #redirected;
  #type;
  #bytes;
  #init;

  constructor(bytes, init, url, redirected, type) {
    super(bytes, init);
    this.#bytes = bytes;
    this.#init = init;
    this.#url = url;
    this.#redirected = redirected;
    this.#type = type;
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

  /** A copy that keeps url/redirected/type (Response#clone would return a plain Response).
   *  The body is the same immutable bytes, so no tee is needed. */
  clone() {
    if (this.bodyUsed || (this.body !== null && this.body.locked)) {
      throw new TypeError('Response.clone: Body has already been consumed.');
    }
    return new FetchResponse(this.#bytes, this.#init, this.#url, this.#redirected, this.#type);
  }
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

/** The request URL: absolute, http or https, no credentials (as fetch requires). */
function urlOf(input) {
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
 *  or a promise of it when the body must be read first (a Request's, a Blob, a stream). */
function requestOf(input, init) {
  if (init !== undefined && (init === null || typeof init !== 'object')) {
    throw new TypeError('fetch: init must be an object');
  }
  const o = init === undefined ? {} : init;
  if (input instanceof Request) {
    const r = init === undefined ? input : new Request(input, init);
    const req = {
      url: urlOf(r.url), method: r.method, headers: new Headers(r.headers), body: null, stream: false,
      redirect: r.redirect, signal: r.signal,
    };
    if (r.body === null) return req;
    return r.arrayBuffer().then((ab) => ({ ...req, body: new Uint8Array(ab) }));
  }
  if (typeof input !== 'string' && !(input instanceof URL)) {
    // fetch stringifies any other input (an object with toString, ...), as the URL parser does.
    input = String(input);
  }
  const url = urlOf(input);
  const method = o.method === undefined ? 'GET' : methodOf(o.method);
  const headers = new Headers(o.headers);
  const redirect = o.redirect === undefined ? 'follow' : o.redirect;
  if (!REDIRECT_MODES.has(redirect)) {
    throw new TypeError(`fetch: redirect must be 'follow', 'manual' or 'error' (got ${JSON.stringify(String(redirect))})`);
  }
  const signal = o.signal === undefined || o.signal === null ? undefined : o.signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw new TypeError('fetch: signal must be an AbortSignal');
  const req = { url, method, headers, body: null, stream: false, redirect, signal };
  if (o.body === undefined || o.body === null) return req;
  if (method === 'GET' || method === 'HEAD') throw new TypeError('Request with GET/HEAD method cannot have body.');
  const withBody = (b) => {
    if (b.type !== null && !headers.has('content-type')) headers.set('content-type', b.type);
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
  let head = `${req.method} ${withoutFragment(req.url)} HTTP/1.1\r\n`;
  let accept = false;
  for (const [k, v] of req.headers) {
    if (k === 'content-length' || k === 'host' || k === 'transfer-encoding') continue;
    if (k === 'accept') accept = true;
    head += `${k}: ${v}\r\n`;
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
  if (status < 200 || status > 599) {
    // Response cannot represent these; only a broken server sends them as a final status.
    throw networkError(new Error(`invalid HTTP status ${status} from ${req.url.origin}`));
  }
  const meta = c.meta;
  let version = '';
  let n = meta.length;
  if (n > 0 && meta[n - 1][0] === ':http-version') {
    version = meta[n - 1][1];
    n--;
  }
  const headers = new Headers();
  for (let i = 0; i < n; i++) headers.append(meta[i][0], meta[i][1]);
  // The handler does not report the reason phrase: HTTP/1.x gets the standard one (what Node's
  // http server sends unless told otherwise), HTTP/2 has none.
  const statusText = version === 'HTTP/2' ? '' : STATUS_CODES[status] || '';
  const nullBody = req.method === 'HEAD' || NULL_BODY_STATUSES.has(status);
  return new FetchResponse(nullBody ? null : c.data, { status, statusText, headers }, withoutFragment(req.url), redirected, type);
}

/** The request for the next hop after a redirect response `res` to `req`, following the
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
  const headers = new Headers(req.headers);
  if (((status === 301 || status === 302) && method === 'POST') || (status === 303 && method !== 'GET' && method !== 'HEAD')) {
    method = 'GET';
    body = null;
    for (const h of BODY_HEADERS) headers.delete(h);
  } else if (body !== null && req.stream) {
    // Node's fetch cannot replay a stream body either.
    throw networkError(new Error('Cannot follow a redirect with a streamed request body'));
  }
  if (next.origin !== req.url.origin) for (const h of CROSS_ORIGIN_DROPPED) headers.delete(h);
  return { ...req, url: next, method, headers, body };
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
  PortwayError ??= require('./index.js').PortwayError;
  // Until the first await all runs synchronously: a body given as bytes is in the payload
  // (copied) before fetch() returns.
  let req = requestOf(input, init);
  if (req instanceof Promise) req = await req;
  if (req.url.protocol !== 'http:' && req.url.protocol !== 'https:') {
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
      c = await eng.submit(handler, payload, { timeoutMs: t, signal });
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
