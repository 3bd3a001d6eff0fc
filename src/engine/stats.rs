//! Engine counters and the snapshot `portway_stats` reports.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::status::{ALL, Status};

/// Number of per-status completion counters (room for statuses appended later).
pub const STATUS_SLOTS: usize = 32;

/// Live counters, updated with relaxed atomics.
#[derive(Default)]
pub(crate) struct Counters {
    pub submitted: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected_busy: AtomicU64,
    pub rejected_shutdown: AtomicU64,
    pub rejected_invalid: AtomicU64,
    pub started: AtomicU64,
    pub finished: AtomicU64,
    pub finished_after_start: AtomicU64,
    pub polled: AtomicU64,
    pub released: AtomicU64,
    pub completed: [AtomicU64; STATUS_SLOTS],
}

/// A point-in-time view of an engine's counters and gauges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
    /// Counts one completion with `status`.
    pub fn count_completion(&self, status: Status, had_started: bool) {
        self.completed[status as usize].fetch_add(1, Relaxed);
        self.finished.fetch_add(1, Relaxed);
        if had_started {
            self.finished_after_start.fetch_add(1, Relaxed);
        }
    }

    /// Derives the gauges from the counters.
    pub fn snapshot(&self, in_flight: u64, pool_workers: u64) -> StatsSnapshot {
        let accepted = self.accepted.load(Relaxed);
        let started = self.started.load(Relaxed);
        let finished = self.finished.load(Relaxed);
        let finished_after_start = self.finished_after_start.load(Relaxed);
        let polled = self.polled.load(Relaxed);
        let released = self.released.load(Relaxed);
        let mut completed = [0; STATUS_SLOTS];
        for s in ALL {
            completed[s as usize] = self.completed[s as usize].load(Relaxed);
        }
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
