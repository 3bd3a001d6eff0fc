//! Handlers from C: registering native functions and pipelines, lookup, concurrency limits,
//! and the `portway_call` accessors a native handler uses while it runs.

use std::ffi::{CStr, c_char, c_void};

use super::engine::portway_engine;
use super::guard::{
    Borrowed, Castable, bytes, guard, guard_value, require_out, slice, utf8, write_out,
};
use crate::engine::MAX_PIPELINE_STAGES;
use crate::error::{Error, Result};
use crate::handlers::native::{self, NativeCall};
use crate::status::portway_status;

/// One invocation of a native handler, lent to it by the engine: valid only until the handler
/// returns; never free it. Thread rules: every `portway_call_*` function may be called from any
/// thread while the handler runs, at the same time as the others (a watchdog thread polling
/// `portway_call_is_cancelled` while the handler responds is fine: the calls that change the
/// response are serialized, the reads of cancellation and user data take no lock). None may be
/// called once the handler has returned: join such threads before returning.
pub struct portway_call {
    _opaque: [u8; 0],
}

// SAFETY: a `*mut portway_call` only ever comes from `lend(&NativeCall)` in
// `NativeHandler::call` (`src/handlers/native.rs`), which keeps the `NativeCall` alive until the
// handler returns.
unsafe impl Castable for portway_call {
    type Own = Borrowed;
    type Rust = NativeCall;
    const WHAT: &'static str = "call";
}

/// Borrows the call behind a handle.
///
/// # Safety
/// `call` must be NULL or the handle lent to a handler that has not returned yet.
unsafe fn native<'a>(call: *mut portway_call) -> Result<&'a NativeCall> {
    // SAFETY: per the caller.
    unsafe { portway_call::borrow(call) }
}

/// A native handler: runs on a worker-pool thread with the `ctx` given at registration.
/// It should respond (`portway_call_respond` or `portway_call_fail`) before returning; one
/// that returns without responding completes with `PORTWAY_HANDLER_ERROR`. It may be called
/// from several pool threads at once, and should poll `portway_call_is_cancelled` during long
/// work. It must not call `portway_engine_free`.
///
/// The handler's thread may end inside it (`pthread_exit`, thread cancellation, a language
/// runtime ending threads as it shuts down): that request then completes with
/// `PORTWAY_HANDLER_ERROR` ("its thread exited") and the pool starts a new thread in its place.
pub type portway_handler_fn =
    Option<unsafe extern "C-unwind" fn(ctx: *mut c_void, call: *mut portway_call)>;

/// Registers a native handler named `name` (UTF-8, unique, 1..=256 bytes) and writes its id to
/// `*out_id`. `fn` runs on the worker pool with `ctx`; `ctx` must stay valid until the engine is
/// freed. The same as `portway_register_handler_ex` with no flags. Returns `PORTWAY_OK`,
/// `PORTWAY_INVALID_ARGUMENT` (NULL or bad name, NULL fn, duplicate name), `PORTWAY_SHUTDOWN`
/// (shutdown has begun: the handler could never run) or `PORTWAY_FORKED`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_register_handler(
    eng: *mut portway_engine,
    name: *const c_char,
    handler_fn: portway_handler_fn,
    ctx: *mut c_void,
    out_id: *mut u32,
) -> portway_status {
    // SAFETY: the caller's pointers, passed on unchanged under the same contract.
    unsafe { portway_register_handler_ex(eng, name, handler_fn, ctx, 0, out_id) }
}

/// `portway_register_handler_ex` flag: every call of the handler is safe to run twice (it
/// reads, or writes the same result again), so hedging (`portway_policy.hedge_after_ms`) may
/// start a second call while the first runs and cancel the slower one through
/// `portway_call_is_cancelled`. Without it the handler is never hedged, and setting hedging on
/// it is refused.
pub const PORTWAY_HANDLER_IDEMPOTENT: u32 = 1;

/// Registers a native handler as `portway_register_handler` does, with `flags`: 0 or
/// `PORTWAY_HANDLER_IDEMPOTENT`. Returns `PORTWAY_OK`, `PORTWAY_INVALID_ARGUMENT` (NULL or bad
/// name, NULL fn, duplicate name, an unknown flag), `PORTWAY_SHUTDOWN` (shutdown has begun)
/// or `PORTWAY_FORKED`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_register_handler_ex(
    eng: *mut portway_engine,
    name: *const c_char,
    handler_fn: portway_handler_fn,
    ctx: *mut c_void,
    flags: u32,
    out_id: *mut u32,
) -> portway_status {
    guard(|| {
        // SAFETY: NULL or a live engine.
        let engine = unsafe { portway_engine::borrow(eng) }?;
        // SAFETY: NULL or a NUL-terminated string.
        let name = unsafe { utf8(name, "name") }?;
        let f = handler_fn.ok_or_else(|| Error::invalid("handler_fn is NULL"))?;
        if flags & !PORTWAY_HANDLER_IDEMPOTENT != 0 {
            return Err(Error::invalid(format!(
                "unknown handler flags {flags:#x} (known: PORTWAY_HANDLER_IDEMPOTENT)"
            )));
        }
        require_out(out_id, "out_id")?;
        let idempotent = flags & PORTWAY_HANDLER_IDEMPOTENT != 0;
        let id = engine.register(name, native::handler(f, ctx, idempotent))?;
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out_id, "out_id", id) }
    })
}

/// Writes the id of the handler named `name` to `*out_id`.
/// Returns `PORTWAY_OK`, `PORTWAY_NOT_FOUND`, `PORTWAY_INVALID_ARGUMENT` or `PORTWAY_FORKED`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_handler_lookup(
    eng: *mut portway_engine,
    name: *const c_char,
    out_id: *mut u32,
) -> portway_status {
    guard(|| {
        // SAFETY: NULL or a live engine.
        let engine = unsafe { portway_engine::borrow(eng) }?;
        // SAFETY: NULL or a NUL-terminated string.
        let id = engine.lookup(unsafe { utf8(name, "name") }?)?;
        // SAFETY: the caller passes NULL or a writable u32.
        unsafe { write_out(out_id, "out_id", id) }
    })
}

/// Lets at most `limit` calls of handler `id` run at once (0 = no limit beyond the pool);
/// the rest wait in FIFO order without holding a thread. On a pipeline it bounds how many
/// requests are inside the pipeline at once. A new limit applies to calls admitted after it.
/// The same as `max_concurrency` in `portway_handler_set_policy`, leaving the other policies as
/// they are.
/// Returns `PORTWAY_OK`, `PORTWAY_UNKNOWN_HANDLER`, `PORTWAY_INVALID_ARGUMENT` or `PORTWAY_FORKED`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_handler_set_concurrency(
    eng: *mut portway_engine,
    id: u32,
    limit: u32,
) -> portway_status {
    // SAFETY: NULL or a live engine.
    guard(|| unsafe { portway_engine::borrow(eng) }?.set_concurrency(id, limit))
}

/// Registers a pipeline named `name` that runs `stages[0..n]` in order, each stage's response
/// being the next stage's payload, each under its own concurrency limit. The request's
/// deadline covers the whole pipeline; the first failure ends it. Pipelines used as stages
/// are flattened (at most 64 stages in all). `n` is 1 to 64, checked before `stages` is read.
/// Writes the new handler id to `*out_id`. Returns `PORTWAY_OK`, `PORTWAY_UNKNOWN_HANDLER` (a
/// stage id), `PORTWAY_INVALID_ARGUMENT` (n == 0, too many stages, bad or duplicate name, NULL
/// pointers), `PORTWAY_SHUTDOWN` (shutdown has begun) or `PORTWAY_FORKED`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_pipeline_new(
    eng: *mut portway_engine,
    name: *const c_char,
    stages: *const u32,
    n: usize,
    out_id: *mut u32,
) -> portway_status {
    guard(|| {
        // SAFETY: NULL or a live engine.
        let engine = unsafe { portway_engine::borrow(eng) }?;
        // SAFETY: NULL or a NUL-terminated string.
        let name = unsafe { utf8(name, "name") }?;
        // SAFETY: NULL (with n == 0) or `n` readable ids; `n` is checked against the stage
        // limit first, so a wrong count never reads past the caller's array.
        let stages = unsafe { slice(stages, n, MAX_PIPELINE_STAGES, "stages") }?;
        require_out(out_id, "out_id")?;
        let id = engine.register_pipeline(name, stages)?;
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out_id, "out_id", id) }
    })
}

/// Writes the call's payload (owned by the call, or the host's own bytes when it lent them with
/// `PORTWAY_SUBMIT_LEND_PAYLOAD`; valid until the handler returns, read-only) to `*data` and
/// `*len`. Returns `PORTWAY_OK` or `PORTWAY_INVALID_ARGUMENT` (NULL pointers).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_call_payload(
    call: *mut portway_call,
    data: *mut *const u8,
    len: *mut usize,
) -> portway_status {
    guard(|| {
        // SAFETY: NULL or the live call of the running handler.
        let call = unsafe { native(call) }?;
        require_out(data, "data")?;
        require_out(len, "len")?;
        // The payload is never changed while the handler runs, so its pointer outlives the lock.
        let (ptr, n) = call.with(|c| (c.payload().as_ptr(), c.payload().len()));
        // SAFETY: both checked non-NULL; the caller gives writable pointers.
        unsafe {
            data.write(ptr);
            len.write(n);
        }
        Ok(())
    })
}

/// The request's `user_data` (0 for a NULL call).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_call_user_data(call: *mut portway_call) -> u64 {
    // SAFETY: NULL or the live call of the running handler.
    guard_value(0, || unsafe { native(call) }.map_or(0, |c| c.user_data))
}

/// True once the request was cancelled, timed out or shut down: the handler should stop soon;
/// anything it responds afterwards is discarded. True for a NULL call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_call_is_cancelled(call: *mut portway_call) -> bool {
    // SAFETY: NULL or the live call of the running handler.
    guard_value(true, || {
        unsafe { native(call) }.map_or(true, |c| c.cancellation.is_cancelled())
    })
}

/// Sets the response to a copy of `data[0..len]` (`data` may be NULL when `len` is 0; `len` is
/// at most `PORTWAY_MAX_BUFFER`, checked before `data` is read). Returns `PORTWAY_OK` or
/// `PORTWAY_INVALID_ARGUMENT` (NULL call, NULL data with len > 0, len above its limit, already
/// responded or failed).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_call_respond(
    call: *mut portway_call,
    data: *const u8,
    len: usize,
) -> portway_status {
    guard(|| {
        // SAFETY: NULL or the live call of the running handler.
        let call = unsafe { native(call) }?;
        // SAFETY: NULL (with len 0) or `len` readable bytes.
        let data = unsafe { bytes(data, len, "data") }?;
        call.with(|c| c.respond(data))
    })
}

/// Fails the call: its completion gets `PORTWAY_HANDLER_ERROR` with `message` (copied) as its
/// data. A message that is not valid UTF-8 is kept, with each invalid sequence replaced by
/// U+FFFD. Returns `PORTWAY_OK` or `PORTWAY_INVALID_ARGUMENT` (NULL call or message, already
/// responded or failed).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_call_fail(
    call: *mut portway_call,
    message: *const c_char,
) -> portway_status {
    guard(|| {
        // SAFETY: NULL or the live call of the running handler.
        let call = unsafe { native(call) }?;
        if message.is_null() {
            return Err(Error::invalid("message is NULL"));
        }
        // SAFETY: non-NULL and NUL-terminated per the caller. Lossy: a handler's error text
        // in a legacy encoding must not turn into "returned without responding".
        let message = unsafe { CStr::from_ptr(message) }.to_string_lossy();
        call.with(|c| c.fail(&message))
    })
}

/// Sets the handler-defined code reported in the completion's `code`.
/// Returns `PORTWAY_OK` or `PORTWAY_INVALID_ARGUMENT` (NULL call).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_call_set_code(
    call: *mut portway_call,
    code: u32,
) -> portway_status {
    guard(|| {
        // SAFETY: NULL or the live call of the running handler.
        unsafe { native(call) }?.with(|c| c.set_code(code));
        Ok(())
    })
}

/// Appends a metadata pair (both UTF-8, copied) to the completion's `meta`.
/// Returns `PORTWAY_OK` or `PORTWAY_INVALID_ARGUMENT` (NULL call, key or value).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_call_add_meta(
    call: *mut portway_call,
    key: *const c_char,
    value: *const c_char,
) -> portway_status {
    guard(|| {
        // SAFETY: NULL or the live call of the running handler.
        let call = unsafe { native(call) }?;
        // SAFETY: NULL or NUL-terminated strings.
        let (k, v) = unsafe { (utf8(key, "key")?, utf8(value, "value")?) };
        call.with(|c| c.add_meta(k, v))
    })
}
