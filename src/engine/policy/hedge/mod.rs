//! Hedged requests (`hedge_after_ms`, `hedge_after_p95`, `hedge_budget_percent`): when a run
//! of a handler that is safe to repeat has not finished after the hedge delay, a second
//! attempt of the same stage starts with the same payload; the first success completes the
//! stage and the other attempt is cancelled ("The Tail at Scale", Dean & Barroso 2013; gRPC's
//! hedging policy, gRFC A6).
//!
//! - **Who is hedged**: a run whose handler says it is safe to repeat — an async handler per
//!   request (`AsyncHandler::idempotent`: `http` for GET, HEAD, OPTIONS, PUT, DELETE), a
//!   blocking one as a whole (`BlockingHandler::idempotent`: natives registered with
//!   `PORTWAY_HANDLER_IDEMPOTENT`). Never the breaker's half-open trial.
//! - **The delay**: `hedge_after_ms`, or with `hedge_after_p95` the 95th percentile of the
//!   handler's recent hedgeable runs (the last [`WINDOW`] samples): each run's time from its
//!   start to the outcome that completed it, the winner's, when that was a success or a
//!   timeout (a run the deadline cut off counts the time it ran); see [`Sample`] for why that
//!   sample. Until [`MIN_SAMPLES`] samples were seen, `hedge_after_ms` is the delay, or (0)
//!   nothing is hedged.
//! - **The budget**: each hedgeable run earns `hedge_budget_percent` hundredths of a hedge, a
//!   hedge spends one whole, and at most `max(1, pct)` hedges are banked (one to start with):
//!   over any stretch of n hedgeable runs at most `max(1, pct) + n × pct / 100` hedges start.
//! - **The outcome**: the first `PORTWAY_OK` wins and the other attempt is dropped (an async
//!   future) or cancelled (a pool call: its `portway_call_is_cancelled` turns true). A failure
//!   of one attempt waits for the other; when both fail, the later failure is the outcome. An
//!   attempt that fails before the delay is the outcome: hedging is not retrying. A stage a
//!   hedge won carries the meta pair `portway-hedge: won`, first (after it, the handler's own
//!   pairs: for `http` the response headers and its closing `:http-version`). Only a stage's
//!   data goes on to the next stage, so `dispatch::stage_done` notes a won stage on the
//!   request and marks the pipeline's completion when a stage completes it (once).
//! - **Composition**: a hedge belongs to its request's run. Under a concurrency limit it holds
//!   a slot of its own while it runs, if one is free when the delay passes, else it is skipped
//!   (`slot.rs` says why); it takes no rate token (the budget bounds the extra load over time),
//!   and the breaker judges the run by the outcome that completes it. Cancel, the deadline and shutdown end both attempts, as
//!   they end any run (the run is one task, aborted when the request finishes).

mod attempt;
mod sample;
mod slot;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::super::registry::{HandlerEntry, HandlerKind};
use super::super::request::Request;
use super::super::shared::Shared;
use crate::contract::Outcome;
pub(crate) use attempt::{AttemptReply, pool_attempt};
use sample::{Sample, Window};

/// Samples kept for the live p95.
pub(super) const WINDOW: usize = 128;
/// Samples seen before the live p95 is used.
pub(super) const MIN_SAMPLES: usize = 20;
/// The default (and what 0 means) of `hedge_budget_percent`.
pub(crate) const DEFAULT_BUDGET_PERCENT: u32 = 5;
/// The meta key a completion a hedge won carries (value `won`).
pub(crate) const HEDGE_META_KEY: &str = "portway-hedge";

/// One attempt of a hedged run: its outcome, or dropped to cancel it.
pub(crate) type Attempt = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// The hedging settings of one handler (part of [`super::PolicySettings`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HedgeSettings {
    /// Start a second attempt after this long; zero = no fixed delay.
    pub after: Duration,
    /// Start it after the handler's live p95 instead (`after` until enough runs were seen).
    pub after_p95: bool,
    /// Hedges at most this % of hedgeable runs (0 = the default, 5; at most 100).
    pub budget_percent: u32,
}

impl HedgeSettings {
    /// True when hedging is asked for.
    pub fn is_on(&self) -> bool {
        !self.after.is_zero() || self.after_p95
    }
}

/// One handler's hedging: its settings, budget, recent latencies and counters.
pub(super) struct Hedging {
    /// Fixed delay in ns (0 = none).
    after_ns: AtomicU64,
    after_p95: AtomicBool,
    /// Hundredths of a hedge each hedgeable run earns (0: hedging off).
    earn: AtomicU32,
    /// Banked hundredths of a hedge.
    credits: AtomicU64,
    window: Mutex<Window>,
    /// The live p95 in ns (0 = not enough samples yet).
    p95_ns: AtomicU64,
    started: AtomicU64,
    won: AtomicU64,
    cancelled: AtomicU64,
    /// Hedges not started because the concurrency limit had no free slot.
    skipped: AtomicU64,
}

impl Hedging {
    /// Hedging off.
    pub fn new() -> Self {
        Hedging {
            after_ns: AtomicU64::new(0),
            after_p95: AtomicBool::new(false),
            earn: AtomicU32::new(0),
            credits: AtomicU64::new(0),
            window: Mutex::new(Window::default()),
            p95_ns: AtomicU64::new(0),
            started: AtomicU64::new(0),
            won: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    /// True when hedging is on.
    pub fn is_on(&self) -> bool {
        self.earn.load(Relaxed) > 0
    }

    /// Applies new settings (validated). The budget starts again with one hedge banked; the
    /// latency window and the counters are kept.
    pub fn set(&self, s: &HedgeSettings) {
        let pct = match s.budget_percent {
            0 => DEFAULT_BUDGET_PERCENT,
            p => p,
        };
        self.after_ns.store(
            u64::try_from(s.after.as_nanos()).unwrap_or(u64::MAX),
            Relaxed,
        );
        self.after_p95.store(s.after_p95, Relaxed);
        self.credits.store(100, Relaxed);
        self.earn.store(if s.is_on() { pct } else { 0 }, Relaxed);
    }

    /// (started, won, cancelled, skipped).
    pub fn figures(&self) -> (u64, u64, u64, u64) {
        (
            self.started.load(Relaxed),
            self.won.load(Relaxed),
            self.cancelled.load(Relaxed),
            self.skipped.load(Relaxed),
        )
    }

    /// The delay before a hedge, if one may start.
    fn delay(&self) -> Option<Duration> {
        if self.after_p95.load(Relaxed) {
            let p95 = self.p95_ns.load(Relaxed);
            if p95 > 0 {
                return Some(Duration::from_nanos(p95));
            }
        }
        match self.after_ns.load(Relaxed) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    /// A hedgeable run began: it earns its share of a hedge.
    fn earn_one(&self) {
        let earn = u64::from(self.earn.load(Relaxed));
        let cap = earn.max(1) * 100;
        let _ = self
            .credits
            .fetch_update(Relaxed, Relaxed, |c| (c < cap).then(|| (c + earn).min(cap)));
    }

    /// Takes one hedge from the budget; false when it is spent.
    fn spend(&self) -> bool {
        self.credits
            .fetch_update(Relaxed, Relaxed, |c| c.checked_sub(100))
            .is_ok()
    }

    /// Gives back a hedge taken from the budget that could not start (no slot), within the cap.
    fn refund(&self) {
        let cap = u64::from(self.earn.load(Relaxed)).max(1) * 100;
        let _ = self
            .credits
            .fetch_update(Relaxed, Relaxed, |c| Some((c + 100).min(cap)));
    }
}

/// True when this run of `entry` is to be hedged: hedging is on, the handler says `payload`
/// is safe to repeat, and the run is not the breaker's trial.
pub(crate) fn wanted(entry: &HandlerEntry, payload: &[u8], trial: bool) -> bool {
    if trial || !entry.policies.hedge.is_on() {
        return false;
    }
    match &entry.kind {
        HandlerKind::Async(h) => h.idempotent(payload),
        HandlerKind::Blocking(p) => p.handler.idempotent(),
        _ => false,
    }
}

/// Why hedging cannot be set on `entry` (None: it can).
pub(super) fn refusal(entry: &HandlerEntry) -> Option<String> {
    let name = &entry.name;
    match &entry.kind {
        HandlerKind::Async(_) => None,
        HandlerKind::Blocking(p) if p.handler.idempotent() => None,
        HandlerKind::Blocking(_) => Some(format!(
            "no hedging: handler {name:?} is not registered as idempotent (portway_register_handler_ex with \
             PORTWAY_HANDLER_IDEMPOTENT): it can never be hedged"
        )),
        HandlerKind::Pipeline(_) => Some(format!(
            "no hedging on {name:?}: it is a pipeline; set hedging on its stage handlers"
        )),
        HandlerKind::Inline(_) | HandlerKind::Delay(_) => Some(format!(
            "no hedging: handler {name:?} answers at once or after its payload's fixed delay: a \
             second attempt could never finish first, so it is never hedged"
        )),
    }
}

/// Runs `first`, and `second()` too once the hedge delay passes without an outcome (budget
/// and a free concurrency slot permitting, and while `req` is not done); returns the outcome
/// that completes the stage, marked `portway-hedge: won` when the hedge's success won. The
/// loser is dropped here.
pub(crate) async fn race(
    shared: &Arc<Shared>,
    entry: &Arc<HandlerEntry>,
    req: &Request,
    first: Attempt,
    second: impl FnOnce() -> Attempt,
) -> Outcome {
    let h = &entry.policies.hedge;
    let slot = || slot::take(shared, entry);
    race_with(h, || req.is_done(), req.deadline(), slot, first, second).await
}

/// [`race`] on `h`, for a request that `done` says is finished and whose deadline is
/// `deadline` (what the latency sample needs of it); `slot` takes what the hedge holds while
/// it runs (`None`: no slot is free, the hedge is skipped).
async fn race_with<S>(
    h: &Hedging,
    done: impl Fn() -> bool,
    deadline: Option<Instant>,
    slot: impl FnOnce() -> Option<S>,
    mut first: Attempt,
    second: impl FnOnce() -> Attempt,
) -> Outcome {
    h.earn_one();
    let sample = Sample::start(h, deadline);
    let delay = h.delay();
    if let Some(delay) = delay {
        tokio::select! {
            biased;
            outcome = &mut first => return sample.of(outcome),
            _ = tokio::time::sleep(delay) => {}
        }
    }
    if delay.is_none() || done() || !h.spend() {
        return sample.of(first.await);
    }
    let Some(slot) = slot() else {
        h.refund();
        h.skipped.fetch_add(1, Relaxed);
        return sample.of(first.await);
    };
    // Held while the hedge runs: given back when it fails, or when the race ends.
    let mut slot = Some(slot);
    h.started.fetch_add(1, Relaxed);
    let mut hedge = second();
    // Each side's failure, kept while the other still runs.
    let (mut first_failed, mut hedge_failed) = (None::<Outcome>, None::<Outcome>);
    loop {
        tokio::select! {
            outcome = &mut first, if first_failed.is_none() => {
                if outcome.is_ok() || hedge_failed.is_some() {
                    if hedge_failed.is_none() {
                        h.cancelled.fetch_add(1, Relaxed);
                    }
                    return sample.of(outcome);
                }
                first_failed = Some(outcome);
            }
            outcome = &mut hedge, if hedge_failed.is_none() => {
                if outcome.is_ok() {
                    h.won.fetch_add(1, Relaxed);
                    if first_failed.is_none() {
                        h.cancelled.fetch_add(1, Relaxed);
                    }
                    return mark_won(sample.of(outcome));
                }
                if first_failed.is_some() {
                    return sample.of(outcome);
                }
                drop(slot.take());
                hedge_failed = Some(outcome);
            }
        }
    }
}

/// True when a hedge won the stage that produced `outcome` (it carries the mark).
pub(crate) fn won(outcome: &Outcome) -> bool {
    let mark = (HEDGE_META_KEY.as_bytes(), &b"won"[..]);
    outcome.meta.byte_pairs().next() == Some(mark)
}

/// Adds `portway-hedge: won` to a stage outcome as its first meta pair, unless it has it.
pub(crate) fn mark_won(mut outcome: Outcome) -> Outcome {
    if won(&outcome) {
        return outcome;
    }
    outcome.meta = outcome
        .meta
        .with_first_pair(HEDGE_META_KEY.as_bytes(), b"won");
    outcome
}
