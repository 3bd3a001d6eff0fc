//! The built-in handlers, one file or folder each, written against the handler contract
//! ([`crate::contract`]). The contract's types are re-exported here, where handler code looks
//! for them.
//!
//! - `echo`: responds with the payload; inline, inside the submit call.
//! - `sleep`: responds empty after the payload's milliseconds, on the engine timer.
//! - `http`: an HTTP/1.1 and HTTP/2 client, as futures on the engine's runtime.
//!
//! Each declares how it runs with a `contract::Handler` shape; `builtins()`
//! is the set every engine starts with. `native` runs the C functions hosts register through
//! the C ABI, as foreign blocking handlers. Pipelines are not handlers but routes through
//! registered ones, flattened by the engine (`src/engine/pipeline.rs`).

mod echo;
pub mod http;
pub(crate) mod native;
pub mod sleep;

use crate::contract::Handler;
use crate::error::Result;

pub use crate::contract::{
    AsyncHandler, BlockingHandler, Call, CallContext, Cancellation, OutcomeFuture,
};

/// The built-in handlers every engine registers at start, in id order (echo 1, sleep 2, http 3,
/// as they always were).
pub(crate) fn builtins() -> Result<[(&'static str, Handler); 3]> {
    Ok([
        ("echo", echo::handler()),
        ("sleep", sleep::handler()),
        ("http", http::handler(Default::default())?),
    ])
}
