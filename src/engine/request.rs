//! One accepted request: its identity, deadline, state machine and final outcome.
//!
//! The state moves QUEUED -> RUNNING -> DONE (or QUEUED -> DONE). Whoever moves it to DONE
//! first — the handler, the deadline timer, a cancel, a shutdown — is the one that posts the
//! completion; everyone else sees that they lost and posts nothing. That single atomic swap
//! is what makes "exactly one completion per accepted request" hold under every race.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Instant;

use tokio::task::AbortHandle;

use super::batch::Batch;
use super::lend::LendState;
use super::policy::Permit;
use super::registry::{HandlerEntry, HandlerKind};
use super::sync::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Mutex, OutcomeCell};
use crate::contract::{CallState, Outcome};

const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;

// Where the completion is on its way to the host (the `shown` field). A poller moves it
// NOT_SHOWN -> SHOWING while it reads the outcome (the Rust callback, or the C poll filling its
// record), then SHOWING -> POLLED. A release that finds it SHOWING moves it to
// RELEASED_WHILE_SHOWING instead of freeing it, and the poller frees it once it is done: the
// outcome is never freed while a poller reads it.
const NOT_SHOWN: u8 = 0;
const SHOWING: u8 = 1;
const POLLED: u8 = 2;
const RELEASED_WHILE_SHOWING: u8 = 3;

/// What a release found (`Request::claim_release`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReleaseClaim {
    /// Never handed to the host: the release is ignored.
    NotPolled,
    /// Polled and no longer read by the poller: the caller frees it.
    Free,
    /// A poller is reading it right now: it is released (slot, ledger), and the poller frees
    /// the outcome when it is done.
    Deferred,
}

/// What the winner of `claim_completion` / `claim_inline` learns.
pub(crate) struct Won {
    /// The request had started running.
    pub was_running: bool,
    /// The batch this request is an item of: its completion goes there, not to the queue.
    pub batch: Option<Weak<Batch>>,
}

/// A request's outcome slot. Before the request completes it may hold the link of a batch item
/// to its batch: only the winner of the DONE swap touches the slot, so the one who writes the
/// outcome is the one who learns where it goes, with no extra field (a request stays at 128
/// bytes).
enum Slot {
    /// Not completed yet (or its outcome was freed after release).
    Empty,
    /// Not completed yet; an item of this batch.
    Item(Weak<Batch>),
    /// The final outcome.
    Done(Outcome),
}

/// What `mark_running` found.
pub(crate) enum Transition {
    /// The first stage is starting.
    First,
    /// A later stage is starting.
    Again,
    /// The request is already done; do not run it.
    Done,
}

// SAFETY: every field is thread-safe except `outcome`, whose single write and later reads are
// ordered as described on the field.
unsafe impl Sync for Request {}

/// An accepted request, shared by the ledger, the dispatcher and the completion queue.
pub(crate) struct Request {
    pub id: u64,
    pub user_data: u64,
    /// The handler the host addressed (a pipeline, or a single handler).
    pub handler: Arc<HandlerEntry>,
    pub accepted_at: Instant,
    /// The request's time limit in ms from acceptance (0 = none).
    pub timeout_ms: u32,
    state: AtomicU8,
    /// Nanoseconds after `accepted_at` at which the first stage started, plus one (0 = never).
    started_ns: AtomicU64,
    /// Nanoseconds after `accepted_at` at which the request finished.
    finished_ns: AtomicU64,
    /// The stage being run or waited for (for the in-flight dump).
    stage: AtomicU32,
    /// Written once, by the caller that won `claim_*`, before the request is queued for
    /// polling; read only by pollers after they took it from the queue (the queue's lock
    /// orders the write before the reads).
    outcome: OutcomeCell<Slot>,
    /// True for the request that stands for a whole batch (`Engine::submit_items`): it never
    /// runs; its items complete into the batch, which completes it.
    batch: bool,
    /// NOT_SHOWN, SHOWING, POLLED or RELEASED_WHILE_SHOWING (see above).
    shown: AtomicU8,
    /// Set before a task or permit is stored, so finishing knows whether to look for one.
    armed: AtomicBool,
    /// Whether the payload is lent, and the hand-off between its reader and the completion.
    lend: LendState,
    /// The running stage's task (aborted when the request finishes), a pipeline's permit and
    /// its per-stage timings: boxed on first use, since most requests never have any, and
    /// every byte here is paid per request in flight.
    tasks: Mutex<Option<Box<Tasks>>>,
}

#[derive(Default)]
struct Tasks {
    stage_task: Option<AbortHandle>,
    /// Held while the request is inside a pipeline whose own concurrency is limited.
    route_permit: Option<Permit>,
    /// Pipelines only: ns after `accepted_at` when the current stage was queued and started.
    stage_queued_ns: u64,
    stage_started_ns: u64,
    /// A batch's own request: the batch (its items, then their results).
    batch: Option<Arc<Batch>>,
    /// Pipelines only: a hedge won one of the stages done so far (the completion says so).
    hedge_won: bool,
}

impl Request {
    pub fn new(
        id: u64,
        user_data: u64,
        handler: Arc<HandlerEntry>,
        accepted_at: Instant,
        timeout_ms: u32,
    ) -> Self {
        Request {
            id,
            user_data,
            handler,
            accepted_at,
            timeout_ms,
            state: AtomicU8::new(QUEUED),
            started_ns: AtomicU64::new(0),
            finished_ns: AtomicU64::new(0),
            stage: AtomicU32::new(0),
            outcome: OutcomeCell::new(Slot::Empty),
            batch: false,
            shown: AtomicU8::new(NOT_SHOWN),
            armed: AtomicBool::new(false),
            lend: LendState::default(),
            tasks: Mutex::new(None),
        }
    }

    /// Marks a request not yet shared as one whose payload the host lent (see `lend.rs`).
    pub fn lend_payload(&mut self) {
        self.lend = LendState::lent();
    }

    /// The lent payload's hand-off (inert for a copied payload).
    pub fn lend(&self) -> &LendState {
        &self.lend
    }

    /// Makes a released request, which nothing else refers to any more, a new one (the
    /// recycler's reuse; the same as `Request::new`, without the allocation).
    pub fn renew(
        &mut self,
        id: u64,
        user_data: u64,
        handler: Arc<HandlerEntry>,
        accepted_at: Instant,
        timeout_ms: u32,
    ) {
        *self = Request::new(id, user_data, handler, accepted_at, timeout_ms);
    }

    /// The request that stands for `batch` (it holds the batch until it is released).
    pub fn new_batch(
        id: u64,
        user_data: u64,
        handler: Arc<HandlerEntry>,
        accepted_at: Instant,
        batch: Arc<Batch>,
    ) -> Self {
        let mut req = Request::new(id, user_data, handler, accepted_at, 0);
        req.batch = true;
        *req.tasks.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(Tasks {
            batch: Some(batch),
            ..Tasks::default()
        }));
        req
    }

    /// Makes a request not yet shared an item of `batch`: its completion goes to the batch.
    pub fn join_batch(&mut self, batch: Weak<Batch>) {
        self.outcome.with_mut(|o| {
            // SAFETY: `&mut self`: nothing else can reach the slot.
            unsafe { *o = Slot::Item(batch) }
        });
    }

    /// True for the request that stands for a batch.
    pub fn is_batch(&self) -> bool {
        self.batch
    }

    /// The batch this request stands for (None for other requests, or once released).
    pub fn batch(&self) -> Option<Arc<Batch>> {
        if !self.batch {
            return None;
        }
        let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.as_ref().and_then(|t| t.batch.clone())
    }

    /// Lets go of the batch this request stands for (it was released).
    pub fn take_batch(&self) -> Option<Arc<Batch>> {
        if !self.batch {
            return None;
        }
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.as_mut().and_then(|t| t.batch.take())
    }

    /// In-flight slots this request holds: one, or a batch's item count.
    pub fn slots(&self) -> u64 {
        self.batch().map_or(1, |b| b.len() as u64)
    }

    /// When the request times out, if it has a time limit.
    pub fn deadline(&self) -> Option<Instant> {
        (self.timeout_ms > 0).then(|| {
            self.accepted_at + std::time::Duration::from_millis(u64::from(self.timeout_ms))
        })
    }

    /// Takes the buffer the completion's bytes lived in (empty if there was none), for reuse.
    pub fn take_spent_buffer(&mut self) -> Vec<u8> {
        // SAFETY: `&mut self`: nothing else can reach the outcome.
        match self
            .outcome
            .with_mut(|o| unsafe { std::mem::replace(&mut *o, Slot::Empty) })
        {
            Slot::Done(outcome) => outcome.data.into_vec(),
            _ => Vec::new(),
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
        self.state.load(Ordering::SeqCst) == DONE
    }

    /// Records that a stage is starting, at `at` when given (a pool worker running a chunk
    /// passes the time its previous job ended, read once for both), else now.
    pub fn mark_running(&self, at: Option<Instant>) -> Transition {
        match self
            .state
            .compare_exchange(QUEUED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                let ns = self.ns_since_accepted(at) + 1;
                self.started_ns.store(ns, Ordering::Relaxed);
                Transition::First
            }
            Err(RUNNING) => Transition::Again,
            Err(_) => Transition::Done,
        }
    }

    /// Claims the right to complete. Exactly one caller ever gets `Some`; it carries whether
    /// the request had started running, and the batch it is an item of. It finished at `at` when given (a pool worker passes the time its handler returned,
    /// which it reads anyway), else now.
    pub fn claim_completion(&self, outcome: Outcome, at: Option<Instant>) -> Option<Won> {
        let before = self.state.swap(DONE, Ordering::SeqCst);
        if before == DONE {
            return None;
        }
        let ns = self.ns_since_accepted(at);
        self.finished_ns.store(ns, Ordering::Relaxed);
        let batch = self.write_outcome(outcome);
        if self.armed.load(Ordering::SeqCst) {
            let taken = self.tasks.lock().unwrap_or_else(|e| e.into_inner()).take();
            let tasks = taken.map(|t| *t).unwrap_or_default();
            if let Some(t) = tasks.stage_task {
                t.abort();
            }
            drop(tasks.route_permit);
        }
        Some(Won {
            was_running: before == RUNNING,
            batch,
        })
    }

    /// Completes a request whose handler answered inside the submit call (no clock reads: it
    /// started and finished at acceptance). False if a concurrent cancel completed it first.
    pub fn claim_inline(&self, outcome: Outcome) -> Option<Won> {
        if self.state.swap(DONE, Ordering::SeqCst) == DONE {
            return None;
        }
        self.started_ns.store(1, Ordering::Relaxed);
        let batch = self.write_outcome(outcome);
        Some(Won {
            was_running: true,
            batch,
        })
    }

    /// Completes a batch's own request once its last item completed: it ran from acceptance
    /// to now. False if it was completed already.
    pub fn claim_batch(&self, outcome: Outcome) -> bool {
        if self.state.swap(DONE, Ordering::SeqCst) == DONE {
            return false;
        }
        let ns = self.accepted_at.elapsed().as_nanos() as u64;
        self.started_ns.store(1, Ordering::Relaxed);
        self.finished_ns.store(ns, Ordering::Relaxed);
        self.write_outcome(outcome);
        true
    }

    /// Writes the outcome; returns the batch link it replaces, if the request is an item.
    fn write_outcome(&self, outcome: Outcome) -> Option<Weak<Batch>> {
        // SAFETY: only the single winner of the DONE swap gets here, once, and nobody reads the
        // outcome before the request is pushed to the completion queue (or, for a batch item,
        // handed to its batch) afterwards.
        let before = self
            .outcome
            .with_mut(|o| unsafe { std::mem::replace(&mut *o, Slot::Done(outcome)) });
        match before {
            Slot::Item(batch) => Some(batch),
            _ => None,
        }
    }

    /// Shows the completion to `f`, for the poller that took the request from the completion
    /// queue (the only one that may). A release while `f` runs does not free it: the request
    /// is then returned, and the caller frees it once it is done with its batch.
    pub fn show(self: &Arc<Self>, f: impl FnOnce(&Request, &Outcome)) -> Option<Arc<Request>> {
        self.begin_show();
        if let Some(outcome) = self.outcome() {
            f(self, outcome);
        }
        (!self.end_show()).then(|| self.clone())
    }

    /// The poller starts reading the outcome. Until `end_show`, a release does not free it.
    fn begin_show(&self) {
        self.shown.store(SHOWING, Ordering::Release);
    }

    /// The poller is done reading the outcome. False when the host released the request
    /// meanwhile: the poller then owns the release of its outcome (nothing else frees it).
    fn end_show(&self) -> bool {
        self.shown
            .compare_exchange(SHOWING, POLLED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// A host releases this request (called under its ledger shard's lock, so at most once
    /// per request with a result other than `NotPolled`).
    pub fn claim_release(&self) -> ReleaseClaim {
        match self.shown.load(Ordering::Acquire) {
            NOT_SHOWN => ReleaseClaim::NotPolled,
            SHOWING => match self.shown.compare_exchange(
                SHOWING,
                RELEASED_WHILE_SHOWING,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => ReleaseClaim::Deferred,
                // The poller finished in between (POLLED): its reads happened before its
                // release-ordered store, which this acquire saw.
                Err(_) => ReleaseClaim::Free,
            },
            _ => ReleaseClaim::Free,
        }
    }

    /// True once the completion was handed to the host (or is being handed).
    pub fn is_polled(&self) -> bool {
        self.shown.load(Ordering::Acquire) != NOT_SHOWN
    }

    /// Nanoseconds from acceptance to `at` (None = now; 0 if `at` is earlier).
    fn ns_since_accepted(&self, at: Option<Instant>) -> u64 {
        let at = at.unwrap_or_else(Instant::now);
        at.saturating_duration_since(self.accepted_at).as_nanos() as u64
    }

    /// Nanoseconds since acceptance.
    pub fn age_ns(&self) -> u64 {
        self.accepted_at.elapsed().as_nanos() as u64
    }

    /// Nanoseconds from acceptance to `now`: a snapshot of many requests takes one `now`, so
    /// requests accepted together (one batch) show equal ages and older ones never look younger.
    pub fn age_ns_at(&self, now: std::time::Instant) -> u64 {
        now.saturating_duration_since(self.accepted_at).as_nanos() as u64
    }

    /// Notes that stage `stage` is queued (pipelines record per-stage timings).
    pub fn enter_stage(&self, stage: usize) {
        self.stage.store(stage as u32, Ordering::Relaxed);
        if stage > 0 {
            let age = self.age_ns();
            self.with_tasks(|t| t.stage_queued_ns = age);
        }
    }

    /// Notes that the current stage started running.
    pub fn stage_started(&self) {
        let age = self.age_ns();
        self.with_tasks(|t| t.stage_started_ns = age);
    }

    /// Notes that a hedge won a stage of this pipeline request before its last one.
    pub fn note_hedge_won(&self) {
        self.with_tasks(|t| t.hedge_won = true);
    }

    /// True when [`note_hedge_won`](Self::note_hedge_won) was called.
    pub fn hedge_won(&self) -> bool {
        let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.as_ref().is_some_and(|t| t.hedge_won)
    }

    /// The current stage's (queue wait, run time) so far, in ns.
    pub fn stage_timings(&self) -> (u64, u64) {
        let (queued, started) = self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or((0, 0), |t| (t.stage_queued_ns, t.stage_started_ns));
        let started = started.max(queued);
        (started - queued, self.age_ns().saturating_sub(started))
    }

    /// The stage being run or waited for.
    pub fn current_stage(&self) -> usize {
        self.stage.load(Ordering::Relaxed) as usize
    }

    /// Where the request is, for the in-flight dump.
    pub fn state_name(&self) -> &'static str {
        match self.state.load(Ordering::Acquire) {
            QUEUED => "queued",
            RUNNING => "running",
            _ if self.is_polled() => "unreleased",
            _ => "ready",
        }
    }

    /// Frees the completion's bytes and metadata once the host has released it. Something
    /// else (a deadline entry waiting for its time) may keep the request itself alive a while
    /// longer, and should not keep a large response with it.
    pub fn free_outcome_after_release(&self) {
        // SAFETY: the outcome is read only by the one poller that took the request from the
        // queue, between `begin_show` and `end_show`; it is freed only after both the release
        // and `end_show` (`claim_release` / `end_show` decide which of the two comes last and
        // frees it), and nothing writes or reads the outcome again.
        self.outcome.with_mut(|o| unsafe { *o = Slot::Empty });
    }

    /// The final outcome. Call only after taking the request from the completion queue.
    pub fn outcome(&self) -> Option<&Outcome> {
        // SAFETY: written once before the request was queued; the queue lock orders that write
        // before this read, and it is never written again.
        self.outcome.with(|o| match unsafe { &*o } {
            Slot::Done(outcome) => Some(outcome),
            _ => None,
        })
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

    /// Remembers the running stage's task so cancel can drop it.
    pub fn set_stage_task(&self, handle: AbortHandle) {
        self.store_task(handle, |t| &mut t.stage_task);
    }

    /// Keeps a pipeline permit until the request finishes.
    pub fn hold_route_permit(&self, permit: Permit) {
        self.armed.store(true, Ordering::SeqCst);
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_done() {
            drop(tasks);
            drop(permit);
        } else {
            tasks.get_or_insert_with(Box::default).route_permit = Some(permit);
        }
    }

    /// Runs `f` on the request's boxed extras (pipeline timings), creating them if needed.
    fn with_tasks(&self, f: impl FnOnce(&mut Tasks)) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        f(tasks.get_or_insert_with(Box::default));
    }

    fn store_task(
        &self,
        handle: AbortHandle,
        slot: impl FnOnce(&mut Tasks) -> &mut Option<AbortHandle>,
    ) {
        self.armed.store(true, Ordering::SeqCst);
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        // Checked under the lock: `claim_completion` sets DONE before taking the lock, so either
        // it will see this handle, or we see DONE here.
        if self.is_done() {
            drop(tasks);
            handle.abort();
        } else {
            *slot(tasks.get_or_insert_with(Box::default)) = Some(handle);
        }
    }
}

/// What a handler's [`CallContext`](crate::contract::CallContext) reads live: the request's
/// state and deadline, and nothing else of it.
impl CallState for Request {
    fn is_cancelled(&self) -> bool {
        self.is_done()
    }

    fn deadline(&self) -> Option<Instant> {
        Request::deadline(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_stays_small() {
        // Every request in flight costs this much (plus its Arc header, the ledger entry and
        // what its handler holds): W2 measures it. Growing it should be a decision.
        let size = std::mem::size_of::<Request>();
        println!("Request: {size} bytes");
        assert!(size <= 128, "Request grew to {size} bytes");
    }
}
