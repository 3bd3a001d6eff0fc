//! The built-in handlers, one file or folder each, written against the handler contract
//! ([`crate::contract`]). The contract's types are re-exported here, where handler code looks
//! for them.
//!
//! - `sleep`: responds empty after the payload's milliseconds, on the engine timer.
//! - `http`: an HTTP/1.1 and HTTP/2 client on the engine's runtime.

pub mod http;
pub mod sleep;

pub use crate::contract::{
    AsyncHandler, BlockingHandler, Call, CallContext, Cancellation, OutcomeFuture,
};
