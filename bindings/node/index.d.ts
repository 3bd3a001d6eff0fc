/// <reference types="node" />

export type StatusName =
  | 'PORTWAY_OK' | 'PORTWAY_INVALID_ARGUMENT' | 'PORTWAY_BUSY' | 'PORTWAY_SHUTDOWN' | 'PORTWAY_CLOSED'
  | 'PORTWAY_NOT_FOUND' | 'PORTWAY_UNKNOWN_HANDLER' | 'PORTWAY_TIMEOUT' | 'PORTWAY_CANCELLED'
  | 'PORTWAY_HANDLER_ERROR' | 'PORTWAY_PANIC' | 'PORTWAY_FORKED' | 'PORTWAY_PAYLOAD_TOO_LARGE'
  | 'PORTWAY_CONNECT_ERROR' | 'PORTWAY_TLS_ERROR' | 'PORTWAY_PROTOCOL_ERROR' | 'PORTWAY_BODY_TOO_LARGE'
  | 'PORTWAY_INTERNAL';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface EngineOptions {
  runtimeThreads?: number;
  poolWorkers?: number;
  maxInFlight?: number;
  defaultTimeoutMs?: number;
  maxPayload?: number;
  /** Engine events (start, shutdown, handler panics, connection failures, requests leaked past free, abandoned
   *  handlers), delivered asynchronously on the JS thread (`this` is undefined).
   *  Never keeps the event loop alive; `await close()` has delivered every event. A throw is
   *  an uncaught exception. */
  onLog?: (level: LogLevel, message: string) => void;
  /** Lowest level passed to `onLog` (default 'info'). */
  logLevel?: LogLevel;
}

export type Payload = Buffer | Uint8Array | ArrayBuffer | ArrayBufferView | string;

export interface SubmitOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface Completion {
  id: number;
  data: Buffer;
  code: number;
  meta: Array<[string, string]>;
  queuedNs: number;
  runNs: number;
}

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

export type InflightState = 'queued' | 'running' | 'ready' | 'unreleased';

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

export interface Inflight {
  /** All requests in flight, however many are listed. */
  total: number;
  /** Oldest first, at most `limit`. */
  requests: InflightRequest[];
}

export declare class PortwayError extends Error {
  name: 'PortwayError';
  code: StatusName | string;
  status: number;
  /** Set on completion errors: the request id. */
  requestId?: number;
  /** Set on submitMany rejections: the index of the failed request. */
  index?: number;
  /** Set when submitMany was only partly accepted (the accepted ones were cancelled). */
  accepted?: number;
}

export declare class AbortError extends Error {
  name: 'AbortError';
  code: 'ABORT_ERR';
}

export declare class Engine {
  constructor(opts?: EngineOptions);
  lookup(name: string | number): number;
  submit(handler: string | number, payload?: Payload, opts?: SubmitOptions): Promise<Completion>;
  submitMany(handler: string | number, payloads: Iterable<Payload>, opts?: SubmitOptions): Promise<Completion[]>;
  http(req: HttpRequest): Promise<HttpResponse>;
  pipeline(name: string, stages: Array<string | number>): number;
  setConcurrency(name: string | number, limit: number): void;
  /** Adds an http handler with its own pool and options; returns its id. */
  registerHttp(name: string, options?: HttpOptions): number;
  cancel(id: number): boolean;
  cancelAll(): void;
  stats(): Stats;
  /** Prometheus text exposition format. */
  metricsText(): string;
  handlerStats(name: string | number): HandlerStats;
  inflight(opts?: { limit?: number }): Inflight;
  close(opts?: { drain?: boolean; timeoutMs?: number }): Promise<void>;
}

export declare const version: string;
export declare const abiVersion: number;
export declare function statusStr(status: number): string;
