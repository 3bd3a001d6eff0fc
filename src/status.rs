//! The one status enum shared by call results and completion records.
//!
//! The variant names are the C names from the contract (`PORTWAY_OK`, ...), so the generated
//! header spells them exactly and Rust code reads the same words a C user does.

#![allow(non_camel_case_types)]

/// Result of a call, and the status of a completion.
///
/// `PORTWAY_OK` is 0. New values are only ever appended; existing values never change.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum portway_status {
    /// Success.
    PORTWAY_OK = 0,
    /// A required pointer was NULL, or an argument was out of range. See `portway_last_error`.
    PORTWAY_INVALID_ARGUMENT = 1,
    /// Every in-flight slot is taken (`max_in_flight`); nothing was accepted. Retry after a release.
    PORTWAY_BUSY = 2,
    /// The engine is shutting down and accepts no new requests.
    PORTWAY_SHUTDOWN = 3,
    /// The engine is shut down and every completion has been polled.
    PORTWAY_CLOSED = 4,
    /// The request id is unknown or already completed, or no handler has that name.
    PORTWAY_NOT_FOUND = 5,
    /// The handler id does not name a registered handler.
    PORTWAY_UNKNOWN_HANDLER = 6,
    /// The request's deadline passed before it finished.
    PORTWAY_TIMEOUT = 7,
    /// The request was cancelled (by id, by cancel-all, or by shutdown).
    PORTWAY_CANCELLED = 8,
    /// The handler failed; the completion's data holds its message.
    PORTWAY_HANDLER_ERROR = 9,
    /// A panic was caught at the boundary or inside a handler.
    PORTWAY_PANIC = 10,
    /// The engine was created before `fork()`; it cannot be used in the child.
    PORTWAY_FORKED = 11,
    /// The payload is larger than the engine's `max_payload`.
    PORTWAY_PAYLOAD_TOO_LARGE = 12,
    /// An outbound connection could not be made (refused, DNS, unreachable).
    PORTWAY_CONNECT_ERROR = 13,
    /// The TLS handshake or certificate verification failed.
    PORTWAY_TLS_ERROR = 14,
    /// The peer broke the protocol (malformed response, reset mid-body).
    PORTWAY_PROTOCOL_ERROR = 15,
    /// A response body exceeded the configured limit.
    PORTWAY_BODY_TOO_LARGE = 16,
    /// An internal invariant failed; a bug in portway.
    PORTWAY_INTERNAL = 17,
    /// The caller's buffer is too small; the size needed was written.
    PORTWAY_BUFFER_TOO_SMALL = 18,
    /// The handler's circuit breaker is open: the request was refused without running
    /// (`portway_handler_set_policy`). Retry after the breaker's cooldown.
    PORTWAY_UNAVAILABLE = 19,
}

/// The statuses in numeric order; `ALL[s as usize] == s`.
pub const ALL: [portway_status; 20] = {
    use portway_status::*;
    [
        PORTWAY_OK,
        PORTWAY_INVALID_ARGUMENT,
        PORTWAY_BUSY,
        PORTWAY_SHUTDOWN,
        PORTWAY_CLOSED,
        PORTWAY_NOT_FOUND,
        PORTWAY_UNKNOWN_HANDLER,
        PORTWAY_TIMEOUT,
        PORTWAY_CANCELLED,
        PORTWAY_HANDLER_ERROR,
        PORTWAY_PANIC,
        PORTWAY_FORKED,
        PORTWAY_PAYLOAD_TOO_LARGE,
        PORTWAY_CONNECT_ERROR,
        PORTWAY_TLS_ERROR,
        PORTWAY_PROTOCOL_ERROR,
        PORTWAY_BODY_TOO_LARGE,
        PORTWAY_INTERNAL,
        PORTWAY_BUFFER_TOO_SMALL,
        PORTWAY_UNAVAILABLE,
    ]
};

impl portway_status {
    /// The static C name, e.g. `"PORTWAY_BUSY"`.
    pub fn name(self) -> &'static str {
        self.c_name().to_str().unwrap_or("PORTWAY_INTERNAL")
    }

    /// The static C name as a NUL-terminated string.
    pub const fn c_name(self) -> &'static std::ffi::CStr {
        use portway_status::*;
        match self {
            PORTWAY_OK => c"PORTWAY_OK",
            PORTWAY_INVALID_ARGUMENT => c"PORTWAY_INVALID_ARGUMENT",
            PORTWAY_BUSY => c"PORTWAY_BUSY",
            PORTWAY_SHUTDOWN => c"PORTWAY_SHUTDOWN",
            PORTWAY_CLOSED => c"PORTWAY_CLOSED",
            PORTWAY_NOT_FOUND => c"PORTWAY_NOT_FOUND",
            PORTWAY_UNKNOWN_HANDLER => c"PORTWAY_UNKNOWN_HANDLER",
            PORTWAY_TIMEOUT => c"PORTWAY_TIMEOUT",
            PORTWAY_CANCELLED => c"PORTWAY_CANCELLED",
            PORTWAY_HANDLER_ERROR => c"PORTWAY_HANDLER_ERROR",
            PORTWAY_PANIC => c"PORTWAY_PANIC",
            PORTWAY_FORKED => c"PORTWAY_FORKED",
            PORTWAY_PAYLOAD_TOO_LARGE => c"PORTWAY_PAYLOAD_TOO_LARGE",
            PORTWAY_CONNECT_ERROR => c"PORTWAY_CONNECT_ERROR",
            PORTWAY_TLS_ERROR => c"PORTWAY_TLS_ERROR",
            PORTWAY_PROTOCOL_ERROR => c"PORTWAY_PROTOCOL_ERROR",
            PORTWAY_BODY_TOO_LARGE => c"PORTWAY_BODY_TOO_LARGE",
            PORTWAY_INTERNAL => c"PORTWAY_INTERNAL",
            PORTWAY_BUFFER_TOO_SMALL => c"PORTWAY_BUFFER_TOO_SMALL",
            PORTWAY_UNAVAILABLE => c"PORTWAY_UNAVAILABLE",
        }
    }

    /// The status with this numeric value, if there is one.
    pub fn from_u32(value: u32) -> Option<Self> {
        ALL.get(value as usize).copied()
    }
}

/// Idiomatic alias for Rust callers.
pub type Status = portway_status;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_numeric_order_and_names_match() {
        for (i, s) in ALL.iter().enumerate() {
            assert_eq!(*s as usize, i);
            assert!(s.name().starts_with("PORTWAY_"));
            assert_eq!(Status::from_u32(i as u32), Some(*s));
        }
        assert_eq!(Status::from_u32(ALL.len() as u32), None);
    }
}
