//! The circuit breaker: closed → open after `failures` consecutive failed runs → half-open
//! once `cooldown` has passed, when exactly one trial run may start; its success closes the
//! breaker, its failure opens it again for another cooldown. While open (or while the trial
//! runs) requests are refused at once with `PORTWAY_UNAVAILABLE`.
//!
//! One breaker per handler, and one per key when the handler names one for a run
//! (`AsyncHandler::policy_key`: `http` names the origin, so one failing upstream does not
//! refuse the requests to the others). Runs without a key (native handlers, payloads the
//! handler cannot read) share the handler's own breaker. A keyed state is kept only while it
//! remembers something — failures counted, open, half-open — so a healthy origin costs no
//! entry, and at most [`MAX_KEYS`] are kept: past that, closed ones (counts below the
//! threshold) are forgotten first, then the one opened longest ago. What counts as a failure
//! is decided by the caller (`Policies`), which sees the outcome.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Most keys (origins) one handler's breaker keeps a state for.
pub(super) const MAX_KEYS: usize = 1024;

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

/// One handler's circuit breakers: its own, and one per key.
pub(super) struct Breaker {
    /// Consecutive failures that open it; 0 = off (lets admission skip the lock).
    threshold: AtomicU32,
    trips: AtomicU64,
    rejected: AtomicU64,
    inner: Mutex<Inner>,
}

struct Inner {
    cooldown: Duration,
    /// The breaker of runs without a key.
    own: State,
    /// One per key that has something to remember; never more than [`MAX_KEYS`].
    keyed: HashMap<Box<str>, State>,
}

#[derive(Clone, Copy)]
struct State {
    position: Position,
    consecutive: u32,
    opened_at: Instant,
    /// The half-open trial run has started and not yet ended.
    trial: bool,
}

impl State {
    fn closed() -> Self {
        State {
            position: Position::Closed,
            consecutive: 0,
            opened_at: Instant::now(),
            trial: false,
        }
    }

    /// Same as a fresh state: a keyed one need not be kept.
    fn is_blank(&self) -> bool {
        self.position == Position::Closed && self.consecutive == 0 && !self.trial
    }

    /// The position as reported: open turns half-open once the cooldown has passed.
    fn shown(&self, cooldown: Duration) -> Position {
        match self.position {
            Position::Open if self.opened_at.elapsed() >= cooldown => Position::HalfOpen,
            p => p,
        }
    }
}

impl Inner {
    /// The state of `key`'s breaker, if it has one (the handler's own for `None`).
    fn get(&self, key: Option<&str>) -> Option<&State> {
        match key {
            None => Some(&self.own),
            Some(k) => self.keyed.get(k),
        }
    }

    /// Runs `f` on `key`'s state, creating it when `create` (else a missing key is left
    /// alone and `f` is not run), and forgets a keyed state that ends up blank.
    fn with<R>(
        &mut self,
        key: Option<&str>,
        create: bool,
        f: impl FnOnce(&mut State) -> R,
    ) -> Option<R> {
        let Some(k) = key else {
            return Some(f(&mut self.own));
        };
        if !self.keyed.contains_key(k) {
            if !create {
                return None;
            }
            self.make_room();
            self.keyed.insert(k.into(), State::closed());
        }
        let st = self.keyed.get_mut(k)?;
        let out = f(st);
        if st.is_blank() {
            self.keyed.remove(k);
        }
        Some(out)
    }

    /// Keeps the map under [`MAX_KEYS`] before an insertion: forgets closed states (a count
    /// below the threshold) first, then the state opened longest ago (its cooldown ends first).
    fn make_room(&mut self) {
        if self.keyed.len() < MAX_KEYS {
            return;
        }
        self.keyed.retain(|_, st| st.position != Position::Closed);
        if self.keyed.len() < MAX_KEYS {
            return;
        }
        let oldest = self
            .keyed
            .iter()
            .min_by_key(|(_, st)| st.opened_at)
            .map(|(k, _)| k.clone());
        if let Some(k) = oldest {
            self.keyed.remove(&k);
        }
    }
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

/// What [`Breaker::figures`] reports: every breaker of the handler taken together.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Figures {
    /// The worst position of any of them: open, else half-open, else closed.
    pub position: Position,
    /// The most consecutive failures counted by a closed one.
    pub failures: u32,
    /// Breakers open or half-open now.
    pub open: u32,
    /// Openings, all breakers together.
    pub trips: u64,
    /// Requests refused, all breakers together.
    pub rejected: u64,
}

impl Breaker {
    /// Off.
    pub fn new() -> Self {
        Breaker {
            threshold: AtomicU32::new(0),
            trips: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                cooldown: Duration::ZERO,
                own: State::closed(),
                keyed: HashMap::new(),
            }),
        }
    }

    /// True while the breaker is set.
    pub fn is_on(&self) -> bool {
        self.threshold.load(Ordering::Acquire) != 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the threshold (0 = off, which also closes every breaker and forgets the keys) and
    /// the cooldown. Changing the figures keeps the current positions; the new cooldown
    /// applies from the next check.
    pub fn set(&self, failures: u32, cooldown: Duration) {
        let mut inner = self.lock();
        inner.cooldown = cooldown;
        if failures == 0 {
            inner.own = State::closed();
            inner.keyed.clear();
        }
        self.threshold.store(failures, Ordering::Release);
    }

    /// At admission: false when a request for `key` would be refused anyway (open and
    /// cooling down, or half-open with the trial under way), so it fails at once instead of
    /// waiting for a token or a slot first.
    pub fn admits(&self, key: Option<&str>) -> bool {
        if !self.is_on() {
            return true;
        }
        let inner = self.lock();
        let Some(st) = inner.get(key) else {
            return true;
        };
        match st.position {
            Position::Closed => true,
            Position::Open => st.opened_at.elapsed() >= inner.cooldown,
            Position::HalfOpen => !st.trial,
        }
    }

    /// Counts a request the breaker completed `PORTWAY_UNAVAILABLE`. Called only once its
    /// completion was claimed: a refused request that had already finished (cancelled or
    /// timed out while it waited) was not completed by the breaker and is not counted.
    pub fn count_rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Just before a run for `key` starts: go, go as the trial, or refuse.
    pub fn start(&self, key: Option<&str>) -> Start {
        if !self.is_on() {
            return Start::Go;
        }
        let mut inner = self.lock();
        let cooldown = inner.cooldown;
        let decide = |st: &mut State| match st.position {
            Position::Closed => Start::Go,
            Position::Open if st.opened_at.elapsed() < cooldown => Start::Refuse,
            Position::Open | Position::HalfOpen if !st.trial => {
                st.position = Position::HalfOpen;
                st.trial = true;
                Start::Trial
            }
            Position::Open | Position::HalfOpen => Start::Refuse,
        };
        // A key without a state is closed.
        inner.with(key, false, decide).unwrap_or(Start::Go)
    }

    /// A run for `key` ended: `failed` is its verdict (`None`: no verdict, e.g. cancelled),
    /// `trial` whether it was the half-open trial. Returns the change of position, if any.
    pub fn record(&self, key: Option<&str>, failed: Option<bool>, trial: bool) -> Option<Event> {
        let threshold = self.threshold.load(Ordering::Acquire);
        let mut inner = self.lock();
        // Only a failure gives a key without a state something to remember.
        let create = threshold != 0 && failed == Some(true);
        let event = inner.with(key, create, |st| {
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
                    Some(Event::Tripped(st.consecutive))
                }
                // Runs that started before the breaker opened, ending after: already judged.
                _ => None,
            }
        });
        let event = event.flatten();
        if matches!(event, Some(Event::Tripped(_) | Event::Reopened)) {
            self.trips.fetch_add(1, Ordering::Relaxed);
        }
        event
    }

    /// Every breaker of the handler taken together.
    pub fn figures(&self) -> Figures {
        let inner = self.lock();
        let mut figures = Figures {
            position: Position::Closed,
            failures: 0,
            open: 0,
            trips: self.trips.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
        };
        for st in std::iter::once(&inner.own).chain(inner.keyed.values()) {
            match st.shown(inner.cooldown) {
                Position::Closed => figures.failures = figures.failures.max(st.consecutive),
                shown => {
                    figures.open += 1;
                    if figures.position != Position::Open {
                        figures.position = shown;
                    }
                }
            }
        }
        figures
    }

    /// Keyed states kept now (tests: the bound and the forgetting of healthy keys).
    #[cfg(test)]
    fn keys(&self) -> usize {
        self.lock().keyed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_n_consecutive_failures_and_a_success_resets_the_count() {
        let b = Breaker::new();
        b.set(3, Duration::from_secs(3600));
        assert_eq!(b.record(None, Some(true), false), None);
        assert_eq!(b.record(None, Some(true), false), None);
        assert_eq!(b.record(None, Some(false), false), None);
        assert_eq!(b.record(None, Some(true), false), None);
        assert_eq!(b.record(None, None, false), None);
        assert_eq!(b.record(None, Some(true), false), None);
        assert_eq!(b.record(None, Some(true), false), Some(Event::Tripped(3)));
        assert!(!b.admits(None));
        assert_eq!(b.start(None), Start::Refuse);
        let f = b.figures();
        assert_eq!((f.position, f.open, f.trips), (Position::Open, 1, 1));
    }

    #[test]
    fn half_open_lets_one_trial_through_and_its_result_decides() {
        let b = Breaker::new();
        b.set(1, Duration::ZERO);
        assert_eq!(b.record(None, Some(true), false), Some(Event::Tripped(1)));
        // Cooldown over: one trial, everything else refused while it runs.
        assert!(b.admits(None));
        assert_eq!(b.start(None), Start::Trial);
        assert!(!b.admits(None));
        assert_eq!(b.start(None), Start::Refuse);
        assert_eq!(b.record(None, Some(true), true), Some(Event::Reopened));
        assert_eq!(b.start(None), Start::Trial);
        // A trial with no verdict (cancelled) frees the trial for the next run.
        assert_eq!(b.record(None, None, true), None);
        assert_eq!(b.start(None), Start::Trial);
        assert_eq!(b.record(None, Some(false), true), Some(Event::Recovered));
        assert_eq!(b.start(None), Start::Go);
        assert_eq!(b.figures().position, Position::Closed);
        assert_eq!(b.figures().trips, 2);
    }

    #[test]
    fn switching_it_off_closes_it() {
        let b = Breaker::new();
        b.set(1, Duration::from_secs(3600));
        b.record(None, Some(true), false);
        b.record(Some("http://a:80"), Some(true), false);
        assert_eq!(b.start(None), Start::Refuse);
        b.set(0, Duration::ZERO);
        assert_eq!(b.start(None), Start::Go);
        assert!(b.admits(None));
        assert!(b.admits(Some("http://a:80")));
        assert_eq!(b.keys(), 0);
    }

    #[test]
    fn each_key_opens_and_recovers_on_its_own() {
        let (a, c) = (Some("http://a:80"), Some("http://c:80"));
        let b = Breaker::new();
        b.set(2, Duration::ZERO);
        assert_eq!(b.record(a, Some(true), false), None);
        assert_eq!(b.record(c, Some(true), false), None);
        assert_eq!(b.record(a, Some(true), false), Some(Event::Tripped(2)));
        // `a` is open (its cooldown of 0 is over: half-open, one trial); `c` and the
        // handler's own breaker still run everything.
        assert_eq!(b.start(a), Start::Trial);
        assert!(!b.admits(a));
        assert_eq!(b.start(a), Start::Refuse);
        assert_eq!(b.start(c), Start::Go);
        assert_eq!(b.start(None), Start::Go);
        let f = b.figures();
        assert_eq!((f.position, f.open, f.failures), (Position::HalfOpen, 1, 1));
        // `c`'s success resets its count and forgets it; `a`'s trial closes it.
        assert_eq!(b.record(c, Some(false), false), None);
        assert_eq!(b.record(a, Some(false), true), Some(Event::Recovered));
        assert_eq!(b.keys(), 0);
        assert_eq!(b.figures().open, 0);
    }

    #[test]
    fn healthy_keys_take_no_room_and_the_map_stays_bounded() {
        let b = Breaker::new();
        b.set(2, Duration::from_secs(3600));
        for i in 0..10 * MAX_KEYS {
            let key = format!("http://h{i}:80");
            assert_eq!(b.start(Some(&key)), Start::Go);
            assert_eq!(b.record(Some(&key), Some(false), false), None);
        }
        assert_eq!(b.keys(), 0);
        // Open ones are kept; closed ones with a failure counted are forgotten first.
        for i in 0..MAX_KEYS / 2 {
            let key = format!("http://open{i}:80");
            b.record(Some(&key), Some(true), false);
            assert_eq!(
                b.record(Some(&key), Some(true), false),
                Some(Event::Tripped(2))
            );
        }
        for i in 0..2 * MAX_KEYS {
            b.record(Some(&format!("http://once{i}:80")), Some(true), false);
            assert!(b.keys() <= MAX_KEYS);
        }
        assert!(!b.admits(Some("http://open0:80")));
        assert_eq!(b.figures().open as usize, MAX_KEYS / 2);
        // Full of open ones: the one opened longest ago goes.
        for i in 0..MAX_KEYS {
            let key = format!("http://more{i}:80");
            b.record(Some(&key), Some(true), false);
            b.record(Some(&key), Some(true), false);
            assert!(b.keys() <= MAX_KEYS);
        }
        assert!(b.admits(Some("http://open0:80")));
        assert!(!b.admits(Some(&format!("http://more{}:80", MAX_KEYS - 1))));
    }
}
