//! `portway_config`: engine settings built before `portway_engine_new`.

use super::guard::{BoxCastPtr, Castable, OwnedBox, guard};
use crate::engine::Config;
use crate::status::portway_status;

/// Engine settings. Create with `portway_config_new`, free with `portway_config_free`.
/// Not thread-safe: configure from one thread, then pass to `portway_engine_new`.
pub struct portway_config {
    _opaque: [u8; 0],
}

// SAFETY: every `*mut portway_config` handed out comes from `into_raw(Config)`.
unsafe impl Castable for portway_config {
    type Own = OwnedBox;
    type Rust = Config;
    const WHAT: &'static str = "config";
}

/// A new config with the defaults: runtime threads and pool workers = CPUs, max_in_flight
/// 65536, no default timeout, max_payload 64 MiB, free grace 1000 ms. Free it with
/// `portway_config_free`. Returns NULL only if allocation fails.
#[unsafe(no_mangle)]
pub extern "C" fn portway_config_new() -> *mut portway_config {
    std::panic::catch_unwind(|| portway_config::into_raw(Config::default()))
        .unwrap_or(std::ptr::null_mut())
}

/// Frees a config. NULL is a no-op. The engine keeps its own copy, so a config may be freed
/// right after `portway_engine_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_config_free(cfg: *mut portway_config) {
    // SAFETY: the caller passes NULL or a config from `portway_config_new`, freed once.
    let _ = std::panic::catch_unwind(|| drop(unsafe { portway_config::free_raw(cfg) }));
}

fn set<T>(
    cfg: *mut portway_config,
    value: T,
    apply: fn(&mut Config, T) -> crate::Result<()>,
) -> portway_status {
    // SAFETY: the caller passes NULL or a live config that it does not use concurrently.
    guard(|| apply(unsafe { portway_config::borrow_mut(cfg) }?, value))
}

/// Tokio runtime threads (0 = one per CPU; at most 1024).
/// Returns `PORTWAY_OK` or `PORTWAY_INVALID_ARGUMENT` (NULL cfg, over the limit).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_config_set_runtime_threads(
    cfg: *mut portway_config,
    value: u32,
) -> portway_status {
    set(cfg, value, Config::set_runtime_threads)
}

/// Native worker-pool threads (0 = one per CPU; at most 1024).
/// Returns `PORTWAY_OK` or `PORTWAY_INVALID_ARGUMENT` (NULL cfg, over the limit).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_config_set_pool_workers(
    cfg: *mut portway_config,
    value: u32,
) -> portway_status {
    set(cfg, value, Config::set_pool_workers)
}

/// Most requests accepted and not yet released (default 65536; at least 1).
/// Returns `PORTWAY_OK` or `PORTWAY_INVALID_ARGUMENT` (NULL cfg, 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_config_set_max_in_flight(
    cfg: *mut portway_config,
    value: u32,
) -> portway_status {
    set(cfg, value, Config::set_max_in_flight)
}

/// Deadline for requests submitted with `timeout_ms == 0` (0 = none, the default).
/// Returns `PORTWAY_OK` or `PORTWAY_INVALID_ARGUMENT` (NULL cfg).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_config_set_default_timeout_ms(
    cfg: *mut portway_config,
    value: u32,
) -> portway_status {
    set(cfg, value, Config::set_default_timeout_ms)
}

/// Largest payload accepted, in bytes (default 64 MiB; at least 1).
/// Returns `PORTWAY_OK` or `PORTWAY_INVALID_ARGUMENT` (NULL cfg, 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_config_set_max_payload(
    cfg: *mut portway_config,
    value: u64,
) -> portway_status {
    set(cfg, value, Config::set_max_payload)
}

/// How long `portway_engine_free` on a live engine waits for native handlers to return
/// before abandoning them (default 1000 ms; a drain deadline set by shutdown takes
/// precedence). Returns `PORTWAY_OK` or `PORTWAY_INVALID_ARGUMENT` (NULL cfg).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_config_set_free_grace_ms(
    cfg: *mut portway_config,
    value: u32,
) -> portway_status {
    set(cfg, value, Config::set_free_grace_ms)
}

/// Turns per-handler metrics (counts and latency histograms behind `portway_metrics_text` and
/// `portway_handler_stats`) on (the default) or off; `portway_stats` stays on.
/// Returns `PORTWAY_OK` or `PORTWAY_INVALID_ARGUMENT` (NULL cfg).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_config_set_metrics(
    cfg: *mut portway_config,
    value: bool,
) -> portway_status {
    set(cfg, value, Config::set_metrics)
}
