//! The engine: one tokio runtime, one native worker pool, one in-flight ledger and one
//! completion queue. Hosts submit requests and poll completions; every accepted request gets
//! exactly one completion, which holds its in-flight slot until it is released.

mod config;
mod dispatch;
mod exposition;
mod fork;
mod ledger;
mod log;
#[cfg(all(test, portway_loom))]
mod loom_models;
mod metrics;
mod outcome;
mod pool;
mod queue;
mod recycle;
mod registry;
pub(crate) mod request;
mod shared;
mod stats;
mod sync;
mod timer;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

pub use config::{Config, LogSetting};
pub use log::{LogHook, LogLevel};
pub use metrics::{HandlerStats, LatencySummary};
pub use outcome::{Body, Meta, Outcome, portway_meta};
pub use queue::NotifyHook;
pub use stats::{STATUS_SLOTS, StatsSnapshot};

use crate::error::{Error, Result};
use crate::handlers::{AsyncHandler, BlockingHandler, sleep};
use crate::status::Status;
use ledger::Ledger;
use pool::{BusyFlags, Pool};
use queue::{CompletionQueue, PollEnd};
use recycle::{Recycler, Spare};
use registry::{HandlerEntry, HandlerKind, Registry};
use request::Request;
use shared::Shared;
use timer::Timers;

/// Most stages a pipeline may have (after flattening).
pub const MAX_PIPELINE_STAGES: usize = 64;

/// One request to submit. The payload is copied before the submit call returns.
#[derive(Clone, Copy, Debug)]
pub struct Submission<'a> {
    /// Handler id (from registration or [`Engine::lookup`]).
    pub handler: u32,
    /// Deadline in ms from submit; 0 = the engine default.
    pub timeout_ms: u32,
    /// Echoed in the completion.
    pub user_data: u64,
    /// Request bytes.
    pub payload: &'a [u8],
}

/// How [`Engine::shutdown`] treats work in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownMode {
    /// Let in-flight work finish until the deadline, then cancel what is left.
    Drain,
    /// Cancel everything now.
    CancelNow,
}

/// A completion as the host sees it while it is polled; borrowed from the engine.
pub struct Completion<'a> {
    req: &'a Request,
    outcome: &'a Outcome,
}

impl<'a> Completion<'a> {
    /// The engine-assigned request id.
    pub fn id(&self) -> u64 {
        self.req.id
    }
    /// The host's tag.
    pub fn user_data(&self) -> u64 {
        self.req.user_data
    }
    /// The status.
    pub fn status(&self) -> Status {
        self.outcome.status
    }
    /// The handler-defined code.
    pub fn code(&self) -> u32 {
        self.outcome.code
    }
    /// Response bytes, or the error message.
    pub fn data(&self) -> &'a Body {
        &self.outcome.data
    }
    /// Handler-defined pairs.
    pub fn meta(&self) -> &'a Meta {
        &self.outcome.meta
    }
    /// (accepted -> started, started -> finished), in nanoseconds.
    pub fn timings(&self) -> (u64, u64) {
        self.req.timings()
    }
}

/// A completion copied out of the engine (already released).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedCompletion {
    /// Request id.
    pub id: u64,
    /// The host's tag.
    pub user_data: u64,
    /// Status.
    pub status: Status,
    /// Handler-defined code.
    pub code: u32,
    /// Response bytes or error message.
    pub data: Vec<u8>,
    /// Handler-defined pairs.
    pub meta: Vec<(String, String)>,
}

/// What a poll returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polled {
    /// This many completions (0 after a timeout or a wake).
    Ready(usize),
    /// Shut down and fully drained.
    Closed,
}

/// An engine. Dropping it cancels everything, waits briefly for native handlers and frees all.
pub struct Engine {
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
    pool: Option<Pool>,
    generation: u64,
}

impl Engine {
    /// Builds an engine with its runtime, pool and the built-in handlers `echo` and `sleep`.
    pub fn new(config: Config) -> Result<Engine> {
        let generation = fork::current_generation();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.effective_runtime_threads())
            .thread_name("portway-rt")
            .enable_time()
            .enable_io()
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the runtime: {e}")))?;
        let (pool_tx, pool_rx) = flume::unbounded();
        let pool_workers = config.effective_pool_workers();
        let shared = Arc::new(Shared {
            ledger: Ledger::new(u64::from(config.max_in_flight)),
            queue: CompletionQueue::new()?,
            registry: Registry::default(),
            counters: Default::default(),
            pool_tx,
            pool_workers,
            pool_busy: BusyFlags::new(pool_workers),
            logger: log::Logger::new(),
            timers: Arc::new(Timers::new()),
            rt: runtime.handle().clone(),
            next_id: 1.into(),
            recycler: Recycler::default(),
            drain_deadline: Default::default(),
            config,
        });
        if let Some(log) = &shared.config.log {
            shared.logger.set(Some(log.hook.clone()), log.min);
        }
        shared.logger.log(LogLevel::Info, || {
            format!(
                "engine started: {} runtime thread(s), {} pool worker(s), max_in_flight {}",
                shared.config.effective_runtime_threads(),
                shared.pool_workers,
                shared.config.max_in_flight
            )
        });
        shared.registry.register("echo", HandlerKind::Echo)?;
        shared.registry.register("sleep", HandlerKind::Sleep)?;
        runtime.spawn(timer::drive(shared.timers.clone(), Arc::downgrade(&shared)));
        let http = crate::handlers::http::HttpHandler::new(Default::default())?;
        shared
            .registry
            .register("http", HandlerKind::Async(Arc::new(http)))?;
        // Last: from here on the workers hold `shared` until the engine's teardown stops them.
        let pool = Pool::start(&shared, pool_rx)
            .map_err(|e| Error::Internal(format!("cannot start the worker pool: {e}")))?;
        Ok(Engine {
            shared,
            runtime: Some(runtime),
            pool: Some(pool),
            generation,
        })
    }

    /// True when this engine was inherited across `fork()` (every call then fails).
    pub fn is_forked(&self) -> bool {
        fork::is_stale(self.generation)
    }

    fn check_fork(&self) -> Result<()> {
        if self.is_forked() {
            Err(Error::Forked)
        } else {
            Ok(())
        }
    }

    /// Refuses registration once shutdown began: a handler registered then could never run, and
    /// an OK would tell the host it can.
    fn check_registration(&self) -> Result<()> {
        self.check_fork()?;
        if self.shared.queue.is_shutting_down() {
            return Err(Error::Shutdown);
        }
        Ok(())
    }

    /// The configuration the engine was built with.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// A handle to the engine's tokio runtime (for handlers that spawn their own work).
    pub fn runtime_handle(&self) -> &tokio::runtime::Handle {
        &self.shared.rt
    }

    // ----- handlers -----

    /// Registers a handler that runs on the worker pool. A panic in it completes its request
    /// with `PORTWAY_PANIC`.
    pub fn register_blocking(&self, name: &str, handler: impl BlockingHandler) -> Result<u32> {
        self.register_pool_handler(name, handler, false)
    }

    /// Registers a C function (through a wrapper that cannot panic) to run on the worker
    /// pool. Its thread may end under it (`pthread_exit`): the pool lets that unwind pass,
    /// completes the request and replaces the thread.
    pub(crate) fn register_foreign(
        &self,
        name: &str,
        handler: impl BlockingHandler,
    ) -> Result<u32> {
        self.register_pool_handler(name, handler, true)
    }

    fn register_pool_handler(
        &self,
        name: &str,
        handler: impl BlockingHandler,
        foreign: bool,
    ) -> Result<u32> {
        self.check_registration()?;
        let kind = HandlerKind::Blocking(registry::PoolHandler {
            handler: Arc::new(handler),
            foreign,
        });
        self.shared.registry.register(name, kind)
    }

    /// Registers a handler that runs as a future on the runtime.
    pub fn register_async(&self, name: &str, handler: impl AsyncHandler) -> Result<u32> {
        self.check_registration()?;
        self.shared
            .registry
            .register(name, HandlerKind::Async(Arc::new(handler)))
    }

    /// Registers a pipeline running `stages` in order; nested pipelines are flattened.
    pub fn register_pipeline(&self, name: &str, stages: &[u32]) -> Result<u32> {
        self.check_registration()?;
        if stages.is_empty() {
            return Err(Error::invalid("a pipeline needs at least one stage"));
        }
        let mut flat: Vec<Arc<HandlerEntry>> = Vec::new();
        for &id in stages {
            let entry = self.shared.registry.get(id)?;
            match &entry.kind {
                HandlerKind::Pipeline(inner) => flat.extend(inner.iter().cloned()),
                _ => flat.push(entry),
            }
        }
        if flat.len() > MAX_PIPELINE_STAGES {
            return Err(Error::invalid(format!(
                "a pipeline may have at most {MAX_PIPELINE_STAGES} stages, got {}",
                flat.len()
            )));
        }
        self.shared
            .registry
            .register(name, HandlerKind::Pipeline(flat))
    }

    /// The id of the handler named `name`.
    pub fn lookup(&self, name: &str) -> Result<u32> {
        self.check_fork()?;
        self.shared.registry.lookup(name)
    }

    /// The name of handler `id`.
    pub fn handler_name(&self, id: u32) -> Result<String> {
        Ok(self.shared.registry.get(id)?.name.clone())
    }

    /// Limits how many calls of handler `id` run at once (0 = no limit). For a pipeline, limits
    /// how many requests are inside it at once.
    pub fn set_concurrency(&self, id: u32, limit: u32) -> Result<()> {
        self.check_fork()?;
        let entry = self.shared.registry.get(id)?;
        registry::set_limit(&self.shared, &entry, limit);
        Ok(())
    }

    // ----- submitting -----

    /// Submits one request; never blocks. Returns its id.
    pub fn submit(&self, req: &Submission<'_>) -> Result<u64> {
        let mut id = [0u64];
        let (_, result) = self.submit_batch(std::slice::from_ref(req), Some(&mut id));
        result.map(|()| id[0])
    }

    /// Submits the longest acceptable prefix of `reqs`. Returns how many were accepted and
    /// `Ok` when all were, else the error that stopped the batch. Ids go to `out_ids`.
    pub fn submit_batch(
        &self,
        reqs: &[Submission<'_>],
        out_ids: Option<&mut [u64]>,
    ) -> (usize, Result<()>) {
        if let Err(e) = self.check_fork() {
            return (0, Err(e));
        }
        if let Some(ids) = out_ids.as_deref()
            && ids.len() < reqs.len()
        {
            return (0, Err(Error::invalid("out_ids is shorter than the batch")));
        }
        let c = &self.shared.counters;
        c.submitted.fetch_add(reqs.len() as u64, Relaxed);
        let (entries, invalid) = self.resolve(reqs);
        let valid = entries.len();
        let mut stop = invalid;
        if valid == 0 {
            if let Some(e) = &stop {
                self.count_rejection(e, reqs.len());
            }
            return (0, stop.map_or(Ok(()), Err));
        }
        if let Err(e) = self.shared.queue.reserve(valid as u64) {
            self.count_rejection(&e, reqs.len());
            return (0, Err(e));
        }
        let granted = self.shared.ledger.try_acquire(valid as u64) as usize;
        if granted < valid {
            self.shared.queue.unreserve((valid - granted) as u64);
            stop = Some(Error::Busy(self.shared.ledger.max_in_flight()));
        }
        if let Some(e) = &stop {
            self.count_rejection(e, reqs.len() - granted);
        }
        let first_id = self.shared.next_id.fetch_add(granted as u64, Relaxed);
        let now = Instant::now();
        let mut inline_done = Vec::new();
        if self.shared.config.metrics {
            count_submitted_by_handler(&entries[..granted]);
        }
        let mut spares = Vec::with_capacity(granted);
        self.shared.recycler.take(granted, &mut spares);
        let accepted: Vec<(Arc<Request>, Vec<u8>)> = reqs
            .iter()
            .zip(entries)
            .take(granted)
            .enumerate()
            .map(|(i, (sub, entry))| {
                self.new_request(first_id + i as u64, sub, entry, now, spares.pop())
            })
            .collect();
        if let Some(ids) = out_ids {
            for (slot, (req, _)) in ids.iter_mut().zip(&accepted) {
                *slot = req.id;
            }
        }
        // Every request is in the ledger before any starts: one that completes at once can be
        // polled and released only once the ledger knows it.
        self.shared
            .ledger
            .insert(accepted.iter().map(|(req, _)| req.clone()));
        self.cancel_if_cancelling(accepted.iter().map(|(req, _)| req));
        let timed = accepted.iter().map(|(req, _)| req);
        self.shared
            .timers
            .deadlines(timed.filter(|req| !completes_inline(req)));
        for (req, payload) in accepted {
            if let Some(req) = self.start_request(req, payload) {
                inline_done.push(req);
            }
        }
        c.accepted.fetch_add(granted as u64, Relaxed);
        self.shared.queue.push(inline_done);
        (granted, stop.map_or(Ok(()), Err))
    }

    /// Submits one request, waiting up to `wait` (None = forever) for a free slot.
    pub fn submit_wait(&self, sub: &Submission<'_>, wait: Option<Duration>) -> Result<u64> {
        self.check_fork()?;
        self.shared.counters.submitted.fetch_add(1, Relaxed);
        let (mut entries, invalid) = self.resolve(std::slice::from_ref(sub));
        let Some(entry) = entries.pop() else {
            let e = invalid.unwrap_or_else(|| Error::Internal("resolve returned nothing".into()));
            self.count_rejection(&e, 1);
            return Err(e);
        };
        if let Err(e) = self.shared.queue.reserve(1) {
            self.count_rejection(&e, 1);
            return Err(e);
        }
        let deadline = wait.map(|w| Instant::now() + w);
        let queue = &self.shared.queue;
        if !self
            .shared
            .ledger
            .acquire_wait(deadline, || queue.is_shutting_down())
        {
            queue.unreserve(1);
            let e = if queue.is_shutting_down() {
                Error::Shutdown
            } else {
                Error::Busy(self.shared.ledger.max_in_flight())
            };
            self.count_rejection(&e, 1);
            return Err(e);
        }
        let id = self.shared.next_id.fetch_add(1, Relaxed);
        if self.shared.config.metrics {
            entry.metrics.count_submitted(1);
        }
        let (req, payload) = self.new_request(id, sub, entry, Instant::now(), None);
        self.shared.ledger.insert([req.clone()]);
        self.cancel_if_cancelling([&req]);
        if !completes_inline(&req) {
            self.shared.timers.deadlines([&req]);
        }
        let inline = self.start_request(req, payload);
        self.shared.counters.accepted.fetch_add(1, Relaxed);
        self.shared.queue.push(inline);
        Ok(id)
    }

    /// Cancels requests just recorded in the ledger when a cancel pass (a `CANCEL_NOW`
    /// shutdown, a drain deadline) began meanwhile: their intake was reserved before the
    /// shutdown, so they are accepted, but the pass's snapshot may not have seen them. Before
    /// they start, so none runs its handler.
    fn cancel_if_cancelling<'r>(&self, reqs: impl IntoIterator<Item = &'r Arc<Request>>) {
        let Some(message) = self.shared.ledger.cancelling() else {
            return;
        };
        for req in reqs {
            dispatch::finish(
                &self.shared,
                req,
                Outcome::failed(Status::PORTWAY_CANCELLED, message),
            );
        }
    }

    /// Validates the prefix of `reqs` that can be accepted: handler exists, payload fits and
    /// the first stage accepts it.
    fn resolve(&self, reqs: &[Submission<'_>]) -> (Vec<Arc<HandlerEntry>>, Option<Error>) {
        let max = self.shared.config.max_payload;
        self.shared.registry.with_table(|get| {
            let mut out = Vec::with_capacity(reqs.len());
            for sub in reqs {
                let checked = get(sub.handler).and_then(|entry| {
                    if sub.payload.len() as u64 > max {
                        return Err(Error::PayloadTooLarge {
                            len: sub.payload.len(),
                            max,
                        });
                    }
                    validate_first_stage(&entry, sub.payload)?;
                    Ok(entry)
                });
                match checked {
                    Ok(entry) => out.push(entry),
                    Err(e) => return (out, Some(e)),
                }
            }
            (out, None)
        })
    }

    /// Counts `n` requests refused before they could be offered to [`Engine::submit_batch`]
    /// (the C boundary refuses a payload length above `max_payload` before reading it), so
    /// the stats read as if the engine had refused them itself.
    #[doc(hidden)]
    pub fn count_refused(&self, e: &Error, n: usize) {
        self.shared.counters.submitted.fetch_add(n as u64, Relaxed);
        self.count_rejection(e, n);
    }

    fn count_rejection(&self, e: &Error, n: usize) {
        let c = &self.shared.counters;
        let counter = match e {
            Error::Busy(_) => &c.rejected_busy,
            Error::Shutdown => &c.rejected_shutdown,
            _ => &c.rejected_invalid,
        };
        counter.fetch_add(n as u64, Relaxed);
    }

    /// The record of an accepted request (its deadline counted from `now`) and its own copy of
    /// the payload (with room for the NUL an echo adds), made from a recycled request and
    /// buffer when there is one.
    fn new_request(
        &self,
        id: u64,
        sub: &Submission<'_>,
        entry: Arc<HandlerEntry>,
        now: Instant,
        spare: Option<Spare>,
    ) -> (Arc<Request>, Vec<u8>) {
        let timeout_ms = match sub.timeout_ms {
            0 => self.shared.config.default_timeout_ms,
            ms => ms,
        };
        // A spare is never shared: the recycler keeps only requests nothing else holds.
        let (req, mut payload) = match spare {
            Some(Spare { mut req, buf }) => match Arc::get_mut(&mut req) {
                Some(r) => {
                    r.renew(id, sub.user_data, entry, now, timeout_ms);
                    (req, buf)
                }
                None => (
                    Arc::new(Request::new(id, sub.user_data, entry, now, timeout_ms)),
                    buf,
                ),
            },
            None => (
                Arc::new(Request::new(id, sub.user_data, entry, now, timeout_ms)),
                Vec::new(),
            ),
        };
        if !sub.payload.is_empty() {
            payload.reserve_exact(sub.payload.len() + 1);
            payload.extend_from_slice(sub.payload);
        }
        (req, payload)
    }

    /// Starts an accepted request already in the ledger. A request that completes inline
    /// (echo) is returned for the caller to queue with its batch.
    fn start_request(&self, req: Arc<Request>, payload: Vec<u8>) -> Option<Arc<Request>> {
        if completes_inline(&req) {
            let outcome = Outcome {
                status: Status::PORTWAY_OK,
                code: 0,
                data: Body::from_vec(payload),
                meta: Meta::default(),
            };
            if req.claim_inline(outcome) {
                let c = &self.shared.counters;
                c.count_started(1);
                c.count_completion(Status::PORTWAY_OK, true);
                return Some(req);
            }
            return None;
        }
        dispatch::start(&self.shared, req, payload);
        None
    }

    // ----- cancelling -----

    /// Cancels request `id`. Ok when it was still in flight (its completion will say
    /// `PORTWAY_CANCELLED`); `NotFound` when unknown or already completed.
    pub fn cancel(&self, id: u64) -> Result<()> {
        self.check_fork()?;
        let not_found = || Error::NotFound(format!("request {id} is unknown or already completed"));
        let req = self.shared.ledger.get(id).ok_or_else(not_found)?;
        let outcome = Outcome::failed(Status::PORTWAY_CANCELLED, "cancelled");
        if dispatch::finish(&self.shared, &req, outcome) {
            Ok(())
        } else {
            Err(not_found())
        }
    }

    /// Cancels every request in flight. Returns how many were cancelled.
    pub fn cancel_all(&self) -> Result<usize> {
        self.check_fork()?;
        Ok(cancel_everything(&self.shared, "cancelled by cancel_all"))
    }

    // ----- completions -----

    /// Waits up to `timeout` (None = forever) for completions and shows up to `cap` of them to
    /// `f` (outside the queue lock: a slow `f` never holds up the threads posting completions).
    /// Each completion is shown once; `f` may release it (or any other) while it looks at it:
    /// the release takes effect at once (slot, ledger) but the completion's memory is freed
    /// only after `f` returns, so a `Completion` is valid for the whole call of `f`.
    pub fn poll(
        &self,
        cap: usize,
        timeout: Option<Duration>,
        f: impl FnMut(usize, Completion<'_>),
    ) -> Result<Polled> {
        self.poll_min(cap, 1, timeout, f)
    }

    /// Like [`Engine::poll`], but waits until at least `min` completions are ready, or fewer
    /// when every request accepted and not yet polled has completed (so a `min` above the work
    /// in flight never waits forever). A timeout or a wake still ends the wait early. Hosts
    /// that keep many requests in flight use it to take completions in batches, one wake-up
    /// per batch. `min` must be between 1 and `cap`.
    pub fn poll_min(
        &self,
        cap: usize,
        min: usize,
        timeout: Option<Duration>,
        mut f: impl FnMut(usize, Completion<'_>),
    ) -> Result<Polled> {
        self.check_fork()?;
        if cap == 0 {
            return Err(Error::invalid("poll capacity must be at least 1"));
        }
        if min == 0 || min > cap {
            return Err(Error::invalid(
                "poll minimum must be at least 1 and at most the capacity",
            ));
        }
        let metrics = self.shared.config.metrics;
        let mut recorded = PolledRecorder::default();
        // Requests the host released while `f` was looking at them: freed here, after `f`.
        let mut released_while_shown: Vec<Arc<Request>> = Vec::new();
        let end = self.shared.queue.poll(cap, min, timeout, |i, req| {
            let released = req.show(|req, outcome| {
                if metrics {
                    let (queued, ran) = req.timings();
                    recorded.add(&req.handler, outcome.status, queued, ran);
                }
                f(i, Completion { req, outcome });
            });
            released_while_shown.extend(released);
        });
        recorded.flush();
        if !released_while_shown.is_empty() {
            self.shared.recycler.give(released_while_shown);
        }
        match end {
            PollEnd::Taken(n) => {
                self.shared.counters.polled.fetch_add(n as u64, Relaxed);
                Ok(Polled::Ready(n))
            }
            PollEnd::Closed => Ok(Polled::Closed),
        }
    }

    /// Releases completions by id, freeing their slots. Ids that are unknown, not yet polled
    /// or already released are ignored. A completion a poll is showing right now (inside its
    /// callback, on this thread or another) is released too, and its memory is freed when
    /// that poll is done with it. Returns how many were released.
    pub fn release(&self, ids: impl IntoIterator<Item = u64>) -> Result<usize> {
        self.check_fork()?;
        let n = self.shared.recycler.release(&self.shared.ledger, ids);
        self.shared.counters.released.fetch_add(n as u64, Relaxed);
        Ok(n)
    }

    /// Polls and releases in one step, copying the completions out.
    pub fn poll_owned(
        &self,
        cap: usize,
        timeout: Option<Duration>,
    ) -> Result<(Vec<OwnedCompletion>, bool)> {
        let mut out = Vec::new();
        let end = self.poll(cap, timeout, |_, c| {
            out.push(OwnedCompletion {
                id: c.id(),
                user_data: c.user_data(),
                status: c.status(),
                code: c.code(),
                data: c.data().as_slice().to_vec(),
                meta: c
                    .meta()
                    .pairs()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            })
        })?;
        self.release(out.iter().map(|c| c.id))?;
        Ok((out, end == Polled::Closed))
    }

    /// The notify descriptor: readable while completions wait to be polled (or once closed).
    pub fn notify_fd(&self) -> Result<i32> {
        self.check_fork()?;
        Ok(self.shared.queue.fd())
    }

    /// Installs (or clears) a hook called when completions become ready after none were.
    pub fn set_notify(&self, hook: Option<NotifyHook>) -> Result<()> {
        self.check_fork()?;
        self.shared.queue.set_hook(hook);
        Ok(())
    }

    /// Makes one blocked poll return with no completions.
    pub fn wake(&self) -> Result<()> {
        self.check_fork()?;
        self.shared.queue.wake();
        Ok(())
    }

    // ----- shutdown and introspection -----

    /// Stops intake now; drains (until `deadline`, if given) or cancels what is in flight.
    /// Calling it again may tighten a drain into a cancel.
    pub fn shutdown(&self, mode: ShutdownMode, deadline: Option<Duration>) -> Result<()> {
        self.check_fork()?;
        self.shared.queue.begin_shutdown();
        self.shared.ledger.wake_slot_waiters();
        self.shared.logger.log(LogLevel::Info, || {
            format!(
                "shutdown: {mode:?}{}, {} request(s) in flight",
                deadline.map_or(String::new(), |d| format!(
                    " with a deadline of {} ms",
                    d.as_millis()
                )),
                self.shared.ledger.in_flight()
            )
        });
        match (mode, deadline) {
            (ShutdownMode::CancelNow, _) => {
                let msg = "cancelled by shutdown";
                self.shared.ledger.cancel_from_now(msg);
                cancel_everything(&self.shared, msg);
            }
            (ShutdownMode::Drain, None) => {}
            (ShutdownMode::Drain, Some(d)) => {
                let at = Instant::now() + d;
                *self
                    .shared
                    .drain_deadline
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(at);
                let shared = self.shared.clone();
                self.shared.rt.spawn(async move {
                    tokio::time::sleep_until(at.into()).await;
                    let msg = format!(
                        "cancelled: shutdown drain deadline of {} ms passed",
                        d.as_millis()
                    );
                    shared.ledger.cancel_from_now(&msg);
                    cancel_everything(&shared, &msg);
                });
            }
        }
        Ok(())
    }

    /// Latency and completion figures of one handler (for a pipeline: whole requests; each
    /// stage handler's own figures include its runs as a stage).
    pub fn handler_stats(&self, id: u32) -> Result<HandlerStats> {
        self.check_fork()?;
        let entry = self.shared.registry.get(id)?;
        Ok(entry.metrics.snapshot(entry.id, &entry.name, &[]).0)
    }

    /// The Prometheus text exposition of this engine's metrics.
    pub fn metrics_text(&self) -> Result<String> {
        let engine = self.stats()?;
        let bounds = exposition::bucket_bounds_ns();
        let handlers: Vec<exposition::HandlerFigures> = self
            .shared
            .registry
            .all()
            .iter()
            .map(|e| {
                let (stats, queue_buckets, run_buckets) =
                    e.metrics.snapshot(e.id, &e.name, &bounds);
                let extra = match &e.kind {
                    HandlerKind::Async(h) => h.metrics(),
                    _ => Vec::new(),
                };
                exposition::HandlerFigures {
                    stats,
                    queue_buckets,
                    run_buckets,
                    extra,
                }
            })
            .collect();
        let busy = self.shared.pool_busy.count();
        Ok(exposition::prometheus(&engine, busy, &handlers))
    }

    /// A JSON snapshot of the requests in flight, oldest first, at most `limit` of them.
    pub fn inflight_json(&self, limit: usize) -> Result<String> {
        self.check_fork()?;
        Ok(exposition::inflight_json(
            self.shared.ledger.snapshot(),
            limit,
        ))
    }

    /// Installs (or removes, with None) the log hook; events below `min` are dropped.
    pub fn set_log(&self, hook: Option<LogHook>, min: LogLevel) -> Result<()> {
        self.check_fork()?;
        self.shared.logger.set(hook, min);
        Ok(())
    }

    /// Counters and gauges.
    pub fn stats(&self) -> Result<StatsSnapshot> {
        self.check_fork()?;
        Ok(self.shared.counters.snapshot(
            self.shared.ledger.in_flight(),
            self.shared.pool_workers as u64,
        ))
    }
}

/// Counts accepted requests per addressed handler, one atomic add per run of equal handlers.
fn count_submitted_by_handler(entries: &[Arc<HandlerEntry>]) {
    let mut i = 0;
    while i < entries.len() {
        let run = entries[i..]
            .iter()
            .take_while(|e| Arc::ptr_eq(e, &entries[i]))
            .count();
        entries[i].metrics.count_submitted(run as u64);
        i += run;
    }
}

/// Gathers the timings of polled completions and records them into their handlers' metrics
/// after the queue lock is released: one histogram lock per run of equal handlers.
#[derive(Default)]
struct PolledRecorder {
    runs: Vec<(Arc<HandlerEntry>, Vec<Sample>)>,
}

/// One polled completion's (status, queue wait ns, run ns).
type Sample = (Status, u64, u64);

impl PolledRecorder {
    fn add(&mut self, handler: &Arc<HandlerEntry>, status: Status, queued: u64, ran: u64) {
        match self.runs.last_mut() {
            Some((h, items)) if Arc::ptr_eq(h, handler) => items.push((status, queued, ran)),
            _ => {
                let mut items = Vec::with_capacity(64);
                items.push((status, queued, ran));
                self.runs.push((handler.clone(), items));
            }
        }
    }

    fn flush(self) {
        for (handler, items) in self.runs {
            handler.metrics.record(items);
        }
    }
}

/// True for requests that complete inside the submit call (an ungated echo): they need no
/// deadline.
fn completes_inline(req: &Request) -> bool {
    matches!(req.handler.kind, HandlerKind::Echo) && req.handler.gate.limit() == 0
}

fn validate_first_stage(entry: &HandlerEntry, payload: &[u8]) -> Result<()> {
    match &entry.kind {
        HandlerKind::Async(h) => h.validate(payload),
        HandlerKind::Pipeline(stages) => stages
            .first()
            .map_or(Ok(()), |s| validate_first_stage(s, payload)),
        HandlerKind::Sleep => sleep::parse_millis(payload).map(|_| ()),
        HandlerKind::Echo | HandlerKind::Blocking(_) => Ok(()),
    }
}

fn cancel_everything(shared: &Arc<Shared>, message: &str) -> usize {
    let mut n = 0;
    for req in shared.ledger.snapshot() {
        if !req.is_done()
            && dispatch::finish(
                shared,
                &req,
                Outcome::failed(Status::PORTWAY_CANCELLED, message),
            )
        {
            n += 1;
        }
    }
    n
}

impl Drop for Engine {
    fn drop(&mut self) {
        if self.is_forked() {
            // The runtime's threads do not exist in this process: touching them would hang or
            // crash. Leak everything instead.
            std::mem::forget(self.runtime.take());
            std::mem::forget(self.pool.take());
            std::mem::forget(self.shared.clone());
            return;
        }
        let shared = &self.shared;
        shared.queue.begin_shutdown();
        shared.ledger.wake_slot_waiters();
        let unfinished = cancel_everything(shared, "cancelled: the engine was freed");
        let held = shared.ledger.in_flight();
        if held > 0 {
            shared.logger.log(LogLevel::Warn, || {
                format!(
                    "engine freed with {held} request(s) not released ({unfinished} still running were cancelled); their completions are discarded"
                )
            });
        }
        if let Some(pool) = self.pool.take() {
            pool.stop(shared);
            let drain_left = shared
                .drain_deadline
                .lock()
                .ok()
                .and_then(|d| *d)
                .map(|d| d.saturating_duration_since(Instant::now()));
            let grace = drain_left.unwrap_or(Duration::from_millis(u64::from(
                shared.config.free_grace_ms,
            )));
            let abandoned = pool.join_within(grace);
            if abandoned > 0 {
                shared.logger.log(LogLevel::Warn, || {
                    format!(
                        "{abandoned} native handler(s) did not return within {} ms and were abandoned",
                        grace.as_millis()
                    )
                });
            }
        }
        if let Some(rt) = self.runtime.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                rt.shutdown_background();
            } else {
                rt.shutdown_timeout(Duration::from_millis(100));
            }
        }
        // Abandoned handlers may still finish later: they must not reach the host's hooks,
        // whose contexts the host frees once this returns.
        shared.logger.set(None, LogLevel::Error);
        shared.queue.set_hook(None);
        for entry in shared.registry.all() {
            entry.gate.clear();
        }
        shared.timers.clear();
        shared.queue.clear();
        shared.ledger.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A submit that reserved intake before a `CANCEL_NOW` shutdown but records its request
    /// after the shutdown's cancel pass (simulated: the mark is set, intake stays open)
    /// cancels the request itself instead of running it past the shutdown.
    #[test]
    fn a_request_recorded_after_the_cancel_pass_is_cancelled() {
        let eng = Engine::new(Config::default()).unwrap();
        let sleep = eng.lookup("sleep").unwrap();
        eng.shared.ledger.cancel_from_now("cancelled by shutdown");
        let sub = Submission {
            handler: sleep,
            timeout_ms: 0,
            user_data: 0,
            payload: b"60000",
        };
        let ids = [
            eng.submit(&sub).unwrap(),
            eng.submit_wait(&sub, None).unwrap(),
        ];
        // Cancelled inside the submit calls: both are ready without waiting.
        let (seen, _) = eng.poll_owned(8, Some(Duration::ZERO)).unwrap();
        assert_eq!(seen.iter().map(|c| c.id).collect::<Vec<_>>(), ids);
        for c in &seen {
            assert_eq!(c.status, Status::PORTWAY_CANCELLED);
            assert_eq!(c.data, b"cancelled by shutdown");
        }
    }
}
