//! The boundary helpers every exported function uses: the panic guard, the thread-local last
//! error, and the typed pointer conversions that fix each handle's ownership in one place.

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::error::{Error, Result, panic_message};
use crate::status::{Status, portway_status};

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Remembers `message` as this thread's last error.
pub(crate) fn set_last_error(message: &str) {
    let c = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Pointer to this thread's last error message (valid until the thread's next failing call).
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Runs `f`, turning its error or panic into a status and a last-error message.
pub(crate) fn guard(f: impl FnOnce() -> Result<()>) -> portway_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => Status::PORTWAY_OK,
        Ok(Err(e)) => {
            set_last_error(&e.to_string());
            e.status()
        }
        Err(panic) => {
            set_last_error(&format!("panic: {}", panic_message(&*panic)));
            Status::PORTWAY_PANIC
        }
    }
}

/// Runs `f` for a function that returns a plain value; a panic yields `fallback`.
pub(crate) fn guard_value<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        set_last_error(&format!("panic: {}", panic_message(&*panic)));
        fallback
    })
}

/// A C handle type and how Rust owns what it points to.
///
/// # Safety
/// Implementors promise that pointers of type `*mut Self` handed to C were made by
/// [`into_raw`](Handle::into_raw) (boxed) or point at a live `Self::Rust` (borrowed).
pub(crate) unsafe trait Handle: Sized {
    /// The Rust object behind the handle.
    type Rust;
    /// The handle's name in error messages.
    const WHAT: &'static str;

    /// Boxes `value` and gives C its pointer.
    fn into_raw(value: Self::Rust) -> *mut Self {
        Box::into_raw(Box::new(value)).cast()
    }

    /// Borrows the object; NULL is an invalid argument.
    ///
    /// # Safety
    /// `ptr` must be NULL or a live handle of this type.
    unsafe fn borrow<'a>(ptr: *const Self) -> Result<&'a Self::Rust> {
        // SAFETY: the caller guarantees `ptr` is NULL or live; the cast is the documented
        // representation of this handle type.
        unsafe { ptr.cast::<Self::Rust>().as_ref() }
            .ok_or_else(|| Error::invalid(format!("{} is NULL", Self::WHAT)))
    }

    /// Borrows the object mutably; NULL is an invalid argument.
    ///
    /// # Safety
    /// `ptr` must be NULL or a live handle of this type, not aliased for `'a`.
    unsafe fn borrow_mut<'a>(ptr: *mut Self) -> Result<&'a mut Self::Rust> {
        // SAFETY: as in `borrow`, plus the caller's promise of exclusive access.
        unsafe { ptr.cast::<Self::Rust>().as_mut() }
            .ok_or_else(|| Error::invalid(format!("{} is NULL", Self::WHAT)))
    }

    /// Takes back a boxed handle; NULL gives None.
    ///
    /// # Safety
    /// `ptr` must be NULL or come from `into_raw` and not have been freed.
    unsafe fn from_raw(ptr: *mut Self) -> Option<Box<Self::Rust>> {
        // SAFETY: the caller guarantees `ptr` came from `into_raw`.
        (!ptr.is_null()).then(|| unsafe { Box::from_raw(ptr.cast::<Self::Rust>()) })
    }

    /// The handle for a borrowed object.
    fn from_ref(value: &mut Self::Rust) -> *mut Self {
        (value as *mut Self::Rust).cast()
    }
}

/// Writes `value` through a required output pointer.
///
/// # Safety
/// `out` must be NULL or valid for writing one `T`.
pub(crate) unsafe fn write_out<T>(out: *mut T, what: &str, value: T) -> Result<()> {
    if out.is_null() {
        return Err(Error::invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and the caller guarantees it is writable.
    unsafe { out.write(value) };
    Ok(())
}

/// Checks that a required output pointer is not NULL, before doing work whose result it gets.
pub(crate) fn require_out<T>(out: *mut T, what: &str) -> Result<()> {
    if out.is_null() {
        return Err(Error::invalid(format!("{what} is NULL")));
    }
    Ok(())
}

/// Borrows a byte buffer given as pointer and length; NULL is allowed only with length 0.
///
/// # Safety
/// When non-NULL, `data` must be valid for reading `len` bytes for `'a`.
pub(crate) unsafe fn bytes<'a>(data: *const u8, len: usize, what: &str) -> Result<&'a [u8]> {
    if data.is_null() {
        if len == 0 {
            return Ok(&[]);
        }
        return Err(Error::invalid(format!(
            "{what} is NULL but its length is {len}"
        )));
    }
    // SAFETY: non-NULL and the caller guarantees `len` readable bytes.
    Ok(unsafe { std::slice::from_raw_parts(data, len) })
}

/// Borrows an array of `n` items; NULL is allowed only with `n` 0.
///
/// # Safety
/// When non-NULL, `items` must be valid for reading `n` items for `'a`.
pub(crate) unsafe fn slice<'a, T>(items: *const T, n: usize, what: &str) -> Result<&'a [T]> {
    if items.is_null() {
        if n == 0 {
            return Ok(&[]);
        }
        return Err(Error::invalid(format!(
            "{what} is NULL but its count is {n}"
        )));
    }
    // SAFETY: non-NULL and the caller guarantees `n` readable items.
    Ok(unsafe { std::slice::from_raw_parts(items, n) })
}

/// Borrows a NUL-terminated UTF-8 string; NULL is an invalid argument.
///
/// # Safety
/// When non-NULL, `s` must point at a NUL-terminated string that lives for `'a`.
pub(crate) unsafe fn utf8<'a>(s: *const c_char, what: &str) -> Result<&'a str> {
    if s.is_null() {
        return Err(Error::invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and NUL-terminated per the caller.
    unsafe { CStr::from_ptr(s) }
        .to_str()
        .map_err(|_| Error::invalid(format!("{what} is not valid UTF-8")))
}

/// Converts a C timeout in ms (-1 forever, 0 no wait, >0 ms) to Rust.
pub(crate) fn timeout(ms: i32, what: &str) -> Result<Option<std::time::Duration>> {
    match ms {
        -1 => Ok(None),
        ms if ms >= 0 => Ok(Some(std::time::Duration::from_millis(ms as u64))),
        ms => Err(Error::invalid(format!(
            "{what} of {ms} is invalid: use -1 (forever), 0 (no wait) or a positive number of ms"
        ))),
    }
}
