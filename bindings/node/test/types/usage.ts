// Compiled (never run) by test/types.test.js with `tsc --strict --noEmit`: every public API
// used as documented type-checks, and each `@ts-expect-error` line is a misuse the types refuse.
import {
  Engine, PortwayError, AbortError, HttpResponse, StatusName, Completion, Stats, HandlerStats,
  Inflight, InvalidArgumentError, SubmitOptions, FetchInit, PolicyState, version, abiVersion,
  statusStr, BatchResult, BatchOptions,
} from '../../index';

async function main(): Promise<void> {
  const eng = new Engine({ runtimeThreads: 1, poolWorkers: 1, maxInFlight: 8, defaultTimeoutMs: 0,
    maxPayload: 1 << 20, logLevel: 'warn', onLog: (level, message) => console.log(level, message.length) });
  const c: Completion = await eng.submit('echo', Buffer.from('hi'), { timeoutMs: 100 });
  const id: number = c.id;
  const waiting: SubmitOptions = { wait: 50, signal: new AbortController().signal };
  await eng.submit(eng.lookup('echo'), 'text', waiting);
  await eng.submit('echo', new Uint8Array(2), { wait: Infinity });
  const many: Completion[] = await eng.submitMany('echo', [Buffer.alloc(1), 'b', new ArrayBuffer(2)]);
  const bopts: BatchOptions = { timeoutMs: 100, signal: AbortSignal.timeout(1000) };
  const br: BatchResult = await eng.batch('echo', new Set<string | Buffer>(['a', Buffer.alloc(1)]), bopts);
  for (const item of br) console.log(item.byteLength);
  const st: StatusName = br.status(0);
  const failed: number[] = br.failures();
  const first: Buffer = br.get(0);
  const hdrs: Array<[string, string]> = br.headers(0);
  const berr: PortwayError | undefined = br.error(0);
  if (!br.ok) br.throwFirst();
  console.log(br.length, br.code(0), st, failed, first, hdrs, berr);
  const r: HttpResponse = await eng.http({ url: new URL('http://127.0.0.1/'), headers: { a: 'b' } });
  const h: string | undefined = r.header('content-type');
  const init: FetchInit = { method: 'POST', headers: [['a', 'b']], body: new URLSearchParams('a=1'),
    redirect: 'manual', signal: AbortSignal.timeout(100), timeoutMs: 100, handler: 'http' };
  const fr: Response = await eng.fetch('http://127.0.0.1/', init);
  await eng.fetch(new URL('http://127.0.0.1/'), { headers: new Headers({ a: 'b' }), handler: 0 });
  const fj: unknown = await (await eng.fetch(new Request('http://127.0.0.1/'))).json();
  // The one-line swap: eng.fetch where a fetch function is expected.
  const f: (input: string | URL | Request, init?: FetchInit) => Promise<Response> = eng.fetch.bind(eng);
  console.log(fr.status, fr.url, fr.redirected, fr.headers.get('a'), fj, f);
  eng.pipeline('p', ['echo', 1]);
  eng.setConcurrency('echo', 2);
  eng.setPolicy('echo', { maxConcurrency: 4, ratePerS: 100, burst: 10, breakerFailures: 5, breakerCooldownMs: 1000 });
  eng.setPolicy('echo', { adaptive: true, minConcurrency: 2, maxConcurrency: 200 });
  const ps: PolicyState = eng.policyState('echo');
  const breakerOpen: boolean = ps.breakerState === 'open' && ps.tokens >= 0 && ps.breakerOpen >= 0;
  // @ts-expect-error unknown policy option
  eng.setPolicy('echo', { ratePerSecond: 5 });
  console.log(breakerOpen);
  const cancelled: boolean = eng.cancel(id);
  const s: Stats = eng.stats();
  const busy: number = s.completed.PORTWAY_BUFFER_TOO_SMALL + s.completed.PORTWAY_BUSY;
  const hs: HandlerStats = eng.handlerStats('echo');
  const p50: number = hs.run.p50Ns;
  const inf: Inflight = eng.inflight({ limit: 10 });
  const text: string = eng.metricsText();
  await eng.close({ drain: false, timeoutMs: 100 });
  console.log(many.length, h, cancelled, busy, p50, inf.total, text.length, version, abiVersion, statusStr(0));

  try {
    await eng.submit('echo');
  } catch (e) {
    if (e instanceof PortwayError) {
      const code: StatusName | 'PORTWAY_UNKNOWN_STATUS' = e.code;
      const st: number = e.status;
      console.log(code, st, e.requestId, e.index, e.accepted);
    } else if (e instanceof AbortError) {
      const abort: 'ABORT_ERR' = e.code;
      console.log(abort);
    } else if (e instanceof TypeError || e instanceof RangeError) {
      const bad = e as InvalidArgumentError;
      const invalid: 'PORTWAY_INVALID_ARGUMENT' = bad.code;
      console.log(invalid, bad.status);
    }
  }

  const every: StatusName[] = ['PORTWAY_OK', 'PORTWAY_BUFFER_TOO_SMALL', 'PORTWAY_INTERNAL'];
  // @ts-expect-error: not a status
  const nope: StatusName = 'PORTWAY_NOPE';
  // @ts-expect-error: payloads are bytes or strings
  await eng.submit('echo', 5);
  // @ts-expect-error: batch has no wait option
  await eng.batch('echo', ['x'], { wait: 10 });
  // @ts-expect-error: BatchResult is made by batch() only
  new BatchResult();
  // @ts-expect-error: submitMany has no wait option
  await eng.submitMany('echo', ['x'], { wait: 10 });
  // @ts-expect-error: a misspelt option
  new Engine({ maxInflight: 1 });
  // @ts-expect-error: redirect is 'follow', 'manual' or 'error'
  await eng.fetch('http://127.0.0.1/', { redirect: 'never' });
  // @ts-expect-error: timeoutMs is a number
  await eng.fetch('http://127.0.0.1/', { timeoutMs: '5' });
  // @ts-expect-error: logLevel is one of four names
  new Engine({ logLevel: 'verbose' });
  console.log(every, nope);
}

void main();
