//! Batches: n payloads to one handler submitted as one unit ([`Engine::submit_items`]), with
//! one completion for the lot.
//!
//! Each item is a request of its own (its own slot, deadline, policies, handler run and
//! outcome), but it does not go to the completion queue: the winner of its completion finds
//! the batch through the item's outcome slot (see `request.rs`) and counts it off. The last
//! item assembles every result into columns (statuses, codes, offsets over one data buffer,
//! metadata) and completes the batch's own request, which is the one completion the host polls
//! (one queue push, one wake-up for n results). An interpreted host then reads n results from
//! a few arrays instead of building n completion objects.
//!
//! The batch's own request is in the ledger (so cancel, shutdown, the in-flight dump and
//! release find it); its items are not: they are reached through it.

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{AcqRel, Relaxed};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

use super::Engine;
use super::dispatch;
use super::handoff::Handoff;
use super::lend::Payload;
use super::registry::HandlerEntry;
use super::request::Request;
use super::shared::Shared;
use super::submit::{completes_inline, validate_first_stage};
use super::types::{Completion, Submission};
use crate::contract::{Meta, Outcome};
use crate::error::{Error, Result};
use crate::status::Status;

/// A batch in flight: its items until they have all completed, then their results.
pub(crate) struct Batch {
    /// The id of the batch's own request (items have the next `len` ids).
    id: u64,
    handler: Arc<HandlerEntry>,
    len: usize,
    /// Items not yet assembled (emptied by the assembly), for cancel, shutdown and the dump.
    pending: Mutex<Vec<Arc<Request>>>,
    /// Items whose completion has not been counted off yet.
    remaining: AtomicUsize,
    results: OnceLock<Arc<BatchColumns>>,
}

/// Every item's result, in submit order, in the columns the C view hands out.
#[derive(Debug)]
pub struct BatchColumns {
    pub(crate) statuses: Vec<Status>,
    pub(crate) codes: Vec<u32>,
    /// `len + 1` offsets into `data`, the first 0.
    pub(crate) offsets: Vec<u64>,
    /// Every item's bytes, then one NUL.
    pub(crate) data: Vec<u8>,
    /// `len + 1` offsets into `meta`'s pairs, the first 0.
    pub(crate) meta_offsets: Vec<u64>,
    pub(crate) meta: Meta,
    failures: u32,
}

impl Batch {
    /// Number of items.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The items not yet assembled (a snapshot).
    pub fn pending(&self) -> Vec<Arc<Request>> {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Completes every item not yet completed with `PORTWAY_CANCELLED` and `message`.
    /// Returns how many this call cancelled.
    pub fn cancel_items(&self, shared: &Shared, message: &str) -> usize {
        self.pending()
            .iter()
            .filter(|item| {
                !item.is_done()
                    && dispatch::finish(
                        shared,
                        item,
                        Outcome::failed(Status::PORTWAY_CANCELLED, message),
                    )
            })
            .count()
    }

    /// Counts off one completed item; the last one assembles the results and completes the
    /// batch.
    fn item_done(&self, shared: &Shared) {
        if self.remaining.fetch_sub(1, AcqRel) == 1 {
            self.assemble(shared);
        }
    }

    /// Builds the columns from every item's outcome, completes the batch's own request and
    /// gives the items' memory back.
    fn assemble(&self, shared: &Shared) {
        // Every item's outcome was written before its `remaining` decrement, which the last
        // decrement (acquire) has seen: reading them here is ordered after those writes.
        let items = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        let outcomes: Vec<Option<&Outcome>> = items.iter().map(|r| r.outcome()).collect();
        let total: usize = outcomes.iter().flatten().map(|o| o.data.len()).sum();
        let mut cols = BatchColumns {
            statuses: Vec::with_capacity(items.len()),
            codes: Vec::with_capacity(items.len()),
            offsets: Vec::with_capacity(items.len() + 1),
            data: Vec::with_capacity(total + 1),
            meta_offsets: Vec::with_capacity(items.len() + 1),
            meta: Meta::from_byte_pairs(|| {
                outcomes.iter().flatten().flat_map(|o| o.meta.byte_pairs())
            }),
            failures: 0,
        };
        cols.offsets.push(0);
        cols.meta_offsets.push(0);
        let mut pairs = 0u64;
        for outcome in &outcomes {
            let (status, code, bytes, n_meta) = match outcome {
                Some(o) => (o.status, o.code, o.data.as_slice(), o.meta.len()),
                // Unreachable: an item is counted off only after its outcome was written.
                None => (Status::PORTWAY_INTERNAL, 0, &b"item has no outcome"[..], 0),
            };
            if status != Status::PORTWAY_OK {
                cols.failures += 1;
            }
            cols.statuses.push(status);
            cols.codes.push(code);
            cols.data.extend_from_slice(bytes);
            cols.offsets.push(cols.data.len() as u64);
            pairs += n_meta as u64;
            cols.meta_offsets.push(pairs);
        }
        // A NUL after the last item, not counted by any offset: C may print the last item's
        // bytes (and a one-item batch's) directly, as it prints a completion's.
        cols.data.push(0);
        if shared.config.metrics {
            let timings = items.iter().zip(&cols.statuses).map(|(r, &s)| {
                let (queued, ran) = r.timings();
                (s, queued, ran)
            });
            self.handler.metrics.record(timings);
        }
        drop(outcomes);
        let failures = cols.failures;
        let _ = self.results.set(Arc::new(cols));
        // The batch's own request is in the ledger from before its first item started until
        // it is released, which needs this completion: it is found unless the engine is
        // being torn down.
        if let Some(own) = shared.ledger.get(self.id)
            && own.claim_batch(Outcome::ok(Vec::new()).with_code(failures))
        {
            shared.queue.push(std::iter::once(own));
        }
        shared.recycler.give(items);
    }
}

/// Hands a completed item to its batch (nothing, once the engine let go of the batch).
pub(crate) fn deliver(shared: &Shared, batch: Weak<Batch>) {
    if let Some(batch) = batch.upgrade() {
        batch.item_done(shared);
    }
}

/// The results of a completed batch, in submit order. Holding it keeps them alive.
#[derive(Clone, Debug)]
pub struct BatchItems(Arc<BatchColumns>);

impl BatchItems {
    /// Number of items.
    pub fn len(&self) -> usize {
        self.0.statuses.len()
    }

    /// True for a batch of no items (never: a batch has at least one).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Item `i`'s status (panics when `i` is out of range, like indexing).
    pub fn status(&self, i: usize) -> Status {
        self.0.statuses[i]
    }

    /// Item `i`'s handler code.
    pub fn code(&self, i: usize) -> u32 {
        self.0.codes[i]
    }

    /// Item `i`'s bytes: the response, or the error message when its status is not OK.
    pub fn data(&self, i: usize) -> &[u8] {
        let (a, b) = (self.0.offsets[i], self.0.offsets[i + 1]);
        &self.0.data[a as usize..b as usize]
    }

    /// Item `i`'s metadata pairs (a key or value that is not UTF-8 reads as "").
    pub fn meta(&self, i: usize) -> impl Iterator<Item = (&str, &str)> {
        let (a, b) = (self.0.meta_offsets[i], self.0.meta_offsets[i + 1]);
        self.0.meta.pairs().skip(a as usize).take((b - a) as usize)
    }

    /// Items whose status is not OK.
    pub fn failures(&self) -> u32 {
        self.0.failures
    }

    /// The columns, for the C view.
    pub(crate) fn columns(&self) -> &BatchColumns {
        &self.0
    }
}

impl Completion<'_> {
    /// The items of a batch completion ([`Engine::submit_items`]); None for any other.
    pub fn batch(&self) -> Option<BatchItems> {
        self.req.batch()?.results.get().cloned().map(BatchItems)
    }
}

impl Engine {
    /// Submits `payloads` to `handler` as one batch and returns the batch's id. Each payload
    /// is a request of its own (one slot each, deadline `timeout_ms` from now, 0 = the engine
    /// default; its handler sees `user_data` and the id `batch id + 1 + i`), but the batch
    /// gets exactly one completion, once every item has completed: status OK (whatever the
    /// items' statuses), `user_data`, code = the number of items that failed; read the items
    /// with [`Completion::batch`] or [`Engine::batch_items`]. Accepted whole or not at all:
    /// `Busy` when fewer than `payloads.len()` slots are free; `InvalidArgument` for an empty
    /// batch, one above `max_in_flight`, or an item its handler refuses; `PayloadTooLarge`,
    /// `UnknownHandler`, `Shutdown` as for [`Engine::submit`]. [`Engine::cancel`] of the
    /// batch id cancels every item not yet completed.
    pub fn submit_items(
        &self,
        handler: u32,
        payloads: &[&[u8]],
        timeout_ms: u32,
        user_data: u64,
    ) -> Result<u64> {
        self.check_fork()?;
        let n = payloads.len();
        self.shared.counters.submitted.fetch_add(n as u64, Relaxed);
        let refuse = |e: Error| {
            self.count_rejection(&e, n);
            Err(e)
        };
        let entry = match self.check_items(handler, payloads) {
            Ok(entry) => entry,
            Err(e) => return refuse(e),
        };
        if let Err(e) = self.shared.queue.reserve(1) {
            return refuse(e);
        }
        if !self.shared.ledger.try_acquire_all(n as u64) {
            self.shared.queue.unreserve(1);
            return refuse(Error::Busy(self.shared.ledger.max_in_flight()));
        }
        let id = self.shared.next_id.fetch_add(n as u64 + 1, Relaxed);
        let now = Instant::now();
        if self.shared.config.metrics {
            entry.metrics.count_submitted(n as u64);
        }
        let batch = Arc::new(Batch {
            id,
            handler: entry.clone(),
            len: n,
            pending: Mutex::new(Vec::new()),
            remaining: AtomicUsize::new(n),
            results: OnceLock::new(),
        });
        let link = Arc::downgrade(&batch);
        let mut spares = Vec::with_capacity(n);
        self.shared.recycler.take(n, &mut spares);
        let items: Vec<(Arc<Request>, Vec<u8>)> = payloads
            .iter()
            .enumerate()
            .map(|(i, payload)| {
                let sub = Submission {
                    handler,
                    timeout_ms,
                    user_data,
                    payload,
                };
                let item_id = id + 1 + i as u64;
                self.new_request(item_id, &sub, entry.clone(), now, spares.pop(), Some(&link))
            })
            .collect();
        drop(spares);
        *batch.pending.lock().unwrap_or_else(|e| e.into_inner()) =
            items.iter().map(|(req, _)| req.clone()).collect();
        let own = Request::new_batch(id, user_data, entry, now, batch);
        // In the ledger before any item starts: the last item to complete looks it up there.
        self.shared.ledger.insert([Arc::new(own)]);
        self.cancel_if_cancelling(items.iter().map(|(req, _)| req));
        let timed = items.iter().map(|(req, _)| req);
        self.shared
            .timers
            .deadlines(timed.filter(|req| !completes_inline(req)));
        let mut handoff = Handoff::new(&self.shared, n);
        for (req, payload) in items {
            // An item never comes back to be queued: its completion goes to the batch.
            let _ = self.start_request(req, Payload::Owned(payload), &mut handoff);
        }
        handoff.flush();
        self.shared.counters.accepted.fetch_add(n as u64, Relaxed);
        Ok(id)
    }

    /// The handler a batch addresses, once every item is known to be acceptable.
    fn check_items(&self, handler: u32, payloads: &[&[u8]]) -> Result<Arc<HandlerEntry>> {
        let n = payloads.len();
        if n == 0 {
            return Err(Error::invalid("a batch needs at least one item"));
        }
        let max = self.shared.ledger.max_in_flight();
        if n as u64 > max {
            return Err(Error::invalid(format!(
                "a batch of {n} items is more than max_in_flight ({max}): split it"
            )));
        }
        let entry = self.shared.registry.get(handler)?;
        let max_payload = self.shared.config.max_payload;
        for (i, payload) in payloads.iter().enumerate() {
            if payload.len() as u64 > max_payload {
                return Err(Error::PayloadTooLarge {
                    len: payload.len(),
                    max: max_payload,
                });
            }
            validate_first_stage(&entry, payload).map_err(|e| match e {
                Error::InvalidArgument(m) => Error::invalid(format!("item {i}: {m}")),
                e => e,
            })?;
        }
        Ok(entry)
    }

    /// The items of the polled, unreleased batch completion `id`. `InvalidArgument` when `id`
    /// is not a batch, not yet polled, or already released.
    pub fn batch_items(&self, id: u64) -> Result<BatchItems> {
        self.check_fork()?;
        let not_batch = || Error::invalid(format!("{id} is not a polled, unreleased batch"));
        let own = self.shared.ledger.get(id).ok_or_else(not_batch)?;
        if !own.is_polled() {
            return Err(not_batch());
        }
        let batch = own.batch().ok_or_else(not_batch)?;
        batch
            .results
            .get()
            .cloned()
            .map(BatchItems)
            .ok_or_else(not_batch)
    }
}
