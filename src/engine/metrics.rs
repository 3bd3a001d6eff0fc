//! Per-handler metrics: requests submitted, completions by status, and HDR histograms of queue
//! wait and run time.
//!
//! Completions are recorded when they are polled, in one locked step per handler per poll
//! batch, so the hot path pays no lock per request. Pipeline stages are recorded as each stage
//! finishes, into the stage handler's own metrics.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use hdrhistogram::Histogram;

use super::stats::STATUS_SLOTS;
use crate::status::Status;

/// Highest latency tracked exactly: one hour, in nanoseconds (longer values are clamped).
const MAX_TRACKED_NS: u64 = 3_600_000_000_000;
/// Significant figures kept by the histograms (1% resolution).
const SIGFIGS: u8 = 2;

/// Latency summary of one histogram.
///
/// This is also the C record `struct portway_latency`: one definition for Rust and the C ABI
/// (spelled out by hand in the header, checked field by field by `tests/ffi_layout.rs`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencySummary {
    /// Median, in ns.
    pub p50_ns: u64,
    /// 90th percentile, in ns.
    pub p90_ns: u64,
    /// 99th percentile, in ns.
    pub p99_ns: u64,
    /// Largest value seen, in ns.
    pub max_ns: u64,
    /// Sum of all values, in ns.
    pub sum_ns: u64,
    /// Number of values.
    pub count: u64,
}

/// A snapshot of one handler's metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HandlerStats {
    /// Handler id.
    pub id: u32,
    /// Handler name.
    pub name: String,
    /// Requests accepted for this handler (as the addressed handler, not as a stage).
    pub submitted: u64,
    /// Completions recorded, by status value.
    pub completed: [u64; STATUS_SLOTS],
    /// Time from acceptance (or, for a pipeline stage, from the previous stage) to start.
    pub queue_wait: LatencySummary,
    /// Time from start to finish.
    pub run: LatencySummary,
}

impl HandlerStats {
    /// Total completions recorded.
    pub fn completed_total(&self) -> u64 {
        self.completed.iter().sum()
    }
}

struct Timings {
    completed: [u64; STATUS_SLOTS],
    queue_wait: Histogram<u64>,
    run: Histogram<u64>,
    queue_sum_ns: u64,
    run_sum_ns: u64,
}

/// Live metrics of one handler.
pub(crate) struct HandlerMetrics {
    pub submitted: AtomicU64,
    timings: Mutex<Timings>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKED_NS, SIGFIGS).expect("valid histogram bounds")
}

impl HandlerMetrics {
    pub fn new() -> Self {
        HandlerMetrics {
            submitted: AtomicU64::new(0),
            timings: Mutex::new(Timings {
                completed: [0; STATUS_SLOTS],
                queue_wait: histogram(),
                run: histogram(),
                queue_sum_ns: 0,
                run_sum_ns: 0,
            }),
        }
    }

    /// Counts `n` accepted requests.
    pub fn count_submitted(&self, n: u64) {
        self.submitted.fetch_add(n, Relaxed);
    }

    /// Records completions: (status, queue_wait_ns, run_ns) each. Zero durations (handlers
    /// that answer inline) are counted in one step per call.
    pub fn record(&self, items: impl IntoIterator<Item = (Status, u64, u64)>) {
        let mut t = self.timings.lock().unwrap_or_else(|e| e.into_inner());
        let (mut zero_queued, mut zero_run) = (0u64, 0u64);
        for (status, queued, run) in items {
            t.completed[status as usize] += 1;
            if queued == 0 {
                zero_queued += 1;
            } else {
                t.queue_wait.saturating_record(queued.min(MAX_TRACKED_NS));
                t.queue_sum_ns = t.queue_sum_ns.saturating_add(queued);
            }
            if run == 0 {
                zero_run += 1;
            } else {
                t.run.saturating_record(run.min(MAX_TRACKED_NS));
                t.run_sum_ns = t.run_sum_ns.saturating_add(run);
            }
        }
        if zero_queued > 0 {
            let _ = t.queue_wait.record_n(1, zero_queued);
        }
        if zero_run > 0 {
            let _ = t.run.record_n(1, zero_run);
        }
    }

    /// A snapshot, plus the histogram buckets (count of values <= each bound in `bounds_ns`).
    pub fn snapshot(
        &self,
        id: u32,
        name: &str,
        bounds_ns: &[u64],
    ) -> (HandlerStats, Vec<u64>, Vec<u64>) {
        let t = self.timings.lock().unwrap_or_else(|e| e.into_inner());
        let summary = |h: &Histogram<u64>, sum: u64| LatencySummary {
            p50_ns: h.value_at_quantile(0.50),
            p90_ns: h.value_at_quantile(0.90),
            p99_ns: h.value_at_quantile(0.99),
            max_ns: h.max(),
            sum_ns: sum,
            count: h.len(),
        };
        let buckets = |h: &Histogram<u64>| -> Vec<u64> {
            bounds_ns
                .iter()
                .map(|&b| {
                    if h.is_empty() {
                        0
                    } else {
                        h.count_between(0, b)
                    }
                })
                .collect()
        };
        let stats = HandlerStats {
            id,
            name: name.to_owned(),
            submitted: self.submitted.load(Relaxed),
            completed: t.completed,
            queue_wait: summary(&t.queue_wait, t.queue_sum_ns),
            run: summary(&t.run, t.run_sum_ns),
        };
        (stats, buckets(&t.queue_wait), buckets(&t.run))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_summarises() {
        let m = HandlerMetrics::new();
        m.count_submitted(3);
        m.record([
            (Status::PORTWAY_OK, 1_000, 10_000),
            (Status::PORTWAY_OK, 2_000, 20_000),
            (Status::PORTWAY_TIMEOUT, 3_000, 30_000_000),
        ]);
        let (s, q, r) = m.snapshot(1, "h", &[5_000, 1_000_000_000]);
        assert_eq!(s.submitted, 3);
        assert_eq!(s.completed_total(), 3);
        assert_eq!(s.completed[Status::PORTWAY_TIMEOUT as usize], 1);
        assert_eq!(s.run.count, 3);
        assert!(s.run.max_ns >= 29_000_000);
        assert_eq!(s.queue_wait.sum_ns, 6_000);
        assert_eq!(q, vec![3, 3]);
        assert_eq!(r, vec![0, 3]);
    }
}
