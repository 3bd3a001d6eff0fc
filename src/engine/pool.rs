//! The native worker pool: threads pulling jobs from one flume channel (the Go worker-pool
//! shape). Jobs are blocking handler calls; a stop message per thread ends the pool.
//!
//! A single job is its own message and its completion is queued as soon as it returns. The
//! jobs of a submit batch come as chunks (`handoff.rs`), split so that every worker gets some
//! at once; a worker queues a chunk's completions together, holding none for long.

use std::ffi::{CString, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::handoff;
use super::job::run_job;
pub(crate) use super::job::{PoolJob, run_job_at};
use super::log::LogLevel;
use super::shared::Shared;
use super::spin::{self, SpinGate};

/// What travels on the pool channel.
pub(crate) enum PoolMsg {
    /// One job.
    Run(PoolJob),
    /// Jobs of one submit batch, run in order by one worker (see `handoff.rs`).
    RunMany(Vec<PoolJob>),
    /// A worker filled its lane while another was idle: take some of it (see `lanes.rs`).
    Steal,
    /// Ends the worker that takes it.
    Stop,
}

/// Which workers are inside a handler call right now: one flag per worker, each on its own
/// cache line, so marking a call costs a worker no shared write.
pub(crate) struct BusyFlags(Box<[PaddedFlag]>);

#[derive(Default)]
#[repr(align(128))]
struct PaddedFlag(AtomicBool);

impl BusyFlags {
    /// Flags for `n` workers, all idle.
    pub fn new(n: usize) -> Self {
        BusyFlags((0..n).map(|_| PaddedFlag::default()).collect())
    }

    /// Workers inside a handler call.
    pub fn count(&self) -> u64 {
        self.0
            .iter()
            .filter(|f| f.0.load(Ordering::Relaxed))
            .count() as u64
    }

    /// Marks worker `worker` as inside a handler call or not.
    pub(super) fn set(&self, worker: usize, busy: bool) {
        self.0[worker].0.store(busy, Ordering::Relaxed);
    }
}

/// The pool: how many workers it started and how many are alive, and the channel (to drop
/// leftovers).
///
/// Workers are plain pthreads, not `std::thread`s: std wraps every thread's body in a
/// `catch_unwind`, which would catch a forced unwind (`pthread_exit` inside a C handler) and
/// abort the process. A worker that loses its thread that way completes its request and
/// starts a replacement (`WorkerExit`), so the pool keeps its size. Every thread, replacements
/// included, is joined when the pool ends (unless one was abandoned in a stuck handler), so
/// none runs library code after the engine is freed.
pub(crate) struct Pool {
    size: usize,
    alive: Arc<Alive>,
    rx: flume::Receiver<PoolMsg>,
}

/// Workers alive, a condvar signalled each time one exits, whether the pool is stopping
/// (then a lost worker is not replaced), and every thread started and not yet joined.
#[derive(Default)]
struct Alive {
    count: Mutex<usize>,
    exited: Condvar,
    stopping: AtomicBool,
    threads: Mutex<Vec<libc::pthread_t>>,
}

/// What a worker thread owns.
struct Worker {
    shared: Arc<Shared>,
    index: usize,
    rx: flume::Receiver<PoolMsg>,
    alive: Arc<Alive>,
}

/// Sends a job to the pool; if the pool has stopped, the request completes with
/// `PORTWAY_SHUTDOWN`.
pub(crate) fn send(shared: &Arc<Shared>, job: PoolJob) {
    if let Err(flume::SendError(msg)) = shared.pool_tx.send(PoolMsg::Run(job)) {
        handoff::shut_out(shared, msg);
    }
}

impl Pool {
    /// Starts `shared.pool_workers` workers on `rx`. Each keeps `shared` until it receives a
    /// stop message (sent by the engine's teardown, or here when a thread cannot be started).
    pub fn start(shared: &Arc<Shared>, rx: flume::Receiver<PoolMsg>) -> std::io::Result<Pool> {
        let n = shared.pool_workers;
        let alive = Arc::new(Alive {
            count: Mutex::new(n),
            ..Alive::default()
        });
        for index in 0..n {
            let worker = Worker {
                shared: shared.clone(),
                index,
                rx: rx.clone(),
                alive: alive.clone(),
            };
            if let Err(e) = spawn_worker(worker) {
                // Stop the ones started; the failed one and those never started are not alive.
                *alive.count.lock().unwrap_or_else(|e| e.into_inner()) -= n - index;
                let pool = Pool {
                    size: index,
                    alive,
                    rx,
                };
                pool.stop(shared);
                pool.join_within(shared, Duration::from_secs(5));
                return Err(e);
            }
        }
        Ok(Pool { size: n, alive, rx })
    }

    /// Asks every worker to exit once it is done with its job; lost workers are no longer
    /// replaced.
    pub fn stop(&self, shared: &Shared) {
        self.alive.stopping.store(true, Ordering::SeqCst);
        for _ in 0..self.size {
            let _ = shared.pool_tx.send(PoolMsg::Stop);
        }
    }

    /// Waits until every worker has exited or `grace` passes; the rest are abandoned (they
    /// exit when their handler returns). Returns how many were abandoned.
    ///
    /// A worker counts itself out just before its thread ends; when all did, each thread is
    /// joined, so that none is still running its last instructions or thread-local
    /// destructors (library code) once the engine is freed and the host may unload the
    /// library. When some were abandoned, no thread is joined (which ones still run is not
    /// known): all are detached and end on their own.
    ///
    /// Jobs handed over after the stop messages (none normally: the teardown cancelled every
    /// request first) are not run: their requests complete with `PORTWAY_SHUTDOWN`.
    pub fn join_within(self, shared: &Shared, grace: Duration) -> usize {
        let deadline = Instant::now() + grace;
        let (count, cv) = (&self.alive.count, &self.alive.exited);
        let mut left = count.lock().unwrap_or_else(|e| e.into_inner());
        while *left > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            left = cv
                .wait_timeout(left, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let abandoned = *left;
        drop(left);
        // With every worker counted out none will start a replacement (a worker being
        // replaced stays counted until its replacement ends), so the list is complete.
        let threads =
            std::mem::take(&mut *self.alive.threads.lock().unwrap_or_else(|e| e.into_inner()));
        // SAFETY: each id is a joinable thread this pool created and nobody else joined or
        // detached: it was taken out of the list, which owns that right, just above.
        unsafe {
            let me = libc::pthread_self();
            for t in threads {
                if abandoned == 0 && libc::pthread_equal(t, me) == 0 {
                    libc::pthread_join(t, std::ptr::null_mut());
                } else {
                    libc::pthread_detach(t);
                }
            }
        }
        if abandoned == 0 {
            // Jobs handed over after the stop messages hold the engine: do not keep them.
            while let Ok(msg) = self.rx.try_recv() {
                handoff::shut_out(shared, msg);
            }
        }
        abandoned
    }
}

// Not part of portway's C ABI: the doc line below keeps cbindgen from putting it in the header.
/// `pthread_create` with a start routine that may unwind: the `libc` crate declares it with an
/// `extern "C"` one, through which a forced unwind must not pass.
///
/// cbindgen:ignore
mod sys {
    use std::ffi::{c_int, c_void};

    unsafe extern "C" {
        #[link_name = "pthread_create"]
        pub fn pthread_create_unwinding(
            thread: *mut libc::pthread_t,
            attr: *const libc::pthread_attr_t,
            start: extern "C-unwind" fn(*mut c_void) -> *mut c_void,
            arg: *mut c_void,
        ) -> c_int;
    }
}

/// Starts a joinable pthread running `worker` and records it in the pool's thread list.
fn spawn_worker(worker: Worker) -> std::io::Result<()> {
    let alive = worker.alive.clone();
    // Held until the new thread is recorded: it may end (and be counted out) before
    // `pthread_create` returns, and `join_within` must not take the list without it.
    let mut threads = alive.threads.lock().unwrap_or_else(|e| e.into_inner());
    let arg = Box::into_raw(Box::new(worker));
    let mut thread: libc::pthread_t = 0;
    // SAFETY: default attributes (joinable); `worker_main` takes back the box `arg` points to,
    // exactly once, and only if the thread was created.
    let rc = unsafe {
        sys::pthread_create_unwinding(&mut thread, std::ptr::null(), worker_main, arg.cast())
    };
    if rc != 0 {
        // SAFETY: no thread was created, so the box is still ours.
        drop(unsafe { Box::from_raw(arg) });
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    threads.push(thread);
    Ok(())
}

/// A worker thread's body. "C-unwind": a forced unwind from a C handler passes through it to
/// glibc, which ends the thread; `WorkerExit` runs on the way. (A Rust panic outside a
/// handler call, which would be a bug here, finds no `catch_unwind` above and aborts.)
extern "C-unwind" fn worker_main(arg: *mut c_void) -> *mut c_void {
    // SAFETY: `spawn_worker` passed a `Box<Worker>` that only this thread takes back.
    let worker = *unsafe { Box::from_raw(arg.cast::<Worker>()) };
    let name = format!("portway-pool-{}", worker.index);
    if let Ok(name) = CString::new(&name.as_bytes()[..name.len().min(15)]) {
        // SAFETY: a NUL-terminated name of at most 15 bytes, for the calling thread.
        unsafe { libc::pthread_setname_np(libc::pthread_self(), name.as_ptr()) };
    }
    let mut exit = WorkerExit {
        worker: Some(worker),
        returned: false,
    };
    if let Some(w) = &exit.worker {
        worker_loop(&w.shared, w.index, &w.rx);
    }
    exit.returned = true;
    std::ptr::null_mut()
}

/// Runs when a worker's thread ends: normally (stop message) it counts the worker out; when
/// the thread is being torn down under a handler (a forced unwind) it starts a replacement,
/// unless the pool is stopping or the thread cannot be created (then the pool shrinks).
struct WorkerExit {
    worker: Option<Worker>,
    returned: bool,
}

impl Drop for WorkerExit {
    fn drop(&mut self) {
        let Some(worker) = self.worker.take() else {
            return;
        };
        let alive = worker.alive.clone();
        if !self.returned && !alive.stopping.load(Ordering::SeqCst) {
            let shared = worker.shared.clone();
            let index = worker.index;
            let replaced = spawn_worker(worker);
            let lost = replaced.is_err();
            // Logged from the runtime: the host's log hook must not run on this thread now
            // (see HandlerWatch).
            shared.rt.clone().spawn(async move {
                match &replaced {
                    Ok(()) => shared.logger.log(LogLevel::Warn, || {
                        format!("pool worker {index}: its thread exited inside a handler; replaced")
                    }),
                    Err(e) => shared.logger.log(LogLevel::Error, || {
                        format!(
                            "pool worker {index}: its thread exited inside a handler and no \
                             thread could replace it ({e}); the pool has one worker less"
                        )
                    }),
                }
            });
            if !lost {
                return;
            }
        } else {
            drop(worker);
        }
        *alive.count.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        alive.exited.notify_all();
    }
}

/// Polls for the next message a few times before blocking: a worker that finds the channel
/// empty usually gets the next job within microseconds while the host is submitting, and
/// parking and waking it again (a futex sleep and wake each way) would cost more than the job.
/// Between polls it yields the CPU, so a worker waiting for jobs never starves the thread that
/// submits them. The most: [`idle_polls`] decides how many.
const POLLS_BEFORE_PARKING: u32 = 64;

fn worker_loop(shared: &Arc<Shared>, index: usize, rx: &flume::Receiver<PoolMsg>) {
    let (gate, cpus) = (SpinGate::default(), spin::cpus());
    loop {
        let polls = || idle_polls(&gate, shared.pool_busy.count() as usize, cpus);
        let msg = match next_without_parking(rx, polls, &gate) {
            Some(msg) => msg,
            None => {
                // Before sleeping: help a worker that sits on a chunk (see `lanes.rs`).
                if let Some(jobs) = shared.pool_lanes.begin_idle(index) {
                    handoff::run_chunk(shared, index, jobs);
                    continue;
                }
                let msg = rx.recv();
                shared.pool_lanes.end_idle();
                match msg {
                    Ok(msg) => msg,
                    Err(_) => return,
                }
            }
        };
        match msg {
            PoolMsg::Run(job) => run_job(shared, index, job),
            PoolMsg::RunMany(jobs) => handoff::run_chunk(shared, index, jobs),
            PoolMsg::Steal => {
                if let Some(jobs) = shared.pool_lanes.take_hint(index) {
                    handoff::run_chunk(shared, index, jobs);
                }
            }
            PoolMsg::Stop => return,
        }
    }
}

/// How many times an idle worker polls before it parks (see `spin.rs`): none when the other
/// workers inside a handler and the host (which hands out the jobs) already fill every CPU, and
/// rarely after polls that found nothing.
fn idle_polls(gate: &SpinGate, busy_workers: usize, cpus: usize) -> u32 {
    gate.budget(busy_workers + 1, cpus, POLLS_BEFORE_PARKING)
}

/// Takes the next message if there is one, else tries `polls()` more times (a yield before
/// each) and tells `gate` how that went; None when none came (the caller parks).
fn next_without_parking(
    rx: &flume::Receiver<PoolMsg>,
    polls: impl FnOnce() -> u32,
    gate: &SpinGate,
) -> Option<PoolMsg> {
    if let Ok(msg) = rx.try_recv() {
        return Some(msg);
    }
    let polls = polls();
    for _ in 0..polls {
        std::thread::yield_now();
        if let Ok(msg) = rx.try_recv() {
            gate.record(true);
            return Some(msg);
        }
    }
    if polls > 0 {
        gate.record(false);
    }
    None
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
