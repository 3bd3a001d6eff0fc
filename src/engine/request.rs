//! One accepted request: its identity, deadline, state machine and final outcome.
//!
//! The state moves QUEUED -> RUNNING -> DONE (or QUEUED -> DONE). Whoever moves it to DONE
//! first — the handler, the deadline timer, a cancel, a shutdown — is the one that posts the
//! completion; everyone else sees that they lost and posts nothing. That single atomic swap
//! is what makes "exactly one completion per accepted request" hold under every race.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use tokio::task::AbortHandle;

use super::outcome::Outcome;
use super::registry::{GatePermit, HandlerEntry, HandlerKind};

const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;

/// What `mark_running` found.
pub(crate) enum Transition {
    /// The first stage is starting.
    First,
    /// A later stage is starting.
    Again,
    /// The request is already done; do not run it.
    Done,
}

/// An accepted request, shared by the ledger, the dispatcher and the completion queue.
pub(crate) struct Request {
    pub id: u64,
    pub user_data: u64,
    /// The handler the host addressed (a pipeline, or a single handler).
    pub handler: Arc<HandlerEntry>,
    pub accepted_at: Instant,
    pub deadline: Option<Instant>,
    state: AtomicU8,
    /// Nanoseconds after `accepted_at` at which the first stage started, plus one (0 = never).
    started_ns: AtomicU64,
    /// Nanoseconds after `accepted_at` at which the request finished.
    finished_ns: AtomicU64,
    outcome: OnceLock<Outcome>,
    polled: AtomicBool,
    /// Timer and running task, aborted when the request finishes.
    tasks: Mutex<Tasks>,
}

#[derive(Default)]
struct Tasks {
    timer: Option<AbortHandle>,
    stage_task: Option<AbortHandle>,
    /// Held while the request is inside a pipeline whose own concurrency is limited.
    route_permit: Option<GatePermit>,
}

impl Request {
    pub fn new(
        id: u64,
        user_data: u64,
        handler: Arc<HandlerEntry>,
        accepted_at: Instant,
        deadline: Option<Instant>,
    ) -> Self {
        Request {
            id,
            user_data,
            handler,
            accepted_at,
            deadline,
            state: AtomicU8::new(QUEUED),
            started_ns: AtomicU64::new(0),
            finished_ns: AtomicU64::new(0),
            outcome: OnceLock::new(),
            polled: AtomicBool::new(false),
            tasks: Mutex::new(Tasks::default()),
        }
    }

    /// Number of stages this request runs through.
    pub fn stage_count(&self) -> usize {
        match &self.handler.kind {
            HandlerKind::Pipeline(stages) => stages.len(),
            _ => 1,
        }
    }

    /// The handler that runs stage `i`.
    pub fn stage(&self, i: usize) -> &Arc<HandlerEntry> {
        match &self.handler.kind {
            HandlerKind::Pipeline(stages) => &stages[i],
            _ => &self.handler,
        }
    }

    /// True once a completion has been decided (by the handler or by cancel/timeout/shutdown).
    pub fn is_done(&self) -> bool {
        self.state.load(Ordering::Acquire) == DONE
    }

    /// Records that a stage is starting.
    pub fn mark_running(&self) -> Transition {
        match self
            .state
            .compare_exchange(QUEUED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                let ns = self.accepted_at.elapsed().as_nanos() as u64 + 1;
                self.started_ns.store(ns, Ordering::Relaxed);
                Transition::First
            }
            Err(RUNNING) => Transition::Again,
            Err(_) => Transition::Done,
        }
    }

    /// Claims the right to complete. Exactly one caller ever gets `Some`; it carries whether
    /// the request had started running.
    pub fn claim_completion(&self, outcome: Outcome) -> Option<bool> {
        let before = self.state.swap(DONE, Ordering::AcqRel);
        if before == DONE {
            return None;
        }
        let ns = self.accepted_at.elapsed().as_nanos() as u64;
        self.finished_ns.store(ns, Ordering::Relaxed);
        let _ = self.outcome.set(outcome);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        if let Some(t) = tasks.timer {
            t.abort();
        }
        if let Some(t) = tasks.stage_task {
            t.abort();
        }
        drop(tasks.route_permit);
        Some(before == RUNNING)
    }

    /// Marks the completion as handed to the host; false if it already was.
    pub fn mark_polled(&self) -> bool {
        !self.polled.swap(true, Ordering::AcqRel)
    }

    /// True once the completion was handed to the host.
    pub fn is_polled(&self) -> bool {
        self.polled.load(Ordering::Acquire)
    }

    /// The final outcome; present once the request is done.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.get()
    }

    /// (queued_ns, run_ns) as the completion reports them.
    pub fn timings(&self) -> (u64, u64) {
        let finished = self.finished_ns.load(Ordering::Relaxed);
        match self.started_ns.load(Ordering::Relaxed) {
            0 => (finished, 0),
            s => {
                let started = s - 1;
                (started, finished.saturating_sub(started))
            }
        }
    }

    /// Remembers the deadline timer so finishing can abort it.
    pub fn set_timer(&self, handle: AbortHandle) {
        self.store_task(handle, |t| &mut t.timer);
    }

    /// Remembers the running stage's task so cancel can drop it.
    pub fn set_stage_task(&self, handle: AbortHandle) {
        self.store_task(handle, |t| &mut t.stage_task);
    }

    /// Keeps a pipeline permit until the request finishes.
    pub fn hold_route_permit(&self, permit: GatePermit) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_done() {
            drop(tasks);
            drop(permit);
        } else {
            tasks.route_permit = Some(permit);
        }
    }

    fn store_task(
        &self,
        handle: AbortHandle,
        slot: impl FnOnce(&mut Tasks) -> &mut Option<AbortHandle>,
    ) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        // Checked under the lock: `claim_completion` sets DONE before taking the lock, so either
        // it will see this handle, or we see DONE here.
        if self.is_done() {
            drop(tasks);
            handle.abort();
        } else {
            *slot(&mut tasks) = Some(handle);
        }
    }
}
