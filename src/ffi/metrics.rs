//! Seeing inside an engine: Prometheus metrics, per-handler latency, the in-flight dump and
//! the log hook.

use std::ffi::{CString, c_char, c_void};
use std::sync::Arc;

use super::config::portway_config;
use super::engine::portway_engine;
use super::guard::{BoxCastPtr, Castable, check_count, guard, require_out, write_out};
use crate::engine::{LatencySummary, LogHook, LogLevel, LogSetting, STATUS_SLOTS};
use crate::error::{Error, Result};
use crate::status::portway_status;

/// Log level of fine detail.
pub const PORTWAY_LOG_DEBUG: u32 = 1;
/// Log level of lifecycle events (engine start, shutdown).
pub const PORTWAY_LOG_INFO: u32 = 2;
/// Log level of events to look at (connections that could not be made, requests leaked past
/// free, abandoned handlers).
pub const PORTWAY_LOG_WARN: u32 = 3;
/// Log level of failures (handler panics).
pub const PORTWAY_LOG_ERROR: u32 = 4;

/// Receives one log event: its level (`PORTWAY_LOG_*`) and a NUL-terminated message that is
/// valid only during the call. Called from engine threads or from the thread that caused the
/// event, never while an engine lock is held; must not block for long and must not free the
/// engine.
pub type portway_log_fn =
    Option<unsafe extern "C" fn(ctx: *mut c_void, level: u32, message: *const c_char)>;

/// Latency of one handler, in nanoseconds (`struct portway_latency`): the engine's own
/// summary type, `#[repr(C)]`, so it is defined once.
pub type portway_latency = LatencySummary;

/// `struct portway_handler_stats` in C, typedef `portway_handler_stats_record` (spelled out in
/// the header by hand, since the function owns the plain name): counts and latency of one
/// handler.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct portway_handler_stats_record {
    /// Handler id.
    pub id: u32,
    /// Requests accepted for this handler.
    pub submitted: u64,
    /// Completions recorded, indexed by status value.
    pub completed: [u64; STATUS_SLOTS],
    /// Time from acceptance (for a pipeline stage: from the previous stage) to start.
    pub queue_wait: portway_latency,
    /// Time from start to finish.
    pub run: portway_latency,
}

/// Copies `text` and a NUL into `buf[0..cap]`, writing the size needed (NUL included) to
/// `*needed` in every case.
///
/// # Safety
/// `buf` must be NULL or writable for `cap` bytes; `needed` NULL or writable.
unsafe fn copy_text(text: &str, buf: *mut c_char, cap: usize, needed: *mut usize) -> Result<()> {
    require_out(needed, "needed")?;
    // A capacity no buffer can have is a caller bug, refused before anything is written.
    check_count::<u8>(cap, usize::MAX, "cap")?;
    let n = text.len() + 1;
    // SAFETY: checked non-NULL; writable per the caller.
    unsafe { needed.write(n) };
    if buf.is_null() || cap < n {
        return Err(Error::BufferTooSmall { needed: n, cap });
    }
    // SAFETY: `buf` has room for `n <= cap` bytes per the caller.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
        buf.add(text.len()).write(0);
    }
    Ok(())
}

/// Writes the engine's metrics in the Prometheus text format (NUL-terminated) to `buf`:
/// per-handler counters, engine gauges and per-handler histograms of queue wait and run time.
/// `*needed` always receives the size required, NUL included; when `cap` is smaller (or `buf`
/// is NULL), nothing else is written and `PORTWAY_BUFFER_TOO_SMALL` is returned; a `cap` above
/// `PORTWAY_MAX_BUFFER` (no buffer is that large) is `PORTWAY_INVALID_ARGUMENT`. Per-handler
/// completions and latencies are recorded when completions are polled.
/// Returns `PORTWAY_OK`, `PORTWAY_BUFFER_TOO_SMALL`, `PORTWAY_INVALID_ARGUMENT` or `PORTWAY_FORKED`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_metrics_text(
    eng: *mut portway_engine,
    buf: *mut c_char,
    cap: usize,
    needed: *mut usize,
) -> portway_status {
    guard(|| {
        // SAFETY: NULL or a live engine.
        let text = unsafe { portway_engine::borrow(eng) }?.metrics_text()?;
        // SAFETY: per this function's contract.
        unsafe { copy_text(&text, buf, cap, needed) }
    })
}

/// Writes a JSON snapshot of the requests in flight, oldest first, at most `limit` of them:
/// `{"total":N,"requests":[{"id","user_data","handler","stage","stage_handler","state",
/// "age_ms"}]}` where state is queued, running, ready (not yet polled) or unreleased. A batch
/// (`portway_batch_submit`) is listed with `"items":n` and state `batch` until its last item
/// completes; each of its items not yet completed is listed too, with `"batch":` its batch id.
/// Buffer rules and statuses as for `portway_metrics_text`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_inflight_json(
    eng: *mut portway_engine,
    limit: u32,
    buf: *mut c_char,
    cap: usize,
    needed: *mut usize,
) -> portway_status {
    guard(|| {
        // SAFETY: NULL or a live engine.
        let text = unsafe { portway_engine::borrow(eng) }?.inflight_json(limit as usize)?;
        // SAFETY: per this function's contract.
        unsafe { copy_text(&text, buf, cap, needed) }
    })
}

/// Writes counts and p50/p90/p99/max of queue wait and run time of handler `id` to `*out`.
/// For a pipeline the figures cover whole requests; each stage handler's own figures include
/// its runs as a stage. Returns `PORTWAY_OK`, `PORTWAY_UNKNOWN_HANDLER`,
/// `PORTWAY_INVALID_ARGUMENT` or `PORTWAY_FORKED`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_handler_stats(
    eng: *mut portway_engine,
    id: u32,
    out: *mut portway_handler_stats_record,
) -> portway_status {
    guard(|| {
        // SAFETY: NULL or a live engine.
        let s = unsafe { portway_engine::borrow(eng) }?.handler_stats(id)?;
        let record = portway_handler_stats_record {
            id: s.id,
            submitted: s.submitted,
            completed: s.completed,
            queue_wait: s.queue_wait,
            run: s.run,
        };
        // SAFETY: NULL or a writable record.
        unsafe { write_out(out, "out", record) }
    })
}

struct LogTarget {
    f: unsafe extern "C" fn(*mut c_void, u32, *const c_char),
    ctx: *mut c_void,
}

// SAFETY: the host promises that `f(ctx, ..)` may be called from any thread (documented).
unsafe impl Send for LogTarget {}
// SAFETY: as above.
unsafe impl Sync for LogTarget {}

impl LogTarget {
    fn call(&self, level: LogLevel, message: &str) {
        let msg = CString::new(message.replace('\0', " ")).unwrap_or_default();
        // SAFETY: the host registered `f` for this use; `msg` lives for the call.
        unsafe { (self.f)(self.ctx, level as u32, msg.as_ptr()) }
    }
}

fn log_setting(
    log_fn: portway_log_fn,
    ctx: *mut c_void,
    min_level: u32,
) -> Result<Option<LogSetting>> {
    let min = LogLevel::from_u32(min_level).ok_or_else(|| {
        Error::invalid(format!(
            "min_level {min_level} is unknown; use PORTWAY_LOG_DEBUG (1) to PORTWAY_LOG_ERROR (4)"
        ))
    })?;
    Ok(log_fn.map(|f| {
        let target = LogTarget { f, ctx };
        let hook: LogHook = Arc::new(move |level, msg: &str| target.call(level, msg));
        LogSetting { hook, min }
    }))
}

/// Delivers engine events at `min_level` or above (`PORTWAY_LOG_DEBUG` .. `PORTWAY_LOG_ERROR`) to
/// `log_fn(ctx, level, message)`: shutdown, handler panics, outbound connections that could not
/// be made (refused, unreachable, TLS), requests leaked past free, abandoned native handlers.
/// NULL `log_fn` removes the hook. Once this returns, the hook it replaced is not running on
/// any other thread and is never called again (so its `ctx` may be freed): it waits for a call
/// in progress, so do not call it while holding a lock that the old hook takes. Called from
/// inside a notify or log hook it does not wait (a call may then still be running elsewhere).
/// Returns `PORTWAY_OK`, `PORTWAY_INVALID_ARGUMENT` (NULL engine, unknown level) or
/// `PORTWAY_FORKED`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_set_log(
    eng: *mut portway_engine,
    log_fn: portway_log_fn,
    ctx: *mut c_void,
    min_level: u32,
) -> portway_status {
    guard(|| {
        // SAFETY: NULL or a live engine.
        let engine = unsafe { portway_engine::borrow(eng) }?;
        let setting = log_setting(log_fn, ctx, min_level)?;
        let min = setting.as_ref().map_or(LogLevel::Error, |s| s.min);
        engine.set_log(setting.map(|s| s.hook), min)
    })
}

/// Like `portway_set_log`, but on a config, so the hook also sees the engine's start.
/// Returns `PORTWAY_OK` or `PORTWAY_INVALID_ARGUMENT` (NULL config, unknown level).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_config_set_log(
    cfg: *mut portway_config,
    log_fn: portway_log_fn,
    ctx: *mut c_void,
    min_level: u32,
) -> portway_status {
    guard(|| {
        // SAFETY: NULL or a live config not used concurrently.
        let config = unsafe { portway_config::borrow_mut(cfg) }?;
        config.set_log(log_setting(log_fn, ctx, min_level)?);
        Ok(())
    })
}
