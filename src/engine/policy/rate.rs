//! The rate limit: a token bucket (`rate_per_s` tokens a second, at most `burst` banked).
//!
//! A run takes one token. Without a token it waits in a FIFO — a parked [`Ticket`], never a
//! thread — and one driver task per handler, on the engine's runtime, hands out tokens as
//! they accrue. A request whose token would come after its deadline is refused at admission
//! ([`RateAdmission::TooLate`]) so it can fail `PORTWAY_TIMEOUT` at once instead of waiting to
//! time out. Requests finished while they wait (cancel, deadline, shutdown) are skipped when
//! their turn comes and take no token.

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
}

/// The smallest [`State::sweep_at`].
const SWEEP_MIN: usize = 64;

/// What [`RateLimit::admit`] decided.
pub(super) enum RateAdmission {
    /// A token was taken (or no rate is set): go on.
    Go(Ticket),
    /// Parked; the caller must make sure a driver runs ([`RateLimit::needs_driver`]).
    Parked { start_driver: bool },
    /// Its token comes after its deadline: fail it now with `PORTWAY_TIMEOUT`.
    TooLate(Ticket, Duration),
}

/// What one turn of the driver found.
pub(super) struct Turn {
    /// Tickets that got a token, in order.
    pub ready: Vec<Ticket>,
    /// When to come back; `None`: nothing waits, the driver stops.
    pub next: Option<Instant>,
}

impl State {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
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
            let mut at = st.time_for(st.waiting.len() as f64 + 1.0);
            if at > deadline {
                // Requests that finished while waiting take no token: count only live ones
                // before refusing (the scan runs only on this rare path).
                st.waiting.retain(|t| !t.req.is_done());
                at = st.time_for(st.waiting.len() as f64 + 1.0);
            }
            if at > deadline {
                self.too_late.fetch_add(1, Ordering::Relaxed);
                return RateAdmission::TooLate(ticket, at.saturating_duration_since(now));
            }
        }
        if st.waiting.len() >= st.sweep_at {
            st.waiting.retain(|t| !t.req.is_done());
            st.sweep_at = SWEEP_MIN.max(st.waiting.len() * 2);
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
        st.refill(Instant::now());
        let mut ready = Vec::new();
        loop {
            match st.waiting.front() {
                None => break,
                Some(t) if t.req.is_done() => {
                    st.waiting.pop_front();
                }
                Some(_) if st.tokens >= 1.0 => {
                    st.tokens -= 1.0;
                    ready.extend(st.waiting.pop_front());
                }
                Some(_) => break,
            }
        }
        let next = if st.waiting.is_empty() || st.rate <= 0.0 {
            st.driving = false;
            None
        } else {
            Some(st.time_for(1.0))
        };
        Turn { ready, next }
    }

    /// Tokens banked now, and tickets waiting (finished ones included until their turn).
    pub fn figures(&self) -> (f64, usize) {
        if !self.is_on() {
            return (0.0, 0);
        }
        let mut st = self.lock();
        st.refill(Instant::now());
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
            payload: Vec::new(),
        }
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
        let waiters: Vec<Arc<Request>> = (2..6)
            .map(|id| {
                let t = ticket(id, 0);
                let req = t.req.clone();
                assert!(matches!(rate.admit(t), RateAdmission::Parked { .. }));
                req
            })
            .collect();
        for req in &waiters {
            assert!(req.claim_completion(Outcome::ok(Vec::new())).is_some());
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
            assert!(req.claim_completion(Outcome::ok(Vec::new())).is_some());
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
        assert!(req.claim_completion(Outcome::ok(Vec::new())).is_some());
        // One token accrues (set by hand: a day is too long to wait).
        rate.lock().tokens = 1.0;
        let turn = rate.turn();
        let ids: Vec<u64> = turn.ready.iter().map(|t| t.req.id).collect();
        assert_eq!(ids, [3]);
        assert!(turn.next.is_none(), "nothing waits any more");
    }
}
