//! The live p95's samples: which runs count, with what latency, and why.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::{Hedging, MIN_SAMPLES, WINDOW};
use crate::contract::Outcome;
use crate::status::Status;

/// The last [`WINDOW`] latency samples (see [`Sample`]), a ring.
#[derive(Default)]
pub(super) struct Window {
    pub(super) ns: Vec<u64>,
    next: usize,
    seen: u64,
}

impl Hedging {
    /// Records one latency sample (see [`Sample`]).
    pub(super) fn record(&self, took: Duration) {
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

/// A hedged run's latency sample for the live p95: the time from the run's start to the
/// outcome that completes it — the winner's, whichever attempt won — when that is a success
/// or a timeout; a run its request's deadline cut off counts the time it ran (it took at least
/// that long). Other failures (a refused connection is fast because nothing ran) and runs
/// ended by cancel or shutdown are no sample.
///
/// Why the winner's time from the start, not the first attempt's own: a first attempt a
/// hedge beat is cancelled, so its own time is never known. And it comes to the same delay:
/// a run finishes after the delay `d` exactly when its first attempt does (a hedge starts only
/// at `d`), so the share of runs slower than `d` is the share of first attempts slower than
/// `d`, and the p95 of these samples settles where 5 % of first attempts are slower — the
/// first attempts' p95 ("The Tail at Scale"), however often hedges win.
pub(super) struct Sample<'a> {
    h: &'a Hedging,
    begun: Instant,
    deadline: Option<Instant>,
    /// The outcome was seen (the drop records nothing more).
    taken: bool,
}

impl<'a> Sample<'a> {
    /// A run of `h`'s handler starts now, for a request whose deadline is `deadline`.
    pub(super) fn start(h: &'a Hedging, deadline: Option<Instant>) -> Self {
        Sample {
            h,
            begun: Instant::now(),
            deadline,
            taken: false,
        }
    }

    /// Records the sample `outcome` gives, and hands the outcome back.
    pub(super) fn of(mut self, outcome: Outcome) -> Outcome {
        self.taken = true;
        if outcome.is_ok() || outcome.status == Status::PORTWAY_TIMEOUT {
            self.h.record(self.begun.elapsed());
        }
        outcome
    }
}

impl Drop for Sample<'_> {
    /// The race was dropped before an outcome: cut off by the deadline (a sample: at least
    /// this long), or by cancel or shutdown (none).
    fn drop(&mut self) {
        let now = Instant::now();
        if !self.taken && self.deadline.is_some_and(|d| now >= d) {
            self.h.record(now - self.begun);
        }
    }
}
