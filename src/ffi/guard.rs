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

/// Pointer to this thread's last error message. `portway_last_error` promises it only until the
/// thread's next portway call (as the README says), so that a call may one day set it on
/// success too; today only a failing call replaces it.
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

/// How Rust owns the object behind a C handle; the marker types below are the choices.
///
/// The ownership is a property of the handle *type* (as rustls-ffi's `Castable` does it): each
/// conversion trait exists only for one ownership, so converting a handle the wrong way (say,
/// `Box::from_raw` of a `portway_call` that lives on a worker's stack) does not compile.
pub(crate) trait Ownership {}

/// The handle is a `Box` made by `into_raw` and freed exactly once by `free_raw`.
pub(crate) enum OwnedBox {}
impl Ownership for OwnedBox {}

/// The handle points at an object Rust lends to C for the duration of one callback; C never
/// owns it, so there is no way to make one from a value or to free one.
pub(crate) enum Borrowed {}
impl Ownership for Borrowed {}

/// A C handle type: the Rust object it stands for and how that object is owned.
///
/// # Safety
/// Every `*const Self` / `*mut Self` given to C must be made by the conversion trait matching
/// [`Castable::Own`] ([`BoxCastPtr::into_raw`] or [`BorrowedPtr::lend`]), so that it points at
/// a `Self::Rust`.
pub(crate) unsafe trait Castable {
    /// How the object is owned: [`OwnedBox`] or [`Borrowed`].
    type Own: Ownership;
    /// The Rust object behind the handle.
    type Rust;
    /// The handle's name in error messages.
    const WHAT: &'static str;

    /// Borrows the object; NULL is an invalid argument. Every ownership allows shared borrows.
    ///
    /// # Safety
    /// `ptr` must be NULL or a live handle of this type, not mutably borrowed during `'a`.
    unsafe fn borrow<'a>(ptr: *const Self) -> Result<&'a Self::Rust>
    where
        Self: Sized,
    {
        // SAFETY: the caller guarantees `ptr` is NULL or live; the trait's contract says it
        // points at a `Self::Rust`.
        unsafe { ptr.cast::<Self::Rust>().as_ref() }
            .ok_or_else(|| Error::invalid(format!("{} is NULL", Self::WHAT)))
    }
}

/// Conversions of a boxed handle: made with `into_raw`, borrowed (also mutably, for handles C
/// promises not to share), freed once with `free_raw`.
pub(crate) trait BoxCastPtr: Castable<Own = OwnedBox> + Sized {
    /// Boxes `value` and gives C its pointer.
    fn into_raw(value: Self::Rust) -> *mut Self {
        Box::into_raw(Box::new(value)).cast()
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

    /// Takes back a boxed handle to drop it; NULL gives None.
    ///
    /// # Safety
    /// `ptr` must be NULL or come from `into_raw` and not have been freed.
    unsafe fn free_raw(ptr: *mut Self) -> Option<Box<Self::Rust>> {
        // SAFETY: the caller guarantees `ptr` came from `into_raw`.
        (!ptr.is_null()).then(|| unsafe { Box::from_raw(ptr.cast::<Self::Rust>()) })
    }
}
impl<T: Castable<Own = OwnedBox>> BoxCastPtr for T {}

/// Conversions of a borrowed handle: lent to C from a shared reference and borrowed back shared
/// (so several threads may hold it at once); never boxed, never freed, never mutably borrowed.
/// Whatever a borrowed handle lets C change must sit behind interior mutability.
pub(crate) trait BorrowedPtr: Castable<Own = Borrowed> + Sized {
    /// The handle for a lent object; valid while the reference is.
    fn lend(value: &Self::Rust) -> *mut Self {
        (value as *const Self::Rust).cast_mut().cast()
    }
}
impl<T: Castable<Own = Borrowed>> BorrowedPtr for T {}

/// Most bytes any buffer or array passed to portway may span: 2^56 - 1 (128 PiB, beyond any
/// 64-bit address space; on 32-bit targets `PTRDIFF_MAX` is lower and applies instead). A
/// count or length whose buffer would be larger cannot be true, and is refused with
/// `PORTWAY_INVALID_ARGUMENT` (or `PORTWAY_PAYLOAD_TOO_LARGE` for a payload) before anything
/// is read or written through it.
pub const PORTWAY_MAX_BUFFER: u64 = 0x00ff_ffff_ffff_ffff;

/// Largest number of `T` one C array may hold: `PORTWAY_MAX_BUFFER` bytes, and never more than
/// `PTRDIFF_MAX / sizeof(T)` (Rust slices and C pointer arithmetic are undefined beyond it).
pub(crate) const fn max_items<T>() -> usize {
    let size = if size_of::<T>() == 0 {
        1
    } else {
        size_of::<T>()
    };
    let bytes = if PORTWAY_MAX_BUFFER < isize::MAX as u64 {
        PORTWAY_MAX_BUFFER as usize
    } else {
        isize::MAX as usize
    };
    bytes / size
}

/// Checks a C count against the array limit of `T` and a documented `limit` (`what` is named
/// in the message), before anything is read through it.
pub(crate) fn check_count<T>(n: usize, limit: usize, what: &str) -> Result<()> {
    check_count_named::<T>(n, limit, || what.into())
}

/// [`check_count`] whose name is built only when the check fails: it runs once per submitted
/// request, where formatting the name up front cost an allocation per request.
pub(crate) fn check_count_named<T>(
    n: usize,
    limit: usize,
    what: impl FnOnce() -> String,
) -> Result<()> {
    let max = limit.min(max_items::<T>());
    if n > max {
        return Err(Error::invalid(format!(
            "{} is {n}; the limit is {max}",
            what()
        )));
    }
    Ok(())
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
/// A length above `PORTWAY_MAX_BUFFER` is refused before the slice is formed.
///
/// # Safety
/// When non-NULL, `data` must be valid for reading `len` bytes for `'a`.
pub(crate) unsafe fn bytes<'a>(data: *const u8, len: usize, what: &str) -> Result<&'a [u8]> {
    check_count_named::<u8>(len, usize::MAX, || format!("{what} length"))?;
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

/// Borrows an array of `n` items; NULL is allowed only with `n` 0. `n` above `limit` (the
/// function's documented limit) or above [`max_items`] is refused before the slice is formed.
///
/// # Safety
/// When non-NULL, `items` must be valid for reading `n` items for `'a`.
pub(crate) unsafe fn slice<'a, T>(
    items: *const T,
    n: usize,
    limit: usize,
    what: &str,
) -> Result<&'a [T]> {
    check_count_named::<T>(n, limit, || format!("the count of {what}"))?;
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

#[cfg(test)]
mod tests {
    use super::{BorrowedPtr, BoxCastPtr, check_count, max_items};
    use crate::ffi::{portway_call, portway_completion, portway_config, portway_engine};

    /// Compiles only while `T` does NOT implement `BoxCastPtr`: were it implemented, both impls
    /// below would apply and `_` could not be inferred (static_assertions' `assert_not_impl_any`
    /// trick). So `portway_call::free_raw` (a `Box::from_raw` of the call a worker lends from
    /// its stack) and `portway_call::into_raw` / `borrow_mut` fail to compile.
    trait AmbiguousIfBoxed<A> {
        fn check() {}
    }
    impl<T: ?Sized> AmbiguousIfBoxed<()> for T {}
    impl<T: BoxCastPtr> AmbiguousIfBoxed<u8> for T {}
    const _: fn() = || <portway_call as AmbiguousIfBoxed<_>>::check();

    fn boxed<T: BoxCastPtr>() {}
    fn borrowed<T: BorrowedPtr>() {}

    #[test]
    fn each_handle_has_only_the_conversions_of_its_ownership() {
        boxed::<portway_engine>();
        boxed::<portway_config>();
        borrowed::<portway_call>();
    }

    #[test]
    fn counts_are_checked_against_the_array_limit_and_the_documented_one() {
        let per_completion = max_items::<portway_completion>();
        assert_eq!(
            per_completion,
            super::PORTWAY_MAX_BUFFER as usize / size_of::<portway_completion>()
        );
        assert!(check_count::<portway_completion>(per_completion, usize::MAX, "n").is_ok());
        assert!(check_count::<portway_completion>(per_completion + 1, usize::MAX, "n").is_err());
        assert!(check_count::<u32>(64, 64, "n").is_ok());
        let e = check_count::<u32>(65, 64, "the count of stages").unwrap_err();
        assert_eq!(e.to_string(), "the count of stages is 65; the limit is 64");
        for huge in [usize::MAX, usize::MAX / 2, 1 << 60, isize::MAX as usize + 1] {
            assert!(check_count::<u8>(huge, usize::MAX, "len").is_err());
        }
    }

    #[test]
    fn borrowing_a_payload_allocates_nothing_and_a_refusal_still_names_it() {
        // Runs once per submitted request: no message may be built unless it is needed.
        let data = [1u8, 2, 3];
        let (ok, n) = crate::alloc_count::allocations(|| {
            // SAFETY: `data` is readable for its length.
            unsafe { super::bytes(data.as_ptr(), data.len(), "req->payload") }.map(<[u8]>::len)
        });
        assert_eq!((ok.unwrap(), n), (3, 0));
        // SAFETY: the length is refused before anything is read.
        let e = unsafe { super::bytes(data.as_ptr(), usize::MAX, "req->payload") }.unwrap_err();
        assert!(e.to_string().starts_with("req->payload length is "), "{e}");
    }
}
