//! Moving a request through its stages: policies, the pool, the runtime, deadlines, and the one
//! place a completion is posted ([`finish`]).

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use super::handoff::Handoff;
use super::lend::{self, Payload};
use super::log::LogLevel;
use super::policy::{Permit, Ticket, hedge};
use super::pool::{self, PoolJob};
use super::registry::HandlerKind;
use super::request::{Request, Transition};
use super::shared::Shared;
use crate::contract::Outcome;
use crate::contract::{AsyncHandler, OutcomeFuture};
use crate::error::panic_message;
use crate::status::Status;

/// Ticket stage meaning "enter the pipeline" (used at a pipeline's own policies).
const ROUTE_ENTRY: usize = usize::MAX;

/// Starts an accepted request (its deadline already armed, see [`Timers::deadlines`]): enters
/// stage 0. A pool job it makes goes to `handoff`, which sends the jobs of one submit batch
/// as a few chunks.
///
/// [`Timers::deadlines`]: super::timer::Timers::deadlines
pub(crate) fn start(
    shared: &Arc<Shared>,
    req: Arc<Request>,
    payload: Payload,
    handoff: &mut Handoff<'_>,
) {
    if matches!(req.handler.kind, HandlerKind::Pipeline(_)) {
        let route = req.handler.clone();
        let ticket = Ticket {
            req,
            stage: ROUTE_ENTRY,
            payload,
        };
        if let Some((ticket, permit)) = route.policies.admit(shared, &route, ticket) {
            enter_route(shared, ticket, permit, Some(handoff));
        }
    } else {
        run_stage(shared, req, 0, payload, Some(handoff));
    }
}

/// Continues with a ticket that its handler's policies admitted.
pub(crate) fn enter_admitted(shared: &Arc<Shared>, ticket: Ticket, permit: Option<Permit>) {
    enter_route(shared, ticket, permit, None);
}

/// [`enter_admitted`], with the submit batch's hand-off when there is one.
fn enter_route(
    shared: &Arc<Shared>,
    ticket: Ticket,
    permit: Option<Permit>,
    handoff: Option<&mut Handoff<'_>>,
) {
    if ticket.stage == ROUTE_ENTRY {
        // A request holding its pipeline's permit does not wait in a chunk (see start_stage).
        let handoff = match permit {
            Some(p) => {
                ticket.req.hold_route_permit(p);
                None
            }
            None => handoff,
        };
        run_stage(shared, ticket.req, 0, ticket.payload, handoff);
    } else {
        start_stage(shared, ticket, permit, handoff);
    }
}

/// Sends stage `stage` through its handler's policies. A pool job goes to `handoff` when
/// given (a submit batch), else to the pool at once.
fn run_stage(
    shared: &Arc<Shared>,
    req: Arc<Request>,
    stage: usize,
    payload: Payload,
    handoff: Option<&mut Handoff<'_>>,
) {
    if req.is_done() {
        return;
    }
    req.enter_stage(stage);
    let ungated = req.stage(stage).policies.holds_nothing_back();
    let ticket = Ticket {
        req,
        stage,
        payload,
    };
    if ungated {
        // The common case needs no permit and no reference to the entry of its own.
        start_stage(shared, ticket, None, handoff);
        return;
    }
    let entry = ticket.req.stage(stage).clone();
    if let Some((ticket, permit)) = entry.policies.admit(shared, &entry, ticket) {
        start_stage(shared, ticket, permit, handoff);
    }
}

fn start_stage(
    shared: &Arc<Shared>,
    ticket: Ticket,
    permit: Option<Permit>,
    handoff: Option<&mut Handoff<'_>>,
) {
    if ticket.req.is_done() {
        return;
    }
    let trial = permit.as_ref().is_some_and(Permit::is_trial);
    // Only a native handler's payload may be lent, and `wanted` reads only an async one's.
    let peek = ticket.payload.owned().unwrap_or_default();
    let hedged = hedge::wanted(ticket.req.stage(ticket.stage), peek, trial);
    // What starting the stage needs, copied out of the entry so the ticket can move on: a
    // function pointer for the fast shapes, the handler's own reference for an async one.
    let start = match &ticket.req.stage(ticket.stage).kind {
        HandlerKind::Blocking(_) if hedged => {
            hedged_on_pool(shared, ticket, permit);
            return;
        }
        HandlerKind::Blocking(_) => {
            // The pool worker finds the handler through the request.
            let job = PoolJob::new(ticket, permit, None);
            match handoff {
                // A job holding a permit goes at once: queued behind others in a chunk, it
                // would hold a unit of its handler's concurrency while not running.
                Some(h) if !job.holds_permit() => h.send(job),
                _ => pool::send(shared, job),
            }
            return;
        }
        HandlerKind::Inline(f) => Start::Inline(*f),
        HandlerKind::Delay(f) => Start::Delay(*f),
        HandlerKind::Async(handler) => Start::Async(handler.clone()),
        HandlerKind::Pipeline(_) => {
            let outcome = Outcome::failed(
                Status::PORTWAY_INTERNAL,
                "nested pipeline was not flattened",
            );
            finish(shared, &ticket.req, outcome);
            return;
        }
    };
    let Ticket {
        req,
        stage,
        payload,
    } = ticket;
    // The submit copies what it lends to any handler but a native one; this covers the rest.
    let Some(payload) = lend::into_owned(shared, &req, payload) else {
        return;
    };
    match start {
        Start::Inline(answer) => {
            let mut permit = permit;
            if mark_running(shared, &req) {
                let outcome = answer(payload);
                if let Some(p) = permit.as_mut() {
                    p.observe(&req, &outcome);
                }
                stage_done(shared, req, stage, outcome);
            }
            drop(permit);
        }
        Start::Delay(delay) => match delay(&payload) {
            Ok(duration) => {
                if mark_running(shared, &req) {
                    shared.timers.sleep(req, stage, permit, duration);
                }
            }
            // Reachable only as a later pipeline stage, whose payload was not checked at
            // submit time.
            Err(e) => {
                finish(shared, &req, Outcome::failed(e.status(), e.to_string()));
            }
        },
        Start::Async(handler) => {
            // A hedged run keeps what a second attempt needs.
            let again = hedged.then(|| (handler.clone(), payload.clone()));
            let fut = match catch_unwind(AssertUnwindSafe(|| handler.call(payload))) {
                Ok(f) => f,
                Err(p) => {
                    let msg = format!("handler panicked: {}", panic_message(&*p));
                    finish(shared, &req, Outcome::failed(Status::PORTWAY_PANIC, msg));
                    return;
                }
            };
            drop(handler);
            let task_shared = shared.clone();
            let task_req = req.clone();
            let handle = shared.rt.spawn(async move {
                let mut permit = permit;
                if !mark_running(&task_shared, &task_req) {
                    return;
                }
                let outcome = match again {
                    None => CatchUnwind(fut).await,
                    Some((handler, payload)) => {
                        let first = Box::pin(CatchUnwind(fut));
                        let second = move || async_attempt(&handler, payload);
                        let entry = task_req.stage(stage);
                        hedge::race(&task_shared, entry, &task_req, first, second).await
                    }
                };
                if let Some(p) = permit.as_mut() {
                    p.observe(&task_req, &outcome);
                }
                log_failure(&task_shared, &task_req, &outcome);
                stage_done(&task_shared, task_req, stage, outcome);
            });
            req.set_stage_task(handle.abort_handle());
        }
    }
}

/// Starts one more attempt of an async stage (a hedge).
fn async_attempt(handler: &Arc<dyn AsyncHandler>, payload: Vec<u8>) -> hedge::Attempt {
    match catch_unwind(AssertUnwindSafe(|| handler.call(payload))) {
        Ok(fut) => Box::pin(CatchUnwind(fut)),
        Err(p) => {
            let msg = format!("handler panicked: {}", panic_message(&*p));
            Box::pin(std::future::ready(Outcome::failed(
                Status::PORTWAY_PANIC,
                msg,
            )))
        }
    }
}

/// Runs a hedged pool stage: a task on the runtime races the pool attempts (see
/// [`hedge::race`]) and moves the request on with the winner's outcome; cancel and the
/// deadline abort the task, which cancels both attempts.
fn hedged_on_pool(shared: &Arc<Shared>, ticket: Ticket, permit: Option<Permit>) {
    let Ticket {
        req,
        stage,
        payload,
    } = ticket;
    // Each attempt gets a copy of its own: the loser may still read it after the winner's
    // completion was polled, when a lent payload may be gone.
    let Some(payload) = lend::into_owned(shared, &req, payload) else {
        return;
    };
    let copy = payload.clone();
    let task_shared = shared.clone();
    let task_req = req.clone();
    let handle = shared.rt.spawn(async move {
        let mut permit = permit;
        let (s, r) = (task_shared.clone(), task_req.clone());
        let first = hedge::pool_attempt(&task_shared, &task_req, stage, payload);
        let second = move || hedge::pool_attempt(&s, &r, stage, copy);
        let entry = task_req.stage(stage);
        let outcome = hedge::race(&task_shared, entry, &task_req, first, second).await;
        if let Some(p) = permit.as_mut() {
            p.observe(&task_req, &outcome);
        }
        stage_done(&task_shared, task_req, stage, outcome);
    });
    req.set_stage_task(handle.abort_handle());
}

/// How a stage that does not go to the pool starts (see [`start_stage`]).
enum Start {
    Inline(fn(Vec<u8>) -> Outcome),
    Delay(fn(&[u8]) -> crate::error::Result<std::time::Duration>),
    Async(Arc<dyn AsyncHandler>),
}

/// Sends the failures a host wants to hear about to the log hook: a panicking handler (error)
/// and a connection that could not be made (warning: refused, unreachable, TLS). The message
/// is the completion's own.
fn log_failure(shared: &Shared, req: &Request, outcome: &Outcome) {
    let level = match outcome.status {
        Status::PORTWAY_PANIC => LogLevel::Error,
        Status::PORTWAY_CONNECT_ERROR | Status::PORTWAY_TLS_ERROR => LogLevel::Warn,
        _ => return,
    };
    shared.logger.log(level, || {
        let msg = String::from_utf8_lossy(outcome.data.as_slice());
        format!("request {}: {msg}", req.id)
    });
}

/// Records that a stage is starting; false when the request is already done.
pub(crate) fn mark_running(shared: &Shared, req: &Request) -> bool {
    mark_running_at(shared, req, None)
}

/// [`mark_running`], started at `at` when given (else now).
pub(crate) fn mark_running_at(shared: &Shared, req: &Request, at: Option<Instant>) -> bool {
    let is_pipeline = matches!(req.handler.kind, HandlerKind::Pipeline(_));
    if is_pipeline {
        req.stage_started();
    }
    match req.mark_running(at) {
        Transition::First => {
            shared.counters.count_started(1);
            true
        }
        Transition::Again => true,
        Transition::Done => false,
    }
}

/// A stage finished: run the next stage, or complete the request.
pub(crate) fn stage_done(shared: &Arc<Shared>, req: Arc<Request>, stage: usize, outcome: Outcome) {
    if let Some(req) = stage_done_at(shared, req, stage, outcome, None) {
        shared.queue.push(std::iter::once(req));
    }
}

/// [`stage_done`], finished at `at` when given (else now), returning the request for the
/// caller to queue (a pool worker queues those of a chunk together) instead of queueing it.
pub(crate) fn stage_done_at(
    shared: &Arc<Shared>,
    req: Arc<Request>,
    stage: usize,
    outcome: Outcome,
    at: Option<Instant>,
) -> Option<Arc<Request>> {
    if shared.config.metrics
        && matches!(req.handler.kind, HandlerKind::Pipeline(_))
        && !req.is_done()
    {
        let (queued, run) = req.stage_timings();
        req.stage(stage)
            .metrics
            .record([(outcome.status, queued, run)]);
    }
    if outcome.is_ok() && stage + 1 < req.stage_count() {
        // Only the data goes on: a hedge's win is kept for the completion's meta.
        if hedge::won(&outcome) {
            req.note_hedge_won();
        }
        run_stage(shared, req, stage + 1, outcome.data.into_vec().into(), None);
        return None;
    }
    let outcome = if stage > 0 && req.hedge_won() {
        hedge::mark_won(outcome)
    } else {
        outcome
    };
    if claim_at(shared, &req, outcome, at) == Claimed::Queue {
        Some(req)
    } else {
        None
    }
}

/// Completes `req` with `outcome` unless something else completed it first.
/// Returns true when this call posted the completion (to the queue, or to its batch).
pub(crate) fn finish(shared: &Shared, req: &Arc<Request>, outcome: Outcome) -> bool {
    match claim(shared, req, outcome) {
        Claimed::Lost => false,
        Claimed::Batched | Claimed::Deferred => true,
        Claimed::Queue => {
            shared.queue.push(std::iter::once(req.clone()));
            true
        }
    }
}

/// What [`claim`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Claimed {
    /// Something else completed the request first.
    Lost,
    /// Claimed: the caller queues the request.
    Queue,
    /// Claimed, and handed to the batch it is an item of: nothing to queue.
    Batched,
    /// Claimed while a reader holds the request's lent payload: the reader queues it when it
    /// lets go of the payload (see `lend.rs`); nothing to queue.
    Deferred,
}

/// Claims the completion and counts it. A batch item goes to its batch; any other request is
/// left for the caller to queue.
pub(crate) fn claim(shared: &Shared, req: &Request, outcome: Outcome) -> Claimed {
    claim_at(shared, req, outcome, None)
}

/// [`claim`], finished at `at` when given (else now).
fn claim_at(shared: &Shared, req: &Request, outcome: Outcome, at: Option<Instant>) -> Claimed {
    let status = outcome.status;
    match req.claim_completion(outcome, at) {
        Some(won) => {
            shared.counters.count_completion(status, won.was_running);
            match won.batch {
                Some(b) => {
                    super::batch::deliver(shared, b);
                    Claimed::Batched
                }
                // A reader still holding a lent payload posts it when done.
                None if req.lend().may_post() => Claimed::Queue,
                None => Claimed::Deferred,
            }
        }
        None => Claimed::Lost,
    }
}

/// Polls a handler future, turning a panic into a `PORTWAY_PANIC` outcome.
struct CatchUnwind(OutcomeFuture);

impl Future for CatchUnwind {
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let fut = &mut self.get_mut().0;
        match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(p) => p,
            Err(panic) => Poll::Ready(Outcome::failed(
                Status::PORTWAY_PANIC,
                format!("handler panicked: {}", panic_message(&*panic)),
            )),
        }
    }
}
