//! The completion queue: finished requests waiting to be polled, the level-triggered notify
//! fd, the notify hook, explicit wakes, and the intake counter that decides `PORTWAY_CLOSED`.
//!
//! Invariants, all kept under the one state lock:
//! - once the host asked for it, the eventfd is readable exactly when `ready` is non-empty or
//!   the queue is closed (until then it is never touched: hosts that block in `poll` pay no
//!   eventfd syscalls);
//! - the hook runs (outside the lock) after every transition from empty to non-empty;
//! - `intake` = shutdown flag | requests accepted but not yet polled. It is one atomic so that
//!   a submit either lands before shutdown (and will be polled) or is refused;
//! - `ready_len` mirrors `ready.len()` and `interrupts` counts wakes and the close; both are
//!   written under the lock and read without it by a poll that spins before it sleeps. The
//!   spin only decides when to look again: every decision is taken under the lock, so a push
//!   or wake that lands between the spin and the sleep is seen before the poller sleeps.
//!
//! A poll that finds too little spins briefly on those counters (a CPU pause hint per look:
//! no lock, no syscall), and only while requests are in flight and the spin gate allows it
//! (`spin.rs`: not while busy threads fill every CPU, and rarely after spins that ran out),
//! then sleeps on the condvar. A
//! push wakes a sleeping poller only when one that has not been signalled yet waits (plain
//! pollers) or when enough is ready for the smallest batch waited for (`poll_min`), so a burst
//! of pushes costs one wake-up, not one per completion.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::hook_slot::HookSlot;
use super::request::Request;
use super::spin::{self, SpinGate};
use super::sync::{AtomicU64, AtomicUsize, Condvar, Mutex, spin_loop};
use crate::error::{Error, Result};

const SHUTDOWN_BIT: u64 = 1 << 63;

/// How many times a poll that finds too little looks at the queue's counters again (a CPU
/// pause hint in between, no lock, no syscall) before it sleeps: a few microseconds, enough for
/// a completion already on its way, short enough not to take a shared core from the threads
/// producing it (measured in BENCHMARKS.md, "the completion queue's wait"). Once under loom:
/// each look is another branch of the model, and one shows the path.
const SPINS_BEFORE_SLEEPING: u32 = if cfg!(portway_loom) { 1 } else { 256 };

/// Called after completions become ready when none were waiting.
pub type NotifyHook = Arc<dyn Fn() + Send + Sync>;

pub(crate) struct CompletionQueue {
    intake: AtomicU64,
    /// `state.ready.len()`, for spinning pollers (written under the lock).
    ready_len: AtomicUsize,
    /// Bumped (under the lock) by every wake and by the close: a spinning poller stops.
    interrupts: AtomicU64,
    state: Mutex<QueueState>,
    ready_cv: Condvar,
    fd: OwnedFd,
    hook: HookSlot<NotifyHook>,
    /// Whether a poll that finds too little spins before it sleeps.
    gate: SpinGate,
    /// The CPUs the process may use (for the gate).
    cpus: usize,
    /// Spins started (tests check the gate's decision through it).
    #[cfg(test)]
    spins: AtomicUsize,
}

#[derive(Default)]
struct QueueState {
    ready: VecDeque<Arc<Request>>,
    wakes: u64,
    /// Pollers blocked in `poll`.
    waiting_pollers: usize,
    /// Wake-ups sent to blocked pollers that they have not consumed yet: a push wakes a poller
    /// only when some blocked poller has not been signalled already, so a burst of pushes
    /// while the poller is waking costs one wake-up, not one per push.
    signalled: usize,
    /// Blocked pollers that wait for more than one completion (`poll` with `min` > 1).
    batch_pollers: usize,
    /// The smallest `min` among blocked pollers while some are batch pollers (a stale, smaller
    /// value only causes a spurious wake-up, which the poller checks and sleeps through).
    least_min: usize,
    /// True once the host asked for the eventfd.
    fd_armed: bool,
    fd_readable: bool,
    closed: bool,
}

/// Which blocked pollers a push wakes (decided under the lock, done after it).
#[derive(Debug, PartialEq)]
enum Wake {
    /// This many, one each.
    Count(usize),
    /// All of them (batch pollers, each checks its own `min`).
    All,
}

/// How a poll ended.
pub(crate) enum PollEnd {
    /// This many completions were handed out (0 on timeout or wake).
    Taken(usize),
    /// Shut down and every completion has been polled.
    Closed,
}

impl CompletionQueue {
    pub fn new() -> Result<Self> {
        // SAFETY: plain syscall; the result is checked before use.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(Error::Internal(format!(
                "eventfd failed: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(CompletionQueue {
            intake: AtomicU64::new(0),
            ready_len: AtomicUsize::new(0),
            interrupts: AtomicU64::new(0),
            state: Mutex::new(QueueState::default()),
            ready_cv: Condvar::new(),
            // SAFETY: `raw` is a fresh descriptor that nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
            hook: HookSlot::new(),
            gate: SpinGate::default(),
            cpus: spin::cpus(),
            #[cfg(test)]
            spins: AtomicUsize::new(0),
        })
    }

    /// The notify descriptor (owned by the queue). The first call arms it: from then on it
    /// tracks the queue.
    pub fn fd(&self) -> RawFd {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !st.fd_armed {
            st.fd_armed = true;
            let readable = !st.ready.is_empty() || st.closed;
            self.set_readable(&mut st, readable);
        }
        self.fd.as_raw_fd()
    }

    /// Reserves intake for `n` requests; fails once shutdown began.
    pub fn reserve(&self, n: u64) -> Result<()> {
        let mut cur = self.intake.load(Ordering::Relaxed);
        loop {
            if cur & SHUTDOWN_BIT != 0 {
                return Err(Error::Shutdown);
            }
            match self.intake.compare_exchange_weak(
                cur,
                cur + n,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Gives back intake reserved for requests that were not accepted after all.
    pub fn unreserve(&self, n: u64) {
        if n == 0 {
            return;
        }
        let after = self.intake.fetch_sub(n, Ordering::AcqRel) - n;
        if after == SHUTDOWN_BIT {
            self.mark_closed();
        }
    }

    /// Stops intake. Returns false if it was already stopped.
    pub fn begin_shutdown(&self) -> bool {
        let before = self.intake.fetch_or(SHUTDOWN_BIT, Ordering::AcqRel);
        if before == 0 {
            self.mark_closed();
        }
        before & SHUTDOWN_BIT == 0
    }

    /// True once shutdown began.
    pub fn is_shutting_down(&self) -> bool {
        self.intake.load(Ordering::Acquire) & SHUTDOWN_BIT != 0
    }

    /// Installs or clears the hook; returns once the hook it replaced is no longer running
    /// (see `HookSlot::set`).
    pub fn set_hook(&self, hook: Option<NotifyHook>) {
        self.hook.set(hook);
    }

    /// Queues finished requests for polling.
    pub fn push<I: IntoIterator<Item = Arc<Request>>>(&self, reqs: I) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let was_empty = st.ready.is_empty();
        let before = st.ready.len();
        st.ready.extend(reqs);
        let added = st.ready.len() - before;
        if added == 0 {
            return;
        }
        self.ready_len.store(st.ready.len(), Ordering::Release);
        if was_empty {
            self.set_readable(&mut st, true);
        }
        let wake = self.pollers_to_wake(&mut st, added);
        drop(st);
        // After the lock is released: a woken poller would otherwise wake only to wait for the
        // lock this thread still holds (a second futex sleep and wake-up per hand-off). The
        // pollers to wake were counted under the lock, and a poller that has not started to
        // sleep yet sees the notification anyway (the condvar's sequence moved on).
        match wake {
            Wake::Count(n) => (0..n).for_each(|_| self.ready_cv.notify_one()),
            Wake::All => self.ready_cv.notify_all(),
        }
        if was_empty {
            self.call_hook();
        }
    }

    /// Which blocked pollers `added` new completions wake, counting them as signalled.
    fn pollers_to_wake(&self, st: &mut QueueState, added: usize) -> Wake {
        if st.batch_pollers == 0 {
            let unsignalled = st.waiting_pollers.saturating_sub(st.signalled);
            let wake = unsignalled.min(added);
            st.signalled += wake;
            Wake::Count(wake)
        } else if st.signalled < st.waiting_pollers && self.enough_ready(st, st.least_min) {
            // Pollers wait for different counts: wake them all and let each one check its own.
            // Once, not again for every push that lands before they have woken (a futex
            // syscall each): a poller that finds too little and sleeps again is no longer
            // counted as signalled, so a later push wakes it.
            st.signalled = st.waiting_pollers;
            Wake::All
        } else {
            Wake::Count(0)
        }
    }

    /// Waits up to `timeout` (None = forever) until at least `min` completions are ready (or
    /// fewer, when every request accepted and not yet polled is among them), and hands up to
    /// `cap` of them to `take` after the queue lock is released (so workers posting completions
    /// never wait for the host to read them). `busy` counts the other threads that have work
    /// right now (pool workers inside a handler): the poll does not spin when they fill every
    /// CPU.
    pub fn poll(
        &self,
        cap: usize,
        min: usize,
        timeout: Option<Duration>,
        busy: impl Fn() -> usize,
        mut take: impl FnMut(usize, &Arc<Request>),
    ) -> PollEnd {
        let min = min.clamp(1, cap.max(1));
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut may_spin = timeout != Some(Duration::ZERO);
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.enough_ready(&st, min) {
                let n = cap.min(st.ready.len());
                let batch: Vec<Arc<Request>> = st.ready.drain(..n).collect();
                self.ready_len.store(st.ready.len(), Ordering::Release);
                let after = self.intake.fetch_sub(n as u64, Ordering::AcqRel) - n as u64;
                let closed_now = after == SHUTDOWN_BIT;
                if closed_now {
                    st.closed = true;
                    self.interrupts.fetch_add(1, Ordering::Release);
                }
                if st.ready.is_empty() && !st.closed {
                    self.set_readable(&mut st, false);
                }
                drop(st);
                if closed_now {
                    self.ready_cv.notify_all();
                }
                // The outcomes were written before the requests were pushed under the lock, so
                // they are visible here without it.
                for (i, req) in batch.iter().enumerate() {
                    take(i, req);
                }
                if closed_now {
                    self.call_hook();
                }
                return PollEnd::Taken(n);
            }
            if st.closed {
                return PollEnd::Closed;
            }
            if st.wakes > 0 {
                st.wakes -= 1;
                return PollEnd::Taken(0);
            }
            let wait = match deadline {
                None => None,
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return PollEnd::Taken(0);
                    }
                    Some(d - now)
                }
            };
            if may_spin && self.more_can_come(&st) {
                // Completions often arrive within microseconds while work is flowing: a futex
                // sleep and the wake-up it then needs cost more than a short spin. Once per
                // poll, only while requests are in flight (nothing else can end it but a
                // wake), and only when the gate says a spin may pay (see `spin.rs`).
                may_spin = false;
                let budget = self.gate.budget(busy(), self.cpus, SPINS_BEFORE_SLEEPING);
                if budget > 0 {
                    #[cfg(test)]
                    self.spins.fetch_add(1, Ordering::Relaxed);
                    let seen = self.interrupts.load(Ordering::Relaxed);
                    drop(st);
                    let hit = self.spin(min, seen, budget);
                    self.gate.record(hit);
                    st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                    continue;
                }
            }
            st.waiting_pollers += 1;
            if min > 1 {
                st.batch_pollers += 1;
            }
            if st.batch_pollers > 0 {
                st.least_min = if st.waiting_pollers > st.batch_pollers {
                    1 // a plain poller waits too
                } else if st.batch_pollers == 1 {
                    min // the only one waiting
                } else {
                    st.least_min.min(min)
                };
            }
            st = match wait {
                None => self.ready_cv.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(w) => {
                    self.ready_cv
                        .wait_timeout(st, w)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
            st.waiting_pollers -= 1;
            st.signalled = st.signalled.saturating_sub(1).min(st.waiting_pollers);
            if min > 1 {
                st.batch_pollers -= 1;
            }
        }
    }

    /// True when a poll for `min` completions can return: that many are ready, or every request
    /// accepted and not yet polled is ready (no more can come; this also keeps a `min` larger
    /// than the work in flight from waiting forever).
    fn enough_ready(&self, st: &QueueState, min: usize) -> bool {
        let ready = st.ready.len();
        if ready == 0 {
            return false;
        }
        ready >= min || ready as u64 >= self.intake.load(Ordering::Acquire) & !SHUTDOWN_BIT
    }

    /// True when requests were accepted that are not ready yet (a spin may see them arrive).
    fn more_can_come(&self, st: &QueueState) -> bool {
        self.intake.load(Ordering::Acquire) & !SHUTDOWN_BIT > st.ready.len() as u64
    }

    /// Spins (without the lock) for up to `budget` looks until a poll for `min` may be able to
    /// return or a wake or the close came (`interrupts` moved on from `seen`): true then, false
    /// when the budget ran out. Only a hint: the caller decides under the lock.
    fn spin(&self, min: usize, seen: u64, budget: u32) -> bool {
        for _ in 0..budget {
            if self.interrupts.load(Ordering::Acquire) != seen {
                return true;
            }
            let ready = self.ready_len.load(Ordering::Acquire);
            if ready > 0
                && (ready >= min
                    || ready as u64 >= self.intake.load(Ordering::Acquire) & !SHUTDOWN_BIT)
            {
                return true;
            }
            spin_loop();
        }
        false
    }

    /// Makes one blocked poll return with nothing; if none is blocked, the next poll that
    /// would block returns at once instead.
    pub fn wake(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.wakes += 1;
        self.interrupts.fetch_add(1, Ordering::Release);
        drop(st);
        self.ready_cv.notify_one();
    }

    /// Drops everything still queued (engine teardown).
    pub fn clear(&self) {
        let drained: Vec<_> = match self.state.lock() {
            Ok(mut st) => {
                self.ready_len.store(0, Ordering::Release);
                st.ready.drain(..).collect()
            }
            Err(_) => Vec::new(),
        };
        drop(drained);
    }

    fn mark_closed(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.closed = true;
        self.interrupts.fetch_add(1, Ordering::Release);
        self.set_readable(&mut st, true);
        drop(st);
        self.ready_cv.notify_all();
        self.call_hook();
    }

    fn call_hook(&self) {
        self.hook.call(|h| h());
    }

    fn set_readable(&self, st: &mut QueueState, readable: bool) {
        if !st.fd_armed || st.fd_readable == readable {
            return;
        }
        let fd = self.fd.as_raw_fd();
        if readable {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to our own eventfd.
            unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
        } else {
            let mut sink: u64 = 0;
            // SAFETY: reads 8 bytes into a live u64 from our own non-blocking eventfd.
            unsafe { libc::read(fd, (&mut sink as *mut u64).cast(), 8) };
        }
        st.fd_readable = readable;
    }
}

#[cfg(all(test, not(portway_loom)))]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::engine::registry::echo_entry;

    fn requests(ids: std::ops::Range<u64>) -> Vec<Arc<Request>> {
        let entry = echo_entry();
        ids.map(|id| Arc::new(Request::new(id, 0, entry.clone(), Instant::now(), 0)))
            .collect()
    }

    /// Issue 17: a batch poller (`poll_min`) asleep while its batch completes one push at a
    /// time is woken once, by the push that makes the batch, not again by each push that
    /// lands before it has woken (in W1 that was several futex wake-ups per batch).
    #[test]
    fn a_sleeping_batch_poller_is_woken_once_per_batch() {
        let q = CompletionQueue::new().unwrap();
        q.reserve(10).unwrap();
        let mut st = q.state.lock().unwrap();
        // One poller asleep in `poll` with `min` 3, as `poll` leaves the counts.
        st.waiting_pollers = 1;
        st.batch_pollers = 1;
        st.least_min = 3;
        let mut wakes = Vec::new();
        for req in requests(1..6) {
            st.ready.push_back(req);
            wakes.push(q.pollers_to_wake(&mut st, 1));
        }
        use Wake::{All, Count as N};
        assert_eq!(wakes, [N(0), N(0), All, N(0), N(0)]);
        // It woke, found too little for its own `min` (say 8), and sleeps again: the next push
        // that makes the smallest batch wakes it again.
        st.signalled = st.signalled.saturating_sub(1).min(st.waiting_pollers);
        st.ready.push_back(requests(6..7).pop().unwrap());
        assert_eq!(q.pollers_to_wake(&mut st, 1), All);
    }

    /// The spin gate decides whether a poll waiting for requests in flight spins: not when the
    /// threads with work fill every CPU (W4: two hashing workers on 2 CPUs), and it does when
    /// a CPU is free.
    #[test]
    fn a_poll_does_not_spin_while_busy_threads_fill_every_cpu() {
        let q = CompletionQueue::new().unwrap();
        q.reserve(1).unwrap(); // one request in flight that never completes
        let poll = |busy: usize| {
            let wait = Some(Duration::from_millis(1));
            assert!(matches!(
                q.poll(1, 1, wait, || busy, |_, _| {}),
                PollEnd::Taken(0)
            ));
        };
        poll(q.cpus);
        poll(usize::MAX);
        assert_eq!(
            q.spins.load(Ordering::Relaxed),
            0,
            "spun with every CPU taken"
        );
        poll(q.cpus - 1);
        assert_eq!(
            q.spins.load(Ordering::Relaxed),
            1,
            "a free CPU allows a spin"
        );
    }

    /// Plain pollers: a burst wakes at most one poller per completion, and none already
    /// signalled.
    #[test]
    fn plain_pollers_are_woken_once_each() {
        let q = CompletionQueue::new().unwrap();
        q.reserve(10).unwrap();
        let mut st = q.state.lock().unwrap();
        st.waiting_pollers = 2;
        st.ready.extend(requests(1..2));
        assert_eq!(q.pollers_to_wake(&mut st, 1), Wake::Count(1));
        st.ready.extend(requests(2..5));
        assert_eq!(q.pollers_to_wake(&mut st, 3), Wake::Count(1));
        st.ready.extend(requests(5..6));
        assert_eq!(q.pollers_to_wake(&mut st, 1), Wake::Count(0));
    }
}
