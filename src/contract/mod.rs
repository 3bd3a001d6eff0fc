//! The handler contract: the one module both the engine and the handlers depend on.
//!
//! - [`AsyncHandler`] and [`BlockingHandler`]: the two traits for handler code, and
//!   `Handler`, the declaration a handler registers with: inline, delay, async, blocking or
//!   foreign (`handler.rs`).
//! - [`Call`] and [`CallContext`]: what a blocking handler sees of one call — its payload, the
//!   request's id, the host's tag, its deadline and its cancellation — and the response it
//!   builds (`call.rs`). Handlers never see the engine's request record.
//! - [`Outcome`], [`Body`], [`Meta`]: what a handler produces, already in the form the C
//!   boundary hands out without copying (`outcome.rs`).
//!
//! The engine (`src/engine/`) runs whatever honours this contract; the built-ins
//! (`src/handlers/`) and native C handlers implement it. Neither names the other's insides.

mod call;
mod handler;
mod outcome;

pub(crate) use call::CallState;
pub use call::{Call, CallContext, Cancellation};
pub(crate) use handler::Handler;
pub use handler::{AsyncHandler, BlockingHandler, Idempotent, OutcomeFuture};
pub use outcome::{Body, Meta, Outcome, portway_meta};
