//! Polling and releasing completions, and the ways to wait for them.

use std::ffi::c_void;
use std::sync::Arc;

use super::engine::portway_engine;
use super::guard::{
    Castable, check_count, guard, guard_value, require_out, set_last_error, slice, timeout,
    write_out,
};
use crate::engine::{Polled, portway_meta};
use crate::error::Error;
use crate::status::portway_status;

/// The one completion of an accepted request. Every pointer in it stays valid until the
/// completion is passed to `portway_release`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct portway_completion {
    /// The id `portway_submit` returned.
    pub id: u64,
    /// The request's `user_data`.
    pub user_data: u64,
    /// A `portway_status`: `PORTWAY_OK`, or why the request failed (`PORTWAY_TIMEOUT`,
    /// `PORTWAY_CANCELLED`, `PORTWAY_HANDLER_ERROR`, ...).
    pub status: u32,
    /// Handler-defined code: the HTTP status for "http", `portway_call_set_code` for native.
    pub code: u32,
    /// Response bytes, or the error message when `status != PORTWAY_OK`. Never NULL; followed
    /// by a NUL byte that `len` does not count.
    pub data: *const u8,
    /// Length of `data`.
    pub len: usize,
    /// Handler-defined pairs (for "http": the response headers, then `:http-version`); NULL when `meta_len` is 0.
    pub meta: *const portway_meta,
    /// Number of pairs in `meta`.
    pub meta_len: usize,
    /// Nanoseconds from acceptance to start. For a pool handler, start is when a worker was
    /// free for the request: in a batch a worker runs several requests in a row and reads the
    /// clock once between two of them, so the end of one is the start of the next (the
    /// worker's bookkeeping in between, well under a microsecond, counts as run time).
    pub queued_ns: u64,
    /// Nanoseconds from start to finish (for a pool handler: to the handler's return).
    pub run_ns: u64,
}

/// Waits until at least one completion is ready or `timeout_ms` passes (0 = don't wait,
/// -1 = forever), then fills up to `cap` entries of `out` and writes their count to `*out_n`
/// (0 after a timeout or a `portway_wake`). Several threads may poll at once; each completion
/// goes to exactly one of them. `cap` is 1 to `PORTWAY_MAX_BUFFER / sizeof(portway_completion)`
/// (the most an array can hold), checked before anything is written. Returns `PORTWAY_OK`;
/// `PORTWAY_CLOSED` once the engine is shut down and every completion has been polled (`*out_n`
/// is not written); `PORTWAY_INVALID_ARGUMENT` (NULL engine/out/out_n, cap 0 or above its
/// limit, timeout below -1); `PORTWAY_FORKED`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_poll(
    eng: *mut portway_engine,
    out: *mut portway_completion,
    cap: usize,
    timeout_ms: i32,
    out_n: *mut usize,
) -> portway_status {
    // SAFETY: the caller's guarantees are those of `portway_poll_min`.
    unsafe { portway_poll_min(eng, out, cap, 1, timeout_ms, out_n) }
}

/// `portway_poll` that waits for a batch: it returns once at least `min` completions are ready,
/// or fewer when every request accepted and not yet polled has completed (so a `min` above the
/// work in flight never waits forever), or when `timeout_ms` passes or `portway_wake` is called
/// (0 = don't wait, -1 = forever). Then it fills up to `cap` entries, like `portway_poll` (and
/// with its limit on `cap`). A host that keeps many requests in flight takes its completions in
/// batches, one wake-up each (like liburing's `io_uring_wait_cqe_nr`). Returns what
/// `portway_poll` returns; `PORTWAY_INVALID_ARGUMENT` also when `min` is 0 or above `cap`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_poll_min(
    eng: *mut portway_engine,
    out: *mut portway_completion,
    cap: usize,
    min: usize,
    timeout_ms: i32,
    out_n: *mut usize,
) -> portway_status {
    guard(|| {
        // SAFETY: NULL or a live engine.
        let engine = unsafe { portway_engine::borrow(eng) }?;
        require_out(out, "out")?;
        require_out(out_n, "out_n")?;
        // Before anything is written through `out.add(i)`: a cap the array cannot have.
        check_count::<portway_completion>(cap, usize::MAX, "cap")?;
        let wait = timeout(timeout_ms, "timeout_ms")?;
        let polled = engine.poll_min(cap, min, wait, |i, c| {
            let (meta, meta_len) = c.meta().c_view();
            let (queued_ns, run_ns) = c.timings();
            let entry = portway_completion {
                id: c.id(),
                user_data: c.user_data(),
                status: c.status() as u32,
                code: c.code(),
                data: c.data().as_ptr(),
                len: c.data().len(),
                meta,
                meta_len,
                queued_ns,
                run_ns,
            };
            // SAFETY: `i < cap` and the caller gave room for `cap` completions.
            unsafe { out.add(i).write(entry) };
        })?;
        match polled {
            // SAFETY: checked non-NULL above.
            Polled::Ready(n) => unsafe { write_out(out_n, "out_n", n) },
            Polled::Closed => Err(Error::Closed),
        }
    })
}

/// Releases `n` polled completions: their buffers are freed and their in-flight slots return.
/// Entries that were never polled, or were already released, are ignored. Only `id` is read
/// from each entry. Callable from any thread, also while another thread polls: a completion
/// that a concurrent `portway_poll` is handing out at that moment (an id the caller guessed)
/// is released too, but freed only after that poll has filled its entry, so a poll never
/// reads freed memory; the pointers of that entry must then not be read. `c` may be NULL only
/// when `n` is 0; `n` is at most `PORTWAY_MAX_BUFFER / sizeof(portway_completion)` (the most
/// an array can hold), checked before `c` is read. Returns `PORTWAY_OK`,
/// `PORTWAY_INVALID_ARGUMENT` (NULL engine, NULL `c` with `n` > 0, `n` above its limit) or
/// `PORTWAY_FORKED`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_release(
    eng: *mut portway_engine,
    c: *const portway_completion,
    n: usize,
) -> portway_status {
    guard(|| {
        // SAFETY: NULL or a live engine.
        let engine = unsafe { portway_engine::borrow(eng) }?;
        // SAFETY: NULL (with n == 0) or `n` readable completions.
        let items = unsafe { slice(c, n, usize::MAX, "c") }?;
        engine.release(items.iter().map(|c| c.id)).map(|_| ())
    })
}

/// A descriptor that is readable whenever at least one completion waits to be polled, and
/// once the engine is closed (level semantics: after a poll leaves nothing waiting it stops
/// being readable; it never misses a completion). Owned by the engine: do not close or read it.
/// For asyncio `add_reader`, libuv `uv_poll`, epoll. Returns -1 on error (see
/// `portway_last_error`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_notify_fd(eng: *mut portway_engine) -> i32 {
    guard_value(-1, || {
        // SAFETY: NULL or a live engine.
        match unsafe { portway_engine::borrow(eng) }.and_then(|e| e.notify_fd()) {
            Ok(fd) => fd,
            Err(e) => {
                set_last_error(&e.to_string());
                -1
            }
        }
    })
}

/// Called with its context when completions become ready after none were waiting.
pub type portway_notify_fn = Option<unsafe extern "C" fn(ctx: *mut c_void)>;

struct NotifyTarget {
    f: unsafe extern "C" fn(*mut c_void),
    ctx: *mut c_void,
}

// SAFETY: the host promises that `f(ctx)` may be called from any thread (documented).
unsafe impl Send for NotifyTarget {}
// SAFETY: as above.
unsafe impl Sync for NotifyTarget {}

impl NotifyTarget {
    fn call(&self) {
        // SAFETY: the host registered `f` to be called with `ctx` from any thread.
        unsafe { (self.f)(self.ctx) }
    }
}

/// Installs `notify_fn(ctx)`, called when completions become ready after none were waiting, and when
/// the engine closes. It runs on an engine thread (or on the submitting thread for handlers
/// that complete inline, such as "echo"), must not block and must not call `portway_poll`
/// itself; typically it wakes the host's loop. NULL `notify_fn` removes the hook. Once this
/// returns, the hook it replaced is not running on any other thread and is never called again
/// (so its `ctx` may be freed): it waits for a call in progress, so do not call it while
/// holding a lock that the old hook takes. Called from inside a notify or log hook it does not
/// wait (a call may then still be running elsewhere).
/// Returns `PORTWAY_OK`, `PORTWAY_INVALID_ARGUMENT` (NULL engine) or `PORTWAY_FORKED`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_set_notify(
    eng: *mut portway_engine,
    notify_fn: portway_notify_fn,
    ctx: *mut c_void,
) -> portway_status {
    guard(|| {
        // SAFETY: NULL or a live engine.
        let engine = unsafe { portway_engine::borrow(eng) }?;
        let hook = notify_fn.map(|f| {
            let target = NotifyTarget { f, ctx };
            Arc::new(move || target.call()) as crate::engine::NotifyHook
        });
        engine.set_notify(hook)
    })
}

/// Makes one blocked `portway_poll` return now with 0 completions; if none is blocked, the
/// next poll that would block returns at once instead. Callable from any thread.
/// Returns `PORTWAY_OK`, `PORTWAY_INVALID_ARGUMENT` (NULL engine) or `PORTWAY_FORKED`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_wake(eng: *mut portway_engine) -> portway_status {
    // SAFETY: NULL or a live engine.
    guard(|| unsafe { portway_engine::borrow(eng) }?.wake())
}
