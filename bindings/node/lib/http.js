'use strict';
// Outbound HTTP over the "http" handler: the request head the handler parses, the options of
// registerHttp, and the response object.

const { invalidArg } = require('./errors.js');
const { toBytes } = require('./validation.js');

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

/** Checks registerHttp's options: known keys, each of its kind (undefined/null = default). */
function checkHttpOptions(options) {
  if (options === null || typeof options !== 'object') throw invalidArg(TypeError, 'options must be an object');
  for (const [k, v] of Object.entries(options)) {
    const kind = HTTP_OPTIONS[k];
    if (kind === undefined) {
      throw invalidArg(TypeError, `unknown http option ${k}; known: ${Object.keys(HTTP_OPTIONS).join(', ')}`);
    }
    if (v === undefined || v === null) continue;
    const ok = kind === 'u32' ? Number.isInteger(v) && v >= 0 && v <= 0xffffffff
      : kind === 'u64' ? Number.isSafeInteger(v) && v >= 0
        : typeof v === kind;
    if (!ok) throw invalidArg(TypeError, `http option ${k} must be ${kind === 'u32' || kind === 'u64' ? 'a non-negative integer' : `a ${kind}`}`);
  }
}

/** The payload the http handler takes: an HTTP/1.1 request head with an absolute URL, then the
 *  body. Checks the URL (absolute http(s)), the method and the headers (RFC 9110 tokens, no
 *  CR/LF/NUL in values); adds Host and Content-Length unless given. */
function requestPayload(method, url, headers, body) {
  if (typeof url !== 'string' && !(url instanceof URL)) throw invalidArg(TypeError, 'url must be a string or URL');
  let u;
  try {
    u = new URL(url);
  } catch (e) {
    // Relative or malformed: PORTWAY_INVALID_ARGUMENT, as in Python and C (README).
    throw invalidArg(TypeError, `url must be an absolute http(s) URL (got ${JSON.stringify(String(url))})`, e);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw invalidArg(TypeError, `unsupported URL scheme ${u.protocol}`);
  if (typeof method !== 'string' || !TOKEN.test(method)) throw invalidArg(TypeError, 'invalid method');
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
      throw invalidArg(TypeError, `invalid header name ${JSON.stringify(key)}: a name must be a non-empty RFC 9110 token (letters, digits and !#$%&'*+-.^_\`|~)`);
    }
    if (/[\r\n\0]/.test(val)) throw invalidArg(TypeError, `invalid value for header ${JSON.stringify(key)}: CR, LF and NUL are not allowed`);
    const lk = key.toLowerCase();
    if (lk === 'host') hasHost = true;
    if (lk === 'content-length' || lk === 'transfer-encoding') hasLength = true;
    head += `${key}: ${val}\r\n`;
  }
  if (!hasHost) head = head.replace('\r\n', `\r\nHost: ${u.host}\r\n`);
  if (bodyBytes && !hasLength) head += `Content-Length: ${bodyBytes.length}\r\n`;
  head += '\r\n';
  return bodyBytes ? Buffer.concat([Buffer.from(head, 'latin1'), bodyBytes]) : Buffer.from(head, 'latin1');
}

class HttpResponse {
  constructor(c) {
    this.status = c.code;
    // The handler reports the HTTP version as the last meta pair, ':http-version'; it is
    // taken off the completion's own array (nothing else reads it) rather than copying the rest.
    const meta = c.meta;
    const n = meta.length;
    if (n > 0 && meta[n - 1][0] === ':http-version') {
      this.httpVersion = meta[n - 1][1];
      meta.pop();
    } else {
      this.httpVersion = '';
    }
    this.headers = meta;
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

  /** The body decoded as UTF-8. */
  text() {
    return this.body.toString('utf8');
  }

  /** The body parsed as JSON. */
  json() {
    return JSON.parse(this.text());
  }
}

module.exports = { checkHttpOptions, requestPayload, HttpResponse };
