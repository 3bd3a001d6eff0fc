//! The policy layer: what stands between a request and its handler, per handler, without the
//! engine knowing which policies there are.
//!
//! `dispatch.rs` asks a handler's [`Policies`] one question — may this run start now? — and
//! gets the ticket back with a [`Permit`] (start it), or nothing (a policy kept the ticket and
//! will start it later through [`dispatch::enter_admitted`], or finished the request itself).
//! Dropping the permit ends the run, which lets the policies start what they held back. When
//! no policy is set ([`Policies::holds_nothing_back`]), dispatch skips the layer entirely: no
//! lock, no permit, no reference count.
//!
//! One policy per file, each owning its state and its knob (all set together by
//! `portway_handler_set_policy`):
//! - `limit.rs`: the concurrency limit (`max_concurrency`, `portway_handler_set_concurrency`).
//! - `adaptive.rs`: the adaptive limit (`adaptive`, `min_concurrency`), which sets the
//!   concurrency limit's figure from the latency of the runs that end.
//! - `rate.rs`: the rate limit, a token bucket (`rate_per_s`, `burst`).
//! - `breaker.rs`: the circuit breaker (`breaker_failures`, `breaker_cooldown_ms`).
//! - `hedge/`: hedged requests (`hedge_after_ms`, `hedge_after_p95`, `hedge_budget_percent`):
//!   not an admission step but a way to run an admitted stage (`dispatch` asks [`hedge::wanted`]).
//!
//! A run passes them in this order: the breaker's quick refusal (open: `PORTWAY_UNAVAILABLE`
//! at once), the rate limit (a token, or waiting for one), the concurrency limit (a slot, or
//! waiting for one), then the breaker again just before it starts — that is where the
//! half-open trial is handed out, so the trial is always a run that really starts, and the
//! [`Permit`] it holds reports its verdict when it ends.
//!
//! A new policy (a rate limit, a breaker, hedging) is a file here, a field in [`Policies`],
//! a step in [`Policies::admit`] and one in [`Permit`]'s `Drop`; dispatch does not change.
//! Waiting must never hold a thread: a policy parks the [`Ticket`], not the caller.

mod adaptive;
mod breaker;
pub(crate) mod hedge;
mod limit;
mod rate;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::dispatch;
use super::lend::Payload;
use super::log::LogLevel;
use super::registry::{HandlerEntry, HandlerKind};
use super::request::Request;
use super::shared::Shared;
use crate::contract::Outcome;
use crate::error::{Error, Result};
use crate::status::Status;
use adaptive::Adaptive;
use breaker::{Breaker, Event, Figures, Start};
pub use hedge::HedgeSettings;
use hedge::Hedging;
use limit::{Admission, ConcurrencyLimit};
use rate::{RateAdmission, RateLimit};

/// Work waiting to pass a handler's policies: run `stage` of `req` with `payload`.
pub(crate) struct Ticket {
    pub req: Arc<Request>,
    pub stage: usize,
    pub payload: Payload,
}

/// The settings of every policy of one handler (`portway_policy` once validated).
#[derive(Clone, Debug, PartialEq)]
pub struct PolicySettings {
    /// Hard cap on runs at once; 0 = none (with `adaptive`: the adaptive limit's ceiling,
    /// 0 = 1000).
    pub max_concurrency: u32,
    /// A latency-driven concurrency limit between `min_concurrency` and `max_concurrency`.
    pub adaptive: bool,
    /// Floor of the adaptive limit; 0 = 1. Must be 0 or 1 without `adaptive`.
    pub min_concurrency: u32,
    /// Token bucket refill per second; 0 = no rate limit.
    pub rate_per_s: f64,
    /// Token bucket size; 0 = `max(1, rate_per_s)`.
    pub burst: u32,
    /// Consecutive failures that open the breaker; 0 = off.
    pub breaker_failures: u32,
    /// How long the breaker stays open before one trial run.
    pub breaker_cooldown: Duration,
    /// Hedged requests (off by default).
    pub hedge: HedgeSettings,
}

impl Default for PolicySettings {
    /// Every policy off, as `portway_policy_default` writes it (breaker cooldown 5 s), so a
    /// caller names only what it sets and a new policy field does not break its literals.
    fn default() -> Self {
        PolicySettings {
            max_concurrency: 0,
            adaptive: false,
            min_concurrency: 0,
            rate_per_s: 0.0,
            burst: 0,
            breaker_failures: 0,
            breaker_cooldown: Duration::from_secs(5),
            hedge: HedgeSettings::default(),
        }
    }
}

/// The live figures of one handler's policies (`portway_policy_state`).
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyState {
    /// The concurrency limit in force (0 = none); the live figure when adaptive.
    pub concurrency_limit: u32,
    /// Runs holding a concurrency slot now.
    pub running: u32,
    /// Requests waiting for a slot or a token.
    pub waiting: u32,
    /// Tokens banked now (0 without a rate limit).
    pub tokens: f64,
    /// Breaker position: 0 closed, 1 open, 2 half-open (cooldown over, or trial running);
    /// with one breaker per origin (`http`), the worst of them: open if any is, else
    /// half-open if any is.
    pub breaker_state: u32,
    /// Consecutive failures counted while closed (the most of any closed breaker).
    pub breaker_failures: u32,
    /// Breakers open or half-open now: origins for `http`, else 0 or 1.
    pub breaker_open: u32,
    /// Times a breaker opened (including reopenings after a failed trial).
    pub breaker_trips: u64,
    /// Requests refused with `PORTWAY_UNAVAILABLE`.
    pub breaker_rejected: u64,
    /// Requests failed at once with `PORTWAY_TIMEOUT` because their token came after their
    /// deadline.
    pub rate_timeouts: u64,
    /// Hedges started (second attempts).
    pub hedges_started: u64,
    /// Hedges whose success completed their stage.
    pub hedges_won: u64,
    /// Attempts cancelled because the other one succeeded first.
    pub hedges_cancelled: u64,
    /// Hedges not started because the concurrency limit had no free slot for them.
    pub hedges_skipped: u64,
}

/// The policies of one handler.
pub(crate) struct Policies {
    limit: ConcurrencyLimit,
    adaptive: Adaptive,
    rate: RateLimit,
    breaker: Breaker,
    hedge: Hedging,
}

impl Policies {
    /// No policy set: everything passes.
    pub fn new() -> Self {
        Policies {
            limit: ConcurrencyLimit::new(),
            adaptive: Adaptive::new(),
            rate: RateLimit::new(),
            breaker: Breaker::new(),
            hedge: Hedging::new(),
        }
    }

    /// True when no policy is set, so a run may start without asking (the common case).
    pub fn holds_nothing_back(&self) -> bool {
        self.limit.get() == 0 && !self.rate.is_on() && !self.breaker.is_on() && !self.hedge.is_on()
    }

    /// The breaker key of `ticket`'s run: the upstream its handler names for the payload
    /// (`http`: the origin), asked only while the breaker is on; `None`: the handler's own.
    fn breaker_key(&self, entry: &HandlerEntry, ticket: &Ticket) -> Option<String> {
        match &entry.kind {
            HandlerKind::Async(h) if self.breaker.is_on() => {
                // An async handler's payload is never lent (the submit copies it).
                h.policy_key(ticket.payload.owned().unwrap_or_default())
            }
            _ => None,
        }
    }

    /// Admits `ticket` now (returning it, with a permit when a policy needs to hear that the
    /// run ended) or keeps it until a policy lets it start, or finishes the request itself
    /// (`PORTWAY_UNAVAILABLE` from an open breaker, `PORTWAY_TIMEOUT` when its token would
    /// come after its deadline).
    pub fn admit(
        &self,
        shared: &Arc<Shared>,
        entry: &Arc<HandlerEntry>,
        ticket: Ticket,
    ) -> Option<(Ticket, Option<Permit>)> {
        let key = self.breaker_key(entry, &ticket);
        if !self.breaker.admits(key.as_deref()) {
            unavailable(shared, entry, &ticket.req, key.as_deref());
            return None;
        }
        let ticket = match self.rate.admit(ticket) {
            RateAdmission::Go(ticket) => ticket,
            RateAdmission::Parked { start_driver } => {
                if start_driver {
                    drive_rate(shared, entry);
                }
                return None;
            }
            RateAdmission::TooLate(ticket, wait) => {
                too_late(shared, entry, &ticket.req, Some(wait));
                return None;
            }
        };
        self.after_rate(shared, entry, ticket, key)
    }

    /// The concurrency limit, then the breaker's last word (for the run's breaker `key`, as
    /// [`Policies::breaker_key`] gave it).
    fn after_rate(
        &self,
        shared: &Arc<Shared>,
        entry: &Arc<HandlerEntry>,
        ticket: Ticket,
        key: Option<String>,
    ) -> Option<(Ticket, Option<Permit>)> {
        let (ticket, counted) = match self.limit.admit(ticket) {
            Admission::Free(ticket) => (ticket, false),
            Admission::Counted(ticket) => (ticket, true),
            Admission::Parked => return None,
        };
        match self.breaker.start(key.as_deref()) {
            Start::Refuse => {
                unavailable(shared, entry, &ticket.req, key.as_deref());
                if counted {
                    start_all(shared, entry, self.limit.release_one());
                }
                None
            }
            start => {
                let trial = start == Start::Trial;
                let permit = (counted || self.breaker.is_on() || self.rate.is_on())
                    .then(|| Permit::new(shared, entry, &ticket.req, counted, trial, key));
                Some((ticket, permit))
            }
        }
    }

    /// The live figures.
    pub fn state(&self) -> PolicyState {
        let (running, limit_waiting) = self.limit.figures();
        let (tokens, rate_waiting) = self.rate.figures();
        let breaker: Figures = self.breaker.figures();
        let (hedges_started, hedges_won, hedges_cancelled, hedges_skipped) = self.hedge.figures();
        PolicyState {
            concurrency_limit: self.limit.get(),
            running,
            waiting: u32::try_from(limit_waiting + rate_waiting).unwrap_or(u32::MAX),
            tokens,
            breaker_state: breaker.position as u32,
            breaker_failures: breaker.failures,
            breaker_open: breaker.open,
            breaker_trips: breaker.trips,
            breaker_rejected: breaker.rejected,
            rate_timeouts: self.rate.too_late(),
            hedges_started,
            hedges_won,
            hedges_cancelled,
            hedges_skipped,
        }
    }

    /// Gauges and counters for the Prometheus text (name suffix, help, type, value); none
    /// for a handler without policies.
    pub fn metrics(&self) -> Vec<(&'static str, &'static str, &'static str, u64)> {
        if self.holds_nothing_back() {
            return Vec::new();
        }
        let s = self.state();
        vec![
            (
                "policy_concurrency_limit",
                "The handler's concurrency limit (0 = none); the live figure when adaptive.",
                "gauge",
                u64::from(s.concurrency_limit),
            ),
            (
                "policy_running",
                "Runs holding a concurrency slot.",
                "gauge",
                u64::from(s.running),
            ),
            (
                "policy_waiting",
                "Requests waiting for a concurrency slot or a rate-limit token.",
                "gauge",
                u64::from(s.waiting),
            ),
            (
                "policy_rate_tokens",
                "Rate-limit tokens banked (whole tokens).",
                "gauge",
                s.tokens as u64,
            ),
            (
                "policy_rate_timeouts_total",
                "Requests failed at once because their rate-limit token came after their deadline.",
                "counter",
                s.rate_timeouts,
            ),
            (
                "policy_breaker_state",
                "Circuit breaker position: 0 closed, 1 open, 2 half-open (per origin for http: the worst).",
                "gauge",
                u64::from(s.breaker_state),
            ),
            (
                "policy_breaker_open",
                "Circuit breakers open or half-open (origins for http).",
                "gauge",
                u64::from(s.breaker_open),
            ),
            (
                "policy_breaker_trips_total",
                "Times a circuit breaker opened.",
                "counter",
                s.breaker_trips,
            ),
            (
                "policy_breaker_rejected_total",
                "Requests refused with PORTWAY_UNAVAILABLE while the breaker was open.",
                "counter",
                s.breaker_rejected,
            ),
            (
                "policy_hedges_started_total",
                "Hedged attempts started (second attempts of a slow run).",
                "counter",
                s.hedges_started,
            ),
            (
                "policy_hedges_won_total",
                "Hedged attempts whose success completed their run.",
                "counter",
                s.hedges_won,
            ),
            (
                "policy_hedges_cancelled_total",
                "Attempts cancelled because the other attempt of their run succeeded first.",
                "counter",
                s.hedges_cancelled,
            ),
            (
                "policy_hedges_skipped_total",
                "Hedges not started because the concurrency limit had no free slot.",
                "counter",
                s.hedges_skipped,
            ),
        ]
    }

    /// Drops every ticket a policy holds (engine teardown: breaks request -> handler cycles).
    pub fn clear(&self) {
        self.limit.clear();
        self.rate.clear();
    }
}

/// Proof of one admitted run; dropping it ends the run: the breaker hears its verdict and the
/// concurrency limit starts what it held back.
pub(crate) struct Permit {
    shared: Arc<Shared>,
    entry: Arc<HandlerEntry>,
    /// Holds one of the concurrency limit's slots.
    counted: bool,
    /// The breaker's half-open trial.
    trial: bool,
    deadline: Option<Instant>,
    /// Whether the run failed, as far as the breaker is concerned (`None`: not known yet).
    failed: Option<bool>,
    /// The breaker has heard this run's verdict (from `observe`), so the drop does not tell it.
    judged: bool,
    /// The breaker that judges the run: its key (`None`: the handler's own).
    key: Option<String>,
    /// When the run started, and how long it took once known (the rate limit's estimate;
    /// the adaptive limit's sample).
    started: Instant,
    ran_for: Option<Duration>,
    /// The run's latency is a sample for the adaptive limit (see `observe`).
    sample: bool,
}

impl Permit {
    fn new(
        shared: &Arc<Shared>,
        entry: &Arc<HandlerEntry>,
        req: &Request,
        counted: bool,
        trial: bool,
        key: Option<String>,
    ) -> Self {
        Permit {
            shared: shared.clone(),
            entry: entry.clone(),
            counted,
            trial,
            deadline: req.deadline(),
            failed: None,
            judged: false,
            key,
            started: Instant::now(),
            ran_for: None,
            sample: false,
        }
    }

    /// Records what the run produced, for the breaker. Failures are `PORTWAY_HANDLER_ERROR`,
    /// `PORTWAY_PANIC`, connect, TLS and protocol errors, timeouts, and — for an async handler
    /// (`http`), whose `code` is an HTTP status — a 5xx response; a cancellation or a refusal
    /// of the request itself (payload, body size) is no verdict.
    ///
    /// A run whose request was already completed by something else (its deadline, a cancel)
    /// is judged by that instead, when its permit drops.
    ///
    /// For the adaptive limit, the run's latency is a sample when it succeeded or timed out
    /// (the latency a load causes); other failures are not (a refused connection is fast
    /// because nothing ran, which says nothing about how much the handler can take).
    pub fn observe(&mut self, req: &Request, outcome: &Outcome) {
        if req.is_done() {
            return;
        }
        self.ran_for = Some(self.started.elapsed());
        self.failed = match outcome.status {
            Status::PORTWAY_OK => Some(
                matches!(self.entry.kind, HandlerKind::Async(_))
                    && (500..600).contains(&outcome.code),
            ),
            Status::PORTWAY_HANDLER_ERROR
            | Status::PORTWAY_PANIC
            | Status::PORTWAY_CONNECT_ERROR
            | Status::PORTWAY_TLS_ERROR
            | Status::PORTWAY_PROTOCOL_ERROR
            | Status::PORTWAY_TIMEOUT => Some(true),
            _ => None,
        };
        self.sample = self.failed == Some(false) || outcome.status == Status::PORTWAY_TIMEOUT;
        // Tell the breaker now, before the outcome becomes the request's completion: a host
        // that has seen the failure must find the breaker already counting it.
        if self.failed.is_some() {
            self.judge(self.failed);
        }
    }

    /// True for the breaker's half-open trial (never hedged: one trial is one call).
    pub fn is_trial(&self) -> bool {
        self.trial
    }

    /// Gives the breaker this run's verdict, once (`None`: no verdict).
    fn judge(&mut self, failed: Option<bool>) {
        if self.judged || !(self.trial || self.entry.policies.breaker.is_on()) {
            return;
        }
        self.judged = true;
        let key = self.key.as_deref();
        if let Some(event) = self.entry.policies.breaker.record(key, failed, self.trial) {
            log_breaker(&self.shared, &self.entry, key, &event);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        // A run that ended without an outcome after its deadline was cut off by it: a timeout.
        // One that ended before (cancelled) says nothing about the handler.
        let cut_off = self.failed.is_none() && self.deadline.is_some_and(|d| Instant::now() >= d);
        self.judge(self.failed.or(cut_off.then_some(true)));
        let rate = &self.entry.policies.rate;
        if rate.is_on() {
            // How long runs take, for the rate limit's "too late" judgement: a run cut off by
            // its deadline took at least as long as it ran.
            match self.ran_for {
                Some(took) => rate.record_run(took, false),
                None if cut_off => rate.record_run(self.started.elapsed(), true),
                None => {}
            }
        }
        if self.counted {
            let policies = &self.entry.policies;
            // A run cut off by its deadline took at least that long: a sample too.
            let latency = (policies.adaptive.is_on() && (self.sample || cut_off))
                .then(|| self.started.elapsed());
            let startable = policies.limit.release_one_with(|running| {
                latency.and_then(|l| policies.adaptive.sample(l, running))
            });
            start_all(&self.shared, &self.entry, startable);
        }
    }
}

fn log_breaker(shared: &Shared, entry: &HandlerEntry, key: Option<&str>, event: &Event) {
    let (level, what) = match event {
        Event::Tripped(n) => (
            LogLevel::Warn,
            format!("opened after {n} consecutive failures"),
        ),
        Event::Reopened => (
            LogLevel::Warn,
            "opened again: the trial request failed".to_owned(),
        ),
        Event::Recovered => (
            LogLevel::Info,
            "closed: the trial request succeeded".to_owned(),
        ),
    };
    shared.logger.log(level, || match key {
        Some(origin) => format!(
            "handler {:?}: circuit breaker of {origin} {what}",
            entry.name
        ),
        None => format!("handler {:?}: circuit breaker {what}", entry.name),
    });
}

/// Completes `req` with `PORTWAY_UNAVAILABLE` (the breaker refused it), and counts it in
/// `breaker_rejected` only when this is its completion (it may have been cancelled or timed
/// out while it waited), so the figure equals the UNAVAILABLE completions the host sees.
fn unavailable(shared: &Shared, entry: &HandlerEntry, req: &Arc<Request>, key: Option<&str>) {
    let msg = match key {
        Some(origin) => format!(
            "handler {:?} is unavailable for {origin}: the circuit breaker of that origin is open",
            entry.name
        ),
        None => format!(
            "handler {:?} is unavailable: its circuit breaker is open",
            entry.name
        ),
    };
    if dispatch::finish(
        shared,
        req,
        Outcome::failed(Status::PORTWAY_UNAVAILABLE, msg),
    ) {
        entry.policies.breaker.count_rejected();
    }
}

/// Completes `req` with `PORTWAY_TIMEOUT`: the rate limit's token for it, plus the time runs
/// of the handler take, comes after its deadline — at admission (`wait`: how far away its
/// token was), or when its turn came (`None`); either way it took no token.
fn too_late(shared: &Shared, entry: &HandlerEntry, req: &Arc<Request>, wait: Option<Duration>) {
    let msg = match wait {
        Some(wait) => format!(
            "rate limit of handler {:?}: the next token is {} ms away, and with the handler's \
             recent run time it would finish after the request's deadline",
            entry.name,
            wait.as_millis()
        ),
        None => format!(
            "rate limit of handler {:?}: the request's token came too close to its deadline \
             for a run of the handler's recent length",
            entry.name
        ),
    };
    dispatch::finish(shared, req, Outcome::failed(Status::PORTWAY_TIMEOUT, msg));
}

/// Checks `settings` against what the engine implements for `entry`.
fn validate(entry: &HandlerEntry, settings: &PolicySettings) -> Result<()> {
    let rate = settings.rate_per_s;
    if !rate.is_finite() || !(0.0..=rate::MAX_RATE).contains(&rate) {
        return Err(Error::invalid(format!(
            "rate_per_s must be between 0 and {} (got {rate})",
            rate::MAX_RATE
        )));
    }
    if rate == 0.0 && settings.burst != 0 {
        return Err(Error::invalid(
            "burst is set but rate_per_s is 0: a bucket needs a refill rate",
        ));
    }
    if settings.breaker_failures > 0 && settings.breaker_cooldown.is_zero() {
        return Err(Error::invalid(
            "breaker_cooldown_ms must be above 0 when breaker_failures is set",
        ));
    }
    validate_adaptive(entry, settings)?;
    if settings.breaker_failures > 0 && matches!(entry.kind, HandlerKind::Pipeline(_)) {
        return Err(Error::invalid(format!(
            "{:?} is a pipeline: set the circuit breaker on its stage handlers",
            entry.name
        )));
    }
    if settings.hedge.budget_percent > 100 {
        return Err(Error::invalid(format!(
            "hedge_budget_percent must be at most 100 (got {})",
            settings.hedge.budget_percent
        )));
    }
    if settings.hedge.is_on()
        && let Some(why) = hedge::refusal(entry)
    {
        return Err(Error::invalid(why));
    }
    Ok(())
}

/// Checks the adaptive limit's bounds and where it may be set.
fn validate_adaptive(entry: &HandlerEntry, settings: &PolicySettings) -> Result<()> {
    let (min, max) = (settings.min_concurrency, settings.max_concurrency);
    if !settings.adaptive {
        if min > 1 {
            return Err(Error::invalid(format!(
                "min_concurrency {min} is the floor of the adaptive limit: set adaptive too"
            )));
        }
        return Ok(());
    }
    let ceiling = if max == 0 {
        adaptive::DEFAULT_CEILING
    } else {
        max
    };
    if min > ceiling {
        return Err(Error::invalid(format!(
            "min_concurrency {min} is above the adaptive limit's ceiling {ceiling} (max_concurrency{})",
            if max == 0 { " 0 = 1000" } else { "" }
        )));
    }
    if matches!(entry.kind, HandlerKind::Pipeline(_)) {
        // A pipeline's permit is held for the whole request and hears no outcome: it would
        // learn nothing but timeouts.
        return Err(Error::invalid(format!(
            "{:?} is a pipeline: set the adaptive limit on its stage handlers",
            entry.name
        )));
    }
    Ok(())
}

/// Sets every policy of handler `entry` at once (validated first: on error nothing changes)
/// and starts what the new settings let in.
pub(crate) fn set_policy(
    shared: &Arc<Shared>,
    entry: &Arc<HandlerEntry>,
    settings: &PolicySettings,
) -> Result<()> {
    validate(entry, settings)?;
    let p = &entry.policies;
    p.hedge.set(&settings.hedge);
    p.breaker
        .set(settings.breaker_failures, settings.breaker_cooldown);
    let burst = match settings.burst {
        0 => settings.rate_per_s.clamp(1.0, f64::from(u32::MAX)) as u32,
        b => b,
    };
    let released = p.rate.set(settings.rate_per_s, burst);
    if p.rate.is_on() && p.rate.figures().1 > 0 {
        // The driver may be asleep until a token of the old rate: look again now.
        drive_rate(shared, entry);
    }
    for ticket in released {
        let key = p.breaker_key(entry, &ticket);
        if let Some((ticket, permit)) = p.after_rate(shared, entry, ticket, key) {
            dispatch::enter_admitted(shared, ticket, permit);
        }
    }
    let bounds = settings.adaptive.then(|| {
        let max = match settings.max_concurrency {
            0 => adaptive::DEFAULT_CEILING,
            max => max,
        };
        (settings.min_concurrency.max(1), max)
    });
    let limit = p.adaptive.set(bounds).unwrap_or(settings.max_concurrency);
    start_all(shared, entry, p.limit.set(limit));
    Ok(())
}

/// Sets handler `entry`'s concurrency limit (0 = none) and starts what the new limit lets in.
/// While the limit is adaptive, this is its ceiling (0 = the default ceiling); a floor above
/// it comes down to it.
pub(crate) fn set_concurrency(shared: &Arc<Shared>, entry: &Arc<HandlerEntry>, limit: u32) {
    let p = &entry.policies;
    let limit = match p.adaptive.bounds() {
        Some((min, _)) => {
            let max = if limit == 0 {
                adaptive::DEFAULT_CEILING
            } else {
                limit
            };
            p.adaptive.set(Some((min.min(max), max))).unwrap_or(limit)
        }
        None => limit,
    };
    start_all(shared, entry, p.limit.set(limit));
}

/// Hands out rate-limit tokens to `entry`'s waiting tickets as they accrue: one task per
/// handler with waiters, asleep between tokens; it ends when nothing waits.
fn drive_rate(shared: &Arc<Shared>, entry: &Arc<HandlerEntry>) {
    let (shared, entry) = (shared.clone(), entry.clone());
    let rt = shared.rt.clone();
    rt.spawn(async move {
        loop {
            let turn = entry.policies.rate.turn();
            for ticket in turn.late {
                too_late(&shared, &entry, &ticket.req, None);
            }
            for ticket in turn.ready {
                let key = entry.policies.breaker_key(&entry, &ticket);
                if let Some((ticket, permit)) =
                    entry.policies.after_rate(&shared, &entry, ticket, key)
                {
                    dispatch::enter_admitted(&shared, ticket, permit);
                }
            }
            match turn.next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => break,
            }
        }
    });
}

/// Starts tickets the concurrency limit let in (each holding a slot) once the breaker agrees;
/// a refused one gives its slot to the next, in a loop rather than by recursion.
fn start_all(shared: &Arc<Shared>, entry: &Arc<HandlerEntry>, tickets: Vec<Ticket>) {
    let mut queue = VecDeque::from(tickets);
    while let Some(ticket) = queue.pop_front() {
        let key = entry.policies.breaker_key(entry, &ticket);
        match entry.policies.breaker.start(key.as_deref()) {
            Start::Refuse => {
                unavailable(shared, entry, &ticket.req, key.as_deref());
                queue.extend(entry.policies.limit.release_one());
            }
            start => {
                let trial = start == Start::Trial;
                let permit = Permit::new(shared, entry, &ticket.req, true, trial, key);
                dispatch::enter_admitted(shared, ticket, Some(permit));
            }
        }
    }
}
