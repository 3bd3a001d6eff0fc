//! `portway_stats`: counters and gauges of one engine.

use super::engine::portway_engine;
use super::guard::{Castable, guard, write_out};
use crate::engine::{STATUS_SLOTS, StatsSnapshot};
use crate::status::portway_status;

/// Length of `portway_stats.completed`: one counter per status value.
pub const PORTWAY_STATUS_SLOTS: usize = STATUS_SLOTS;

/// `struct portway_stats` in C, typedef `portway_stats_record` (the header spells it out by
/// hand, since the function owns the plain name): a snapshot of an engine's counters
/// (monotonic) and gauges (current values). Gauges are read without a global lock, so under
/// load they may be off by requests moving between states. The engine's own snapshot type,
/// `#[repr(C)]`: one definition, no copy field by field.
pub type portway_stats_record = StatsSnapshot;

/// Writes a snapshot of the engine's counters to `*out`. Callable from any thread.
/// Returns `PORTWAY_OK`, `PORTWAY_INVALID_ARGUMENT` (NULL engine or out) or `PORTWAY_FORKED`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_stats(
    eng: *mut portway_engine,
    out: *mut portway_stats_record,
) -> portway_status {
    guard(|| {
        // SAFETY: NULL or a live engine.
        let stats = unsafe { portway_engine::borrow(eng) }?.stats()?;
        // SAFETY: the caller passes NULL or a writable portway_stats.
        unsafe { write_out(out, "out", stats) }
    })
}
