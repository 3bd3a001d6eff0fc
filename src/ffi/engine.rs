//! `portway_engine`: creation, shutdown and freeing.

use std::time::Duration;

use super::config::portway_config;
use super::guard::{BoxCastPtr, Castable, OwnedBox, guard, require_out, write_out};
use crate::engine::{Config, Engine, ShutdownMode};
use crate::error::Error;
use crate::status::portway_status;

/// An engine: a runtime, a worker pool, an in-flight ledger and a completion queue.
/// Create with `portway_engine_new`; free once with `portway_engine_free`. Every other
/// function may be called from any thread at the same time.
pub struct portway_engine {
    _opaque: [u8; 0],
}

// SAFETY: every `*mut portway_engine` handed out comes from `into_raw(Engine)`.
unsafe impl Castable for portway_engine {
    type Own = OwnedBox;
    type Rust = Engine;
    const WHAT: &'static str = "engine";
}

/// How `portway_engine_shutdown` treats in-flight work: `PORTWAY_DRAIN` or `PORTWAY_CANCEL_NOW`.
pub type portway_shutdown_mode = u32;

/// Let in-flight work finish until the deadline, then cancel what is left.
pub const PORTWAY_DRAIN: portway_shutdown_mode = 0;
/// Cancel everything in flight now.
pub const PORTWAY_CANCEL_NOW: portway_shutdown_mode = 1;

/// Creates an engine from `cfg` (NULL = defaults; the config is copied and may be freed after)
/// and writes it to `*out`. The engine has the built-in handlers "echo" (responds with its
/// payload), "sleep" (completes with an empty response after the number of milliseconds its
/// payload gives: one or more ASCII digits, at most 86400000 (one day), optionally preceded and
/// followed by ASCII spaces, tabs, CR or LF; no sign, no other character, so `"+5"` or a Unicode
/// space is refused: `portway_submit` returns `PORTWAY_INVALID_ARGUMENT`) and "http" (an http
/// handler with the default `portway_http_options`).
/// Returns `PORTWAY_OK`, `PORTWAY_INVALID_ARGUMENT` (NULL out) or `PORTWAY_INTERNAL` (threads
/// or descriptors could not be created).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_engine_new(
    cfg: *const portway_config,
    out: *mut *mut portway_engine,
) -> portway_status {
    guard(|| {
        require_out(out, "out")?;
        let config = if cfg.is_null() {
            Config::default()
        } else {
            // SAFETY: non-NULL configs come from `portway_config_new`.
            unsafe { portway_config::borrow(cfg) }?.clone()
        };
        let engine = Engine::new(config)?;
        // SAFETY: `out` was checked non-NULL; the caller guarantees it is writable.
        unsafe { write_out(out, "out", portway_engine::into_raw(engine)) }
    })
}

/// Stops intake at once (`portway_submit` then answers `PORTWAY_SHUTDOWN`) and returns at once.
/// `PORTWAY_DRAIN` lets in-flight work run until `deadline_ms` passes (0 = no deadline), then
/// cancels what is left; `PORTWAY_CANCEL_NOW` cancels everything now. Every accepted request
/// still gets its one completion; once all are polled, `portway_poll` returns `PORTWAY_CLOSED`.
/// May be called again to escalate a drain to a cancel.
/// Returns `PORTWAY_OK`, `PORTWAY_INVALID_ARGUMENT` (NULL engine, unknown mode) or `PORTWAY_FORKED`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_engine_shutdown(
    eng: *mut portway_engine,
    mode: portway_shutdown_mode,
    deadline_ms: u32,
) -> portway_status {
    guard(|| {
        // SAFETY: NULL or a live engine.
        let engine = unsafe { portway_engine::borrow(eng) }?;
        let mode = match mode {
            PORTWAY_DRAIN => ShutdownMode::Drain,
            PORTWAY_CANCEL_NOW => ShutdownMode::CancelNow,
            other => {
                return Err(Error::invalid(format!(
                    "shutdown mode {other} is unknown; use PORTWAY_DRAIN or PORTWAY_CANCEL_NOW"
                )));
            }
        };
        let deadline = (deadline_ms > 0).then(|| Duration::from_millis(u64::from(deadline_ms)));
        engine.shutdown(mode, deadline)
    })
}

/// Frees an engine. NULL is a no-op. On a live engine it stops intake, cancels everything,
/// waits for native handlers to return (up to the drain deadline, or the free grace), abandons
/// any still stuck, and frees every buffer, including unreleased completions. When every
/// handler returned in time it also waits until each pool thread has ended (thread-local
/// destructors included, so a host's own `pthread_key_create` destructors on pool threads
/// delay it), so no pool thread runs library code once it returns and the library may then be
/// unloaded (`dlclose`). If a handler was abandoned, free returns after the grace without
/// waiting for any pool thread: the stuck handler's thread exits when the handler returns, and
/// until then the library must stay loaded. The notify and log hooks are never called once it
/// returns, and a hook call already running on an engine thread has returned by then, so the
/// host may free the hooks' `ctx` right after. Call it once, when no other call on this engine
/// is running, and never from a handler or a notify or log callback.
/// In a child process after `fork()` it leaks the inherited engine instead of touching it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_engine_free(eng: *mut portway_engine) {
    // SAFETY: NULL or an engine from `portway_engine_new`, freed once.
    let _ = std::panic::catch_unwind(|| drop(unsafe { portway_engine::free_raw(eng) }));
}
