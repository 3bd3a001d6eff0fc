//! The engine's timer: one heap of wake-up times for the whole engine, driven by a single
//! runtime task. It holds the built-in `sleep` handler's sleepers and every request's deadline.
//!
//! A sleeping request, or a request with a time limit, costs one heap entry, instead of a
//! runtime task, a boxed future and an abort handle of its own; requests that wake together
//! are completed and queued together. An entry whose request finished first (a sleep that was
//! cancelled, a deadline that was met) stays in the heap until its time comes, or until the
//! next purge: when the heap has doubled since the last purge, entries of finished requests
//! are dropped, so they cost amortised O(1) and never pile up.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::dispatch;
use super::policy::Permit;
use super::request::Request;
use super::shared::Shared;
use crate::contract::Outcome;
use crate::status::Status;

/// Below this many entries the heap is never purged.
const MIN_PURGE: usize = 1024;

/// The most entries one wake-up takes out of the heap; the driver goes round again for the
/// rest. (Taking all of them at once would hold a second copy of a large heap: when 100,000
/// sleeps end together, that was 5 MB more at the peak.)
const MAX_DUE: usize = 1024;

/// The `stage` of an entry that is a request's deadline rather than a sleep.
const DEADLINE: u32 = u32::MAX;

/// Sleeping requests and deadlines by time, and the driver's wake-up signal.
pub(crate) struct Timers {
    state: Mutex<TimerState>,
    wake_driver: Notify,
}

struct TimerState {
    heap: BinaryHeap<Sleeper>,
    /// The time the driver sleeps until (None: no entries, it waits for a signal).
    driver_wakes_at: Option<Instant>,
    /// Heap size that triggers the next purge of finished requests.
    purge_at: usize,
}

/// One sleeping stage of a request, or a request's deadline (`stage` == [`DEADLINE`]).
struct Sleeper {
    at: Instant,
    req: Arc<Request>,
    stage: u32,
    /// Boxed: gated sleeps are rare, and every byte of an entry is paid per sleeper.
    permit: Option<Box<Permit>>,
}

impl Ord for Sleeper {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest wake-up first; equal
    /// times wake in request order.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.req.id).cmp(&(self.at, self.req.id))
    }
}

impl PartialOrd for Sleeper {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Sleeper {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Sleeper {}

impl Timers {
    pub fn new() -> Self {
        Timers {
            state: Mutex::new(TimerState {
                heap: BinaryHeap::new(),
                driver_wakes_at: None,
                purge_at: MIN_PURGE,
            }),
            wake_driver: Notify::new(),
        }
    }

    /// Puts stage `stage` of `req` (already marked running) to sleep for `duration`; the
    /// driver completes it (or starts its next stage) when the time comes.
    pub fn sleep(
        &self,
        req: Arc<Request>,
        stage: usize,
        permit: Option<Permit>,
        duration: Duration,
    ) {
        self.insert(std::iter::once(Sleeper {
            at: Instant::now() + duration,
            req,
            stage: stage as u32,
            permit: permit.map(Box::new),
        }));
    }

    /// Times each request out at its deadline (with `PORTWAY_TIMEOUT`) unless it has finished
    /// by then; requests without a time limit are skipped. One lock for the lot.
    pub fn deadlines<'a>(&self, reqs: impl IntoIterator<Item = &'a Arc<Request>>) {
        let mut entries = reqs
            .into_iter()
            .filter_map(|req| {
                req.deadline().map(|at| Sleeper {
                    at,
                    req: req.clone(),
                    stage: DEADLINE,
                    permit: None,
                })
            })
            .peekable();
        // Batches without a time limit (the common case) never take the timer's lock.
        if entries.peek().is_some() {
            self.insert(entries);
        }
    }

    fn insert(&self, entries: impl Iterator<Item = Sleeper>) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.heap.len() >= st.purge_at {
            let purged: Vec<Sleeper> = {
                let (done, live): (Vec<_>, Vec<_>) = std::mem::take(&mut st.heap)
                    .into_iter()
                    .partition(|s| s.req.is_done());
                st.heap = live.into();
                done
            };
            st.purge_at = MIN_PURGE.max(2 * st.heap.len());
            // Dropping permits may start queued work: never under this lock.
            drop(st);
            drop(purged);
            st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        }
        let mut earliest: Option<Instant> = None;
        for entry in entries {
            earliest = Some(earliest.map_or(entry.at, |t| t.min(entry.at)));
            st.heap.push(entry);
        }
        let Some(at) = earliest else { return };
        let earlier = st.driver_wakes_at.is_none_or(|t| at < t);
        if earlier {
            st.driver_wakes_at = Some(at);
        }
        drop(st);
        if earlier {
            // Stores a permit if the driver is between its check and its wait: never lost.
            self.wake_driver.notify_one();
        }
    }

    /// Takes up to [`MAX_DUE`] entries due by `now`, and notes when the driver must wake next.
    fn take_due(&self, now: Instant) -> (Vec<Sleeper>, Option<Instant>) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut due = Vec::new();
        while due.len() < MAX_DUE && st.heap.peek().is_some_and(|s| s.at <= now) {
            if let Some(s) = st.heap.pop() {
                due.push(s);
            }
        }
        if st.heap.capacity() > 4 * MIN_PURGE && st.heap.len() < st.heap.capacity() / 4 {
            // A burst has passed: give its memory back.
            let keep = (2 * st.heap.len()).max(MIN_PURGE);
            st.heap.shrink_to(keep);
        }
        let next = st.heap.peek().map(|s| s.at);
        st.driver_wakes_at = next;
        (due, next)
    }

    /// Drops every entry (engine teardown: breaks request -> permit -> engine cycles).
    pub fn clear(&self) {
        let drained: Vec<Sleeper> = match self.state.lock() {
            Ok(mut st) => std::mem::take(&mut st.heap).into_vec(),
            Err(_) => Vec::new(),
        };
        drop(drained);
    }
}

/// The driver: wakes at the earliest entry's time (or when an earlier one arrives), finishes
/// everything due, and sleeps again. Runs until the runtime shuts down.
/// It holds the engine only weakly, so an engine dropped without its runtime's tasks ever
/// being dropped is still freed.
pub(crate) async fn drive(timers: Arc<Timers>, shared: Weak<Shared>) {
    loop {
        let (due, next) = timers.take_due(Instant::now());
        if !due.is_empty() {
            match shared.upgrade() {
                Some(shared) => wake_up(&shared, due),
                None => return,
            }
            continue; // more may have come due meanwhile
        }
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = timers.wake_driver.notified() => {}
                }
            }
            None => timers.wake_driver.notified().await,
        }
    }
}

/// Ends the sleeps and deadlines in `due`: final stages and timeouts are completed and queued
/// as one batch; pipeline stages go on to their next stage. A sleep that ran to its end tells
/// its permit before anything can see its completion (as pool and async runs do: a success
/// for the breaker, a latency sample for the adaptive limit, a run time for the rate limit).
/// Permits are dropped last, outside every lock.
fn wake_up(shared: &Arc<Shared>, due: Vec<Sleeper>) {
    let mut finished = Vec::with_capacity(due.len());
    let mut permits = Vec::new();
    for mut s in due {
        if s.stage != DEADLINE
            && let Some(permit) = s.permit.as_deref_mut()
        {
            permit.observe(&s.req, &Outcome::ok(Vec::new()));
        }
        permits.extend(s.permit.take());
        if s.req.is_done() {
            continue;
        }
        if s.stage == DEADLINE {
            let message = format!("deadline of {} ms passed", s.req.timeout_ms);
            let outcome = Outcome::failed(Status::PORTWAY_TIMEOUT, message);
            if dispatch::claim(shared, &s.req, outcome) == dispatch::Claimed::Queue {
                finished.push(s.req);
            }
        } else if s.req.stage_count() > 1 {
            // Pipelines go on to their next stage (and record per-stage figures).
            dispatch::stage_done(shared, s.req, s.stage as usize, Outcome::ok(Vec::new()));
        } else if dispatch::claim(shared, &s.req, Outcome::ok(Vec::new()))
            == dispatch::Claimed::Queue
        {
            finished.push(s.req);
        }
    }
    shared.queue.push(finished);
    drop(permits);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::registry::{HandlerKind, test_entry};

    fn requests(n: u64) -> Vec<Arc<Request>> {
        let entry = test_entry(HandlerKind::Delay(|_| Ok(Duration::ZERO)));
        let now = Instant::now();
        (1..=n)
            .map(|id| Arc::new(Request::new(id, 0, entry.clone(), now, 0)))
            .collect()
    }

    #[test]
    fn a_large_burst_comes_out_in_slices_and_its_memory_is_given_back() {
        let timers = Timers::new();
        let n = 3 * MAX_DUE as u64 + 5;
        for req in requests(n) {
            timers.sleep(req, 0, None, Duration::ZERO);
        }
        let later = Instant::now() + Duration::from_millis(1);
        let mut taken = 0;
        loop {
            let (due, next) = timers.take_due(later);
            assert!(due.len() <= MAX_DUE);
            taken += due.len();
            if next.is_none() {
                break;
            }
        }
        assert_eq!(taken as u64, n);
        let st = timers.state.lock().unwrap();
        assert!(
            st.heap.capacity() <= 4 * MIN_PURGE,
            "kept {}",
            st.heap.capacity()
        );
    }

    #[test]
    fn due_entries_come_out_earliest_first_and_equal_times_in_order() {
        let timers = Timers::new();
        let reqs = requests(4);
        for (req, ms) in reqs.iter().zip([30, 10, 20, 10]) {
            timers.sleep(req.clone(), 0, None, Duration::from_millis(ms));
        }
        let (due, next) = timers.take_due(Instant::now() + Duration::from_millis(25));
        let ids: Vec<u64> = due.iter().map(|s| s.req.id).collect();
        assert_eq!(ids, [2, 4, 3]);
        assert!(next.is_some(), "the 30 ms sleep is still waiting");
        let (due, next) = timers.take_due(Instant::now() + Duration::from_secs(1));
        assert_eq!(due.len(), 1);
        assert_eq!(next, None);
    }

    #[test]
    fn finished_sleepers_are_purged_once_the_heap_doubles() {
        let timers = Timers::new();
        let reqs = requests(MIN_PURGE as u64 + 10);
        let hour = Duration::from_secs(3600);
        for req in &reqs[..MIN_PURGE] {
            timers.sleep(req.clone(), 0, None, hour);
            // Cancelled right away: its entry is now dead weight.
            assert!(
                req.claim_completion(Outcome::ok(Vec::new()), None)
                    .is_some()
            );
        }
        assert_eq!(timers.state.lock().unwrap().heap.len(), MIN_PURGE);
        // The next sleep finds the heap at the purge size and drops the finished entries.
        timers.sleep(reqs[MIN_PURGE].clone(), 0, None, hour);
        assert_eq!(timers.state.lock().unwrap().heap.len(), 1);
        assert_eq!(Arc::strong_count(&reqs[0]), 1, "the heap let go of it");
    }
}
