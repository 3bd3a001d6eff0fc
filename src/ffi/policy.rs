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
/// (every zero that has a default means it). Fields marked "not supported yet" must keep their
/// default: any other value is refused with `PORTWAY_INVALID_ARGUMENT`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct portway_policy {
    /// Hard cap on calls running at once; 0 = none. Same as `portway_handler_set_concurrency`.
    /// Calls beyond it wait in FIFO order without holding a thread.
    pub max_concurrency: u32,
    /// Latency-driven limit below `max_concurrency`. Not supported yet: must be false.
    pub adaptive: bool,
    /// Floor of the adaptive limit (0 = the default, 1). Not supported yet: must be 0 or 1.
    pub min_concurrency: u32,
    /// Token bucket refill in requests per second (fractions allowed, at most 1e9); 0 = no
    /// rate limit. Each call takes one token; calls without one wait in FIFO order without
    /// holding a thread, and a request whose token would come after its deadline completes
    /// `PORTWAY_TIMEOUT` at once.
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
    /// that fails before the delay is not retried. The hedge takes no second concurrency slot
    /// or rate token (`hedge_budget_percent` bounds the extra load), never hedges the breaker's
    /// half-open trial, and cancel, the deadline and shutdown end both calls. A completion a
    /// hedge won carries the meta pair `portway-hedge: won` as its first pair (for `http`,
    /// before the response headers; for a pipeline, when it was the last stage's hedge).
    pub hedge_after_ms: u32,
    /// Hedge after the handler's live 95th percentile instead: that of its last 128 first
    /// calls (a first call a hedge beat counts with the time it had run by then). Until 20 calls
    /// were seen, `hedge_after_ms` is the delay (0: nothing is hedged yet).
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
    /// `PORTWAY_BODY_TOO_LARGE`, ...) count as neither. One breaker per handler
    /// (not per origin for `http`: register one http handler per upstream to separate them).
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
    /// The concurrency limit in force (0 = none).
    pub concurrency_limit: u32,
    /// Calls holding a concurrency slot now.
    pub running: u32,
    /// Requests waiting for a concurrency slot or a rate-limit token (requests cancelled or
    /// timed out while waiting are counted until their turn comes).
    pub waiting: u32,
    /// Circuit breaker: `PORTWAY_BREAKER_CLOSED`, `PORTWAY_BREAKER_OPEN` or
    /// `PORTWAY_BREAKER_HALF_OPEN` (cooldown over, or the trial running).
    pub breaker_state: u32,
    /// Rate-limit tokens banked now (0 without a rate limit).
    pub tokens: f64,
    /// Consecutive failures counted while the breaker is closed.
    pub breaker_failures: u32,
    /// Reserved; 0.
    pub reserved: u32,
    /// Times the breaker opened, reopenings after a failed trial included.
    pub breaker_trips: u64,
    /// Requests completed `PORTWAY_UNAVAILABLE` by the breaker.
    pub breaker_rejected: u64,
    /// Requests completed `PORTWAY_TIMEOUT` at once because their token came after their
    /// deadline.
    pub rate_timeouts: u64,
    /// Hedges started: second calls of a request that was slower than the hedge delay.
    pub hedges_started: u64,
    /// Hedges whose `PORTWAY_OK` completed their request (stage) first.
    pub hedges_won: u64,
    /// Calls cancelled because the other call of the same request succeeded first.
    pub hedges_cancelled: u64,
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

/// Refuses what is not implemented, so a host never believes a policy is on when it is not.
fn settings(p: &portway_policy) -> Result<PolicySettings> {
    let not_yet = |what: &str| {
        Err(Error::invalid(format!(
            "{what} is not supported yet; leave it at its default from portway_policy_default"
        )))
    };
    if p.adaptive {
        return not_yet("adaptive concurrency (policy.adaptive)");
    }
    if !matches!(p.min_concurrency, 0 | 1) {
        return not_yet("policy.min_concurrency (a floor for adaptive concurrency)");
    }
    Ok(PolicySettings {
        max_concurrency: p.max_concurrency,
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

/// Sets every policy of handler `id` at once: the concurrency limit, the rate limit, the
/// circuit breaker and hedging. Requests already waiting are re-checked against the new
/// settings (a raised limit or a removed rate starts them); the breaker keeps its position
/// unless it is switched off; the hedge budget starts again with one hedge banked. Invalid
/// settings (a field not supported yet, a negative, NaN or huge `rate_per_s`, `burst` without
/// a rate, a breaker on a pipeline, hedging on a handler that is never safe to repeat,
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
            breaker_trips: s.breaker_trips,
            breaker_rejected: s.breaker_rejected,
            rate_timeouts: s.rate_timeouts,
            hedges_started: s.hedges_started,
            hedges_won: s.hedges_won,
            hedges_cancelled: s.hedges_cancelled,
            ..portway_policy_state::default()
        };
        // SAFETY: non-NULL and writable, per the contract.
        unsafe { write_out(out, "out", state) }
    })
}
