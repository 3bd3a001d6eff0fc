//! Adding handlers to an engine (pool, async, pipelines) and finding them again.

use std::sync::Arc;

use super::Engine;
use super::registry::{self, HandlerEntry, HandlerKind};
use super::types::MAX_PIPELINE_STAGES;
use crate::contract::{AsyncHandler, BlockingHandler};
use crate::error::{Error, Result};

impl Engine {
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
}
