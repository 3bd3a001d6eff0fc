//! The two handler traits: a future on the engine's runtime, or a function on its worker pool.

use std::future::Future;
use std::pin::Pin;

use super::call::Call;
use super::outcome::Outcome;
use crate::error::Result;

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
