'use strict';
// portway for Node: the package entry. The parts, one job each:
//   engine.js      the Engine class (submit, waiting for slots, http, close, introspection)
//   native.js      the N-API addon (build/portway.node) and the delivery of completions
//   errors.js      PortwayError, AbortError and the argument errors
//   validation.js  checks of options and payloads
//   http.js        HTTP request heads, registerHttp options, HttpResponse
//   fetch.js       Engine#fetch: WHATWG fetch over an http handler (redirects followed in JS)
//   batch.js       BatchResult: Engine#batch's results, columns over one buffer

const native = require('./native.js');
const { Engine } = require('./engine.js');
const { BatchResult } = require('./batch.js');
const { PortwayError, AbortError } = require('./errors.js');
const { HttpResponse } = require('./http.js');

module.exports = {
  Engine,
  PortwayError,
  AbortError,
  HttpResponse,
  BatchResult,
  version: native.version,
  abiVersion: native.abiVersion,
  statusStr: native.statusStr,
};
