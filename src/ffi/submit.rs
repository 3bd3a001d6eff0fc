//! Submitting and cancelling requests.

use super::engine::portway_engine;
use super::guard::{Castable, bytes, guard, max_items, require_out, slice, timeout, write_out};
use crate::engine::{Engine, Submission};
use crate::error::{Error, Result};
use crate::status::portway_status;

/// One request. The payload is copied before the submit call returns, so the caller's buffer
/// may be reused at once (unless it is lent: `portway_submit_batch_ex`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct portway_request {
    /// Handler id, from `portway_handler_lookup`, `portway_register_handler` or
    /// `portway_pipeline_new`.
    pub handler: u32,
    /// Deadline in ms, counted from submit (queue time counts); 0 = the engine default.
    pub timeout_ms: u32,
    /// Echoed in the completion.
    pub user_data: u64,
    /// Request bytes; may be NULL only when `payload_len` is 0.
    pub payload: *const u8,
    /// Length of `payload` in bytes.
    pub payload_len: usize,
}

/// Refuses a payload length above the engine's `max_payload` (or above `PORTWAY_MAX_BUFFER`)
/// before any slice of it is formed: a length larger than the buffer behind it would otherwise
/// be read.
fn check_payload_len(engine: &Engine, req: &portway_request) -> Result<()> {
    let max = engine.config().max_payload.min(max_items::<u8>() as u64);
    if req.payload_len as u64 > max {
        return Err(Error::PayloadTooLarge {
            len: req.payload_len,
            max,
        });
    }
    Ok(())
}

/// Converts one C request into a Rust submission, its payload length checked first; a refusal
/// is counted in the engine's stats like any other.
///
/// # Safety
/// `req.payload` must be NULL or valid for reading `req.payload_len` bytes for `'a`.
unsafe fn checked_submission<'a>(
    engine: &Engine,
    req: &portway_request,
    what: &str,
) -> Result<Submission<'a>> {
    if let Err(e) = check_payload_len(engine, req) {
        engine.count_refused(&e, 1);
        return Err(e);
    }
    // SAFETY: per the caller.
    unsafe { submission(req, what) }
}

/// Converts a C request whose payload length was checked into a Rust submission.
///
/// # Safety
/// `req.payload` must be NULL or valid for reading `req.payload_len` bytes for `'a`.
unsafe fn submission<'a>(req: &portway_request, what: &str) -> Result<Submission<'a>> {
    Ok(Submission {
        handler: req.handler,
        timeout_ms: req.timeout_ms,
        user_data: req.user_data,
        // SAFETY: per the caller.
        payload: unsafe { bytes(req.payload, req.payload_len, what) }?,
    })
}

/// Submits one request and writes its id (nonzero, never reused) to `*out_id`. Never blocks.
/// `req->payload_len` is at most the engine's `max_payload` (`portway_config_set_max_payload`,
/// default 64 MiB), checked before the payload is read.
/// Returns `PORTWAY_OK`; `PORTWAY_BUSY` (every `max_in_flight` slot is taken: poll and release,
/// then retry); `PORTWAY_SHUTDOWN`; `PORTWAY_UNKNOWN_HANDLER`; `PORTWAY_PAYLOAD_TOO_LARGE`
/// (`payload_len` above `max_payload`);
/// `PORTWAY_INVALID_ARGUMENT` (NULL pointers, a payload the handler refuses); `PORTWAY_FORKED`.
/// A refused request posts no completion and changes nothing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_submit(
    eng: *mut portway_engine,
    req: *const portway_request,
    out_id: *mut u64,
) -> portway_status {
    guard(|| {
        // SAFETY: NULL or a live engine.
        let engine = unsafe { portway_engine::borrow(eng) }?;
        // SAFETY: NULL or a readable request.
        let req = unsafe { req.as_ref() }.ok_or_else(|| Error::invalid("req is NULL"))?;
        require_out(out_id, "out_id")?;
        // SAFETY: the request's payload is readable per the caller.
        let id = engine.submit(&unsafe { checked_submission(engine, req, "req->payload") }?)?;
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out_id, "out_id", id) }
    })
}

/// Submits `reqs[0..n]`, accepting the longest possible prefix, and writes the number accepted
/// to `*out_accepted` (written whenever the arguments are valid, even when not all were
/// accepted) and their ids to `out_ids[0..accepted]` (`out_ids` may be NULL).
/// `n` is at most `PORTWAY_MAX_BUFFER / sizeof(portway_request)` (the most an array can hold;
/// a larger `n` is `PORTWAY_INVALID_ARGUMENT` with nothing read or accepted); each
/// `payload_len` at most `max_payload`, checked before that payload is read (the batch stops
/// there with `PORTWAY_PAYLOAD_TOO_LARGE`). Returns `PORTWAY_OK` when all were accepted, else the status
/// that stopped the batch at index `*out_accepted` (see `portway_submit`). Never blocks.
/// `portway_stats` counts the requests decided: after `PORTWAY_BUSY` or `PORTWAY_SHUTDOWN`
/// every request from index `*out_accepted` on is counted refused; after any other status
/// only the refused request is, and the ones after it were not looked at (offering them
/// again counts them once).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_submit_batch(
    eng: *mut portway_engine,
    reqs: *const portway_request,
    n: usize,
    out_ids: *mut u64,
    out_accepted: *mut usize,
) -> portway_status {
    // SAFETY: forwarded as the caller gave them; no flags: every payload is copied.
    unsafe { portway_submit_batch_ex(eng, reqs, n, 0, out_ids, out_accepted) }
}

/// `portway_submit_batch_ex` flag: the payloads of the accepted requests are lent to the engine
/// instead of copied (see `portway_submit_batch_ex` for the lifetime rule).
pub const PORTWAY_SUBMIT_LEND_PAYLOAD: u32 = 1;

/// Like `portway_submit_batch`, with `flags` (0, or `PORTWAY_SUBMIT_LEND_PAYLOAD`; other bits
/// are `PORTWAY_INVALID_ARGUMENT`, nothing read or accepted).
///
/// With `PORTWAY_SUBMIT_LEND_PAYLOAD` the engine does not copy the payloads of the accepted
/// requests (`reqs[0..*out_accepted]`) that go to a native handler (`portway_register_handler*`,
/// or a pipeline whose first stage is one): that handler reads the host's bytes in place. The
/// host keeps each such payload **valid and unmodified until a poll has returned the request's
/// completion** (or, for a completion never polled, until `portway_engine_free` returns),
/// whatever ends the request: the engine never reads a lent payload once its completion can be
/// polled. So a request that times out or is cancelled (`portway_cancel*`, a shutdown) while
/// its handler runs gets its completion (`PORTWAY_TIMEOUT`, `PORTWAY_CANCELLED`) when the
/// handler returns, not at that moment: the handler sees `portway_call_is_cancelled` turn true
/// and should return soon. One that ends before its handler starts never has its payload read.
/// A hedged run copies the payload when it starts (each attempt needs bytes that outlive the
/// other); any other handler (built-in, async) gets a copy made inside this call. The bytes of
/// requests not accepted (from `*out_accepted` on) are not read after this returns. A handler
/// that `portway_engine_free` abandons (still running after its grace period) may read its
/// payload until it returns. Use it for payloads that live long anyway (a buffer per request
/// slot, a memory-mapped file): it saves the copy at submit and the worker's cache misses on
/// it. Returns as `portway_submit_batch`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_submit_batch_ex(
    eng: *mut portway_engine,
    reqs: *const portway_request,
    n: usize,
    flags: u32,
    out_ids: *mut u64,
    out_accepted: *mut usize,
) -> portway_status {
    guard(|| {
        if flags & !PORTWAY_SUBMIT_LEND_PAYLOAD != 0 {
            return Err(Error::invalid(format!(
                "unknown submit flags {flags:#x} (known: PORTWAY_SUBMIT_LEND_PAYLOAD)"
            )));
        }
        // SAFETY: NULL or a live engine.
        let engine = unsafe { portway_engine::borrow(eng) }?;
        require_out(out_accepted, "out_accepted")?;
        // SAFETY: NULL (with n == 0) or `n` readable requests; `n` is checked first.
        let reqs = unsafe { slice(reqs, n, usize::MAX, "reqs") }?;
        // `out_ids` is an array of the same `n`, of smaller items: within its limit too.
        const _: () = assert!(size_of::<u64>() <= size_of::<portway_request>());
        // The batch ends before the first payload too large to read.
        let (fit, too_large) = match reqs
            .iter()
            .position(|r| check_payload_len(engine, r).is_err())
        {
            Some(i) => (&reqs[..i], check_payload_len(engine, &reqs[i]).err()),
            None => (reqs, None),
        };
        let subs = fit
            .iter()
            .enumerate()
            .map(|(i, r)| {
                // SAFETY: each payload is readable per the caller; its length was checked.
                unsafe { submission(r, "payload") }.map_err(|_| {
                    Error::invalid(format!(
                        "reqs[{i}].payload is NULL but payload_len is {}",
                        r.payload_len
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let ids = if out_ids.is_null() {
            None
        } else {
            // SAFETY: non-NULL `out_ids` has room for `n >= subs.len()` ids per the caller.
            Some(unsafe { std::slice::from_raw_parts_mut(out_ids, subs.len()) })
        };
        let (n_ok, mut result) = if flags & PORTWAY_SUBMIT_LEND_PAYLOAD != 0 {
            // SAFETY: the caller lends the payloads under the rule documented above.
            unsafe { engine.submit_batch_lent(&subs, ids) }
        } else {
            engine.submit_batch(&subs, ids)
        };
        if let Some(e) = too_large {
            // The requests from the refused one on were never offered to the engine: count
            // them as the engine counts its own part (`Engine::submit_batch`): the too-large
            // one alone when the engine accepted the rest, all of them after BUSY or
            // SHUTDOWN, none after another request's own refusal.
            result = match result {
                Ok(()) => {
                    engine.count_refused(&e, 1);
                    Err(e)
                }
                Err(stop @ (Error::Busy(_) | Error::Shutdown)) => {
                    engine.count_refused(&stop, reqs.len() - subs.len());
                    Err(stop)
                }
                Err(stop) => Err(stop),
            };
        }
        // SAFETY: checked non-NULL above.
        unsafe { out_accepted.write(n_ok) };
        result
    })
}

/// Like `portway_submit`, but when every slot is taken waits up to `wait_ms` (-1 = forever,
/// 0 = not at all) for one to be released: the buffered-channel send. Returns `PORTWAY_BUSY`
/// when the wait ends without a slot and `PORTWAY_SHUTDOWN` when shutdown begins meanwhile;
/// otherwise as `portway_submit`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_submit_wait(
    eng: *mut portway_engine,
    req: *const portway_request,
    wait_ms: i32,
    out_id: *mut u64,
) -> portway_status {
    guard(|| {
        // SAFETY: NULL or a live engine.
        let engine = unsafe { portway_engine::borrow(eng) }?;
        // SAFETY: NULL or a readable request.
        let req = unsafe { req.as_ref() }.ok_or_else(|| Error::invalid("req is NULL"))?;
        require_out(out_id, "out_id")?;
        let wait = timeout(wait_ms, "wait_ms")?;
        // SAFETY: the request's payload is readable per the caller.
        let sub = unsafe { checked_submission(engine, req, "req->payload") }?;
        let id = engine.submit_wait(&sub, wait)?;
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out_id, "out_id", id) }
    })
}

/// Cancels request `id`. Returns `PORTWAY_OK` if it was still in flight (its completion will
/// say `PORTWAY_CANCELLED`; a native handler sees `portway_call_is_cancelled` turn true),
/// `PORTWAY_NOT_FOUND` if it is unknown or already completed. Callable from any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_cancel(eng: *mut portway_engine, id: u64) -> portway_status {
    // SAFETY: NULL or a live engine.
    guard(|| unsafe { portway_engine::borrow(eng) }?.cancel(id))
}

/// Cancels every request in flight; each gets a `PORTWAY_CANCELLED` completion.
/// Returns `PORTWAY_OK`, `PORTWAY_INVALID_ARGUMENT` (NULL engine) or `PORTWAY_FORKED`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_cancel_all(eng: *mut portway_engine) -> portway_status {
    // SAFETY: NULL or a live engine.
    guard(|| {
        unsafe { portway_engine::borrow(eng) }?
            .cancel_all()
            .map(|_| ())
    })
}
