//! Whether a thread about to sleep (a poller waiting for completions, an idle pool worker
//! waiting for jobs) should spin first, and for how long: the adaptive spin of glibc's adaptive
//! mutex and Go's scheduler, for a machine that may have fewer CPUs than busy threads.
//!
//! Spinning pays only while what is waited for arrives sooner than a sleep and its wake-up cost
//! (a futex each way, several microseconds), and only on a CPU nobody else needs. So a waiter:
//! - never spins when the threads that have work (pool workers inside a handler, the host)
//!   already fill every CPU: a spin would take the CPU from one of them (W4 on 2 vCPUs: the
//!   poller and two hashing workers);
//! - spins its full budget while spins keep ending with what it waited for;
//! - after a spin that ran out, skips spinning on the next waits, trying again on every
//!   second, then fourth, ... wait (at most every 64th), so a changed pattern is noticed again
//!   without a failing spin on every wait.
//!
//! The gate only decides; the caller spins and reports how it ended. Relaxed atomics: the
//! figures are hints, and a lost update costs at most one spin more or less.

use std::num::NonZeroUsize;
use std::sync::atomic::Ordering::Relaxed;

use super::sync::AtomicU32;

/// After this many spins in a row ran out, a spin is tried on every 2^MAX_BACKOFF-th wait.
const MAX_BACKOFF: u32 = 6;

/// The CPUs this process may run on (its affinity mask and cgroup quota, as std reads them); 1
/// when unknown, which only makes waiters park sooner.
pub(crate) fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// One waiter's (or one kind of waiter's) spin history.
#[derive(Debug, Default)]
pub(crate) struct SpinGate {
    /// Spins in a row that ran out of budget (capped at `MAX_BACKOFF`).
    misses: AtomicU32,
    /// Waits seen since the last miss (decides which wait tries a spin again).
    waits: AtomicU32,
}

impl SpinGate {
    /// How many looks the next wait may spin for (0: sleep at once): `full` unless `busy`
    /// other threads with work fill the `cpus` CPUs, or recent spins ran out and this wait is
    /// not one that tries again.
    pub fn budget(&self, busy: usize, cpus: usize, full: u32) -> u32 {
        if busy >= cpus {
            return 0;
        }
        if cfg!(portway_loom) {
            // A hint, not part of any decision the models check: no extra interleavings.
            return full;
        }
        let misses = self.misses.load(Relaxed);
        if misses == 0 {
            return full;
        }
        let wait = self.waits.fetch_add(1, Relaxed);
        if wait.is_multiple_of(1 << misses) {
            full
        } else {
            0
        }
    }

    /// Reports how a spin the gate allowed ended: `hit` when what was waited for came (or the
    /// wait was interrupted) before the budget ran out.
    pub fn record(&self, hit: bool) {
        if cfg!(portway_loom) {
            return;
        }
        if hit {
            self.misses.store(0, Relaxed);
        } else {
            let m = self.misses.load(Relaxed);
            self.misses.store((m + 1).min(MAX_BACKOFF), Relaxed);
            self.waits.store(1, Relaxed);
        }
    }
}

#[cfg(all(test, not(portway_loom)))]
mod tests {
    use super::*;

    #[test]
    fn never_spins_when_busy_threads_fill_every_cpu() {
        let g = SpinGate::default();
        assert_eq!(g.budget(2, 2, 256), 0);
        assert_eq!(g.budget(5, 2, 256), 0);
        assert_eq!(g.budget(1, 2, 256), 256);
        assert_eq!(g.budget(0, 1, 256), 256);
    }

    #[test]
    fn spins_fully_while_spins_succeed() {
        let g = SpinGate::default();
        for _ in 0..10 {
            assert_eq!(g.budget(0, 2, 64), 64);
            g.record(true);
        }
    }

    #[test]
    fn after_failed_spins_tries_again_ever_less_often_and_recovers_on_a_hit() {
        let g = SpinGate::default();
        g.record(false); // one miss: every 2nd wait spins
        let tried = |g: &SpinGate, n| (0..n).filter(|_| g.budget(0, 2, 64) > 0).count();
        assert_eq!(tried(&g, 8), 4);
        g.record(false); // two: every 4th
        assert_eq!(tried(&g, 8), 2);
        for _ in 0..10 {
            g.record(false); // capped: every 64th
        }
        assert_eq!(tried(&g, 128), 2);
        g.record(true);
        assert_eq!(
            tried(&g, 8),
            8,
            "a spin that succeeded restores the full spin"
        );
    }
}
