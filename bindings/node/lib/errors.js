'use strict';
// The error classes of the Node binding, and the shape of its argument errors.

/** An error from portway: `.code` is the status name, e.g. 'PORTWAY_BUSY'. */
class PortwayError extends Error {
  constructor(message, code, status) {
    super(message);
    this.name = 'PortwayError';
    this.code = code;
    this.status = status;
  }
}

/** Rejection of an aborted request: `name === 'AbortError'`, `cause` = the signal's reason. */
class AbortError extends Error {
  constructor(message = 'The operation was aborted', options) {
    super(message, options);
    this.name = 'AbortError';
    this.code = 'ABORT_ERR';
  }
}

const INVALID_ARGUMENT = 1; // PORTWAY_INVALID_ARGUMENT

/** A TypeError or RangeError for bad input, carrying `code` 'PORTWAY_INVALID_ARGUMENT' and
 *  `status` 1 like the addon's own argument errors (README "Errors"). */
function invalidArg(Ctor, message, cause) {
  const e = new Ctor(message, cause === undefined ? undefined : { cause });
  e.code = 'PORTWAY_INVALID_ARGUMENT';
  e.status = INVALID_ARGUMENT;
  return e;
}

/** The AbortError for a request stopped by `signal`. */
function abortError(signal) {
  return new AbortError('The operation was aborted', { cause: signal.reason });
}

module.exports = { PortwayError, AbortError, invalidArg, abortError };
