//! The handler table: names, ids, how each handler runs, its policies and its metrics.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::metrics::HandlerMetrics;
use super::policy::Policies;
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
    /// What stands between a request and this handler (the concurrency limit, ...).
    pub policies: Policies,
    pub metrics: HandlerMetrics,
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
            policies: Policies::new(),
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

/// A lone handler entry of `kind`, for the unit tests of the machinery that holds requests.
#[cfg(test)]
pub(crate) fn test_entry(kind: HandlerKind) -> Arc<HandlerEntry> {
    let registry = Registry::default();
    let id = registry.register("test", kind).unwrap();
    registry.get(id).unwrap()
}

/// A lone `echo`-shaped (inline) entry, for unit tests.
#[cfg(test)]
pub(crate) fn echo_entry() -> Arc<HandlerEntry> {
    test_entry(HandlerKind::Inline(Outcome::ok))
}
