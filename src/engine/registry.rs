//! The handler table (names, ids, kinds) and each handler's concurrency gate.
//!
//! A gate admits at most `limit` concurrent runs of its handler; further work waits in the
//! gate's FIFO without holding a thread. Finishing a run (dropping its [`GatePermit`]) starts
//! the next waiting ticket.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use super::dispatch;
use super::metrics::HandlerMetrics;
use super::request::Request;
use super::shared::Shared;
use crate::contract::{AsyncHandler, BlockingHandler, Handler, Outcome};
use crate::error::{Error, Result};

/// How a handler runs: its declared [`Handler`] shape, or a pipeline of registered handlers.
pub(crate) enum HandlerKind {
    /// Answers at once (see [`Handler::Inline`]).
    Inline(fn(Vec<u8>) -> Outcome),
    /// Responds empty after the payload's delay, on the engine's timer (see
    /// [`Handler::Delay`]).
    Delay(fn(&[u8]) -> Result<Duration>),
    /// A future on the runtime.
    Async(Arc<dyn AsyncHandler>),
    /// A function on the worker pool.
    Blocking(PoolHandler),
    /// Stages run in order; never nested (pipelines of pipelines are flattened).
    Pipeline(Vec<Arc<HandlerEntry>>),
}

impl From<Handler> for HandlerKind {
    fn from(handler: Handler) -> Self {
        match handler {
            Handler::Inline(f) => HandlerKind::Inline(f),
            Handler::Delay(f) => HandlerKind::Delay(f),
            Handler::Async(h) => HandlerKind::Async(h),
            Handler::Blocking(handler) => HandlerKind::Blocking(PoolHandler {
                handler,
                foreign: false,
            }),
            Handler::Foreign(handler) => HandlerKind::Blocking(PoolHandler {
                handler,
                foreign: true,
            }),
        }
    }
}

/// A handler run on the worker pool.
pub(crate) struct PoolHandler {
    pub handler: Arc<dyn BlockingHandler>,
    /// A C function (see [`Handler::Foreign`]): called without catching panics. It cannot
    /// panic: every `portway_call_*` function catches its own panics.
    pub foreign: bool,
}

/// A registered handler.
pub(crate) struct HandlerEntry {
    pub id: u32,
    pub name: String,
    pub kind: HandlerKind,
    pub gate: Gate,
    pub metrics: HandlerMetrics,
}

/// Work waiting to enter a gate: run `stage` of `req` with `payload`.
pub(crate) struct Ticket {
    pub req: Arc<Request>,
    pub stage: usize,
    pub payload: Vec<u8>,
}

/// Per-handler concurrency limit.
pub(crate) struct Gate {
    limit: AtomicU32,
    inner: Mutex<GateState>,
}

#[derive(Default)]
struct GateState {
    running: u32,
    waiting: VecDeque<Ticket>,
}

/// Proof of one admitted run; dropping it lets the next waiting ticket in.
pub(crate) struct GatePermit {
    shared: Arc<Shared>,
    entry: Arc<HandlerEntry>,
}

impl Drop for GatePermit {
    fn drop(&mut self) {
        for ticket in self.entry.gate.release_one() {
            let permit = GatePermit {
                shared: self.shared.clone(),
                entry: self.entry.clone(),
            };
            dispatch::enter_admitted(&self.shared, ticket, Some(permit));
        }
    }
}

impl Gate {
    fn new() -> Self {
        Gate {
            limit: AtomicU32::new(0),
            inner: Mutex::new(GateState::default()),
        }
    }

    /// The current limit (0 = none).
    pub fn limit(&self) -> u32 {
        self.limit.load(Ordering::Acquire)
    }

    /// Admits `ticket` now (returning it, with a permit when a limit is set) or parks it until
    /// a run finishes. Without a limit no lock is taken; a limit set later applies to runs
    /// admitted after it.
    pub fn admit(
        &self,
        shared: &Arc<Shared>,
        entry: &Arc<HandlerEntry>,
        ticket: Ticket,
    ) -> Option<(Ticket, Option<GatePermit>)> {
        if self.limit() == 0 {
            return Some((ticket, None));
        }
        let mut st = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let limit = self.limit();
        if limit == 0 || st.running < limit {
            st.running += 1;
            drop(st);
            Some((
                ticket,
                Some(GatePermit {
                    shared: shared.clone(),
                    entry: entry.clone(),
                }),
            ))
        } else {
            st.waiting.push_back(ticket);
            None
        }
    }

    /// Ends one run and returns the tickets that may start now (skipping finished requests).
    fn release_one(&self) -> Vec<Ticket> {
        let mut st = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        st.running = st.running.saturating_sub(1);
        self.take_startable(&mut st)
    }

    fn take_startable(&self, st: &mut GateState) -> Vec<Ticket> {
        let limit = self.limit();
        let mut out = Vec::new();
        while limit == 0 || st.running < limit {
            let Some(t) = st.waiting.pop_front() else {
                break;
            };
            if t.req.is_done() {
                continue;
            }
            st.running += 1;
            out.push(t);
        }
        out
    }

    /// Drops every waiting ticket (engine teardown: breaks request -> handler cycles).
    pub fn clear(&self) {
        let drained: Vec<Ticket> = match self.inner.lock() {
            Ok(mut st) => st.waiting.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        drop(drained);
    }
}

/// Sets a gate's limit and starts whatever the new limit lets in.
pub(crate) fn set_limit(shared: &Arc<Shared>, entry: &Arc<HandlerEntry>, limit: u32) {
    let startable = {
        let mut st = entry.gate.inner.lock().unwrap_or_else(|e| e.into_inner());
        entry.gate.limit.store(limit, Ordering::Release);
        entry.gate.take_startable(&mut st)
    };
    for ticket in startable {
        let permit = GatePermit {
            shared: shared.clone(),
            entry: entry.clone(),
        };
        dispatch::enter_admitted(shared, ticket, Some(permit));
    }
}

/// Names and ids of all handlers. Ids start at 1 and are never reused.
#[derive(Default)]
pub(crate) struct Registry {
    inner: RwLock<Table>,
}

#[derive(Default)]
struct Table {
    by_id: Vec<Arc<HandlerEntry>>,
    by_name: HashMap<String, u32>,
}

/// Longest handler name accepted.
const MAX_NAME_LEN: usize = 256;

impl Registry {
    /// Adds a handler; fails on an empty, overlong or duplicate name.
    pub fn register(&self, name: &str, kind: HandlerKind) -> Result<u32> {
        if name.is_empty() {
            return Err(Error::invalid("handler name must not be empty"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(Error::invalid(format!(
                "handler name is {} bytes; the limit is {MAX_NAME_LEN}",
                name.len()
            )));
        }
        let mut t = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if t.by_name.contains_key(name) {
            return Err(Error::invalid(format!(
                "a handler named {name:?} is already registered"
            )));
        }
        let id = u32::try_from(t.by_id.len() + 1)
            .map_err(|_| Error::invalid("too many handlers registered"))?;
        t.by_id.push(Arc::new(HandlerEntry {
            id,
            name: name.to_owned(),
            kind,
            gate: Gate::new(),
            metrics: HandlerMetrics::new(),
        }));
        t.by_name.insert(name.to_owned(), id);
        Ok(id)
    }

    /// The handler with this id.
    pub fn get(&self, id: u32) -> Result<Arc<HandlerEntry>> {
        let t = self.inner.read().unwrap_or_else(|e| e.into_inner());
        Self::get_in(&t.by_id, id)
    }

    /// Looks up many ids under one lock; `f` sees the entry for each.
    pub fn with_table<R>(
        &self,
        f: impl FnOnce(&dyn Fn(u32) -> Result<Arc<HandlerEntry>>) -> R,
    ) -> R {
        let t = self.inner.read().unwrap_or_else(|e| e.into_inner());
        f(&|id| Self::get_in(&t.by_id, id))
    }

    fn get_in(by_id: &[Arc<HandlerEntry>], id: u32) -> Result<Arc<HandlerEntry>> {
        (id as usize)
            .checked_sub(1)
            .and_then(|i| by_id.get(i))
            .cloned()
            .ok_or(Error::UnknownHandler(id))
    }

    /// The id registered under `name`.
    pub fn lookup(&self, name: &str) -> Result<u32> {
        let t = self.inner.read().unwrap_or_else(|e| e.into_inner());
        t.by_name
            .get(name)
            .copied()
            .ok_or_else(|| Error::NotFound(format!("no handler is named {name:?}")))
    }

    /// Every handler, in id order.
    pub fn all(&self) -> Vec<Arc<HandlerEntry>> {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .by_id
            .clone()
    }
}
