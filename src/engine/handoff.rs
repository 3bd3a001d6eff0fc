//! The batched hand-off to the pool (issue 17): the pool jobs of one submit batch travel as a
//! few chunks, and a worker runs a chunk with one clock read per job and queues its
//! completions together.
//!
//! Per-job fixed costs were what W1 paid, not the queue entries (a work-stealing deque per job
//! was slower): a channel message and often a futex wake per job, two clock reads per job,
//! the completion queue's lock and wake per completion. A chunk pays the message and the wake
//! once, shares the clock between the end of one job and the start of the next, and pushes its
//! completions under one lock (one empty-to-ready transition, so the notify hook fires once).
//!
//! What a job is does not change: each keeps its own permit, is skipped when its request was
//! completed (cancel, deadline, shutdown) while the chunk waited, and completes exactly once.
//! A job whose payload the host lent reads it under its pin (`lend.rs`) as a lone job does: a
//! completion that comes while its handler runs is posted by the pin when the handler returns,
//! not held back with the chunk's.
//! A single `submit`, a pipeline's later stage, a job holding a policy permit (it would hold a
//! unit of its handler's concurrency while waiting in a chunk) and a hedged attempt still go
//! one by one ([`pool::send`]). A worker runs a chunk through its lane (`lanes.rs`), where an
//! idle worker takes part of it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::dispatch;
use super::pool::{self, PoolJob, PoolMsg};
use super::request::Request;
use super::shared::Shared;
use crate::contract::Outcome;
use crate::status::Status;

/// The most jobs in one chunk: long enough to pay the message and wake once for many jobs,
/// short enough that a worker with a chunk of slow jobs does not hold much work the other
/// workers could have taken.
const MAX_CHUNK: usize = 64;

/// How long a worker keeps finished jobs' completions to queue them together: once the oldest
/// held one waited this long, or a job ran this long (the next one may be slow too), it
/// queues what it holds before it starts the next job. A completion can still wait for one
/// more job of its chunk: the first slow job after fast ones.
const HOLD_COMPLETIONS: Duration = Duration::from_micros(20);

/// The pool jobs a submit batch makes, sent as chunks of up to `chunk` jobs as soon as a chunk
/// is full (the workers start while the host is still submitting) and the rest at
/// [`Handoff::flush`] (or drop, so no job is ever left behind).
pub(crate) struct Handoff<'a> {
    shared: &'a Arc<Shared>,
    chunk: usize,
    jobs: Vec<PoolJob>,
}

impl<'a> Handoff<'a> {
    /// A hand-off for a batch of `n` requests: chunks of n / (2 × workers), between 1 and
    /// [`MAX_CHUNK`], so that every worker gets at least two chunks and none sits on a long
    /// chunk while another idles. Below 4 × workers requests every job goes on its own.
    pub fn new(shared: &'a Arc<Shared>, n: usize) -> Self {
        let chunk = (n / (2 * shared.pool_workers.max(1))).clamp(1, MAX_CHUNK);
        Handoff {
            shared,
            chunk,
            jobs: Vec::new(),
        }
    }

    /// Adds a job; sends the chunk once it is full.
    pub fn send(&mut self, job: PoolJob) {
        if self.chunk == 1 {
            pool::send(self.shared, job);
            return;
        }
        if self.jobs.is_empty() {
            self.jobs.reserve_exact(self.chunk);
        }
        self.jobs.push(job);
        if self.jobs.len() >= self.chunk {
            self.flush();
        }
    }

    /// Sends the jobs gathered so far.
    pub fn flush(&mut self) {
        if !self.jobs.is_empty() {
            send_jobs(self.shared, std::mem::take(&mut self.jobs));
        }
    }
}

/// Sends jobs to the pool: one alone, several as a chunk.
fn send_jobs(shared: &Arc<Shared>, mut jobs: Vec<PoolJob>) {
    match jobs.len() {
        0 => {}
        1 => {
            if let Some(job) = jobs.pop() {
                pool::send(shared, job);
            }
        }
        _ => send_chunk(shared, jobs),
    }
}

impl Drop for Handoff<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Sends jobs as one message; if the pool has stopped, each job's request completes with
/// `PORTWAY_SHUTDOWN`.
fn send_chunk(shared: &Shared, jobs: Vec<PoolJob>) {
    if let Err(flume::SendError(msg)) = shared.pool_tx.send(PoolMsg::RunMany(jobs)) {
        shut_out(shared, msg);
    }
}

/// Completes the requests of jobs the pool will never run with `PORTWAY_SHUTDOWN` (a request
/// already completed, say cancelled by the teardown, stays as it is).
pub(crate) fn shut_out(shared: &Shared, msg: PoolMsg) {
    let jobs = match msg {
        PoolMsg::Run(job) => vec![job],
        PoolMsg::RunMany(jobs) => jobs,
        PoolMsg::Steal | PoolMsg::Stop => return,
    };
    for job in jobs {
        let outcome = Outcome::failed(Status::PORTWAY_SHUTDOWN, "the worker pool has stopped");
        dispatch::finish(shared, &job.ticket.req, outcome);
    }
}

/// Runs a chunk's jobs in order on worker `worker`, through its lane: an idle worker may take
/// some of them (see `lanes.rs`; when one is asleep on the channel, a hint wakes it).
///
/// Clocks: the time a job's handler returned is its request's finish time and the next job's
/// start time, so a chunk of n jobs reads the clock n + 1 times instead of 2n. A job's
/// `queued_ns` therefore ends when the worker became free for it (the previous job's
/// bookkeeping, well under a microsecond, counts as its run) and `run_ns` runs from there to
/// its handler's return.
pub(crate) fn run_chunk(shared: &Arc<Shared>, worker: usize, jobs: Vec<PoolJob>) {
    let lanes = &shared.pool_lanes;
    if lanes.fill(worker, jobs) {
        // Never fails while a worker runs (the pool holds the receiver).
        let _ = shared.pool_tx.send(PoolMsg::Steal);
    }
    let mut chunk = Chunk {
        shared,
        worker,
        done: Vec::new(),
    };
    let mut clock = Instant::now();
    let mut held_since: Option<Instant> = None;
    while let Some(job) = lanes.next(worker) {
        let started = clock;
        let ran = pool::run_job_at(shared, worker, job, Some(started));
        if let Some(end) = ran.ended {
            clock = end;
        }
        if let Some(req) = ran.completed {
            chunk.done.push(req);
            held_since.get_or_insert(clock);
        }
        let slow = clock.saturating_duration_since(started) >= HOLD_COMPLETIONS;
        let held_long =
            held_since.is_some_and(|t| clock.saturating_duration_since(t) >= HOLD_COMPLETIONS);
        if (slow || held_long) && !chunk.done.is_empty() {
            shared.queue.push(chunk.done.drain(..));
            held_since = None;
            // The push may have run the host's notify hook: that time is no job's.
            clock = Instant::now();
        }
    }
    if !chunk.done.is_empty() {
        shared.queue.push(std::mem::take(&mut chunk.done));
    }
}

/// A chunk being run: its completions not queued yet (the jobs not started yet are in the
/// worker's lane). Both are empty when the chunk ends normally; when the thread is torn down
/// under a handler (a forced unwind, see `HandlerWatch`) the drop hands them to the runtime
/// (this thread must not run the host's hooks any more): the completions are queued and the
/// jobs go back to the pool.
struct Chunk<'a> {
    shared: &'a Arc<Shared>,
    worker: usize,
    done: Vec<Arc<Request>>,
}

impl Drop for Chunk<'_> {
    fn drop(&mut self) {
        let done = std::mem::take(&mut self.done);
        let rest = self.shared.pool_lanes.drain(self.worker);
        if done.is_empty() && rest.is_empty() {
            return;
        }
        let shared = self.shared.clone();
        self.shared.rt.spawn(async move {
            if !done.is_empty() {
                shared.queue.push(done);
            }
            send_jobs(&shared, rest);
        });
    }
}

#[cfg(all(test, not(portway_loom)))]
mod tests {
    use std::time::Duration;

    use super::super::{Config, Engine, Submission};
    use crate::status::Status;

    /// Jobs handed to a pool that was told to stop (one alone, and a chunk) are not dropped:
    /// their requests complete with `PORTWAY_SHUTDOWN`.
    #[test]
    fn jobs_handed_over_after_the_pool_stopped_complete_shutdown() {
        let mut config = Config::default();
        config.set_pool_workers(2).unwrap();
        let mut eng = Engine::new(config).unwrap();
        let id = eng
            .register_blocking("noop", |c: &mut crate::handlers::Call| {
                c.respond(b"").unwrap()
            })
            .unwrap();
        let pool = eng.pool.take().unwrap();
        pool.stop(&eng.shared);
        let sub = Submission {
            handler: id,
            timeout_ms: 0,
            user_data: 0,
            payload: b"",
        };
        // One job alone, then 8 as chunks of 2 (8 / (2 x 2 workers)).
        eng.submit(&sub).unwrap();
        let (n, r) = eng.submit_batch(&[sub; 8], None);
        assert_eq!((n, r.is_ok()), (8, true));
        assert_eq!(pool.join_within(&eng.shared, Duration::from_secs(5)), 0);
        let (got, _) = eng.poll_owned(16, Some(Duration::from_secs(5))).unwrap();
        assert_eq!(got.len(), 9);
        assert!(got.iter().all(|c| c.status == Status::PORTWAY_SHUTDOWN));
    }

    /// A lent request of a chunk that is cancelled while its handler reads the payload is
    /// completed only when the handler returns (not with the chunk's held completions, nor
    /// before); those cancelled while waiting in the chunk are completed at once and their
    /// bytes are never read; every request completes exactly once.
    #[test]
    fn a_chunk_defers_the_completion_of_a_lent_request_until_its_handler_returns() {
        use std::sync::mpsc;
        use std::sync::{Arc, Mutex};

        let mut config = Config::default();
        config.set_pool_workers(1).unwrap();
        let eng = Engine::new(config).unwrap();
        let (entered_tx, entered) = mpsc::channel::<()>();
        let (release, release_rx) = mpsc::channel::<()>();
        let gate = Mutex::new((entered_tx, release_rx));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen_by_handler = seen.clone();
        let id = eng
            .register_blocking("gate", move |c: &mut crate::handlers::Call| {
                let first = c.payload()[0];
                seen_by_handler.lock().unwrap().push(first);
                if first == 0 {
                    let g = gate.lock().unwrap();
                    g.0.send(()).unwrap();
                    g.1.recv_timeout(Duration::from_secs(10)).unwrap();
                }
                c.respond(b"ok").unwrap()
            })
            .unwrap();
        let mut payloads: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 16]).collect();
        let subs: Vec<Submission<'_>> = payloads
            .iter()
            .map(|p| Submission {
                handler: id,
                timeout_ms: 0,
                user_data: 0,
                payload: p,
            })
            .collect();
        let mut ids = [0u64; 8];
        // 8 requests, 1 worker: two chunks of 4.
        // SAFETY: each payload is only written once its request's completion was polled.
        let (n, r) = unsafe { eng.submit_batch_lent(&subs, Some(&mut ids)) };
        assert_eq!((n, r.is_ok()), (8, true));
        entered.recv_timeout(Duration::from_secs(10)).unwrap();
        // The running one, one waiting in its chunk, one in the next chunk.
        for i in [0, 1, 5] {
            eng.cancel(ids[i]).unwrap();
        }
        let (early, _) = eng.poll_owned(16, Some(Duration::from_millis(50))).unwrap();
        assert!(
            early.iter().all(|c| c.id != ids[0]),
            "completed while its handler still reads the lent payload"
        );
        let mut got = early;
        for c in &got {
            // The host may reuse a polled request's bytes at once.
            let i = ids.iter().position(|&id| id == c.id).unwrap();
            payloads[i].fill(0xff);
        }
        release.send(()).unwrap();
        while got.len() < 8 {
            let (more, _) = eng.poll_owned(16, Some(Duration::from_secs(10))).unwrap();
            assert!(!more.is_empty(), "a completion is missing");
            got.extend(more);
        }
        let mut got_ids: Vec<u64> = got.iter().map(|c| c.id).collect();
        got_ids.sort_unstable();
        got_ids.dedup();
        assert_eq!(got_ids.len(), 8, "a request completed twice");
        for c in &got {
            let i = ids.iter().position(|&id| id == c.id).unwrap();
            let want = if [0, 1, 5].contains(&i) {
                Status::PORTWAY_CANCELLED
            } else {
                Status::PORTWAY_OK
            };
            assert_eq!(c.status, want, "request {i}");
        }
        let mut seen = seen.lock().unwrap().clone();
        seen.sort_unstable();
        assert_eq!(seen, [0, 2, 3, 4, 6, 7], "read a cancelled request's bytes");
    }
}
