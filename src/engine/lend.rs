//! Lent payloads (`PORTWAY_SUBMIT_LEND_PAYLOAD`): the host keeps a request's payload bytes valid
//! until it has polled the completion, and the engine reads them in place instead of copying
//! them at submit (the shape of liburing's registered buffers and gRPC's slices).
//!
//! The rule the engine keeps: **it never reads a lent payload once the request's completion is
//! in the completion queue.** A completion that would be posted while a reader holds the payload
//! (a timeout or a cancel while its native handler runs) is handed to that reader, which posts
//! it when it lets go, as io_uring posts a cancelled operation's completion only once the kernel
//! is done with its buffer. So the host may free or reuse the bytes as soon as a poll returned
//! the completion, whatever ended the request.
//!
//! Only a native (pool) handler reads a lent payload, in the one job of the request's first
//! stage; every other reader copies it first (the submit does for handlers that are not native;
//! a hedged run does, under a pin, since its two attempts could outlive each other). The
//! hand-off between a reader and whoever completes the request is one atomic byte per request
//! ([`LendState`]), untouched for requests whose payload was copied.

use std::sync::Arc;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};

use super::request::Request;
use super::shared::Shared;
use super::sync::AtomicU8;

/// The request's payload was lent (set before the request is shared, never cleared).
const LENT: u8 = 1;
/// A reader holds the lent payload.
const READING: u8 = 2;
/// The request completed while a reader held the payload: that reader posts the completion.
const DEFERRED: u8 = 4;
/// The completion was posted (or is being posted): no reader may start.
const POSTED: u8 = 8;

/// One request's side of the hand-off (see the module doc).
#[derive(Debug, Default)]
pub(crate) struct LendState(AtomicU8);

impl LendState {
    /// The state of a request whose payload is lent.
    pub fn lent() -> Self {
        LendState(AtomicU8::new(LENT))
    }

    /// True when the request's payload is lent.
    pub fn is_lent(&self) -> bool {
        self.0.load(Relaxed) & LENT != 0
    }

    /// Starts a read of the lent payload: false when the completion was posted already (the
    /// bytes may be gone; do not read them).
    fn pin(&self) -> bool {
        self.0.fetch_or(READING, AcqRel) & POSTED == 0
    }

    /// Ends a read; true when the request completed meanwhile and its completion was left to
    /// this reader to post.
    fn unpin(&self) -> bool {
        self.0.fetch_and(!READING, AcqRel) & DEFERRED != 0
    }

    /// Called by the one caller that claimed the request's completion, before it posts it: true
    /// to post it now, false when a reader holds the lent payload and will post it when done.
    /// Always true for a copied payload.
    pub fn may_post(&self) -> bool {
        if !self.is_lent() {
            return true;
        }
        let mut cur = self.0.load(Acquire);
        loop {
            let (next, post) = if cur & READING != 0 {
                (cur | DEFERRED, false)
            } else {
                (cur | POSTED, true)
            };
            match self.0.compare_exchange_weak(cur, next, AcqRel, Acquire) {
                Ok(_) => return post,
                Err(actual) => cur = actual,
            }
        }
    }
}

/// Bytes the host lent: a pointer into the host's buffer and its length.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LentBytes {
    ptr: *const u8,
    len: usize,
}

// SAFETY: the bytes are only read (never written) and only while pinned (see `LendPin`); the
// host promised to keep them valid and unmodified until the completion is polled, which the
// hand-off orders after every read.
unsafe impl Send for LentBytes {}
// SAFETY: as above: shared access only reads.
unsafe impl Sync for LentBytes {}

impl LentBytes {
    /// Lends `bytes`.
    ///
    /// # Safety
    /// `bytes` must stay valid and unmodified until the completion of the request they are lent
    /// to has been polled (the contract of `PORTWAY_SUBMIT_LEND_PAYLOAD`).
    pub unsafe fn new(bytes: &[u8]) -> Self {
        LentBytes {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }

    /// The bytes. Only while a pin on their request is held.
    fn get(&self) -> &[u8] {
        // SAFETY: valid until the completion is polled (per `new`), and a pinned request's
        // completion is not posted before the pin ends.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// A request's payload on its way to a handler: the engine's copy, or the host's lent bytes
/// (with a spare buffer for the response, so a lent request needs no allocation either).
#[derive(Debug)]
pub(crate) enum Payload {
    /// The engine's own bytes.
    Owned(Vec<u8>),
    /// The host's bytes (read only under a [`LendPin`]) and a spare buffer for the response.
    Lent { bytes: LentBytes, spare: Vec<u8> },
}

impl Default for Payload {
    fn default() -> Self {
        Payload::Owned(Vec::new())
    }
}

impl From<Vec<u8>> for Payload {
    fn from(v: Vec<u8>) -> Self {
        Payload::Owned(v)
    }
}

impl Payload {
    /// The engine's own bytes; None for lent ones (read them under a pin: [`into_owned`]).
    pub fn owned(&self) -> Option<&[u8]> {
        match self {
            Payload::Owned(v) => Some(v),
            Payload::Lent { .. } => None,
        }
    }

    /// True for the host's lent bytes.
    pub fn is_lent(&self) -> bool {
        matches!(self, Payload::Lent { .. })
    }

    /// The bytes.
    ///
    /// # Safety
    /// For lent bytes: only while a [`LendPin`] on their request is held.
    pub unsafe fn bytes(&self) -> &[u8] {
        match self {
            Payload::Owned(v) => v,
            Payload::Lent { bytes, .. } => bytes.get(),
        }
    }

    /// The buffer a response may be written into: the payload's own, or the spare that came
    /// with a lent payload.
    pub fn into_spent(self) -> Vec<u8> {
        match self {
            Payload::Owned(v) | Payload::Lent { spare: v, .. } => v,
        }
    }
}

/// Turns `payload` into the engine's own bytes, copying lent ones under a pin. None when `req`
/// completed before the copy could start (its lent bytes may be gone: nothing was read).
pub(crate) fn into_owned(
    shared: &Arc<Shared>,
    req: &Arc<Request>,
    payload: Payload,
) -> Option<Vec<u8>> {
    match payload {
        Payload::Owned(v) => Some(v),
        Payload::Lent { bytes, mut spare } => {
            let pin = LendPin::take(shared, req, true)?;
            spare.clear();
            spare.extend_from_slice(bytes.get());
            pin.done();
            Some(spare)
        }
    }
}

/// A read of a request's lent payload in progress. While it lives, the request's completion is
/// not posted: [`LendPin::done`] posts it if it came meanwhile. A pin dropped without `done` (the
/// thread is being torn down under a native handler by a forced unwind) lets go the same way,
/// but posts from the runtime: the host's notify hook must not run on a dying thread.
#[must_use]
pub(crate) struct LendPin {
    held: Option<(Arc<Shared>, Arc<Request>)>,
}

impl LendPin {
    /// Pins `req`'s payload for a read when `lent` (else a pin that holds nothing). None when
    /// the completion was posted already: do not read.
    pub fn take(shared: &Arc<Shared>, req: &Arc<Request>, lent: bool) -> Option<LendPin> {
        if !lent {
            return Some(LendPin { held: None });
        }
        let pinned = req.lend().pin();
        let pin = LendPin {
            held: Some((shared.clone(), req.clone())),
        };
        if pinned {
            Some(pin)
        } else {
            pin.done();
            None
        }
    }

    /// The read is over: posts the completion if it came meanwhile.
    pub fn done(mut self) {
        if let Some((shared, req)) = self.held.take()
            && req.lend().unpin()
        {
            shared.queue.push(std::iter::once(req));
        }
    }
}

impl Drop for LendPin {
    fn drop(&mut self) {
        if let Some((shared, req)) = self.held.take()
            && req.lend().unpin()
        {
            let rt = shared.rt.clone();
            rt.spawn(async move { shared.queue.push(std::iter::once(req)) });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copied_payload_never_waits_for_a_reader() {
        let s = LendState::default();
        assert!(s.may_post());
        assert!(s.may_post());
    }

    #[test]
    fn a_completion_during_a_read_goes_to_the_reader() {
        let s = LendState::lent();
        assert!(s.pin());
        assert!(!s.may_post(), "posted while the payload is read");
        assert!(s.unpin(), "the reader must post it");
    }

    #[test]
    fn a_read_after_the_completion_does_not_start() {
        let s = LendState::lent();
        assert!(s.may_post());
        assert!(!s.pin(), "read a payload whose completion was posted");
    }

    #[test]
    fn a_read_that_ends_first_leaves_the_posting_to_the_completer() {
        let s = LendState::lent();
        assert!(s.pin());
        assert!(!s.unpin());
        assert!(s.may_post());
    }
}
