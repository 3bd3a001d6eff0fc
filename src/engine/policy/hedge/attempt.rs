//! The attempts of a hedged pool stage: each is a pool job whose outcome goes back to the race
//! (not on to the request), and whose call sees its cancellation when the race drops it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Instant;

use tokio::sync::oneshot;

use super::super::super::pool::{self, PoolJob};
use super::super::super::request::Request;
use super::super::super::shared::Shared;
use super::super::Ticket;
use super::Attempt;
use crate::contract::{CallState, Outcome};
use crate::status::Status;

/// What a pool attempt's call reads live: its request's deadline, and a cancellation that is
/// also set when the race drops the attempt (the other one won).
pub(crate) struct AttemptState {
    req: Arc<Request>,
    lost: AtomicBool,
}

impl CallState for AttemptState {
    fn is_cancelled(&self) -> bool {
        self.lost.load(Relaxed) || self.req.is_done()
    }

    fn deadline(&self) -> Option<Instant> {
        self.req.deadline()
    }
}

/// Where a pool attempt's outcome goes (`PoolJob::attempt`).
pub(crate) struct AttemptReply {
    reply: oneshot::Sender<Outcome>,
    state: Arc<AttemptState>,
}

impl AttemptReply {
    /// True once the race dropped this attempt: a job not started yet is skipped.
    pub fn lost(&self) -> bool {
        self.state.lost.load(Relaxed)
    }

    /// The call's live state.
    pub fn state(&self) -> Arc<AttemptState> {
        self.state.clone()
    }

    /// Hands the outcome to the race (ignored when it has ended).
    pub fn reply(self, outcome: Outcome) {
        let _ = self.reply.send(outcome);
    }
}

/// Marks the attempt lost when the race drops it (after it finished: harmless).
struct LoseOnDrop(Arc<AttemptState>);

impl Drop for LoseOnDrop {
    fn drop(&mut self) {
        self.0.lost.store(true, Relaxed);
    }
}

/// Sends stage `stage` of `req` with `payload` to the pool as one attempt of a race; dropping
/// the returned future cancels it (its call's `is_cancelled` turns true).
pub(crate) fn pool_attempt(
    shared: &Arc<Shared>,
    req: &Arc<Request>,
    stage: usize,
    payload: Vec<u8>,
) -> Attempt {
    let (tx, rx) = oneshot::channel();
    let state = Arc::new(AttemptState {
        req: req.clone(),
        lost: AtomicBool::new(false),
    });
    let lose = LoseOnDrop(state.clone());
    let ticket = Ticket {
        req: req.clone(),
        stage,
        payload: payload.into(),
    };
    let attempt = Some(AttemptReply { reply: tx, state });
    pool::send(shared, PoolJob::new(ticket, None, attempt));
    Box::pin(async move {
        let _lose = lose;
        rx.await.unwrap_or_else(|_| {
            Outcome::failed(
                Status::PORTWAY_HANDLER_ERROR,
                "the attempt ended without an outcome",
            )
        })
    })
}
