//! Per-handler policies from C: `portway_policy`, its defaults, setting it on a handler and
//! reading the live figures back.

use std::time::Duration;

use super::engine::portway_engine;
use super::guard::{Castable, guard, require_out, write_out};
use crate::engine::{HedgeSettings, PolicySettings};
use crate::error::{Error, Result};
use crate::status::portway_status;

/// `portway_policy_state.breaker_state`: requests run; failures are counted.
pub const PORTWAY_BREAKER_CLOSED: u32 = 0;
/// `portway_policy_state.breaker_state`: requests complete `PORTWAY_UNAVAILABLE` at once.
pub const PORTWAY_BREAKER_OPEN: u32 = 1;
/// `portway_policy_state.breaker_state`: the cooldown has passed; the next call (or the one
/// running) is the trial that closes or reopens the breaker.
pub const PORTWAY_BREAKER_HALF_OPEN: u32 = 2;

/// Default `breaker_cooldown_ms` (and what 0 means).
const DEFAULT_BREAKER_COOLDOWN_MS: u32 = 5000;
/// Default `hedge_budget_percent` (and what 0 means).
const DEFAULT_HEDGE_BUDGET_PERCENT: u32 = 5;

/// What stands between a handler's requests and the handler. Fill it with
/// `portway_policy_default`, change what you need, and pass it to `portway_handler_set_policy`.
/// Each policy is off at its zero value, and a zero-filled struct is the same as the defaults
/// (every zero that has a default means it). Settings out of range, or that the handler cannot
/// take, are refused with `PORTWAY_INVALID_ARGUMENT` and change nothing.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct portway_policy {
    /// Hard cap on calls running at once; 0 = none. Same as `portway_handler_set_concurrency`.
    /// Calls beyond it wait in FIFO order without holding a thread. With `adaptive`, the
    /// ceiling of the adaptive limit; 0 = 1000.
    pub max_concurrency: u32,
    /// A latency-driven concurrency limit between `min_concurrency` and `max_concurrency`
    /// (0 = 1000), in the spirit of Netflix's Gradient2; calls beyond it wait as for a fixed
    /// limit, and `portway_policy_state.concurrency_limit` shows its live figure. It starts at
    /// 20 (within the bounds). Each call that succeeds (for `http`: any response but a 5xx) or
    /// times out is a latency sample, from the moment it gets its slot to its end; other
    /// failures are not (a refused connection is fast because nothing ran). Samples are
    /// grouped in windows of max(10, limit) calls; when one closes:
    /// `short` = the window's mean latency; `long` = the baseline, an exponential average of
    /// `short` over about 600 windows (a plain mean over the first 10), decayed 5 % per window
    /// while above twice `short`; `gradient` = clamp(long / short, 0.5, 1);
    /// `limit` = 0.8 * limit + 0.2 * (limit * gradient + sqrt(limit)), within the bounds.
    /// So the limit grows while latency stays at the baseline and settles where the extra
    /// calls only queue (latency about 1 + 1/sqrt(limit) times the baseline). It starts in a
    /// slow start, as TCP does: while a window's latency stays within 1 + 1/sqrt(limit) of the
    /// baseline, the limit grows 20 % per window instead; the first window above ends it for
    /// good. A window in
    /// which fewer than half the limit's calls ran at once does not move it (the caller was
    /// the bottleneck). No tuning is needed or offered. Setting a policy again with `adaptive`
    /// keeps the learned limit (clamped to the new bounds); turning it off forgets it. While
    /// it is on, `portway_handler_set_concurrency` sets its ceiling. Not accepted on a
    /// pipeline: set it on its stages.
    pub adaptive: bool,
    /// Floor of the adaptive limit (0 = the default, 1); at most the ceiling. Must be 0 or 1
    /// without `adaptive`.
    pub min_concurrency: u32,
    /// Token bucket refill in requests per second (fractions allowed, at most 1e9); 0 = no
    /// rate limit. Each call takes one token; calls without one wait in FIFO order without
    /// holding a thread. A request that has to wait is judged on when it would finish: if its
    /// token, plus the time the handler's recent runs took (their smoothed mean plus four mean
    /// deviations, as TCP times retransmissions), comes after its deadline, it completes
    /// `PORTWAY_TIMEOUT` at once; a waiter whose turn comes too close to its deadline for a
    /// run completes `PORTWAY_TIMEOUT` then. Neither takes a token, so under overload the
    /// tokens go to requests that can still finish in time. A request that finds a token and
    /// nobody waiting always runs.
    pub rate_per_s: f64,
    /// Token bucket size: how many calls may start at once after a quiet spell. 0 = the
    /// default, `max(1, rate_per_s)`. Must be 0 when `rate_per_s` is 0. The bucket starts full.
    pub burst: u32,
    /// Hedging: when a call has not finished after this many ms, start a second call of the
    /// same request (same payload) and keep the first `PORTWAY_OK`; the slower call is
    /// cancelled (an `http` request is dropped, a native call sees `portway_call_is_cancelled`
    /// turn true). 0 = no fixed delay (the default). Only requests safe to repeat are hedged:
    /// `http` GET, HEAD, OPTIONS, PUT and DELETE (never POST or PATCH: accepted, not hedged), and
    /// native handlers registered with `PORTWAY_HANDLER_IDEMPOTENT`; hedging any other handler
    /// (echo, sleep, a pipeline, a native handler without the flag) is refused. A failed call
    /// waits for the other; when both fail, the later failure completes the request. A call
    /// that fails before the delay is not retried. Under a concurrency limit the hedge holds a
    /// slot while it runs (it is one more call at once, as Envoy counts hedges against
    /// `max_requests`): only one free when the delay passes (it never waits, nor passes a
    /// request waiting for a slot), else it is skipped (`hedges_skipped`) and the first call
    /// runs on alone. It takes no rate token (`hedge_budget_percent` bounds the extra calls over
    /// time, the limit those at once), never hedges the breaker's half-open trial, and cancel,
    /// the deadline and shutdown end both calls. A completion a
    /// hedge won carries the meta pair `portway-hedge: won` as its first pair (for `http`,
    /// before the response headers). A pipeline's completion carries it once when a hedge
    /// won any of its stages (also when a later stage failed; not on a completion by cancel,
    /// the deadline or shutdown).
    pub hedge_after_ms: u32,
    /// Hedge after the handler's live 95th percentile instead: the p95 of its last 128
    /// hedgeable requests' latency, each measured from the call's start to the outcome that
    /// completed it (the winner's, first call or hedge) when that was `PORTWAY_OK` or a
    /// timeout; a request its deadline cut off counts the time it ran. Other failures (a
    /// refused connection is fast because nothing ran) and cancelled requests are no sample.
    /// A request ends after the delay exactly when its first call does (the hedge starts only
    /// then), so this p95 settles where 5 % of first calls are slower, the first calls' own p95
    /// ("The Tail at Scale"), however often hedges win. Until 20 samples were seen,
    /// `hedge_after_ms` is the delay (0: nothing is hedged yet).
    pub hedge_after_p95: bool,
    /// Hedges at most this % of the requests that can be hedged (0 = the default, 5; at most
    /// 100): each such request earns pct/100 of a hedge, a hedge spends one, and at most
    /// `max(1, pct)` are banked (one when the policy is set), so over any n such requests at
    /// most `max(1, pct) + n * pct / 100` hedges start.
    pub hedge_budget_percent: u32,
    /// Consecutive failed calls that open the circuit breaker; 0 = off (the default). While
    /// open, requests complete `PORTWAY_UNAVAILABLE` at once without running. Failures are
    /// `PORTWAY_HANDLER_ERROR`, `PORTWAY_PANIC`, `PORTWAY_CONNECT_ERROR`, `PORTWAY_TLS_ERROR`,
    /// `PORTWAY_PROTOCOL_ERROR` and `PORTWAY_TIMEOUT`, and for `http` a 5xx response; a
    /// `PORTWAY_OK` outcome is a success and resets the count; other statuses (a cancellation,
    /// `PORTWAY_BODY_TOO_LARGE`, ...) count as neither. One breaker per handler, and for
    /// `http` one per origin (scheme, host, port): an origin's breaker opens on its own
    /// failures and refuses only requests to that origin (the `PORTWAY_UNAVAILABLE` message
    /// and the log lines name it), with its own half-open trial. A redirect to another origin
    /// does not change which breaker judges the run: the origin the request names does. An
    /// http handler keeps a state only for origins with failures counted or open (at most
    /// 1024; past that, closed ones are forgotten first, then the one open longest).
    /// Not accepted on a pipeline: set it on its stages.
    pub breaker_failures: u32,
    /// How long the breaker stays open, in ms (0 = the default, 5000).
    /// Then it is half-open: the next call runs as a trial while others are still refused; its
    /// success closes the breaker, its failure opens it for another cooldown. The log hook
    /// reports each opening (warning) and closing (info).
    pub breaker_cooldown_ms: u32,
}

/// The live figures of a handler's policies (`portway_handler_policy_state`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct portway_policy_state {
    /// The concurrency limit in force (0 = none); with `adaptive`, its live figure.
    pub concurrency_limit: u32,
    /// Calls holding a concurrency slot now.
    pub running: u32,
    /// Requests waiting for a concurrency slot or a rate-limit token.
    pub waiting: u32,
    /// Circuit breaker: `PORTWAY_BREAKER_CLOSED`, `PORTWAY_BREAKER_OPEN` or
    /// `PORTWAY_BREAKER_HALF_OPEN` (cooldown over, or the trial running). With one breaker per
    /// origin (`http`), the worst of them: open if any is, else half-open if any is.
    pub breaker_state: u32,
    /// Rate-limit tokens banked now (0 without a rate limit).
    pub tokens: f64,
    /// Consecutive failures counted while the breaker is closed (per origin for `http`: the
    /// most of any closed one).
    pub breaker_failures: u32,
    /// Breakers open or half-open now: for `http` the number of origins refused or on trial,
    /// for other handlers 0 or 1. (This field was `reserved`, always 0, before.)
    pub breaker_open: u32,
    /// Times a breaker opened, reopenings after a failed trial included (all origins).
    pub breaker_trips: u64,
    /// Requests completed `PORTWAY_UNAVAILABLE` by the breaker (all origins).
    pub breaker_rejected: u64,
    /// Requests completed `PORTWAY_TIMEOUT` by the rate limit because their token, plus the
    /// handler's recent run time, came after their deadline.
    pub rate_timeouts: u64,
    /// Hedges started: second calls of a request that was slower than the hedge delay.
    pub hedges_started: u64,
    /// Hedges whose `PORTWAY_OK` completed their request (stage) first.
    pub hedges_won: u64,
    /// Calls cancelled because the other call of the same request succeeded first.
    pub hedges_cancelled: u64,
    /// Hedges not started because the handler's concurrency limit had no free slot (a hedge
    /// holds a slot while it runs, see `portway_policy.hedge_after_ms`). Appended last.
    pub hedges_skipped: u64,
}

fn defaults() -> portway_policy {
    portway_policy {
        max_concurrency: 0,
        adaptive: false,
        min_concurrency: 1,
        rate_per_s: 0.0,
        burst: 0,
        hedge_after_ms: 0,
        hedge_after_p95: false,
        hedge_budget_percent: DEFAULT_HEDGE_BUDGET_PERCENT,
        breaker_failures: 0,
        breaker_cooldown_ms: DEFAULT_BREAKER_COOLDOWN_MS,
    }
}

/// The settings `p` asks for; the engine checks them (`set_policy`) before anything changes.
fn settings(p: &portway_policy) -> Result<PolicySettings> {
    Ok(PolicySettings {
        max_concurrency: p.max_concurrency,
        adaptive: p.adaptive,
        min_concurrency: p.min_concurrency,
        rate_per_s: p.rate_per_s,
        burst: p.burst,
        breaker_failures: p.breaker_failures,
        breaker_cooldown: Duration::from_millis(u64::from(match p.breaker_cooldown_ms {
            0 => DEFAULT_BREAKER_COOLDOWN_MS,
            ms => ms,
        })),
        hedge: HedgeSettings {
            after: Duration::from_millis(u64::from(p.hedge_after_ms)),
            after_p95: p.hedge_after_p95,
            budget_percent: p.hedge_budget_percent,
        },
    })
}

/// Writes the default policy (every policy off; `min_concurrency` 1, `hedge_budget_percent`
/// 5, `breaker_cooldown_ms` 5000) to `*out`.
/// Returns `PORTWAY_OK` or `PORTWAY_INVALID_ARGUMENT` (NULL out).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_policy_default(out: *mut portway_policy) -> portway_status {
    // SAFETY: NULL or writable, per the contract.
    guard(|| unsafe { write_out(out, "out", defaults()) })
}

/// Sets every policy of handler `id` at once: the concurrency limit (fixed or adaptive), the
/// rate limit, the circuit breaker and hedging. Requests already waiting are re-checked
/// against the new settings (a raised limit or a removed rate starts them); the breaker keeps
/// its position unless it is switched off; the hedge budget starts again with one hedge
/// banked. Invalid settings (a negative, NaN or huge `rate_per_s`, `burst` without a rate,
/// `min_concurrency` above 1 without `adaptive` or above the adaptive ceiling, a breaker or an
/// adaptive limit on a pipeline, hedging on a handler that is never safe to repeat,
/// `hedge_budget_percent` above 100) change nothing.
/// Returns `PORTWAY_OK`, `PORTWAY_UNKNOWN_HANDLER`, `PORTWAY_INVALID_ARGUMENT` or `PORTWAY_FORKED`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_handler_set_policy(
    eng: *mut portway_engine,
    id: u32,
    policy: *const portway_policy,
) -> portway_status {
    guard(|| {
        // SAFETY: NULL or a live engine.
        let engine = unsafe { portway_engine::borrow(eng) }?;
        // SAFETY: NULL or a readable policy, per the contract.
        let policy = unsafe { policy.as_ref() }.ok_or_else(|| Error::invalid("policy is NULL"))?;
        engine.set_policy(id, &settings(policy)?)
    })
}

/// Writes the live figures of handler `id`'s policies to `*out`.
/// Returns `PORTWAY_OK`, `PORTWAY_UNKNOWN_HANDLER`, `PORTWAY_INVALID_ARGUMENT` or `PORTWAY_FORKED`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_handler_policy_state(
    eng: *mut portway_engine,
    id: u32,
    out: *mut portway_policy_state,
) -> portway_status {
    guard(|| {
        // SAFETY: NULL or a live engine.
        let engine = unsafe { portway_engine::borrow(eng) }?;
        require_out(out, "out")?;
        let s = engine.policy_state(id)?;
        let state = portway_policy_state {
            concurrency_limit: s.concurrency_limit,
            running: s.running,
            waiting: s.waiting,
            breaker_state: s.breaker_state,
            tokens: s.tokens,
            breaker_failures: s.breaker_failures,
            breaker_open: s.breaker_open,
            breaker_trips: s.breaker_trips,
            breaker_rejected: s.breaker_rejected,
            rate_timeouts: s.rate_timeouts,
            hedges_started: s.hedges_started,
            hedges_won: s.hedges_won,
            hedges_cancelled: s.hedges_cancelled,
            hedges_skipped: s.hedges_skipped,
        };
        // SAFETY: non-NULL and writable, per the contract.
        unsafe { write_out(out, "out", state) }
    })
}
