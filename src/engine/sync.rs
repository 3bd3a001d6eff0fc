//! The synchronisation types of the completion queue, the ledger, requests and the recycler:
//! std's in every build, loom's when built with `--cfg portway_loom` (`make loom`), so that the
//! loom models (`src/engine/loom_models.rs`) check the real types, not copies.
//!
//! `OutcomeCell` is the one `UnsafeCell` on that path (a request's outcome, written once by
//! the completing thread, read by the poller, freed after release); under loom every access is
//! checked against the happens-before order, which is how the models see a read racing a free.

#[cfg(not(portway_loom))]
pub(crate) use std::hint::spin_loop;
#[cfg(not(portway_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize};
#[cfg(not(portway_loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};

#[cfg(portway_loom)]
pub(crate) use loom::hint::spin_loop;
#[cfg(portway_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize};
#[cfg(portway_loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};

/// An `UnsafeCell` whose accesses loom tracks (std's `UnsafeCell`, at no cost, otherwise).
#[derive(Debug)]
pub(crate) struct OutcomeCell<T>(
    #[cfg(not(portway_loom))] std::cell::UnsafeCell<T>,
    #[cfg(portway_loom)] loom::cell::UnsafeCell<T>,
);

impl<T> OutcomeCell<T> {
    pub fn new(value: T) -> Self {
        #[cfg(not(portway_loom))]
        return OutcomeCell(std::cell::UnsafeCell::new(value));
        #[cfg(portway_loom)]
        return OutcomeCell(loom::cell::UnsafeCell::new(value));
    }

    /// Reads through a pointer (a shared access for loom).
    pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        #[cfg(not(portway_loom))]
        return f(self.0.get());
        #[cfg(portway_loom)]
        return self.0.with(f);
    }

    /// Writes through a pointer (an exclusive access for loom).
    pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        #[cfg(not(portway_loom))]
        return f(self.0.get());
        #[cfg(portway_loom)]
        return self.0.with_mut(f);
    }
}
