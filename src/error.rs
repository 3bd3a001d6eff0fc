//! Errors returned synchronously by engine calls, and their one mapping to `portway_status`.

use crate::status::Status;

/// Why an engine call was refused. Each variant's message names what was wrong.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// An argument was missing or out of range.
    #[error("{0}")]
    InvalidArgument(String),
    /// Every in-flight slot is taken.
    #[error(
        "all {0} in-flight slots are taken (max_in_flight); poll and release completions, then retry"
    )]
    Busy(u64),
    /// Intake is closed.
    #[error("the engine is shutting down and accepts no new requests")]
    Shutdown,
    /// Shut down and fully drained.
    #[error("the engine is shut down and every completion has been polled")]
    Closed,
    /// No such request or handler name.
    #[error("{0}")]
    NotFound(String),
    /// No handler has this id.
    #[error("no handler has id {0}")]
    UnknownHandler(u32),
    /// The payload exceeds `max_payload`.
    #[error("payload of {len} bytes exceeds max_payload of {max} bytes")]
    PayloadTooLarge {
        /// Bytes submitted.
        len: usize,
        /// The engine's limit.
        max: u64,
    },
    /// The engine was created in a parent process before `fork()`.
    #[error("this engine was created before fork(); it cannot be used in the child process")]
    Forked,
    /// A panic was caught.
    #[error("panic: {0}")]
    Panic(String),
    /// A bug in portway.
    #[error("internal error: {0}")]
    Internal(String),
    /// The caller's buffer cannot hold the result.
    #[error("the buffer holds {cap} bytes but {needed} are needed")]
    BufferTooSmall {
        /// Bytes needed, including the terminating NUL.
        needed: usize,
        /// Bytes offered.
        cap: usize,
    },
}

impl Error {
    /// The status code a C caller sees for this error.
    pub fn status(&self) -> Status {
        match self {
            Error::InvalidArgument(_) => Status::PORTWAY_INVALID_ARGUMENT,
            Error::Busy(_) => Status::PORTWAY_BUSY,
            Error::Shutdown => Status::PORTWAY_SHUTDOWN,
            Error::Closed => Status::PORTWAY_CLOSED,
            Error::NotFound(_) => Status::PORTWAY_NOT_FOUND,
            Error::UnknownHandler(_) => Status::PORTWAY_UNKNOWN_HANDLER,
            Error::PayloadTooLarge { .. } => Status::PORTWAY_PAYLOAD_TOO_LARGE,
            Error::Forked => Status::PORTWAY_FORKED,
            Error::Panic(_) => Status::PORTWAY_PANIC,
            Error::Internal(_) => Status::PORTWAY_INTERNAL,
            Error::BufferTooSmall { .. } => Status::PORTWAY_BUFFER_TOO_SMALL,
        }
    }

    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidArgument(message.into())
    }
}

/// Result alias for engine calls.
pub type Result<T> = std::result::Result<T, Error>;

/// The message carried by a caught panic.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_owned()
    }
}
