//! Native handlers: a C function and its context, registered through the C ABI
//! (`portway_register_handler`) and run on the worker pool as a foreign blocking handler. The
//! handle C gets for a call (`portway_call`) and the functions it calls on it are the C ABI's
//! (`src/ffi/handler.rs`); this file is how such a function is run and what the handle points
//! at.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use crate::contract::{BlockingHandler, Call, Cancellation, Handler};
use crate::ffi::{BorrowedPtr, portway_call};

/// The declaration a native handler registers with: `f(ctx, call)` on the worker pool,
/// without `catch_unwind` (see [`Handler::Foreign`]); `idempotent` when the host registered it
/// as safe to repeat (`PORTWAY_HANDLER_IDEMPOTENT`), so that hedging may run it twice.
pub(crate) fn handler(
    f: unsafe extern "C-unwind" fn(*mut c_void, *mut portway_call),
    ctx: *mut c_void,
    idempotent: bool,
) -> Handler {
    Handler::Foreign(Arc::new(NativeHandler { f, ctx, idempotent }))
}

/// What a `portway_call` handle points at: C may reach it from several threads at once, so it
/// is only ever borrowed shared. What may be read from anywhere (cancellation, user data) sits
/// outside the lock; the `Call` that builds the response is reachable only through the mutex,
/// so a watchdog's `is_cancelled` never aliases a responding thread's `&mut Call`.
pub(crate) struct NativeCall {
    /// Read by `portway_call_is_cancelled` from any thread, without the lock.
    pub cancellation: Cancellation,
    /// Read by `portway_call_user_data` from any thread, without the lock.
    pub user_data: u64,
    /// The `&mut Call` the worker lent for this run, as a pointer so the handle type needs no
    /// lifetime; dereferenced only under the mutex, only while the run lasts.
    call: Mutex<NonNull<Call>>,
}

// SAFETY: `call` is dereferenced only under its mutex, and `Call` itself is `Send`; the rest is
// `Send + Sync`. A `NativeCall` never outlives the run whose `&mut Call` it holds.
unsafe impl Send for NativeCall {}
// SAFETY: as above: shared access reaches the `Call` only through the mutex.
unsafe impl Sync for NativeCall {}

impl NativeCall {
    /// Runs `f` with the call, exclusively.
    pub fn with<R>(&self, f: impl FnOnce(&mut Call) -> R) -> R {
        // A panic in another accessor cannot leave the call half-changed (each runs one `Call`
        // method), so a poisoned lock is taken over.
        let mut ptr = self.call.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the pointer is the `&mut Call` lent for the handler's run, which is still
        // going (the handle is valid only until the handler returns); the lock makes this the
        // only reference made from it.
        f(unsafe { ptr.as_mut() })
    }
}

/// A registered C function and the context it is called with.
struct NativeHandler {
    // "C-unwind": a forced unwind (`pthread_exit`) may leave the handler; with "C" that
    // would be undefined behaviour.
    f: unsafe extern "C-unwind" fn(*mut c_void, *mut portway_call),
    ctx: *mut c_void,
    /// Registered with `PORTWAY_HANDLER_IDEMPOTENT`.
    idempotent: bool,
}

// SAFETY: registering a handler promises that `f(ctx, ..)` may run on any pool thread.
unsafe impl Send for NativeHandler {}
// SAFETY: as above; calls may be concurrent.
unsafe impl Sync for NativeHandler {}

impl BlockingHandler for NativeHandler {
    fn call(&self, call: &mut Call) {
        let native = NativeCall {
            cancellation: call.cancellation(),
            user_data: call.user_data(),
            call: Mutex::new(NonNull::from(call)),
        };
        // SAFETY: the host registered `f` for this use; `native` outlives the call of `f`.
        unsafe { (self.f)(self.ctx, portway_call::lend(&native)) }
    }

    fn idempotent(&self) -> bool {
        self.idempotent
    }
}
