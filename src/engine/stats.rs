//! Engine counters and the snapshot `portway_stats` reports.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::status::{ALL, Status};

/// Number of per-status completion counters (room for statuses appended later).
pub const STATUS_SLOTS: usize = 32;

/// Live counters, updated with relaxed atomics.
///
/// The host-side counters (bumped by submitting and polling threads) and the work-side ones
/// (bumped by pool and runtime threads as requests start and finish) live on separate cache
/// lines, and the work-side ones are striped per thread, so a worker finishing a request never
/// writes a line the submitting thread is writing too.
#[derive(Default)]
pub(crate) struct Counters {
    pub submitted: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected_busy: AtomicU64,
    pub rejected_shutdown: AtomicU64,
    pub rejected_invalid: AtomicU64,
    pub polled: AtomicU64,
    pub released: AtomicU64,
    work: WorkStripes,
}

/// Number of work-side stripes; threads beyond this share stripes (still correct, just shared).
const STRIPES: usize = 8;

/// Per-thread copies of the work-side counters, summed when read.
struct WorkStripes([WorkCounters; STRIPES]);

impl Default for WorkStripes {
    fn default() -> Self {
        WorkStripes(std::array::from_fn(|_| WorkCounters::default()))
    }
}

/// One stripe: counts of requests started and finished, on cache lines of their own.
#[derive(Default)]
#[repr(align(128))]
struct WorkCounters {
    started: AtomicU64,
    finished_after_start: AtomicU64,
    completed: [AtomicU64; STATUS_SLOTS],
}

/// The stripe the calling thread writes (threads are spread round-robin).
fn my_stripe() -> usize {
    use std::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Relaxed) % STRIPES;
    }
    STRIPE.with(|s| *s)
}

/// A point-in-time view of an engine's counters and gauges.
///
/// This is also the C record (`struct portway_stats`, typedef `portway_stats_record`): one
/// definition for Rust and the C ABI. The header spells the struct out by hand (the function
/// `portway_stats` owns the plain name); `tests/ffi_layout.rs` checks it field by field.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Requests offered to submit calls (accepted or not).
    pub submitted: u64,
    /// Requests accepted.
    pub accepted: u64,
    /// Requests refused with `PORTWAY_BUSY`.
    pub rejected_busy: u64,
    /// Requests refused with `PORTWAY_SHUTDOWN`.
    pub rejected_shutdown: u64,
    /// Requests refused for bad input (unknown handler, payload too large, invalid payload).
    pub rejected_invalid: u64,
    /// Completions posted, by status value.
    pub completed: [u64; STATUS_SLOTS],
    /// Slots held: accepted and not yet released.
    pub in_flight: u64,
    /// Accepted and not yet started.
    pub queued: u64,
    /// Started and not yet finished.
    pub running: u64,
    /// Finished and not yet polled.
    pub ready: u64,
    /// Polled and not yet released.
    pub unreleased: u64,
    /// Threads in the native worker pool.
    pub pool_workers: u64,
}

impl StatsSnapshot {
    /// Total completions posted.
    pub fn completed_total(&self) -> u64 {
        self.completed.iter().sum()
    }

    /// Completions posted with `status`.
    pub fn completed_with(&self, status: Status) -> u64 {
        self.completed[status as usize]
    }
}

impl Counters {
    fn stripe(&self) -> &WorkCounters {
        &self.work.0[my_stripe()]
    }

    /// Counts `n` requests whose first stage started.
    pub fn count_started(&self, n: u64) {
        self.stripe().started.fetch_add(n, Relaxed);
    }

    /// Counts one completion with `status`.
    pub fn count_completion(&self, status: Status, had_started: bool) {
        let stripe = self.stripe();
        stripe.completed[status as usize].fetch_add(1, Relaxed);
        if had_started {
            stripe.finished_after_start.fetch_add(1, Relaxed);
        }
    }

    /// Derives the gauges from the counters.
    pub fn snapshot(&self, in_flight: u64, pool_workers: u64) -> StatsSnapshot {
        // Read in the order requests move (released before polled before finished before
        // started before accepted), so a request moving on meanwhile is never counted as
        // further along than its earlier steps.
        let released = self.released.load(Relaxed);
        let polled = self.polled.load(Relaxed);
        let mut completed = [0; STATUS_SLOTS];
        let mut finished_after_start = 0;
        for stripe in &self.work.0 {
            for s in ALL {
                completed[s as usize] += stripe.completed[s as usize].load(Relaxed);
            }
            finished_after_start += stripe.finished_after_start.load(Relaxed);
        }
        let finished: u64 = completed.iter().sum();
        let started: u64 = self.work.0.iter().map(|s| s.started.load(Relaxed)).sum();
        let accepted = self.accepted.load(Relaxed);
        let finished_unstarted = finished.saturating_sub(finished_after_start);
        StatsSnapshot {
            submitted: self.submitted.load(Relaxed),
            accepted,
            rejected_busy: self.rejected_busy.load(Relaxed),
            rejected_shutdown: self.rejected_shutdown.load(Relaxed),
            rejected_invalid: self.rejected_invalid.load(Relaxed),
            completed,
            in_flight,
            queued: accepted.saturating_sub(started + finished_unstarted),
            running: started.saturating_sub(finished_after_start),
            ready: finished.saturating_sub(polled),
            unreleased: polled.saturating_sub(released),
            pool_workers,
        }
    }
}
