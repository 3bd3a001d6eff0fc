//! The circuit breaker: closed → open after `failures` consecutive failed runs → half-open
//! once `cooldown` has passed, when exactly one trial run may start; its success closes the
//! breaker, its failure opens it again for another cooldown. While open (or while the trial
//! runs) requests are refused at once with `PORTWAY_UNAVAILABLE`.
//!
//! One breaker per handler (for `http`, per handler rather than per origin: a handler entry
//! does not see the origin of a request before the handler parses it). What counts as a
//! failure is decided by the caller (`Policies`), which sees the outcome.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The breaker's position, as `portway_policy_state.breaker_state` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Position {
    /// Requests run; failures are counted.
    Closed = 0,
    /// Requests are refused until the cooldown has passed.
    Open = 1,
    /// The cooldown passed: one trial run decides.
    HalfOpen = 2,
}

/// One handler's circuit breaker.
pub(super) struct Breaker {
    /// Consecutive failures that open it; 0 = off (lets admission skip the lock).
    threshold: AtomicU32,
    trips: AtomicU64,
    rejected: AtomicU64,
    inner: Mutex<State>,
}

struct State {
    position: Position,
    consecutive: u32,
    opened_at: Instant,
    cooldown: Duration,
    /// The half-open trial run has started and not yet ended.
    trial: bool,
}

/// What [`Breaker::start`] decided for a run about to start.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Start {
    /// Run it (breaker off or closed).
    Go,
    /// Run it as the half-open trial: its result closes or reopens the breaker.
    Trial,
    /// Refuse it with `PORTWAY_UNAVAILABLE`.
    Refuse,
}

/// A change of position worth a log line.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Event {
    /// Closed → open after this many consecutive failures.
    Tripped(u32),
    /// The trial failed: open again.
    Reopened,
    /// The trial succeeded: closed.
    Recovered,
}

impl Breaker {
    /// Off.
    pub fn new() -> Self {
        Breaker {
            threshold: AtomicU32::new(0),
            trips: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            inner: Mutex::new(State {
                position: Position::Closed,
                consecutive: 0,
                opened_at: Instant::now(),
                cooldown: Duration::ZERO,
                trial: false,
            }),
        }
    }

    /// True while the breaker is set.
    pub fn is_on(&self) -> bool {
        self.threshold.load(Ordering::Acquire) != 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the threshold (0 = off, which also closes it) and the cooldown. Changing the
    /// figures keeps the current position; the new cooldown applies from the next check.
    pub fn set(&self, failures: u32, cooldown: Duration) {
        let mut st = self.lock();
        st.cooldown = cooldown;
        if failures == 0 {
            st.position = Position::Closed;
            st.consecutive = 0;
        }
        self.threshold.store(failures, Ordering::Release);
    }

    /// At admission: false when a request would be refused anyway (open and cooling down, or
    /// half-open with the trial under way), so it fails at once instead of waiting for a
    /// token or a slot first.
    pub fn admits(&self) -> bool {
        if !self.is_on() {
            return true;
        }
        let st = self.lock();
        let ok = match st.position {
            Position::Closed => true,
            Position::Open => st.opened_at.elapsed() >= st.cooldown,
            Position::HalfOpen => !st.trial,
        };
        drop(st);
        ok
    }

    /// Counts a request the breaker completed `PORTWAY_UNAVAILABLE`. Called only once its
    /// completion was claimed: a refused request that had already finished (cancelled or
    /// timed out while it waited) was not completed by the breaker and is not counted.
    pub fn count_rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Just before a run starts: go, go as the trial, or refuse.
    pub fn start(&self) -> Start {
        if !self.is_on() {
            return Start::Go;
        }
        let mut st = self.lock();
        let decision = match st.position {
            Position::Closed => Start::Go,
            Position::Open if st.opened_at.elapsed() < st.cooldown => Start::Refuse,
            Position::Open | Position::HalfOpen if !st.trial => {
                st.position = Position::HalfOpen;
                st.trial = true;
                Start::Trial
            }
            Position::Open | Position::HalfOpen => Start::Refuse,
        };
        drop(st);
        decision
    }

    /// A run ended: `failed` is its verdict (`None`: no verdict, e.g. cancelled), `trial`
    /// whether it was the half-open trial. Returns the change of position, if any.
    pub fn record(&self, failed: Option<bool>, trial: bool) -> Option<Event> {
        let threshold = self.threshold.load(Ordering::Acquire);
        let mut st = self.lock();
        if trial {
            st.trial = false;
        }
        if threshold == 0 {
            return None;
        }
        match (st.position, failed) {
            (_, None) => None,
            (Position::HalfOpen, Some(false)) if trial => {
                st.position = Position::Closed;
                st.consecutive = 0;
                Some(Event::Recovered)
            }
            (Position::HalfOpen, Some(true)) if trial => {
                st.position = Position::Open;
                st.opened_at = Instant::now();
                self.trips.fetch_add(1, Ordering::Relaxed);
                Some(Event::Reopened)
            }
            (Position::Closed, Some(false)) => {
                st.consecutive = 0;
                None
            }
            (Position::Closed, Some(true)) => {
                st.consecutive = st.consecutive.saturating_add(1);
                if st.consecutive < threshold {
                    return None;
                }
                st.position = Position::Open;
                st.opened_at = Instant::now();
                self.trips.fetch_add(1, Ordering::Relaxed);
                Some(Event::Tripped(st.consecutive))
            }
            // Runs that started before the breaker opened, ending after: already judged.
            _ => None,
        }
    }

    /// Position (reported open → half-open once the cooldown has passed), consecutive
    /// failures, trips and refused requests.
    pub fn figures(&self) -> (Position, u32, u64, u64) {
        let st = self.lock();
        let position = match st.position {
            Position::Open if st.opened_at.elapsed() >= st.cooldown => Position::HalfOpen,
            p => p,
        };
        (
            position,
            st.consecutive,
            self.trips.load(Ordering::Relaxed),
            self.rejected.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_n_consecutive_failures_and_a_success_resets_the_count() {
        let b = Breaker::new();
        b.set(3, Duration::from_secs(3600));
        assert_eq!(b.record(Some(true), false), None);
        assert_eq!(b.record(Some(true), false), None);
        assert_eq!(b.record(Some(false), false), None);
        assert_eq!(b.record(Some(true), false), None);
        assert_eq!(b.record(None, false), None);
        assert_eq!(b.record(Some(true), false), None);
        assert_eq!(b.record(Some(true), false), Some(Event::Tripped(3)));
        assert!(!b.admits());
        assert_eq!(b.start(), Start::Refuse);
        assert_eq!(b.figures().0, Position::Open);
        assert_eq!(b.figures().2, 1);
    }

    #[test]
    fn half_open_lets_one_trial_through_and_its_result_decides() {
        let b = Breaker::new();
        b.set(1, Duration::ZERO);
        assert_eq!(b.record(Some(true), false), Some(Event::Tripped(1)));
        // Cooldown over: one trial, everything else refused while it runs.
        assert!(b.admits());
        assert_eq!(b.start(), Start::Trial);
        assert!(!b.admits());
        assert_eq!(b.start(), Start::Refuse);
        assert_eq!(b.record(Some(true), true), Some(Event::Reopened));
        assert_eq!(b.start(), Start::Trial);
        // A trial with no verdict (cancelled) frees the trial for the next run.
        assert_eq!(b.record(None, true), None);
        assert_eq!(b.start(), Start::Trial);
        assert_eq!(b.record(Some(false), true), Some(Event::Recovered));
        assert_eq!(b.start(), Start::Go);
        assert_eq!(b.figures().0, Position::Closed);
    }

    #[test]
    fn switching_it_off_closes_it() {
        let b = Breaker::new();
        b.set(1, Duration::from_secs(3600));
        b.record(Some(true), false);
        assert_eq!(b.start(), Start::Refuse);
        b.set(0, Duration::ZERO);
        assert_eq!(b.start(), Start::Go);
        assert!(b.admits());
    }
}
