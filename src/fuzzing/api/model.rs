//! What the API-sequence target knows: the kinds of request, the offers and accepted
//! requests it tracks, the native handler it registers, the policy model, and small helpers
//! for refusals and blank records.

use std::ffi::{CStr, c_void};
use std::ptr;
use std::time::{Duration, Instant};

use super::Input;
use crate::engine::portway_meta;
use crate::ffi::*;
use crate::status::Status;

/// What a request was sent to, which decides what its completion may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Echo,
    Sleep,
    /// The native handler below; its mode is the payload's first byte.
    Native,
    /// The pipeline echo -> native.
    Pipeline,
    Unknown,
}

/// A request the engine accepted.
pub(super) struct Accepted {
    pub(super) kind: Kind,
    pub(super) payload: Vec<u8>,
    /// The id, when the submit reported it.
    pub(super) id: Option<u64>,
    pub(super) completed: bool,
}

/// The native handler: what it does depends on the first payload byte (mod 5): respond with
/// the payload; respond with code 7 and one meta pair; fail; return without responding; wait
/// (up to 2 ms) for cancellation, then respond.
pub(super) unsafe extern "C-unwind" fn native(_ctx: *mut c_void, call: *mut portway_call) {
    let mut data = ptr::null();
    let mut len = 0usize;
    // SAFETY: `call` is the live call the engine lent this handler; the outputs are locals.
    unsafe {
        assert_eq!(
            portway_call_payload(call, &mut data, &mut len),
            Status::PORTWAY_OK
        );
        let payload = std::slice::from_raw_parts(data, len).to_vec();
        match native_mode(&payload) {
            0 => {}
            1 => {
                portway_call_set_code(call, 7);
                assert_eq!(
                    portway_call_add_meta(call, c"k".as_ptr(), c"v".as_ptr()),
                    Status::PORTWAY_OK
                );
            }
            2 => {
                assert_eq!(
                    portway_call_fail(call, c"native failure".as_ptr()),
                    Status::PORTWAY_OK
                );
                return;
            }
            3 => return,
            _ => {
                let start = Instant::now();
                while !portway_call_is_cancelled(call) && start.elapsed() < Duration::from_millis(2)
                {
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
        }
        portway_call_respond(call, payload.as_ptr(), payload.len());
    }
}

/// A payload for `kind`, shaped by `shape`: for sleep mostly a short valid one, sometimes
/// arbitrary bytes; else up to 23 bytes of input.
pub(super) fn payload(kind: Kind, shape: u8, input: &mut Input<'_>) -> Vec<u8> {
    if kind == Kind::Sleep && !shape.is_multiple_of(4) {
        format!("{}", shape % 3).into_bytes()
    } else {
        let len = usize::from(input.below(24));
        input.bytes(len).to_vec()
    }
}

pub(super) fn native_mode(payload: &[u8]) -> u8 {
    payload.first().map_or(0, |b| b % 5)
}

/// What the model knows of one handler's policies.
#[derive(Clone, Copy, Debug)]
pub(super) struct Policy {
    /// The concurrency limit in force (0 = none).
    pub(super) limit: u32,
    /// What `running` may be now: the limit, or more while calls admitted under an earlier,
    /// higher (or no) limit still run; `u32::MAX` when unknown. Once `running` is seen at or
    /// under the limit, it stays there.
    pub(super) bound: u32,
    /// The token bucket's size (0 = no rate limit).
    pub(super) burst: u32,
    /// Whether a circuit breaker was ever on: only then may `PORTWAY_UNAVAILABLE` come.
    pub(super) breaker_ever: bool,
    /// Whether hedging was ever on: only then may hedges be counted and a completion say
    /// `portway-hedge: won`.
    pub(super) hedge_ever: bool,
    /// The adaptive limit's bounds when it is on: its live figure moves within them.
    pub(super) adaptive: Option<(u32, u32)>,
}

impl Policy {
    pub(super) const NONE: Policy = Policy {
        limit: 0,
        bound: u32::MAX,
        burst: 0,
        breaker_ever: false,
        hedge_ever: false,
        adaptive: None,
    };

    /// The most calls the limit lets run at once (0 = no limit).
    pub(super) fn cap(&self) -> u32 {
        self.adaptive.map_or(self.limit, |(_, max)| max)
    }
}

/// A request about to be offered, with the buffer its payload pointer points into.
pub(super) struct Offer {
    pub(super) kind: Kind,
    pub(super) handler: u32,
    pub(super) payload: Vec<u8>,
    /// NULL payload pointer with a nonzero length: must be refused before the engine.
    pub(super) null_with_len: bool,
    pub(super) timeout_ms: u32,
    pub(super) user_data: u64,
}

impl Offer {
    pub(super) fn request(&self) -> portway_request {
        // NULL for a claimed length (refused), and sometimes for an empty payload (allowed).
        let null =
            self.null_with_len || (self.payload.is_empty() && self.timeout_ms.is_multiple_of(2));
        let payload = if null {
            ptr::null()
        } else {
            self.payload.as_ptr()
        };
        portway_request {
            handler: self.handler,
            timeout_ms: self.timeout_ms,
            user_data: self.user_data,
            payload,
            payload_len: self.claimed_len(),
        }
    }

    /// The length the request claims for its payload.
    pub(super) fn claimed_len(&self) -> usize {
        if self.null_with_len {
            self.payload.len().max(1)
        } else {
            self.payload.len()
        }
    }
}

pub(super) fn last_error() -> String {
    // SAFETY: `portway_last_error` returns a NUL-terminated string owned by this thread.
    unsafe { CStr::from_ptr(portway_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// Checks a refused call: a documented status and a message.
pub(super) fn refused(status: Status, allowed: &[Status], what: &str) {
    assert!(allowed.contains(&status), "{what}: unexpected {status:?}");
    assert!(
        !last_error().is_empty(),
        "{what}: {status:?} without a message"
    );
}

pub(super) fn blank_policy() -> portway_policy {
    let mut p = portway_policy {
        max_concurrency: 0,
        adaptive: false,
        min_concurrency: 0,
        rate_per_s: 0.0,
        burst: 0,
        hedge_after_ms: 0,
        hedge_after_p95: false,
        hedge_budget_percent: 0,
        breaker_failures: 0,
        breaker_cooldown_ms: 0,
    };
    // SAFETY: a writable record.
    assert_eq!(
        unsafe { portway_policy_default(&mut p) },
        Status::PORTWAY_OK
    );
    p
}

pub(super) fn blank() -> portway_completion {
    portway_completion {
        id: 0,
        user_data: 0,
        status: 0,
        code: 0,
        data: ptr::null(),
        len: 0,
        meta: ptr::null(),
        meta_len: 0,
        queued_ns: 0,
        run_ns: 0,
    }
}

/// What a request ended with: a completion's fields, or a batch item's columns.
pub(super) struct Outcome<'a> {
    pub(super) status: u32,
    pub(super) code: u32,
    /// The bytes, without the NUL after them.
    pub(super) data: &'a [u8],
    pub(super) meta: &'a [portway_meta],
}

/// A columnar batch the engine accepted (`portway_batch_submit`).
pub(super) struct Batched {
    pub(super) kind: Kind,
    /// Item `i`'s payload.
    pub(super) payloads: Vec<Vec<u8>>,
    pub(super) id: u64,
    pub(super) completed: bool,
}
