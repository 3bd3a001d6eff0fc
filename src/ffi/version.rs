//! Version queries, status names and the thread-local last error.

use std::ffi::c_char;

use super::guard::{guard_value, last_error_ptr};
use crate::status::Status;

/// Version of the C ABI; bumped only on incompatible changes.
pub const PORTWAY_ABI_VERSION: u32 = 1;

/// The library version, e.g. `"0.1.0"`. The string is static; never free it.
#[unsafe(no_mangle)]
pub extern "C" fn portway_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The ABI version the library implements (`PORTWAY_ABI_VERSION` of its header).
#[unsafe(no_mangle)]
pub extern "C" fn portway_abi_version() -> u32 {
    PORTWAY_ABI_VERSION
}

/// The static name of a status, e.g. `"PORTWAY_BUSY"`; `"PORTWAY_UNKNOWN_STATUS"` for a value
/// that names no status. Never NULL; never free it. Callable from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn portway_status_str(status: u32) -> *const c_char {
    guard_value(c"PORTWAY_UNKNOWN_STATUS".as_ptr(), || {
        Status::from_u32(status).map_or(c"PORTWAY_UNKNOWN_STATUS".as_ptr(), |s| s.c_name().as_ptr())
    })
}

/// A human message for the last failed call on the calling thread ("" if none failed yet).
/// Owned by the library; valid until this thread's next portway call. Never NULL.
#[unsafe(no_mangle)]
pub extern "C" fn portway_last_error() -> *const c_char {
    last_error_ptr()
}
