//! The built-in `echo`: responds with its payload. It declares itself inline, so with no
//! concurrency limit set it completes inside the submit call: no deadline, no task, no thread.

use crate::contract::{Handler, Outcome};

/// The declaration `echo` registers with.
pub(crate) fn handler() -> Handler {
    Handler::Inline(echo)
}

/// The answer: the payload itself (taken, not copied).
fn echo(payload: Vec<u8>) -> Outcome {
    Outcome::ok(payload)
}
