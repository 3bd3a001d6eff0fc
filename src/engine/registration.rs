//! Adding handlers to an engine (pool, async; pipelines are in `pipeline.rs`), finding them
//! again, and their concurrency limits.

use std::sync::Arc;

use super::Engine;
use super::policy;
use crate::contract::{AsyncHandler, BlockingHandler, Handler};
use crate::error::Result;

impl Engine {
    /// Registers a handler that runs on the worker pool. A panic in it completes its request
    /// with `PORTWAY_PANIC`.
    pub fn register_blocking(&self, name: &str, handler: impl BlockingHandler) -> Result<u32> {
        self.register(name, Handler::Blocking(Arc::new(handler)))
    }

    /// Registers a handler that runs as a future on the runtime.
    pub fn register_async(&self, name: &str, handler: impl AsyncHandler) -> Result<u32> {
        self.register(name, Handler::Async(Arc::new(handler)))
    }

    /// Registers a handler by its declaration: the one way in for every kind of handler.
    pub(crate) fn register(&self, name: &str, handler: Handler) -> Result<u32> {
        self.check_registration()?;
        self.shared.registry.register(name, handler.into())
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
        policy::set_concurrency(&self.shared, &entry, limit);
        Ok(())
    }

    /// Sets every policy of handler `id` at once (`portway_handler_set_policy`): the
    /// concurrency limit, the rate limit and the circuit breaker. Invalid settings change
    /// nothing.
    pub fn set_policy(&self, id: u32, settings: &policy::PolicySettings) -> Result<()> {
        self.check_fork()?;
        let entry = self.shared.registry.get(id)?;
        policy::set_policy(&self.shared, &entry, settings)
    }

    /// The live figures of handler `id`'s policies.
    pub fn policy_state(&self, id: u32) -> Result<policy::PolicyState> {
        self.check_fork()?;
        Ok(self.shared.registry.get(id)?.policies.state())
    }
}
