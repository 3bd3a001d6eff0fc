//! What a handler is: the two traits for handler code (a future on the engine's runtime, or a
//! function on its worker pool), and [`Handler`], the declaration a handler registers with —
//! how it runs, which is all the engine needs to know about it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

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

    /// True when the request `payload` describes is safe to send twice (a hedged request may
    /// run it twice at once and keep one outcome). Decided per request: `http` says yes for
    /// GET, HEAD, OPTIONS, PUT and DELETE. The default, no, means the request is never hedged.
    fn idempotent(&self, _payload: &[u8]) -> bool {
        false
    }

    /// Names the upstream a run of `payload` goes to, when the handler wants one circuit
    /// breaker per upstream rather than one for all its runs (`http`: the origin,
    /// `scheme://host:port`). `None` — the default, and the answer for a payload the handler
    /// cannot read — puts the run under the handler's one breaker. Asked only while a breaker
    /// is set, before the run starts (again when a run a policy held back starts), so it must
    /// be cheap and must not block; the name appears in refusals and log lines.
    fn policy_key(&self, _payload: &[u8]) -> Option<String> {
        None
    }

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

    /// True when any call of this handler is safe to run twice (a hedged request may run it
    /// twice at once, and cancels the loser through its call's cancellation). The default, no,
    /// means the handler is never hedged; wrap a handler in [`Idempotent`] to say yes.
    fn idempotent(&self) -> bool {
        false
    }
}

/// A blocking handler declared safe to repeat, so that hedging may run it twice:
/// `engine.register_blocking("lookup", Idempotent(|call: &mut Call| ...))`.
pub struct Idempotent<H>(pub H);

impl<H: BlockingHandler> BlockingHandler for Idempotent<H> {
    fn call(&self, call: &mut Call) {
        self.0.call(call)
    }

    fn idempotent(&self) -> bool {
        true
    }
}

impl<F> BlockingHandler for F
where
    F: Fn(&mut Call) + Send + Sync + 'static,
{
    fn call(&self, call: &mut Call) {
        self(call)
    }
}

/// A handler as it registers: how it runs. The engine starts each shape its own way and knows
/// nothing else about the handler, so a built-in is no special case in it. The fast shapes
/// (`Inline`, `Delay`) are plain functions: starting them costs no allocation, no task and no
/// thread hop.
pub(crate) enum Handler {
    /// Answers at once on the thread that starts it, and must neither block nor panic. When
    /// no concurrency limit holds it back, that thread is the submitting one: the request
    /// completes inside the submit call and needs no deadline (`echo`).
    Inline(fn(Vec<u8>) -> Outcome),
    /// Completes with an empty response once the delay the function reads from the payload has
    /// passed, on the engine's timer: no task and no thread per waiting request (`sleep`). The
    /// function also checks the payload at submit, so a bad one is refused synchronously.
    Delay(fn(&[u8]) -> Result<Duration>),
    /// A future on the engine's runtime (`http`).
    Async(Arc<dyn AsyncHandler>),
    /// A function on the worker pool; a panic in it completes its request with
    /// `PORTWAY_PANIC`.
    Blocking(Arc<dyn BlockingHandler>),
    /// A C function on the worker pool, behind a wrapper that cannot panic: called without
    /// `catch_unwind`, so that a forced unwind ending its thread (`pthread_exit`, thread
    /// cancellation; CPython does it to threads that want the GIL while it shuts down) passes
    /// through instead of being caught, which would abort the process.
    Foreign(Arc<dyn BlockingHandler>),
}
