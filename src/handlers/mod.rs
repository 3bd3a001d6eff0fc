//! Handlers: what a request runs. Two shapes exist inside the engine:
//!
//! - [`AsyncHandler`]: a future on the engine's tokio runtime (timers, network I/O); holds no
//!   thread while it waits. The built-in `sleep` and `http` are async.
//! - [`BlockingHandler`]: a function run on the native worker pool (CPU work, C callbacks).
//!
//! `echo` completes inline and pipelines chain other handlers; both are engine-level kinds.

use std::future::Future;
use std::pin::Pin;

use crate::engine::Outcome;
use crate::error::Result;

pub mod call;
pub mod http;
pub mod sleep;

pub use call::{Call, Cancellation};

/// A boxed future producing an outcome.
pub type OutcomeFuture = Pin<Box<dyn Future<Output = Outcome> + Send + 'static>>;

/// A handler that runs as a future on the engine's runtime.
pub trait AsyncHandler: Send + Sync + 'static {
    /// Checks a payload at submit time; an error rejects the submit synchronously.
    fn validate(&self, _payload: &[u8]) -> Result<()> {
        Ok(())
    }

    /// Starts the work. Dropping the future cancels it (cancel, timeout, shutdown).
    fn call(&self, payload: Vec<u8>) -> OutcomeFuture;

    /// Extra figures for the metrics exposition: (name suffix, help, "counter" or "gauge",
    /// value). Exported as `portway_<name>{handler="..."}`.
    fn metrics(&self) -> Vec<(&'static str, &'static str, &'static str, u64)> {
        Vec::new()
    }
}

/// A handler that runs on a worker-pool thread and may block.
pub trait BlockingHandler: Send + Sync + 'static {
    /// Runs one call. Respond through `call`; returning without a response is a handler error.
    fn call(&self, call: &mut Call);
}

impl<F> BlockingHandler for F
where
    F: Fn(&mut Call) + Send + Sync + 'static,
{
    fn call(&self, call: &mut Call) {
        self(call)
    }
}
