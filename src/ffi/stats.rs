//! `portway_stats`: counters and gauges of one engine.

use super::engine::portway_engine;
use super::guard::{Castable, guard, write_out};
use crate::engine::STATUS_SLOTS;
use crate::status::portway_status;

/// Length of `portway_stats.completed`: one counter per status value.
pub const PORTWAY_STATUS_SLOTS: usize = STATUS_SLOTS;

/// `struct portway_stats` in C, typedef `portway_stats_record` (the header spells it out by
/// hand, since the function owns the plain name): a snapshot of an engine's counters
/// (monotonic) and gauges (current values). Gauges are read without a global lock, so under
/// load they may be off by requests moving between states.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct portway_stats_record {
    /// Requests offered to the submit functions, accepted or not.
    pub submitted: u64,
    /// Requests accepted.
    pub accepted: u64,
    /// Requests refused with `PORTWAY_BUSY`.
    pub rejected_busy: u64,
    /// Requests refused with `PORTWAY_SHUTDOWN`.
    pub rejected_shutdown: u64,
    /// Requests refused for bad input (unknown handler, payload too large, invalid payload).
    pub rejected_invalid: u64,
    /// Completions posted, indexed by status value (`completed[PORTWAY_TIMEOUT]`, ...).
    pub completed: [u64; PORTWAY_STATUS_SLOTS],
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

/// Writes a snapshot of the engine's counters to `*out`. Callable from any thread.
/// Returns `PORTWAY_OK`, `PORTWAY_INVALID_ARGUMENT` (NULL engine or out) or `PORTWAY_FORKED`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_stats(
    eng: *mut portway_engine,
    out: *mut portway_stats_record,
) -> portway_status {
    guard(|| {
        // SAFETY: NULL or a live engine.
        let s = unsafe { portway_engine::borrow(eng) }?.stats()?;
        let stats = portway_stats_record {
            submitted: s.submitted,
            accepted: s.accepted,
            rejected_busy: s.rejected_busy,
            rejected_shutdown: s.rejected_shutdown,
            rejected_invalid: s.rejected_invalid,
            completed: s.completed,
            in_flight: s.in_flight,
            queued: s.queued,
            running: s.running,
            ready: s.ready,
            unreleased: s.unreleased,
            pool_workers: s.pool_workers,
        };
        // SAFETY: the caller passes NULL or a writable portway_stats.
        unsafe { write_out(out, "out", stats) }
    })
}
