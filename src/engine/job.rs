//! One pool job and running it on a worker: the request at one of its stages, what a few jobs
//! carry besides (a permit, a hedged attempt's reply), and the watch that completes the
//! request when the worker's thread is torn down inside the handler.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use super::dispatch;
use super::lend::LendPin;
use super::log::LogLevel;
use super::policy::hedge::AttemptReply;
use super::policy::{Permit, Ticket};
use super::registry::HandlerKind;
use super::request::Request;
use super::shared::Shared;
use crate::contract::Outcome;
use crate::contract::{Call, CallContext};
use crate::error::panic_message;
use crate::status::Status;

/// One blocking call to run: the request at one of its stages, and the policy permit it holds.
/// (The handler is the stage's own; the engine is the worker's.)
pub(crate) struct PoolJob {
    pub ticket: Ticket,
    /// Boxed, and only when there is one: most jobs have neither, and a job is moved several
    /// times on its way to a worker (64 bytes, with a payload that may be lent, instead of 168).
    extra: Option<Box<JobExtra>>,
}

/// What few jobs carry: a policy permit, or the reply of one attempt of a hedged run.
struct JobExtra {
    permit: Option<Permit>,
    /// One attempt of a hedged run: its outcome goes back to the race, not on to the request.
    attempt: Option<AttemptReply>,
}

impl PoolJob {
    /// A job for `ticket`, holding `permit`; `attempt` when it is one attempt of a hedged run.
    pub fn new(ticket: Ticket, permit: Option<Permit>, attempt: Option<AttemptReply>) -> Self {
        let extra =
            (permit.is_some() || attempt.is_some()).then(|| Box::new(JobExtra { permit, attempt }));
        PoolJob { ticket, extra }
    }

    /// True when the job holds a policy permit.
    pub fn holds_permit(&self) -> bool {
        self.extra.as_ref().is_some_and(|e| e.permit.is_some())
    }
}

/// What running one job left to do (see [`run_job_at`]).
pub(crate) struct Ran {
    /// The request to queue as completed.
    pub completed: Option<Arc<Request>>,
    /// When its handler returned (None when it did not run).
    pub ended: Option<Instant>,
}

/// Runs one job and moves its request on (next stage or completion).
pub(crate) fn run_job(shared: &Arc<Shared>, worker: usize, job: PoolJob) {
    if let Some(req) = run_job_at(shared, worker, job, None).completed {
        shared.queue.push(std::iter::once(req));
    }
}

/// Runs one job, started at `start` when given (else now), and moves its request on: the next
/// stage, or a completion, which it returns for the caller to queue.
pub(crate) fn run_job_at(
    shared: &Arc<Shared>,
    worker: usize,
    job: PoolJob,
    start: Option<Instant>,
) -> Ran {
    let not_run = Ran {
        completed: None,
        ended: None,
    };
    let PoolJob { ticket, extra } = job;
    let (permit, attempt) = extra.map_or((None, None), |e| (e.permit, e.attempt));
    let Ticket {
        req,
        stage,
        payload,
    } = ticket;
    // A lent payload is read only under its pin, which holds back a completion until the
    // handler is done with the bytes (lend.rs); None: completed already, the bytes may be gone.
    let Some(pin) = LendPin::take(shared, &req, payload.is_lent()) else {
        return not_run;
    };
    if attempt.as_ref().is_some_and(AttemptReply::lost)
        || !dispatch::mark_running_at(shared, &req, start)
    {
        pin.done();
        return not_run;
    }
    let entry = req.stage(stage);
    let HandlerKind::Blocking(pool_handler) = &entry.kind else {
        pin.done();
        let msg = format!("handler {:?} is not a pool handler", entry.name);
        dispatch::finish(shared, &req, Outcome::failed(Status::PORTWAY_INTERNAL, msg));
        return not_run;
    };
    let context = match &attempt {
        // A hedged attempt is also cancelled when the other attempt wins.
        Some(a) => CallContext::new(req.id, req.user_data, a.state()),
        None => CallContext::new(req.id, req.user_data, req.clone()),
    };
    // SAFETY: `pin` is held until the call is consumed (`into_outcome` below).
    let mut call = unsafe { Call::new(context, payload) };
    let watch = HandlerWatch {
        shared,
        worker,
        req: &req,
        stage,
        permit,
    };
    shared.pool_busy.set(worker, true);
    let handler = &pool_handler.handler;
    let result = if pool_handler.foreign {
        // No catch_unwind: it cannot panic, and a forced unwind must pass (see PoolHandler).
        handler.call(&mut call);
        Ok(())
    } else {
        catch_unwind(AssertUnwindSafe(|| handler.call(&mut call)))
    };
    let mut permit = watch.handler_returned();
    let ended = Instant::now();
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
    // The handler is done with the bytes: a completion that came meanwhile (a deadline, a
    // cancel) is posted now, by the pin, not held with the chunk's; this job's own claim
    // below then loses to it.
    pin.done();
    if let Some(a) = attempt {
        a.reply(outcome);
        return Ran {
            completed: None,
            ended: Some(ended),
        };
    }
    if let Some(p) = permit.as_mut() {
        p.observe(&req, &outcome);
    }
    let completed = dispatch::stage_done_at(shared, req, stage, outcome, Some(ended));
    // Dropped after the completion was claimed (a limit's next job starts only then), but
    // before it is queued: the caller queues it.
    drop(permit);
    Ran {
        completed,
        ended: Some(ended),
    }
}

/// Alive while a handler runs. Dropped only when the thread is torn down under the handler by
/// a forced unwind: it then has the request completed, which would otherwise never happen.
///
/// That work (and dropping the policy permit, which may start the next call) is handed to the
/// runtime rather than done here: it may call the host's hooks (log, notify), and a host hook
/// on a thread being torn down may itself end the thread (CPython's do) in the middle of this
/// unwind, which aborts.
struct HandlerWatch<'a> {
    shared: &'a Arc<Shared>,
    worker: usize,
    req: &'a Arc<Request>,
    stage: usize,
    permit: Option<Permit>,
}

impl HandlerWatch<'_> {
    /// The handler returned (or panicked into `catch_unwind`): disarms the watch and hands
    /// back the permit.
    fn handler_returned(mut self) -> Option<Permit> {
        self.shared.pool_busy.set(self.worker, false);
        let permit = self.permit.take();
        std::mem::forget(self);
        permit
    }
}

impl Drop for HandlerWatch<'_> {
    fn drop(&mut self) {
        self.shared.pool_busy.set(self.worker, false);
        let shared = self.shared.clone();
        let req = self.req.clone();
        let (stage, permit) = (self.stage, self.permit.take());
        self.shared.rt.spawn(async move {
            let msg = format!(
                "handler {:?}: its thread exited (pthread_exit or thread cancellation) before it returned",
                req.stage(stage).name
            );
            shared
                .logger
                .log(LogLevel::Error, || format!("request {}: {msg}", req.id));
            dispatch::finish(
                &shared,
                &req,
                Outcome::failed(Status::PORTWAY_HANDLER_ERROR, msg),
            );
            drop(permit);
        });
    }
}
