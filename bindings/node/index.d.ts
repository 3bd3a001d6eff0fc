/// <reference types="node" />

// <status-names> generated from include/portway.h by scripts/status-names.js: do not edit
export type StatusName =
  | 'PORTWAY_OK'
  | 'PORTWAY_INVALID_ARGUMENT'
  | 'PORTWAY_BUSY'
  | 'PORTWAY_SHUTDOWN'
  | 'PORTWAY_CLOSED'
  | 'PORTWAY_NOT_FOUND'
  | 'PORTWAY_UNKNOWN_HANDLER'
  | 'PORTWAY_TIMEOUT'
  | 'PORTWAY_CANCELLED'
  | 'PORTWAY_HANDLER_ERROR'
  | 'PORTWAY_PANIC'
  | 'PORTWAY_FORKED'
  | 'PORTWAY_PAYLOAD_TOO_LARGE'
  | 'PORTWAY_CONNECT_ERROR'
  | 'PORTWAY_TLS_ERROR'
  | 'PORTWAY_PROTOCOL_ERROR'
  | 'PORTWAY_BODY_TOO_LARGE'
  | 'PORTWAY_INTERNAL'
  | 'PORTWAY_BUFFER_TOO_SMALL'
  | 'PORTWAY_UNAVAILABLE';
// </status-names>

/** Level of an `onLog` event, and `logLevel`'s values. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** Engine configuration. Every number must be an integer in its range (else a TypeError or
 *  RangeError with code 'PORTWAY_INVALID_ARGUMENT'); an omitted one takes the library default. */
export interface EngineOptions {
  /** Tokio runtime threads, 0..1024 (0 = one per CPU). */
  runtimeThreads?: number;
  /** Native worker-pool threads, 0..1024 (0 = one per CPU). */
  poolWorkers?: number;
  /** Most requests accepted and not yet delivered, at least 1 (default 65536). */
  maxInFlight?: number;
  /** Deadline in ms of requests submitted without `timeoutMs` (0 = none, the default). */
  defaultTimeoutMs?: number;
  /** Largest payload in bytes, 1..2^53-1 (default 64 MiB). */
  maxPayload?: number;
  /** Engine events (start, shutdown, handler panics, connection failures, requests leaked past free, abandoned
   *  handlers), delivered asynchronously on the JS thread (`this` is undefined).
   *  Never keeps the event loop alive; `await close()` has delivered every event. A throw is
   *  an uncaught exception. */
  onLog?: (level: LogLevel, message: string) => void;
  /** Lowest level passed to `onLog` (default 'info'). */
  logLevel?: LogLevel;
}

/** Request bytes: binary data as is, a string as UTF-8. Nothing else is accepted. */
export type Payload = Buffer | Uint8Array | ArrayBuffer | ArrayBufferView | string;

/** Options of `submitMany`. */
export interface SubmitManyOptions {
  /** Deadline in ms, 1..2^32-1, counted from submit; omitted = the engine's default. 0 is refused. */
  timeoutMs?: number;
  /** Aborting rejects with `AbortError` at once and cancels the request(s). */
  signal?: AbortSignal;
}

/** Options of `submit`. */
export interface SubmitOptions extends SubmitManyOptions {
  /** When every in-flight slot is taken, wait up to this many ms (Infinity: no limit) for one,
   *  in submission order, instead of rejecting with PORTWAY_BUSY at once (the default, 0). */
  wait?: number;
}

/** A successful request's result. */
export interface Completion {
  id: number;
  data: Buffer;
  code: number;
  meta: Array<[string, string]>;
  queuedNs: number;
  runNs: number;
}

/** Options of `batch`. */
export interface BatchOptions {
  /** Each item's deadline in ms, 1..2^32-1, counted from submit; omitted = the engine's default. */
  timeoutMs?: number;
  /** Aborting rejects with `AbortError` at once and cancels every item not yet completed. */
  signal?: AbortSignal;
}

/**
 * The results of `Engine#batch`, in submit order; iterable over the items' Buffers. Item i's
 * Buffer is a slice of one data buffer (no copy per item). A failed item does not fail the
 * batch: `get(i)` (and iteration) throws its `PortwayError` (`index` = i); `status(i)`,
 * `failures()`, `ok` and `throwFirst()` tell what failed.
 */
export declare class BatchResult implements Iterable<Buffer> {
  private constructor();
  /** The number of items. */
  readonly length: number;
  /** True when every item's status is PORTWAY_OK. */
  readonly ok: boolean;
  /** Item i's response bytes; throws the item's PortwayError when it failed, a RangeError
   *  (code PORTWAY_INVALID_ARGUMENT) outside 0..length-1. */
  get(i: number): Buffer;
  /** Item i's status name. */
  status(i: number): StatusName;
  /** Item i's handler code: the HTTP status for http items, 0 when the handler sets none. */
  code(i: number): number;
  /** Item i's meta pairs in order (the response headers for http items). */
  headers(i: number): Array<[string, string]>;
  /** The PortwayError of item i (message from the engine, `index` = i), undefined when ok. */
  error(i: number): PortwayError | undefined;
  /** The indexes of the failed items, ascending. */
  failures(): number[];
  /** Throws the error of the first failed item; does nothing when every item is ok. */
  throwFirst(): void;
  [Symbol.iterator](): Iterator<Buffer>;
}

/** An outbound HTTP request for `Engine#http`. `url` must be absolute (http or https). */
export interface HttpRequest {
  method?: string;
  url: string | URL;
  headers?: Record<string, string> | Array<[string, string]> | Map<string, string>;
  body?: Payload;
  timeoutMs?: number;
  signal?: AbortSignal;
  /** The http handler to use (one added with registerHttp); default 'http'. */
  handler?: string;
}

/** `init` of `Engine#fetch`: fetch's own RequestInit (method, headers, body, signal, redirect,
 *  duplex) plus portway's fields. Fields fetch ignores in Node (mode, credentials, cache,
 *  referrer, ...) are ignored here too. */
export interface FetchInit extends RequestInit {
  /** Deadline in ms of the whole fetch, redirects included, 1..2^32-1 (default: the engine's
   *  `defaultTimeoutMs`). Passing it fails the fetch with a TypeError whose cause is a
   *  PortwayError with code 'PORTWAY_TIMEOUT'. */
  timeoutMs?: number;
  /** The http handler that sends the request: a name or id, default 'http' (the built-in).
   *  One added with registerHttp sets limits, proxy, CA, ...; it must keep `followRedirects`
   *  off (the default), since fetch follows redirects itself, by `redirect`. */
  handler?: string | number;
}

/** Options of registerHttp: portway_http_options in camelCase (defaults in the README). */
export interface HttpOptions {
  /** Connections per origin (HTTP/2 origins use one, shared); 0 = no limit. Default 256. */
  maxConnectionsPerHost?: number;
  /** Response head limit; HTTP/1 also one header line per 256 bytes, at least 256. Default 65536. */
  maxHeaderBytes?: number;
  /** Body limit (decoded size when decompressing); 0 = none. Default 64 MiB. */
  maxBodyBytes?: number;
  /** DNS + TCP + TLS handshake limit; 0 = none. Default 10000. */
  connectTimeoutMs?: number;
  /** Longest silence while waiting for the head or between body pieces; 0 = none. Default 30000. */
  readTimeoutMs?: number;
  /** Idle keep-alive lifetime; 0 = no limit. Default 90000. */
  poolIdleTimeoutMs?: number;
  /** Follow 3xx redirects. Default false. */
  followRedirects?: boolean;
  /** Most redirects followed. Default 10. */
  maxRedirects?: number;
  /** Retries of idempotent requests after connect errors and 502/503/504. Default 0. */
  retries?: number;
  /** First retry delay, doubled each time. Default 100. */
  retryBaseBackoffMs?: number;
  /** User-Agent when the request has none; '' = none. Default 'portway/<version>'. */
  userAgent?: string;
  /** h2c on http://, only h2 on https://. Default false. */
  http2PriorKnowledge?: boolean;
  /** Only http/1.1 in ALPN. Default false. */
  http1Only?: boolean;
  /** Ask for and decode gzip, br, zstd, deflate. Default true. */
  decompress?: boolean;
  /** Trust only the bundled roots, not the platform store. Default false. */
  bundledRootsOnly?: boolean;
  /** A PEM file of extra CA certificates. */
  extraCaPemPath?: string;
  /** Forward proxy: unset = environment (curl's rules), '' = none, or 'http://user:pw@host:port'. */
  proxy?: string;
  /** No certificate verification (tests only). Default false. */
  dangerAcceptInvalidCerts?: boolean;
}

/** The response of `Engine#http` (any HTTP status, 404 included, is a response). */
export declare class HttpResponse {
  status: number;
  headers: Array<[string, string]>;
  /** 'HTTP/1.1', 'HTTP/2' (or 'HTTP/1.0'): the version the response came with. */
  httpVersion: string;
  body: Buffer;
  id: number;
  queuedNs: number;
  runNs: number;
  header(name: string): string | undefined;
  text(): string;
  json(): any;
}

/** Engine counters (`portway_stats`). */
/**
 * A handler's policies (`portway_policy` in camelCase), all set at once by `setPolicy`;
 * an option left out is off (or its default).
 */
export interface PolicyOptions {
  /** Hard cap on calls running at once; 0 = none (the same as `setConcurrency`). With
   * `adaptive`, the adaptive limit's ceiling; 0 = 1000. */
  maxConcurrency?: number;
  /** A latency-driven concurrency limit between `minConcurrency` and `maxConcurrency`: it
   * grows while the calls' latency holds at its baseline and shrinks as it rises (the
   * algorithm: `portway_policy.adaptive` in portway.h); `policyState().concurrencyLimit` is
   * its live figure. Refused on a pipeline. */
  adaptive?: boolean;
  /** Floor of the adaptive limit (0 = 1); at most its ceiling; above 1 only with `adaptive`. */
  minConcurrency?: number;
  /** Token bucket refill, calls per second; 0 = no rate limit. A request whose token comes
   * after its deadline fails PORTWAY_TIMEOUT at once. */
  ratePerS?: number;
  /** Token bucket size; 0 = max(1, ratePerS). */
  burst?: number;
  /** Hedging: a request still running after this many ms gets a second call with the same
   * payload; the first success completes it (an http response's headers then begin with
   * `portway-hedge: won`) and the other call is cancelled. 0 = no fixed delay. Only requests
   * safe to repeat are hedged (http GET, HEAD, OPTIONS, PUT, DELETE; never POST); hedging
   * echo, sleep or a pipeline is refused with PORTWAY_INVALID_ARGUMENT. */
  hedgeAfterMs?: number;
  /** Hedge after the handler's recent 95th percentile instead (hedgeAfterMs until 20 calls
   * were seen). */
  hedgeAfterP95?: boolean;
  /** Hedges at most this % of the requests that can be hedged (0 = 5; at most 100). */
  hedgeBudgetPercent?: number;
  /** Consecutive failures that open the circuit breaker; 0 = off. While open, requests
   * fail PORTWAY_UNAVAILABLE without running. */
  breakerFailures?: number;
  /** How long the breaker stays open before one trial request, in ms (0 = 5000). */
  breakerCooldownMs?: number;
}

/** The live figures of a handler's policies (`portway_policy_state`). */
export interface PolicyState {
  /** The concurrency limit in force (0 = none); with `adaptive`, its live figure. */
  concurrencyLimit: number;
  running: number;
  /** Requests waiting for a slot or a token. */
  waiting: number;
  tokens: number;
  /** The worst of the handler's breakers (http: one per origin): open if any is. */
  breakerState: 'closed' | 'open' | 'half-open';
  /** Consecutive failures counted while closed (http: the most of any origin's breaker). */
  breakerFailures: number;
  /** Breakers open or half-open: origins for an http handler (one breaker per origin), else 0 or 1. */
  breakerOpen: number;
  breakerTrips: number;
  /** Requests refused with PORTWAY_UNAVAILABLE. */
  breakerRejected: number;
  /** Requests failed PORTWAY_TIMEOUT by the rate limit: their token, plus the handler's recent
   * run time, came after their deadline. */
  rateTimeouts: number;
  /** Hedges started: second calls of requests slower than the hedge delay. */
  hedgesStarted: number;
  /** Hedges whose success completed their request. */
  hedgesWon: number;
  /** Calls cancelled because the other call of their request succeeded first. */
  hedgesCancelled: number;
  /** Hedges not started because the concurrency limit had no free slot (a hedge holds one). */
  hedgesSkipped: number;
}

export interface Stats {
  submitted: number;
  accepted: number;
  rejectedBusy: number;
  rejectedShutdown: number;
  rejectedInvalid: number;
  inFlight: number;
  queued: number;
  running: number;
  ready: number;
  unreleased: number;
  poolWorkers: number;
  completed: Record<StatusName, number>;
}

/** Latency of one handler, in nanoseconds. Numbers: exact up to 2^53 (sumNs ~104 days). */
export interface Latency {
  p50Ns: number;
  p90Ns: number;
  p99Ns: number;
  maxNs: number;
  sumNs: number;
  count: number;
}

export interface HandlerStats {
  id: number;
  submitted: number;
  /** Completions by status name; only the nonzero ones are present. */
  completed: Partial<Record<StatusName, number>>;
  queueWait: Latency;
  run: Latency;
}

/** Where a request in flight is. */
export type InflightState = 'queued' | 'running' | 'ready' | 'unreleased';

/** One entry of `Engine#inflight`. */
export interface InflightRequest {
  id: number;
  /** The addon's own tag (promise slot << 32 | index within submitMany), not a user value. */
  userData: number;
  handler: string;
  stage: number;
  stageHandler: string;
  state: InflightState;
  ageMs: number;
}

/** The result of `Engine#inflight`. */
export interface Inflight {
  /** All requests in flight, however many are listed. */
  total: number;
  /** Oldest first, at most `limit`. */
  requests: InflightRequest[];
}

/** A refused call or a failed request. Bad arguments are instead a TypeError or RangeError
 *  whose `code` is 'PORTWAY_INVALID_ARGUMENT' (see `InvalidArgumentError`). */
export declare class PortwayError extends Error {
  name: 'PortwayError';
  code: StatusName | 'PORTWAY_UNKNOWN_STATUS';
  status: number;
  /** Set on completion errors: the request id. */
  requestId?: number;
  /** Set on submitMany rejections: the index of the failed request. */
  index?: number;
  /** Set when submitMany was only partly accepted (the accepted ones were cancelled). */
  accepted?: number;
}

/** The shape of the TypeError/RangeError thrown for bad input (no coercion is attempted). */
export type InvalidArgumentError = (TypeError | RangeError) & { code: 'PORTWAY_INVALID_ARGUMENT'; status: 1 };

/** Rejection of an aborted request; `cause` is the signal's reason. */
export declare class AbortError extends Error {
  name: 'AbortError';
  code: 'ABORT_ERR';
}

/** One portway engine: its own threads, queues and handlers. */
export declare class Engine {
  constructor(opts?: EngineOptions);
  /** The id of a handler name (PortwayError PORTWAY_NOT_FOUND if unknown); a number is returned as is. */
  lookup(name: string | number): number;
  /** One request; never throws: a refused submit is a rejected promise. */
  submit(handler: string | number, payload?: Payload, opts?: SubmitOptions): Promise<Completion>;
  /** One batch, all or nothing: the completions in order, or the first failure (`index`). */
  submitMany(handler: string | number, payloads: Iterable<Payload>, opts?: SubmitManyOptions): Promise<Completion[]>;
  /** Every payload to one handler as one batch (split into native batches as needed): a
   *  BatchResult once every item completed, whatever their statuses. Rejects when the batch is
   *  refused (PORTWAY_BUSY, ...) or aborted; never throws synchronously. All or nothing for a
   *  list that fits in one part; a later part's refusal (PORTWAY_SHUTDOWN after close(), ...)
   *  rejects after the earlier parts ran. */
  batch(handler: string | number, payloads: Iterable<Payload>, opts?: BatchOptions): Promise<BatchResult>;
  /** Outbound HTTP through the "http" handler. */
  http(req: HttpRequest): Promise<HttpResponse>;
  /** WHATWG fetch through an http handler: a global Response for every HTTP status (its body
   *  already in memory); a network error rejects with TypeError('fetch failed') whose `cause`
   *  is the PortwayError, an abort with the signal's reason (see the README's "fetch"). */
  fetch(input: string | URL | Request, init?: FetchInit): Promise<Response>;
  /** Registers a pipeline of stages (handler names or ids); returns its id. */
  pipeline(name: string, stages: Array<string | number>): number;
  /** At most `limit` calls of the handler run at once (0 = no limit). */
  setConcurrency(name: string | number, limit: number): void;
  /** Sets every policy of the handler at once; invalid settings change nothing. */
  setPolicy(name: string | number, options?: PolicyOptions): void;
  /** The live figures of the handler's policies. */
  policyState(name: string | number): PolicyState;
  /** Adds an http handler with its own pool and options; returns its id. */
  registerHttp(name: string, options?: HttpOptions): number;
  /** Cancels request `id` (an integer 0..2^53-1); true if it was still in flight. */
  cancel(id: number): boolean;
  /** Cancels every request in flight. */
  cancelAll(): void;
  /** A snapshot of the engine's counters. */
  stats(): Stats;
  /** Prometheus text exposition format. */
  metricsText(): string;
  /** Counts and latency percentiles of one handler. */
  handlerStats(name: string | number): HandlerStats;
  /** Requests in flight, oldest first, at most `limit` (default 100). */
  inflight(opts?: { limit?: number }): Inflight;
  /** Shuts down (drain, or cancel with `drain: false`; `timeoutMs` is the drain deadline,
   *  default 5000, 0 = none), waits for every completion, frees the engine. Idempotent. */
  close(opts?: { drain?: boolean; timeoutMs?: number }): Promise<void>;
}

/** The library version, e.g. "0.1.0". */
export declare const version: string;
/** The C ABI version of the library. */
export declare const abiVersion: number;
/** The name of a status value, e.g. statusStr(2) === 'PORTWAY_BUSY'. */
export declare function statusStr(status: number): string;
