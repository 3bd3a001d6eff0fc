//! The native worker pool: threads pulling jobs from one flume channel (the Go worker-pool
//! shape). Jobs are blocking handler calls; a stop message per thread ends the pool.
//!
//! Each job is its own message and each completion is queued as soon as its job returns, so an
//! idle worker always takes the next job at once and a slow job never delays another's
//! completion.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::dispatch;
use super::log::LogLevel;
use super::outcome::Outcome;
use super::registry::{GatePermit, Ticket};
use super::shared::Shared;
use crate::error::panic_message;
use crate::handlers::{BlockingHandler, Call};
use crate::status::Status;

/// One blocking call to run.
pub(crate) struct PoolJob {
    pub shared: Arc<Shared>,
    pub ticket: Ticket,
    pub permit: Option<GatePermit>,
    pub handler: Arc<dyn BlockingHandler>,
}

/// What travels on the pool channel.
pub(crate) enum PoolMsg {
    Run(PoolJob),
    Stop,
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
    /// Starts `n` workers on `rx`.
    pub fn start(n: usize, rx: flume::Receiver<PoolMsg>) -> std::io::Result<Pool> {
        let alive = Arc::new((Mutex::new(n), Condvar::new()));
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let rx = rx.clone();
            let alive = alive.clone();
            let t = std::thread::Builder::new()
                .name(format!("portway-pool-{i}"))
                .spawn(move || {
                    worker_loop(&rx);
                    let (count, cv) = &*alive;
                    *count.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
                    cv.notify_all();
                })?;
            threads.push(t);
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

fn worker_loop(rx: &flume::Receiver<PoolMsg>) {
    while let Ok(PoolMsg::Run(job)) = rx.recv() {
        run_job(job);
    }
}

/// Runs one job and moves its request on (next stage or completion).
fn run_job(job: PoolJob) {
    let PoolJob {
        shared,
        ticket,
        permit,
        handler,
    } = job;
    let Ticket {
        req,
        stage,
        payload,
    } = ticket;
    if !dispatch::mark_running(&shared, &req) {
        return;
    }
    let mut call = Call::new(req.clone(), payload);
    shared.pool_busy.fetch_add(1, Ordering::Relaxed);
    let result = catch_unwind(AssertUnwindSafe(|| handler.call(&mut call)));
    shared.pool_busy.fetch_sub(1, Ordering::Relaxed);
    let outcome = match result {
        Ok(()) => call.into_outcome(),
        Err(panic) => {
            let msg = format!(
                "handler {:?} panicked: {}",
                req.stage(stage).name,
                panic_message(&*panic)
            );
            shared
                .logger
                .log(LogLevel::Error, || format!("request {}: {msg}", req.id));
            Outcome::failed(Status::PORTWAY_PANIC, msg)
        }
    };
    dispatch::stage_done(&shared, req, stage, outcome);
    drop(permit);
}
