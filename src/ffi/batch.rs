//! Batches: n payloads to one handler as one unit with one completion, and the columnar view
//! of its results.

use super::completion::portway_completion;
use super::engine::portway_engine;
use super::guard::{Castable, bytes, guard, max_items, require_out, slice, write_out};
use crate::engine::portway_meta;
use crate::error::{Error, Result};
use crate::status::portway_status;

/// The items of a polled batch completion (`portway_batch_result`), in submit order. Every
/// pointer stays valid until the batch's completion is passed to `portway_release`. Item `i`:
/// `statuses[i]` (a `portway_status`), `codes[i]` (as `portway_completion.code`), its bytes
/// `data[offsets[i] .. offsets[i+1]]` (the response, or the error message when its status is
/// not `PORTWAY_OK`), its metadata pairs `meta[meta_offsets[i] .. meta_offsets[i+1]]`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct portway_batch_view {
    /// Number of items (at least 1).
    pub n: usize,
    /// `n` statuses.
    pub statuses: *const u32,
    /// `n` handler codes (the HTTP status for "http").
    pub codes: *const u32,
    /// `n + 1` offsets into `data`, nondecreasing, `offsets[0] == 0`.
    pub offsets: *const u64,
    /// Every item's bytes, one after the other, then a NUL byte no offset counts; never NULL.
    pub data: *const u8,
    /// `n + 1` offsets into `meta`, nondecreasing, `meta_offsets[0] == 0`.
    pub meta_offsets: *const u64,
    /// Every item's metadata pairs, one after the other; NULL when there are none.
    pub meta: *const portway_meta,
}

/// The payloads of a batch as slices of `data`, every offset checked before a slice is formed.
///
/// # Safety
/// `data` must be NULL or valid for reading `offsets[n]` bytes; `offsets` NULL or valid for
/// reading `n + 1` offsets.
unsafe fn payloads<'a>(data: *const u8, offsets: *const u64, n: usize) -> Result<Vec<&'a [u8]>> {
    if n == 0 {
        return Err(Error::invalid("n is 0: a batch needs at least one item"));
    }
    // SAFETY: NULL or `n + 1` readable offsets per the caller; the count is checked first.
    let offsets = unsafe { slice(offsets, n.saturating_add(1), usize::MAX, "offsets") }?;
    if let Some(i) = offsets.windows(2).position(|w| w[0] > w[1]) {
        return Err(Error::invalid(format!(
            "offsets decrease at item {i}: offsets[{i}] = {} > offsets[{}] = {}",
            offsets[i],
            i + 1,
            offsets[i + 1]
        )));
    }
    let (first, last) = (offsets[0], offsets[n]);
    let max = max_items::<u8>() as u64;
    if last > max {
        return Err(Error::invalid(format!(
            "offsets[{n}] is {last}; the limit is {max}"
        )));
    }
    let span = (last - first) as usize;
    // SAFETY: `data + first` is readable for `last - first` bytes per the caller (payload i is
    // data[offsets[i] .. offsets[i+1]]); with NULL `data` the span must be 0.
    let all = unsafe {
        let start = if data.is_null() {
            data
        } else {
            data.add(first as usize)
        };
        bytes(start, span, "data")
    }?;
    Ok(offsets
        .windows(2)
        .map(|w| &all[(w[0] - first) as usize..(w[1] - first) as usize])
        .collect())
}

/// Submits `n` payloads to one handler as ONE unit: payload `i` is
/// `data[offsets[i] .. offsets[i+1]]` (`offsets` has `n + 1` entries, nondecreasing;
/// `offsets[0]` may be nonzero; `data` may be NULL only when every payload is empty). Each item
/// is a request of its own: same handler, each with the deadline `timeout_ms` from now (0 = the
/// engine default), each takes one `max_in_flight` slot (until the batch is released), each
/// runs with the batch's `user_data` (what `portway_call_user_data` says) and the request id
/// `*out_id + 1 + i` (in log messages; such an id cannot be cancelled on its own). All
/// payloads are copied before the call returns. Writes the batch id to `*out_id`.
///
/// The batch gets exactly ONE completion, once every item has completed: status `PORTWAY_OK`
/// (whatever the items' own statuses), `user_data` echoed, `code` = the number of items whose
/// status is not `PORTWAY_OK`, empty data; read its items with `portway_batch_result`.
/// `portway_cancel` of the batch id cancels every item not yet completed (`PORTWAY_OK` when
/// it cancelled at least one); shutdown and `portway_cancel_all` reach the items too.
///
/// Accepted whole or not at all: returns `PORTWAY_OK`; `PORTWAY_BUSY` (fewer than `n` slots
/// are free); `PORTWAY_INVALID_ARGUMENT` (`n` 0 or above `max_in_flight`, NULL `eng` or
/// `out_id`, NULL `offsets`, decreasing offsets, NULL `data` with a nonempty payload, a
/// payload the handler refuses); `PORTWAY_PAYLOAD_TOO_LARGE` (an item above `max_payload`);
/// `PORTWAY_UNKNOWN_HANDLER`; `PORTWAY_SHUTDOWN`; `PORTWAY_FORKED`. A refused batch posts no
/// completion and changes nothing. Never blocks.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn portway_batch_submit(
    eng: *mut portway_engine,
    handler: u32,
    data: *const u8,
    offsets: *const u64,
    n: usize,
    timeout_ms: u32,
    user_data: u64,
    out_id: *mut u64,
) -> portway_status {
    guard(|| {
        // SAFETY: NULL or a live engine.
        let engine = unsafe { portway_engine::borrow(eng) }?;
        require_out(out_id, "out_id")?;
        // SAFETY: `data` and `offsets` are readable as documented.
        // (Malformed arguments are refused before the engine sees a batch, and not counted,
        // as `portway_submit_batch` does with a malformed array.)
        let items = unsafe { payloads(data, offsets, n) }?;
        let id = engine.submit_items(handler, &items, timeout_ms, user_data)?;
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out_id, "out_id", id) }
    })
}

/// Fills `*out` with the items of the polled batch completion `*c` (only `c->id` is read), in
/// submit order; every pointer in it stays valid until that completion is released.
/// Callable from any thread. Returns `PORTWAY_OK`; `PORTWAY_INVALID_ARGUMENT` when `c` is not
/// the completion of a batch (a plain request's, one not yet polled or already released) or
/// for NULL arguments; `PORTWAY_FORKED`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_batch_result(
    eng: *mut portway_engine,
    c: *const portway_completion,
    out: *mut portway_batch_view,
) -> portway_status {
    guard(|| {
        // SAFETY: NULL or a live engine.
        let engine = unsafe { portway_engine::borrow(eng) }?;
        // SAFETY: NULL or a readable completion.
        let c = unsafe { c.as_ref() }.ok_or_else(|| Error::invalid("c is NULL"))?;
        require_out(out, "out")?;
        let items = engine.batch_items(c.id)?;
        let cols = items.columns();
        let view = portway_batch_view {
            n: cols.statuses.len(),
            // `Status` is `repr(u32)`: its array is an array of u32.
            statuses: cols.statuses.as_ptr().cast(),
            codes: cols.codes.as_ptr(),
            offsets: cols.offsets.as_ptr(),
            data: cols.data.as_ptr(),
            meta_offsets: cols.meta_offsets.as_ptr(),
            meta: cols.meta.c_view().0,
        };
        // The columns belong to the batch, which its unreleased completion keeps alive:
        // dropping `items` here leaves them in place.
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, "out", view) }
    })
}
