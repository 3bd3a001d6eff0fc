//! The engine's public value types: what a host submits, how it shuts down, and what a poll
//! shows or returns.

use super::request::Request;
use crate::contract::{Body, Meta, Outcome};
use crate::status::Status;

/// Most stages a pipeline may have (after flattening).
pub const MAX_PIPELINE_STAGES: usize = 64;

/// One request to submit. The payload is copied before the submit call returns.
#[derive(Clone, Copy, Debug)]
pub struct Submission<'a> {
    /// Handler id (from registration or [`Engine::lookup`](super::Engine::lookup)).
    pub handler: u32,
    /// Deadline in ms from submit; 0 = the engine default.
    pub timeout_ms: u32,
    /// Echoed in the completion.
    pub user_data: u64,
    /// Request bytes.
    pub payload: &'a [u8],
}

/// How [`Engine::shutdown`](super::Engine::shutdown) treats work in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownMode {
    /// Let in-flight work finish until the deadline, then cancel what is left.
    Drain,
    /// Cancel everything now.
    CancelNow,
}

/// A completion as the host sees it while it is polled; borrowed from the engine.
pub struct Completion<'a> {
    pub(super) req: &'a Request,
    pub(super) outcome: &'a Outcome,
}

impl<'a> Completion<'a> {
    /// The engine-assigned request id.
    pub fn id(&self) -> u64 {
        self.req.id
    }
    /// The host's tag.
    pub fn user_data(&self) -> u64 {
        self.req.user_data
    }
    /// The status.
    pub fn status(&self) -> Status {
        self.outcome.status
    }
    /// The handler-defined code.
    pub fn code(&self) -> u32 {
        self.outcome.code
    }
    /// Response bytes, or the error message.
    pub fn data(&self) -> &'a Body {
        &self.outcome.data
    }
    /// Handler-defined pairs.
    pub fn meta(&self) -> &'a Meta {
        &self.outcome.meta
    }
    /// (accepted -> started, started -> finished), in nanoseconds.
    pub fn timings(&self) -> (u64, u64) {
        self.req.timings()
    }
}

/// A completion copied out of the engine (already released).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedCompletion {
    /// Request id.
    pub id: u64,
    /// The host's tag.
    pub user_data: u64,
    /// Status.
    pub status: Status,
    /// Handler-defined code.
    pub code: u32,
    /// Response bytes or error message.
    pub data: Vec<u8>,
    /// Handler-defined pairs.
    pub meta: Vec<(String, String)>,
}

/// What a poll returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polled {
    /// This many completions (0 after a timeout or a wake).
    Ready(usize),
    /// Shut down and fully drained.
    Closed,
}
