//! Recycled requests: the memory of released requests (the request itself and the buffer its
//! completion's bytes lived in), handed to the next submits instead of going back to the
//! allocator.
//!
//! A host that submits and releases in batches frees and then allocates hundreds of blocks at a
//! time. glibc's per-thread cache keeps only a few blocks of each size, so most of them took
//! the slower arena paths, on memory that had gone cold. Taking a released request back costs
//! a check that nothing else holds it and a reset in place.

use std::sync::Arc;

use super::ledger::Ledger;
use super::request::Request;
use super::sync::Mutex;

/// At most this many spares are kept.
const MAX_SPARES: usize = 4096;

/// At most this many bytes (requests plus buffers) are kept.
const MAX_BYTES: usize = 4 << 20;

/// Buffers larger than this are not kept: a spare is meant for the common small payload.
const MAX_BUFFER: usize = 4096;

/// A released request ready to be reused, with a spare payload buffer (possibly empty).
pub(crate) struct Spare {
    pub req: Arc<Request>,
    pub buf: Vec<u8>,
}

impl Spare {
    fn bytes(&self) -> usize {
        std::mem::size_of::<Request>() + self.buf.capacity()
    }
}

/// The engine's spares, shared by every submitting and releasing thread.
pub(crate) struct Recycler {
    state: Mutex<Spares>,
}

impl Default for Recycler {
    fn default() -> Self {
        Recycler {
            state: Mutex::new(Spares::default()),
        }
    }
}

#[derive(Default)]
struct Spares {
    items: Vec<Spare>,
    bytes: usize,
}

impl Recycler {
    /// Releases the polled completions among `ids`: out of the ledger, their slots back, their
    /// memory kept here or freed (one a poller is still showing is freed by that poller).
    /// Returns how many were released and the slots they held.
    pub fn release(&self, ledger: &Ledger, ids: impl IntoIterator<Item = u64>) -> (usize, u64) {
        let released = ledger.remove_polled(ids);
        ledger.release_slots(released.slots);
        self.give(released.to_free);
        (released.count, released.slots)
    }

    /// Moves up to `n` spares into `out` (one lock for the lot).
    pub fn take(&self, n: usize, out: &mut Vec<Spare>) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let keep = st.items.len().saturating_sub(n);
        let taken: usize = st.items[keep..].iter().map(Spare::bytes).sum();
        st.bytes -= taken;
        out.extend(st.items.drain(keep..));
    }

    /// Keeps the released requests that nothing else refers to any more, within the bounds.
    /// The others (still held by a deadline entry, say) lose their completion's bytes now and
    /// are freed by their last holder.
    pub fn give(&self, released: impl IntoIterator<Item = Arc<Request>>) {
        let mut fresh: Vec<Spare> = released
            .into_iter()
            .filter_map(|mut req| {
                // A released batch lets go of its results now, whoever still holds it.
                drop(req.take_batch());
                let Some(unique) = Arc::get_mut(&mut req) else {
                    req.free_outcome_after_release();
                    return None;
                };
                let mut buf = unique.take_spent_buffer();
                if buf.capacity() > MAX_BUFFER {
                    buf = Vec::new();
                }
                buf.clear();
                Some(Spare { req, buf })
            })
            .collect();
        if fresh.is_empty() {
            return;
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (mut fit, mut bytes) = (0, st.bytes);
        for spare in &fresh {
            if st.items.len() + fit >= MAX_SPARES || bytes + spare.bytes() > MAX_BYTES {
                break;
            }
            bytes += spare.bytes();
            fit += 1;
        }
        let rest = fresh.split_off(fit);
        st.items.append(&mut fresh);
        st.bytes = bytes;
        drop(st);
        drop(rest); // what did not fit is freed outside the lock
    }

    /// Spares held now (for tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .items
            .len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::engine::registry::echo_entry;

    fn request(id: u64) -> Arc<Request> {
        let entry = echo_entry();
        Arc::new(Request::new(id, 0, entry, Instant::now(), 0))
    }

    #[test]
    fn keeps_only_requests_nothing_else_holds() {
        let r = Recycler::default();
        let held = request(1);
        let _other_holder = held.clone();
        r.give([held, request(2), request(3)]);
        assert_eq!(r.len(), 2);
        let mut out = Vec::new();
        r.take(5, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(r.len(), 0);
        assert!(out.iter().all(|s| Arc::strong_count(&s.req) == 1));
    }

    #[test]
    fn a_released_request_held_elsewhere_lets_go_of_its_bytes() {
        // A deadline entry can keep a released request alive until its time: the response it
        // carried must not live that long.
        let r = Recycler::default();
        let req = request(1);
        assert!(
            req.claim_completion(crate::contract::Outcome::ok(vec![7; 100_000]), None)
                .is_some()
        );
        let timer_entry = req.clone();
        r.give([req]);
        assert_eq!(r.len(), 0);
        assert!(timer_entry.outcome().is_none());
    }

    #[test]
    fn keeps_no_more_than_its_bound() {
        let r = Recycler::default();
        r.give((0..MAX_SPARES as u64 + 100).map(request));
        assert_eq!(r.len(), MAX_SPARES);
        let mut out = Vec::new();
        r.take(10, &mut out);
        assert_eq!((out.len(), r.len()), (10, MAX_SPARES - 10));
    }
}
