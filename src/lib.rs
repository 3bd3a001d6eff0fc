//! portway: an embeddable request engine.
//!
//! Hosts submit requests to named handlers and poll completions, through the Rust API
//! ([`Engine`]) or the C ABI (`include/portway.h`, implemented in [`ffi`]). Every accepted
//! request gets exactly one completion; deadlines, cancellation, backpressure and graceful
//! shutdown are part of the engine, not of the host.

#![deny(missing_docs)]

#[cfg(test)]
mod alloc_count;
pub mod contract;
pub mod engine;
pub mod error;
pub mod ffi;
#[doc(hidden)]
pub mod fuzzing;
pub mod handlers;
pub mod status;

pub use engine::{
    Completion, Config, Engine, Outcome, OwnedCompletion, Polled, ShutdownMode, StatsSnapshot,
    Submission,
};
pub use error::{Error, Result};
pub use status::Status;

/// The crate version, e.g. `"0.1.0"`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
