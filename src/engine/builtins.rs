//! The one place the engine names the built-in handlers (`src/handlers/`): the set every
//! engine registers at start, and [`Engine::register_http`] for further http handlers with
//! their own options. Everything else in the engine knows handlers only through the contract.

use super::Engine;
use super::registry::Registry;
use crate::error::Result;
use crate::handlers::{self, http::HttpOptions};

/// Registers the built-ins (`echo`, `sleep`, `http`) in their fixed id order.
pub(super) fn register(registry: &Registry) -> Result<()> {
    for (name, handler) in handlers::builtins()? {
        registry.register(name, handler.into())?;
    }
    Ok(())
}

impl Engine {
    /// Registers another http handler named `name` with its own limits and pool.
    pub fn register_http(&self, name: &str, opts: HttpOptions) -> Result<u32> {
        self.register(name, handlers::http::handler(opts)?)
    }
}
