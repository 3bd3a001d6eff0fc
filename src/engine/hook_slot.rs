//! A host hook that can be replaced or cleared safely: `set` returns only once no call of the
//! hook it replaced is still running, so the host may free the old hook's context right after
//! (`portway_set_notify`, `portway_set_log`, `portway_engine_free`).
//!
//! Every call is counted under a small lock; `set` starts a new generation and waits until the
//! calls of older generations have returned. Calls of the new hook are not waited for (a hook
//! called without pause cannot starve the setter). A thread that is itself inside a hook (of
//! any slot) does not wait: it cannot wait for its own call, and two hooks each replacing the
//! other's slot would otherwise wait for each other forever.

use std::cell::Cell;

use super::sync::{Condvar, Mutex};

thread_local! {
    /// How many hook calls this thread is inside (hooks may call into the engine).
    static IN_HOOK: Cell<usize> = const { Cell::new(0) };
}

/// One installed hook and the calls of it in progress.
pub(crate) struct HookSlot<H> {
    state: Mutex<SlotState<H>>,
    /// Signalled when the last call of an older generation returns.
    idle: Condvar,
}

struct SlotState<H> {
    hook: Option<H>,
    /// Bumped by every `set`.
    generation: u64,
    /// Calls running that started under the current generation.
    current: usize,
    /// Calls running that started under an older generation (a setter waits for these).
    older: usize,
}

impl<H: Clone> HookSlot<H> {
    pub fn new() -> Self {
        HookSlot {
            state: Mutex::new(SlotState {
                hook: None,
                generation: 0,
                current: 0,
                older: 0,
            }),
            idle: Condvar::new(),
        }
    }

    /// Installs (or clears, with None) the hook; returns once no call of an earlier hook is
    /// running, unless this thread is itself inside a hook call (then it returns at once).
    pub fn set(&self, hook: Option<H>) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let old = std::mem::replace(&mut st.hook, hook);
        st.generation += 1;
        st.older += st.current;
        st.current = 0;
        if IN_HOOK.with(Cell::get) == 0 {
            while st.older > 0 {
                st = self.idle.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        }
        drop(st);
        drop(old);
    }

    /// Calls `f` with the installed hook (None when there is none), counted as running until
    /// it returns (or unwinds).
    pub fn call<R>(&self, f: impl FnOnce(&H) -> R) -> Option<R> {
        let (hook, generation) = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let hook = st.hook.clone()?;
            st.current += 1;
            (hook, st.generation)
        };
        IN_HOOK.with(|d| d.set(d.get() + 1));
        let _running = Running {
            slot: self,
            generation,
        };
        Some(f(&hook))
    }
}

/// One call in progress; its drop ends the count (also when the hook unwinds).
struct Running<'a, H> {
    slot: &'a HookSlot<H>,
    generation: u64,
}

impl<H> Drop for Running<'_, H> {
    fn drop(&mut self) {
        IN_HOOK.with(|d| d.set(d.get().saturating_sub(1)));
        let mut st = self.slot.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.generation == self.generation {
            st.current -= 1;
        } else {
            st.older -= 1;
            if st.older == 0 {
                self.slot.idle.notify_all();
            }
        }
    }
}
