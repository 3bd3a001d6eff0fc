//! The native worker pool: threads pulling jobs from one flume channel (the Go worker-pool
//! shape). Jobs are blocking handler calls; a stop message per thread ends the pool.
//!
//! Each job is its own message and each completion is queued as soon as its job returns, so an
//! idle worker always takes the next job at once and a slow job never delays another's
//! completion.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::dispatch;
use super::log::LogLevel;
use super::outcome::Outcome;
use super::registry::{GatePermit, HandlerKind, Ticket};
use super::shared::Shared;
use crate::error::panic_message;
use crate::handlers::Call;
use crate::status::Status;

/// One blocking call to run: the request at one of its stages, and the gate permit it holds.
/// (The handler is the stage's own; the engine is the worker's.)
pub(crate) struct PoolJob {
    pub ticket: Ticket,
    pub permit: Option<GatePermit>,
}

/// What travels on the pool channel.
pub(crate) enum PoolMsg {
    Run(PoolJob),
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

    fn set(&self, worker: usize, busy: bool) {
        self.0[worker].0.store(busy, Ordering::Relaxed);
    }
}

/// The pool's threads, a count of those still alive, and the channel (to drop leftovers).
pub(crate) struct Pool {
    threads: Vec<JoinHandle<()>>,
    alive: Arc<(Mutex<usize>, Condvar)>,
    rx: flume::Receiver<PoolMsg>,
}

/// Sends a job to the pool; if the pool has stopped, the request completes with
/// `PORTWAY_SHUTDOWN`.
pub(crate) fn send(shared: &Arc<Shared>, job: PoolJob) {
    if let Err(flume::SendError(PoolMsg::Run(job))) = shared.pool_tx.send(PoolMsg::Run(job)) {
        let outcome = Outcome::failed(Status::PORTWAY_SHUTDOWN, "the worker pool has stopped");
        dispatch::finish(shared, &job.ticket.req, outcome);
    }
}

impl Pool {
    /// Starts `shared.pool_workers` workers on `rx`. Each keeps `shared` until it receives a
    /// stop message (sent by the engine's teardown, or here when a thread cannot be started).
    pub fn start(shared: &Arc<Shared>, rx: flume::Receiver<PoolMsg>) -> std::io::Result<Pool> {
        let n = shared.pool_workers;
        let alive = Arc::new((Mutex::new(n), Condvar::new()));
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let rx = rx.clone();
            let alive = alive.clone();
            let worker_shared = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("portway-pool-{i}"))
                .spawn(move || {
                    worker_loop(&worker_shared, i, &rx);
                    drop(worker_shared);
                    let (count, cv) = &*alive;
                    *count.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
                    cv.notify_all();
                });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    for _ in 0..threads.len() {
                        let _ = shared.pool_tx.send(PoolMsg::Stop);
                    }
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(e);
                }
            }
        }
        Ok(Pool { threads, alive, rx })
    }

    /// Number of worker threads started.
    pub fn size(&self) -> usize {
        self.threads.len()
    }

    /// Waits until every worker has exited or `grace` passes. Joins the exited ones and
    /// detaches (abandons) the rest. Returns how many were abandoned.
    pub fn join_within(self, grace: Duration) -> usize {
        let deadline = Instant::now() + grace;
        let (count, cv) = &*self.alive;
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
        if abandoned == 0 {
            // Jobs handed back after the stop messages hold the engine: drop them.
            while self.rx.try_recv().is_ok() {}
        }
        for t in self.threads {
            if t.is_finished() {
                let _ = t.join();
            }
        }
        abandoned
    }
}

/// Polls for the next message a few times before blocking: a worker that finds the channel
/// empty usually gets the next job within microseconds while the host is submitting, and
/// parking and waking it again (a futex sleep and wake each way) would cost more than the job.
/// Between polls it yields the CPU, so a worker waiting for jobs never starves the thread that
/// submits them.
const POLLS_BEFORE_PARKING: u32 = 64;

fn worker_loop(shared: &Arc<Shared>, index: usize, rx: &flume::Receiver<PoolMsg>) {
    loop {
        let msg = match next_without_parking(rx) {
            Some(msg) => msg,
            None => match rx.recv() {
                Ok(msg) => msg,
                Err(_) => return,
            },
        };
        match msg {
            PoolMsg::Run(job) => run_job(shared, index, job),
            PoolMsg::Stop => return,
        }
    }
}

fn next_without_parking(rx: &flume::Receiver<PoolMsg>) -> Option<PoolMsg> {
    for _ in 0..POLLS_BEFORE_PARKING {
        if let Ok(msg) = rx.try_recv() {
            return Some(msg);
        }
        std::thread::yield_now();
    }
    None
}

/// Runs one job and moves its request on (next stage or completion).
fn run_job(shared: &Arc<Shared>, worker: usize, job: PoolJob) {
    let PoolJob { ticket, permit } = job;
    let Ticket {
        req,
        stage,
        payload,
    } = ticket;
    if !dispatch::mark_running(shared, &req) {
        return;
    }
    let entry = req.stage(stage);
    let HandlerKind::Blocking(handler) = &entry.kind else {
        let msg = format!("handler {:?} is not a pool handler", entry.name);
        dispatch::finish(shared, &req, Outcome::failed(Status::PORTWAY_INTERNAL, msg));
        return;
    };
    let mut call = Call::new(req.clone(), payload);
    shared.pool_busy.set(worker, true);
    let result = catch_unwind(AssertUnwindSafe(|| handler.call(&mut call)));
    shared.pool_busy.set(worker, false);
    let outcome = match result {
        Ok(()) => call.into_outcome(),
        Err(panic) => {
            let msg = format!(
                "handler {:?} panicked: {}",
                entry.name,
                panic_message(&*panic)
            );
            shared
                .logger
                .log(LogLevel::Error, || format!("request {}: {msg}", req.id));
            Outcome::failed(Status::PORTWAY_PANIC, msg)
        }
    };
    dispatch::stage_done(shared, req, stage, outcome);
    drop(permit);
}
