//! Fork detection: a process-wide generation bumped in the child by `pthread_atfork`.
//! An engine remembers the generation it was created in; a mismatch means "inherited".

use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

static GENERATION: AtomicU64 = AtomicU64::new(0);
static INSTALL: Once = Once::new();

extern "C" fn in_child() {
    GENERATION.fetch_add(1, Ordering::SeqCst);
}

/// Installs the fork hook (once per process) and returns the current generation.
pub fn current_generation() -> u64 {
    INSTALL.call_once(|| {
        // SAFETY: registers a handler that only touches an atomic; async-signal-safe.
        unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
    });
    GENERATION.load(Ordering::SeqCst)
}

/// True when `generation` was recorded before a fork that this process is the child of.
pub fn is_stale(generation: u64) -> bool {
    GENERATION.load(Ordering::Relaxed) != generation
}
