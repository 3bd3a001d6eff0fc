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
//!   handler's recent first attempts (the last [`WINDOW`] runs; a first attempt a hedge beat
//!   counts with the time it had run by then). Until [`MIN_SAMPLES`] runs were seen,
//!   `hedge_after_ms` is the delay, or (0) nothing is hedged.
//! - **The budget**: each hedgeable run earns `hedge_budget_percent` hundredths of a hedge, a
//!   hedge spends one whole, and at most `max(1, pct)` hedges are banked (one to start with):
//!   over any stretch of n hedgeable runs at most `max(1, pct) + n × pct / 100` hedges start.
//! - **The outcome**: the first `PORTWAY_OK` wins and the other attempt is dropped (an async
//!   future) or cancelled (a pool call: its `portway_call_is_cancelled` turns true). A failure
//!   of one attempt waits for the other; when both fail, the later failure is the outcome. An
//!   attempt that fails before the delay is the outcome: hedging is not retrying. A stage a
//!   hedge won carries the meta pair `portway-hedge: won`, first (after it, the handler's own
//!   pairs: for `http` the response headers and its closing `:http-version`).
//! - **Composition**: a hedge belongs to its request's run. It takes no second concurrency
//!   slot or rate token (the budget bounds the extra load), and the breaker judges the run by
//!   the outcome that completes it. Cancel, the deadline and shutdown end both attempts, as
//!   they end any run (the run is one task, aborted when the request finishes).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::super::pool::{self, PoolJob};
use super::super::registry::{HandlerEntry, HandlerKind};
use super::super::request::Request;
use super::super::shared::Shared;
use super::Ticket;
use crate::contract::{CallState, Outcome};
use crate::status::Status;

/// First attempts kept for the live p95.
pub(super) const WINDOW: usize = 128;
/// First attempts seen before the live p95 is used.
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
}

/// The last [`WINDOW`] first-attempt latencies, a ring.
#[derive(Default)]
struct Window {
    ns: Vec<u64>,
    next: usize,
    seen: u64,
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

    /// (started, won, cancelled).
    pub fn figures(&self) -> (u64, u64, u64) {
        (
            self.started.load(Relaxed),
            self.won.load(Relaxed),
            self.cancelled.load(Relaxed),
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

    /// Records how long a first attempt took (or had run when a hedge beat it).
    fn record(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1);
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if w.ns.len() < WINDOW {
            w.ns.push(ns);
        } else {
            let at = w.next;
            w.ns[at] = ns;
        }
        w.next = (w.next + 1) % WINDOW;
        w.seen += 1;
        // Sorting 128 values costs about a microsecond: every 8th run, not every run.
        if w.ns.len() >= MIN_SAMPLES && (w.seen.is_multiple_of(8) || w.ns.len() == MIN_SAMPLES) {
            let mut sorted = w.ns.clone();
            drop(w);
            sorted.sort_unstable();
            let rank = (sorted.len() * 95).div_ceil(100) - 1;
            self.p95_ns.store(sorted[rank], Relaxed);
        }
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
/// permitting, and while `req` is not done); returns the outcome that completes the stage,
/// marked `portway-hedge: won` when the hedge's success won. The loser is dropped here.
pub(crate) async fn race(
    entry: &HandlerEntry,
    req: &Request,
    mut first: Attempt,
    second: impl FnOnce() -> Attempt,
) -> Outcome {
    let h = &entry.policies.hedge;
    h.earn_one();
    let begun = Instant::now();
    let delay = h.delay();
    if let Some(delay) = delay {
        tokio::select! {
            biased;
            outcome = &mut first => {
                h.record(begun.elapsed());
                return outcome;
            }
            _ = tokio::time::sleep(delay) => {}
        }
    }
    if delay.is_none() || req.is_done() || !h.spend() {
        let outcome = first.await;
        h.record(begun.elapsed());
        return outcome;
    }
    h.started.fetch_add(1, Relaxed);
    let mut hedge = second();
    // Each side's failure, kept while the other still runs.
    let (mut first_failed, mut hedge_failed) = (None::<Outcome>, None::<Outcome>);
    loop {
        tokio::select! {
            outcome = &mut first, if first_failed.is_none() => {
                h.record(begun.elapsed());
                if outcome.is_ok() || hedge_failed.is_some() {
                    if hedge_failed.is_none() {
                        h.cancelled.fetch_add(1, Relaxed);
                    }
                    return outcome;
                }
                first_failed = Some(outcome);
            }
            outcome = &mut hedge, if hedge_failed.is_none() => {
                if outcome.is_ok() {
                    h.won.fetch_add(1, Relaxed);
                    if first_failed.is_none() {
                        h.record(begun.elapsed());
                        h.cancelled.fetch_add(1, Relaxed);
                    }
                    return mark_won(outcome);
                }
                if first_failed.is_some() {
                    return outcome;
                }
                hedge_failed = Some(outcome);
            }
        }
    }
}

/// Adds `portway-hedge: won` to a stage outcome, as its first meta pair.
fn mark_won(mut outcome: Outcome) -> Outcome {
    outcome.meta = outcome
        .meta
        .with_first_pair(HEDGE_META_KEY.as_bytes(), b"won");
    outcome
}

/// What a pool attempt's call reads live: its request's deadline, and a cancellation that is
/// also set when the race drops the attempt (the other one won).
pub(crate) struct AttemptState {
    req: Arc<Request>,
    lost: AtomicBool,
}

impl CallState for AttemptState {
    fn is_cancelled(&self) -> bool {
        self.lost.load(Relaxed) || self.req.is_done()
    }

    fn deadline(&self) -> Option<Instant> {
        self.req.deadline()
    }
}

/// Where a pool attempt's outcome goes (`PoolJob::attempt`).
pub(crate) struct AttemptReply {
    reply: oneshot::Sender<Outcome>,
    state: Arc<AttemptState>,
}

impl AttemptReply {
    /// True once the race dropped this attempt: a job not started yet is skipped.
    pub fn lost(&self) -> bool {
        self.state.lost.load(Relaxed)
    }

    /// The call's live state.
    pub fn state(&self) -> Arc<AttemptState> {
        self.state.clone()
    }

    /// Hands the outcome to the race (ignored when it has ended).
    pub fn reply(self, outcome: Outcome) {
        let _ = self.reply.send(outcome);
    }
}

/// Marks the attempt lost when the race drops it (after it finished: harmless).
struct LoseOnDrop(Arc<AttemptState>);

impl Drop for LoseOnDrop {
    fn drop(&mut self) {
        self.0.lost.store(true, Relaxed);
    }
}

/// Sends stage `stage` of `req` with `payload` to the pool as one attempt of a race; dropping
/// the returned future cancels it (its call's `is_cancelled` turns true).
pub(crate) fn pool_attempt(
    shared: &Arc<Shared>,
    req: &Arc<Request>,
    stage: usize,
    payload: Vec<u8>,
) -> Attempt {
    let (tx, rx) = oneshot::channel();
    let state = Arc::new(AttemptState {
        req: req.clone(),
        lost: AtomicBool::new(false),
    });
    let lose = LoseOnDrop(state.clone());
    let ticket = Ticket {
        req: req.clone(),
        stage,
        payload,
    };
    let attempt = Some(AttemptReply { reply: tx, state });
    pool::send(shared, PoolJob::new(ticket, None, attempt));
    Box::pin(async move {
        let _lose = lose;
        rx.await.unwrap_or_else(|_| {
            Outcome::failed(
                Status::PORTWAY_HANDLER_ERROR,
                "the attempt ended without an outcome",
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(pct: u32) -> Hedging {
        let h = Hedging::new();
        h.set(&HedgeSettings {
            after: Duration::from_millis(1),
            after_p95: false,
            budget_percent: pct,
        });
        h
    }

    #[test]
    fn the_budget_allows_one_then_pct_per_hundred_runs_capped() {
        let h = on(5);
        let mut hedges = 0;
        for _ in 0..1000 {
            h.earn_one();
            if h.spend() {
                hedges += 1;
            }
        }
        // One banked at the start, then 5 per 100 runs.
        assert_eq!(hedges, 1 + 50);
        // A quiet stretch banks at most 5.
        let h = on(5);
        for _ in 0..10_000 {
            h.earn_one();
        }
        let banked = (0..100).take_while(|_| h.spend()).count();
        assert_eq!(banked, 5);
    }

    #[test]
    fn the_p95_needs_twenty_samples_then_follows_the_window() {
        let h = Hedging::new();
        h.set(&HedgeSettings {
            after: Duration::ZERO,
            after_p95: true,
            budget_percent: 0,
        });
        assert!(h.is_on());
        for i in 1..MIN_SAMPLES as u64 {
            h.record(Duration::from_millis(i));
        }
        assert_eq!(h.delay(), None, "no fixed delay and too few samples");
        h.record(Duration::from_millis(20));
        assert_eq!(h.delay(), Some(Duration::from_millis(19)));
        for _ in 0..WINDOW {
            h.record(Duration::from_millis(3));
        }
        assert_eq!(h.delay(), Some(Duration::from_millis(3)));
    }
}
