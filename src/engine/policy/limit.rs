//! The concurrency limit: at most `limit` runs of a handler at once; further runs wait in a
//! FIFO without holding a thread, and each run that ends starts the next waiting one.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use super::Ticket;

/// One handler's concurrency limit and the tickets waiting for it.
pub(super) struct ConcurrencyLimit {
    limit: AtomicU32,
    inner: Mutex<State>,
}

#[derive(Default)]
struct State {
    running: u32,
    waiting: VecDeque<Ticket>,
}

/// What [`ConcurrencyLimit::admit`] decided.
pub(super) enum Admission {
    /// No limit: start, and nothing needs to hear when the run ends.
    Free(Ticket),
    /// Start; the run is counted, so its end must be reported ([`ConcurrencyLimit::release_one`]).
    Counted(Ticket),
    /// Waiting; a later [`ConcurrencyLimit::release_one`] or [`ConcurrencyLimit::set`] hands it out.
    Parked,
}

impl ConcurrencyLimit {
    /// No limit.
    pub fn new() -> Self {
        ConcurrencyLimit {
            limit: AtomicU32::new(0),
            inner: Mutex::new(State::default()),
        }
    }

    /// The current limit (0 = none).
    pub fn get(&self) -> u32 {
        self.limit.load(Ordering::Acquire)
    }

    /// Admits `ticket` now or parks it until a run ends. Without a limit no lock is taken; a
    /// limit set later applies to runs admitted after it.
    pub fn admit(&self, ticket: Ticket) -> Admission {
        if self.get() == 0 {
            return Admission::Free(ticket);
        }
        let mut st = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let limit = self.get();
        if limit == 0 || st.running < limit {
            st.running += 1;
            Admission::Counted(ticket)
        } else {
            st.waiting.push_back(ticket);
            Admission::Parked
        }
    }

    /// Counts one more call now if the limit has room, never waiting (a hedge's second call):
    /// `None` when it is full, `Some(false)` without a limit (nothing counted).
    pub fn try_take(&self) -> Option<bool> {
        if self.get() == 0 {
            return Some(false);
        }
        let mut st = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let limit = self.get();
        if limit == 0 {
            return Some(false);
        }
        (st.running < limit).then(|| {
            st.running += 1;
            true
        })
    }

    /// Ends one counted run and returns the tickets that may start now (each counted).
    pub fn release_one(&self) -> Vec<Ticket> {
        self.release_one_with(|_| None)
    }

    /// [`release_one`](Self::release_one), first asking `relimit` (given the runs counted,
    /// this one included) for a new limit: the adaptive limit's hook, under this lock so that
    /// a grown limit starts waiting tickets at once.
    pub fn release_one_with(&self, relimit: impl FnOnce(u32) -> Option<u32>) -> Vec<Ticket> {
        let mut st = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(limit) = relimit(st.running) {
            self.limit.store(limit, Ordering::Release);
        }
        st.running = st.running.saturating_sub(1);
        self.take_startable(&mut st)
    }

    /// Sets the limit (0 = none) and returns the tickets it lets start now (each counted).
    pub fn set(&self, limit: u32) -> Vec<Ticket> {
        let mut st = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        self.limit.store(limit, Ordering::Release);
        self.take_startable(&mut st)
    }

    /// Takes waiting tickets while the limit allows, skipping requests already finished
    /// (cancelled or timed out while they waited).
    fn take_startable(&self, st: &mut State) -> Vec<Ticket> {
        let limit = self.get();
        let mut out = Vec::new();
        while limit == 0 || st.running < limit {
            let Some(t) = st.waiting.pop_front() else {
                break;
            };
            if t.req.is_done() {
                continue;
            }
            st.running += 1;
            out.push(t);
        }
        out
    }

    /// Runs counted now, and live tickets waiting (finished ones are swept out first).
    pub fn figures(&self) -> (u32, usize) {
        let mut st = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        st.waiting.retain(|t| !t.req.is_done());
        (st.running, st.waiting.len())
    }

    /// Drops every waiting ticket (engine teardown: breaks request -> handler cycles).
    pub fn clear(&self) {
        let drained: Vec<Ticket> = match self.inner.lock() {
            Ok(mut st) => st.waiting.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        drop(drained);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::contract::Outcome;
    use crate::engine::registry::echo_entry;
    use crate::engine::request::Request;

    fn tickets(n: u64) -> Vec<Ticket> {
        let entry = echo_entry();
        let now = Instant::now();
        (1..=n)
            .map(|id| Ticket {
                req: Arc::new(Request::new(id, 0, entry.clone(), now, 0)),
                stage: 0,
                payload: Default::default(),
            })
            .collect()
    }

    fn ids(tickets: &[Ticket]) -> Vec<u64> {
        tickets.iter().map(|t| t.req.id).collect()
    }

    #[test]
    fn without_a_limit_everything_is_free() {
        let limit = ConcurrencyLimit::new();
        for t in tickets(3) {
            assert!(matches!(limit.admit(t), Admission::Free(_)));
        }
    }

    #[test]
    fn runs_beyond_the_limit_wait_in_order_and_start_as_runs_end() {
        let limit = ConcurrencyLimit::new();
        assert!(limit.set(2).is_empty());
        let mut admitted = Vec::new();
        for t in tickets(5) {
            match limit.admit(t) {
                Admission::Counted(t) => admitted.push(t.req.id),
                Admission::Free(_) => panic!("a limit is set"),
                Admission::Parked => {}
            }
        }
        assert_eq!(admitted, [1, 2]);
        assert_eq!(ids(&limit.release_one()), [3]);
        // Raising the limit starts as many waiting tickets as it allows, oldest first.
        assert_eq!(ids(&limit.set(3)), [4]);
        assert_eq!(ids(&limit.set(0)), [5]);
    }

    #[test]
    fn a_limit_raised_as_a_run_ends_starts_as_many_waiting_tickets() {
        let limit = ConcurrencyLimit::new();
        limit.set(1);
        let mut ts = tickets(4).into_iter();
        assert!(matches!(
            limit.admit(ts.next().unwrap()),
            Admission::Counted(_)
        ));
        for t in ts {
            assert!(matches!(limit.admit(t), Admission::Parked));
        }
        let started = limit.release_one_with(|running| {
            assert_eq!(running, 1, "the ending run is still counted");
            Some(3)
        });
        assert_eq!(ids(&started), [2, 3, 4]);
        assert_eq!((limit.get(), limit.figures()), (3, (3, 0)));
    }

    #[test]
    fn finished_requests_are_skipped_when_their_turn_comes() {
        let limit = ConcurrencyLimit::new();
        limit.set(1);
        let mut ts = tickets(3).into_iter();
        assert!(matches!(
            limit.admit(ts.next().unwrap()),
            Admission::Counted(_)
        ));
        let cancelled = ts.next().unwrap();
        let req = cancelled.req.clone();
        assert!(matches!(limit.admit(cancelled), Admission::Parked));
        assert!(matches!(limit.admit(ts.next().unwrap()), Admission::Parked));
        assert!(
            req.claim_completion(Outcome::ok(Vec::new()), None)
                .is_some()
        );
        assert_eq!(limit.figures(), (1, 1), "only the live waiter counts");
        assert_eq!(ids(&limit.release_one()), [3]);
    }
}
