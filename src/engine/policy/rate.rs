//! The rate limit: a token bucket (`rate_per_s` tokens a second, at most `burst` banked).
//!
//! A run takes one token. Without a token it waits in a FIFO — a parked [`Ticket`], never a
//! thread — and one driver task per handler, on the engine's runtime, hands out tokens as
//! they accrue.
//!
//! Under overload the FIFO fills up to the deadline, so a request that waits for its token is
//! judged on when it would *finish*: its token time plus the time the handler's runs take
//! ([`RunEstimate`]: a smoothed mean plus four mean deviations of recent run times, as TCP
//! sets its retransmission timeout, RFC 6298). If that is after its deadline it is refused at
//! admission ([`RateAdmission::TooLate`]) and fails `PORTWAY_TIMEOUT` at once, and a waiter
//! whose turn comes too late for a run is failed then ([`Turn::late`]): neither takes a token,
//! which goes to a request that can still make its deadline. Without that, each waiter would
//! get its token just before its deadline and time out in the handler, and goodput would
//! collapse. A request that finds a token banked and nobody waiting always runs.
//!
//! Requests finished while they wait (cancel, deadline, shutdown) take no token and are swept
//! out of the queue as it grows, when the driver takes its turn and when the figures are
//! read, so `waiting` counts live requests and the queue holds at most about twice the live
//! ones.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::Ticket;

/// Largest accepted `rate_per_s` (a token every nanosecond).
pub(super) const MAX_RATE: f64 = 1e9;

/// One handler's token bucket and the tickets waiting for a token.
pub(super) struct RateLimit {
    /// True while a rate is set: lets admission skip the lock otherwise.
    on: AtomicBool,
    /// Requests refused at admission because their token came after their deadline.
    too_late: AtomicU64,
    inner: Mutex<State>,
}

struct State {
    rate: f64,
    burst: f64,
    /// Tokens banked as of `at`.
    tokens: f64,
    at: Instant,
    waiting: VecDeque<Ticket>,
    /// A driver task is scheduled and will hand out tokens to `waiting`.
    driving: bool,
    /// Queue length at which finished tickets are swept out, so a slow rate with many
    /// cancelled waiters does not pile them up until their turn (doubles with the live length:
    /// amortized O(1) per admission).
    sweep_at: usize,
    /// When the queue was last swept (bounds the sweeps a stream of refusals makes).
    swept: Option<Instant>,
    /// How long the handler's runs take.
    runs: RunEstimate,
}

/// Recent run times of the handler, smoothed as TCP smooths round-trip times (RFC 6298:
/// gains 1/8 and 1/4); [`RunEstimate::margin`] is the time a run that starts now should be
/// given before its deadline.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct RunEstimate {
    /// Smoothed run time, seconds (0 until the first sample).
    mean: f64,
    /// Smoothed mean deviation, seconds.
    dev: f64,
    /// Any sample yet.
    seeded: bool,
}

impl RunEstimate {
    /// Takes one run time; `censored`: the run was cut off by its deadline, so it would have
    /// taken at least `took` — it may raise the estimate but never lowers it.
    fn sample(&mut self, took: Duration, censored: bool) {
        let mut s = took.as_secs_f64();
        if censored {
            s = s.max(self.mean);
        }
        if !self.seeded {
            (self.mean, self.dev, self.seeded) = (s, s / 2.0, true);
            return;
        }
        self.dev = 0.75 * self.dev + 0.25 * (self.mean - s).abs();
        self.mean = 0.875 * self.mean + 0.125 * s;
    }

    /// Mean plus four deviations: most runs finish within it (zero before any run ended).
    fn margin(&self) -> Duration {
        Duration::from_secs_f64((self.mean + 4.0 * self.dev).clamp(0.0, 1e6))
    }
}

/// Least time between two sweeps made to judge a request too late: under overload nearly every
/// arrival is judged, and one scan of the queue per millisecond keeps the count exact enough
/// (only requests finished since the last sweep can still be counted ahead).
const SWEEP_GAP: Duration = Duration::from_millis(1);

/// The smallest [`State::sweep_at`].
const SWEEP_MIN: usize = 64;

/// What [`RateLimit::admit`] decided.
pub(super) enum RateAdmission {
    /// A token was taken (or no rate is set): go on.
    Go(Ticket),
    /// Parked; the caller must start a driver when `start_driver`.
    Parked { start_driver: bool },
    /// Its token, plus the handler's run time, comes after its deadline: fail it now with
    /// `PORTWAY_TIMEOUT`. The duration is how far away its token was.
    TooLate(Ticket, Duration),
}

/// What one turn of the driver found.
pub(super) struct Turn {
    /// Tickets that got a token, in order.
    pub ready: Vec<Ticket>,
    /// Tickets whose turn came too close to their deadline for a run: fail them
    /// `PORTWAY_TIMEOUT` (they took no token).
    pub late: Vec<Ticket>,
    /// When to come back; `None`: nothing waits, the driver stops.
    pub next: Option<Instant>,
}

impl State {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
    }

    /// Drops the tickets of requests already finished and sets the next sweep at twice the
    /// live length.
    fn sweep(&mut self) {
        self.swept = Some(Instant::now());
        self.waiting.retain(|t| !t.req.is_done());
        self.sweep_at = SWEEP_MIN.max(self.waiting.len() * 2);
    }

    /// When `n` more tokens than are banked will have accrued.
    fn time_for(&self, n: f64) -> Instant {
        let missing = (n - self.tokens).max(0.0);
        self.at + Duration::from_secs_f64((missing / self.rate).min(1e9))
    }
}

impl RateLimit {
    /// No rate limit.
    pub fn new() -> Self {
        RateLimit {
            on: AtomicBool::new(false),
            too_late: AtomicU64::new(0),
            inner: Mutex::new(State {
                rate: 0.0,
                burst: 0.0,
                tokens: 0.0,
                at: Instant::now(),
                waiting: VecDeque::new(),
                driving: false,
                sweep_at: SWEEP_MIN,
                swept: None,
                runs: RunEstimate::default(),
            }),
        }
    }

    /// True while a rate is set.
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the rate (0 = none) and bucket size (already validated: `burst >= 1` when
    /// `rate > 0`). The bucket starts full when the limit is switched on; a changed limit keeps
    /// what is banked (capped at the new size). Returns the waiting tickets to start when the
    /// limit is switched off.
    pub fn set(&self, rate: f64, burst: u32) -> Vec<Ticket> {
        let mut st = self.lock();
        let now = Instant::now();
        if rate <= 0.0 {
            st.rate = 0.0;
            self.on.store(false, Ordering::Release);
            return st.waiting.drain(..).filter(|t| !t.req.is_done()).collect();
        }
        if self.is_on() {
            st.refill(now);
        } else {
            st.tokens = f64::from(burst);
        }
        st.rate = rate;
        st.burst = f64::from(burst);
        st.tokens = st.tokens.min(st.burst);
        st.at = now;
        self.on.store(true, Ordering::Release);
        Vec::new()
    }

    /// Takes a token for `ticket`, parks it, or refuses it (its token is past its deadline).
    pub fn admit(&self, ticket: Ticket) -> RateAdmission {
        if !self.is_on() {
            return RateAdmission::Go(ticket);
        }
        let mut st = self.lock();
        if st.rate <= 0.0 {
            return RateAdmission::Go(ticket);
        }
        let now = Instant::now();
        st.refill(now);
        if st.waiting.is_empty() && st.tokens >= 1.0 {
            st.tokens -= 1.0;
            return RateAdmission::Go(ticket);
        }
        if let Some(deadline) = ticket.req.deadline() {
            let margin = st.runs.margin();
            let mut at = st.time_for(st.waiting.len() as f64 + 1.0);
            if at + margin > deadline
                && st
                    .swept
                    .is_none_or(|t| now.saturating_duration_since(t) >= SWEEP_GAP)
            {
                // Requests that finished while waiting take no token: count only live ones
                // before refusing.
                st.sweep();
                at = st.time_for(st.waiting.len() as f64 + 1.0);
            }
            if at + margin > deadline {
                self.too_late.fetch_add(1, Ordering::Relaxed);
                return RateAdmission::TooLate(ticket, at.saturating_duration_since(now));
            }
        }
        if st.waiting.len() >= st.sweep_at {
            st.sweep();
        }
        st.waiting.push_back(ticket);
        let start_driver = !st.driving;
        st.driving = true;
        RateAdmission::Parked { start_driver }
    }

    /// One driver turn: hands tokens to the tickets at the front (skipping finished ones) and
    /// says when the next token is due, or that the driver may stop (clearing `driving`).
    pub fn turn(&self) -> Turn {
        let mut st = self.lock();
        let now = Instant::now();
        st.refill(now);
        if st.waiting.len() >= st.sweep_at {
            st.sweep();
        }
        let finish_by = now + st.runs.margin();
        let (mut ready, mut late) = (Vec::new(), Vec::new());
        loop {
            match st.waiting.front() {
                None => break,
                Some(t) if t.req.is_done() => {
                    st.waiting.pop_front();
                }
                // Too late for a run even with a token now: fail it whether or not one is here.
                Some(t) if t.req.deadline().is_some_and(|d| finish_by > d) => {
                    self.too_late.fetch_add(1, Ordering::Relaxed);
                    late.extend(st.waiting.pop_front());
                }
                Some(_) if st.tokens < 1.0 => break,
                Some(_) => {
                    st.tokens -= 1.0;
                    ready.extend(st.waiting.pop_front());
                }
            }
        }
        let next = if st.waiting.is_empty() || st.rate <= 0.0 {
            st.driving = false;
            None
        } else {
            Some(st.time_for(1.0))
        };
        Turn { ready, next, late }
    }

    /// Takes the time one run of the handler took (see [`RunEstimate::sample`]).
    pub fn record_run(&self, took: Duration, censored: bool) {
        self.lock().runs.sample(took, censored);
    }

    /// Tokens banked now, and live tickets waiting (finished ones are swept out first).
    pub fn figures(&self) -> (f64, usize) {
        if !self.is_on() {
            return (0.0, 0);
        }
        let mut st = self.lock();
        st.refill(Instant::now());
        st.sweep();
        (st.tokens, st.waiting.len())
    }

    /// Requests refused because their token came after their deadline.
    pub fn too_late(&self) -> u64 {
        self.too_late.load(Ordering::Relaxed)
    }

    /// Drops every waiting ticket (engine teardown: breaks request -> handler cycles).
    pub fn clear(&self) {
        let drained: Vec<Ticket> = self.lock().waiting.drain(..).collect();
        drop(drained);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::contract::Outcome;
    use crate::engine::registry::echo_entry;
    use crate::engine::request::Request;

    /// One token a day: nothing accrues while a test runs.
    const A_DAY: f64 = 1.0 / 86_400.0;

    fn ticket(id: u64, timeout_ms: u32) -> Ticket {
        Ticket {
            req: Arc::new(Request::new(
                id,
                0,
                echo_entry(),
                Instant::now(),
                timeout_ms,
            )),
            stage: 0,
            payload: Default::default(),
        }
    }

    /// Admits a ticket that must wait, and returns its request.
    fn park(rate: &RateLimit, id: u64, timeout_ms: u32) -> Arc<Request> {
        let t = ticket(id, timeout_ms);
        let req = t.req.clone();
        assert!(matches!(rate.admit(t), RateAdmission::Parked { .. }));
        req
    }

    #[test]
    fn the_burst_passes_then_requests_wait_in_order() {
        let rate = RateLimit::new();
        rate.set(A_DAY, 2);
        assert!(matches!(rate.admit(ticket(1, 0)), RateAdmission::Go(_)));
        assert!(matches!(rate.admit(ticket(2, 0)), RateAdmission::Go(_)));
        assert!(matches!(
            rate.admit(ticket(3, 0)),
            RateAdmission::Parked { start_driver: true }
        ));
        assert!(matches!(
            rate.admit(ticket(4, 0)),
            RateAdmission::Parked {
                start_driver: false
            }
        ));
        let turn = rate.turn();
        assert!(turn.ready.is_empty());
        assert!(turn.next.is_some());
        // Switching the limit off hands out everything that waits.
        let ids: Vec<u64> = rate.set(0.0, 0).iter().map(|t| t.req.id).collect();
        assert_eq!(ids, [3, 4]);
    }

    #[test]
    fn a_token_after_the_deadline_is_refused_at_once() {
        let rate = RateLimit::new();
        rate.set(1.0, 1);
        assert!(matches!(rate.admit(ticket(1, 0)), RateAdmission::Go(_)));
        // The next token is a second away; a 100 ms deadline cannot wait for it.
        assert!(matches!(
            rate.admit(ticket(2, 100)),
            RateAdmission::TooLate(..)
        ));
        assert!(matches!(
            rate.admit(ticket(3, 60_000)),
            RateAdmission::Parked { .. }
        ));
        assert_eq!(rate.too_late(), 1);
    }

    #[test]
    fn finished_waiters_take_no_token_and_do_not_count_against_deadlines() {
        let rate = RateLimit::new();
        rate.set(1.0, 1);
        assert!(matches!(rate.admit(ticket(1, 0)), RateAdmission::Go(_)));
        let waiters: Vec<Arc<Request>> = (2..6).map(|id| park(&rate, id, 0)).collect();
        for req in &waiters {
            assert!(
                req.claim_completion(Outcome::ok(Vec::new()), None)
                    .is_some()
            );
        }
        // Four cancelled waiters ahead would put its token 5 s away; alone it is 1 s away.
        assert!(matches!(
            rate.admit(ticket(9, 3_000)),
            RateAdmission::Parked { .. }
        ));
        assert_eq!(rate.figures().1, 1);
    }

    #[test]
    fn finished_waiters_are_swept_out_as_the_queue_grows() {
        let rate = RateLimit::new();
        rate.set(A_DAY, 1);
        assert!(matches!(rate.admit(ticket(1, 0)), RateAdmission::Go(_)));
        for id in 2..1000 {
            let t = ticket(id, 0);
            let req = t.req.clone();
            assert!(matches!(rate.admit(t), RateAdmission::Parked { .. }));
            assert!(
                req.claim_completion(Outcome::ok(Vec::new()), None)
                    .is_some()
            );
        }
        assert!(rate.figures().1 <= SWEEP_MIN, "{}", rate.figures().1);
    }

    #[test]
    fn a_token_goes_to_the_first_live_waiter() {
        let rate = RateLimit::new();
        rate.set(A_DAY, 1);
        assert!(matches!(rate.admit(ticket(1, 0)), RateAdmission::Go(_)));
        let cancelled = ticket(2, 0);
        let req = cancelled.req.clone();
        assert!(matches!(
            rate.admit(cancelled),
            RateAdmission::Parked { .. }
        ));
        assert!(matches!(
            rate.admit(ticket(3, 0)),
            RateAdmission::Parked { .. }
        ));
        assert!(
            req.claim_completion(Outcome::ok(Vec::new()), None)
                .is_some()
        );
        // One token accrues (set by hand: a day is too long to wait).
        rate.lock().tokens = 1.0;
        let turn = rate.turn();
        let ids: Vec<u64> = turn.ready.iter().map(|t| t.req.id).collect();
        assert_eq!(ids, [3]);
        assert!(turn.next.is_none(), "nothing waits any more");
    }

    #[test]
    fn a_waiter_is_refused_when_its_token_plus_a_run_comes_after_its_deadline() {
        let rate = RateLimit::new();
        rate.set(1.0, 1);
        assert!(matches!(rate.admit(ticket(1, 0)), RateAdmission::Go(_)));
        // Its token is a second away, inside a 3 s deadline...
        let req = park(&rate, 2, 3_000);
        assert!(
            req.claim_completion(Outcome::ok(Vec::new()), None)
                .is_some()
        );
        // ...but runs take 2 s (margin 2 s + 4 x 1 s): it could not finish in time.
        rate.record_run(Duration::from_secs(2), false);
        assert_eq!(rate.lock().runs.margin(), Duration::from_secs(6));
        assert!(matches!(
            rate.admit(ticket(3, 3_000)),
            RateAdmission::TooLate(..)
        ));
        park(&rate, 4, 60_000);
        assert_eq!(rate.too_late(), 1);
    }

    #[test]
    fn a_turn_too_close_to_the_deadline_fails_and_leaves_the_token_to_the_next() {
        let rate = RateLimit::new();
        rate.set(1.0, 1);
        assert!(matches!(rate.admit(ticket(1, 0)), RateAdmission::Go(_)));
        park(&rate, 2, 60_000);
        park(&rate, 3, 0);
        // Runs turn out to take minutes: the first waiter cannot finish by its deadline, and
        // fails at the next turn, before any token is there.
        rate.record_run(Duration::from_secs(120), false);
        let ids = |ts: &[Ticket]| ts.iter().map(|t| t.req.id).collect::<Vec<u64>>();
        let turn = rate.turn();
        assert_eq!((ids(&turn.late), ids(&turn.ready)), (vec![2], vec![]));
        rate.lock().tokens = 1.0;
        let turn = rate.turn();
        assert_eq!(ids(&turn.ready), [3], "the token went to the next waiter");
        assert_eq!(rate.too_late(), 1);
    }

    #[test]
    fn waiting_counts_live_requests_only() {
        let rate = RateLimit::new();
        rate.set(A_DAY, 1);
        assert!(matches!(rate.admit(ticket(1, 0)), RateAdmission::Go(_)));
        let reqs: Vec<Arc<Request>> = (2..7).map(|id| park(&rate, id, 0)).collect();
        for req in &reqs[..3] {
            assert!(
                req.claim_completion(Outcome::ok(Vec::new()), None)
                    .is_some()
            );
        }
        assert_eq!(rate.figures().1, 2);
        assert_eq!(
            rate.lock().waiting.len(),
            2,
            "swept out, not only left uncounted"
        );
    }

    #[test]
    fn the_run_estimate_follows_run_times_and_cut_off_runs_only_raise_it() {
        let mut est = RunEstimate::default();
        assert_eq!(est.margin(), Duration::ZERO);
        for _ in 0..200 {
            est.sample(Duration::from_millis(100), false);
        }
        let settled = est.margin();
        assert!(
            settled >= Duration::from_millis(100) && settled < Duration::from_millis(101),
            "{settled:?}"
        );
        // A run cut off after 1 ms says only "at least 1 ms": no lower.
        est.sample(Duration::from_millis(1), true);
        assert!(est.margin() >= settled);
        est.sample(Duration::from_millis(400), true);
        assert!(est.margin() > Duration::from_millis(400));
    }
}
