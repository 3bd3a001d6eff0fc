//! The submit path: resolve the handler and check the payload, reserve intake, take slots,
//! make the requests, arm their deadlines and start them. Never blocks, except
//! [`Engine::submit_wait`] for a slot.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::Engine;
use super::batch::{self, Batch};
use super::dispatch;
use super::handoff::Handoff;
use super::lend::{LentBytes, Payload};
use super::recycle::Spare;
use super::registry::{HandlerEntry, HandlerKind};
use super::request::Request;
use super::types::Submission;
use crate::contract::Outcome;
use crate::error::{Error, Result};
use crate::status::Status;

impl Engine {
    /// Submits one request; never blocks. Returns its id.
    pub fn submit(&self, req: &Submission<'_>) -> Result<u64> {
        let mut id = [0u64];
        let (_, result) = self.submit_batch(std::slice::from_ref(req), Some(&mut id));
        result.map(|()| id[0])
    }

    /// Submits the longest acceptable prefix of `reqs`. Returns how many were accepted and
    /// `Ok` when all were, else the error that stopped the batch. Ids go to `out_ids`. The
    /// stats count the requests decided: after a request refused for itself (unknown handler,
    /// payload) the rest were not looked at and are not counted; `Busy` and `Shutdown` refuse
    /// and count every request from the first not accepted.
    pub fn submit_batch(
        &self,
        reqs: &[Submission<'_>],
        out_ids: Option<&mut [u64]>,
    ) -> (usize, Result<()>) {
        self.submit_batch_with(reqs, out_ids, false)
    }

    /// Like [`Engine::submit_batch`], but the payloads of the accepted requests are lent, not
    /// copied: a native (pool) handler reads them in place (any other handler gets a copy made
    /// here). The engine reads no lent payload once its request's completion can be polled: a
    /// request that times out or is cancelled while its handler runs is completed when the
    /// handler returns. Payloads of requests not accepted are not read after this returns.
    ///
    /// # Safety
    /// The payload of each accepted request must stay valid and unmodified until its completion
    /// has been polled, or until the engine is dropped if it never is.
    pub unsafe fn submit_batch_lent(
        &self,
        reqs: &[Submission<'_>],
        out_ids: Option<&mut [u64]>,
    ) -> (usize, Result<()>) {
        self.submit_batch_with(reqs, out_ids, true)
    }

    fn submit_batch_with(
        &self,
        reqs: &[Submission<'_>],
        out_ids: Option<&mut [u64]>,
        lend: bool,
    ) -> (usize, Result<()>) {
        if let Err(e) = self.check_fork() {
            return (0, Err(e));
        }
        if let Some(ids) = out_ids.as_deref()
            && ids.len() < reqs.len()
        {
            return (0, Err(Error::invalid("out_ids is shorter than the batch")));
        }
        let c = &self.shared.counters;
        let (entries, invalid) = self.resolve(reqs);
        let valid = entries.len();
        // A request's own refusal decides that request alone: the ones after it were not
        // looked at and are not counted (the caller may offer them again, as the Node
        // binding's coalescing does). BUSY and SHUTDOWN below decide every later one too.
        let decided = valid + usize::from(invalid.is_some());
        c.submitted.fetch_add(decided as u64, Relaxed);
        let refuse_rest = |e: &Error, granted: usize| {
            c.submitted
                .fetch_add((reqs.len() - decided) as u64, Relaxed);
            self.count_rejection(e, reqs.len() - granted);
        };
        let mut stop = invalid;
        if valid == 0 {
            if let Some(e) = &stop {
                self.count_rejection(e, 1);
            }
            return (0, stop.map_or(Ok(()), Err));
        }
        if let Err(e) = self.shared.queue.reserve(valid as u64) {
            refuse_rest(&e, 0);
            return (0, Err(e));
        }
        let granted = self.shared.ledger.try_acquire(valid as u64) as usize;
        if granted < valid {
            self.shared.queue.unreserve((valid - granted) as u64);
            let busy = Error::Busy(self.shared.ledger.max_in_flight());
            refuse_rest(&busy, granted);
            stop = Some(busy);
        } else if let Some(e) = &stop {
            self.count_rejection(e, 1);
        }
        let first_id = self.shared.next_id.fetch_add(granted as u64, Relaxed);
        let now = Instant::now();
        let mut inline_done = Vec::new();
        if self.shared.config.metrics {
            count_submitted_by_handler(&entries[..granted]);
        }
        let mut spares = Vec::with_capacity(granted);
        self.shared.recycler.take(granted, &mut spares);
        let accepted: Vec<(Arc<Request>, Vec<u8>)> = reqs
            .iter()
            .zip(entries)
            .take(granted)
            .enumerate()
            .map(|(i, (sub, entry))| {
                let id = first_id + i as u64;
                if lend && lends_to(sub, &entry) {
                    self.new_lent_request(id, sub, entry, now, spares.pop())
                } else {
                    self.new_request(id, sub, entry, now, spares.pop(), None)
                }
            })
            .collect();
        if let Some(ids) = out_ids {
            for (slot, (req, _)) in ids.iter_mut().zip(&accepted) {
                *slot = req.id;
            }
        }
        // Every request is in the ledger before any starts: one that completes at once can be
        // polled and released only once the ledger knows it.
        self.shared
            .ledger
            .insert(accepted.iter().map(|(req, _)| req.clone()));
        self.cancel_if_cancelling(accepted.iter().map(|(req, _)| req));
        let timed = accepted.iter().map(|(req, _)| req);
        self.shared
            .timers
            .deadlines(timed.filter(|req| !completes_inline(req)));
        let mut handoff = Handoff::new(&self.shared, granted);
        for ((req, buf), sub) in accepted.into_iter().zip(reqs) {
            let payload = if req.lend().is_lent() {
                // SAFETY: only `submit_batch_lent` lends (`new_lent_request`), whose caller
                // keeps the bytes valid and unmodified until the completion is polled.
                let bytes = unsafe { LentBytes::new(sub.payload) };
                Payload::Lent { bytes, spare: buf }
            } else {
                Payload::Owned(buf)
            };
            if let Some(req) = self.start_request(req, payload, &mut handoff) {
                inline_done.push(req);
            }
        }
        handoff.flush();
        c.accepted.fetch_add(granted as u64, Relaxed);
        self.shared.queue.push(inline_done);
        (granted, stop.map_or(Ok(()), Err))
    }

    /// Submits one request, waiting up to `wait` (None = forever) for a free slot.
    pub fn submit_wait(&self, sub: &Submission<'_>, wait: Option<Duration>) -> Result<u64> {
        self.check_fork()?;
        self.shared.counters.submitted.fetch_add(1, Relaxed);
        let (mut entries, invalid) = self.resolve(std::slice::from_ref(sub));
        let Some(entry) = entries.pop() else {
            let e = invalid.unwrap_or_else(|| Error::Internal("resolve returned nothing".into()));
            self.count_rejection(&e, 1);
            return Err(e);
        };
        if let Err(e) = self.shared.queue.reserve(1) {
            self.count_rejection(&e, 1);
            return Err(e);
        }
        let deadline = wait.map(|w| Instant::now() + w);
        let queue = &self.shared.queue;
        if !self
            .shared
            .ledger
            .acquire_wait(deadline, || queue.is_shutting_down())
        {
            queue.unreserve(1);
            let e = if queue.is_shutting_down() {
                Error::Shutdown
            } else {
                Error::Busy(self.shared.ledger.max_in_flight())
            };
            self.count_rejection(&e, 1);
            return Err(e);
        }
        let id = self.shared.next_id.fetch_add(1, Relaxed);
        if self.shared.config.metrics {
            entry.metrics.count_submitted(1);
        }
        let (req, payload) = self.new_request(id, sub, entry, Instant::now(), None, None);
        self.shared.ledger.insert([req.clone()]);
        self.cancel_if_cancelling([&req]);
        if !completes_inline(&req) {
            self.shared.timers.deadlines([&req]);
        }
        let payload = Payload::Owned(payload);
        let inline = self.start_request(req, payload, &mut Handoff::new(&self.shared, 1));
        self.shared.counters.accepted.fetch_add(1, Relaxed);
        self.shared.queue.push(inline);
        Ok(id)
    }

    /// Cancels requests just recorded in the ledger when a cancel pass (a `CANCEL_NOW`
    /// shutdown, a drain deadline) began meanwhile: their intake was reserved before the
    /// shutdown, so they are accepted, but the pass's snapshot may not have seen them. Before
    /// they start, so none runs its handler.
    pub(super) fn cancel_if_cancelling<'r>(
        &self,
        reqs: impl IntoIterator<Item = &'r Arc<Request>>,
    ) {
        let Some(message) = self.shared.ledger.cancelling() else {
            return;
        };
        for req in reqs {
            dispatch::finish(
                &self.shared,
                req,
                Outcome::failed(Status::PORTWAY_CANCELLED, message),
            );
        }
    }

    /// Validates the prefix of `reqs` that can be accepted: handler exists, payload fits and
    /// the first stage accepts it.
    fn resolve(&self, reqs: &[Submission<'_>]) -> (Vec<Arc<HandlerEntry>>, Option<Error>) {
        let max = self.shared.config.max_payload;
        self.shared.registry.with_table(|get| {
            let mut out = Vec::with_capacity(reqs.len());
            for sub in reqs {
                let checked = get(sub.handler).and_then(|entry| {
                    if sub.payload.len() as u64 > max {
                        return Err(Error::PayloadTooLarge {
                            len: sub.payload.len(),
                            max,
                        });
                    }
                    validate_first_stage(&entry, sub.payload)?;
                    Ok(entry)
                });
                match checked {
                    Ok(entry) => out.push(entry),
                    Err(e) => return (out, Some(e)),
                }
            }
            (out, None)
        })
    }

    /// Counts `n` requests refused before they could be offered to [`Engine::submit_batch`]
    /// (the C boundary refuses a payload length above `max_payload` before reading it), so
    /// the stats read as if the engine had refused them itself.
    #[doc(hidden)]
    pub fn count_refused(&self, e: &Error, n: usize) {
        self.shared.counters.submitted.fetch_add(n as u64, Relaxed);
        self.count_rejection(e, n);
    }

    pub(super) fn count_rejection(&self, e: &Error, n: usize) {
        let c = &self.shared.counters;
        let counter = match e {
            Error::Busy(_) => &c.rejected_busy,
            Error::Shutdown => &c.rejected_shutdown,
            _ => &c.rejected_invalid,
        };
        counter.fetch_add(n as u64, Relaxed);
    }

    /// The record of an accepted request (its deadline counted from `now`) and its own copy of
    /// the payload (with room for the NUL an echo adds), made from a recycled request and
    /// buffer when there is one; an item of `batch` when given.
    pub(super) fn new_request(
        &self,
        id: u64,
        sub: &Submission<'_>,
        entry: Arc<HandlerEntry>,
        now: Instant,
        spare: Option<Spare>,
        batch: Option<&Weak<Batch>>,
    ) -> (Arc<Request>, Vec<u8>) {
        let timeout_ms = match sub.timeout_ms {
            0 => self.shared.config.default_timeout_ms,
            ms => ms,
        };
        let fresh = |entry| {
            let mut req = Request::new(id, sub.user_data, entry, now, timeout_ms);
            if let Some(b) = batch {
                req.join_batch(b.clone());
            }
            Arc::new(req)
        };
        // A spare is never shared: the recycler keeps only requests nothing else holds.
        let (req, mut payload) = match spare {
            Some(Spare { mut req, buf }) => match Arc::get_mut(&mut req) {
                Some(r) => {
                    r.renew(id, sub.user_data, entry, now, timeout_ms);
                    if let Some(b) = batch {
                        r.join_batch(b.clone());
                    }
                    (req, buf)
                }
                None => (fresh(entry), buf),
            },
            None => (fresh(entry), Vec::new()),
        };
        if !sub.payload.is_empty() {
            payload.reserve_exact(sub.payload.len() + 1);
            payload.extend_from_slice(sub.payload);
        }
        (req, payload)
    }

    /// Like [`Engine::new_request`], for a payload the host lends: nothing is copied, the
    /// request is marked lent, and the buffer returned is the spare one (for the response; the
    /// caller pairs it with the host's bytes when it starts the request).
    fn new_lent_request(
        &self,
        id: u64,
        sub: &Submission<'_>,
        entry: Arc<HandlerEntry>,
        now: Instant,
        spare: Option<Spare>,
    ) -> (Arc<Request>, Vec<u8>) {
        let nothing = Submission {
            payload: &[],
            ..*sub
        };
        let (mut req, buf) = self.new_request(id, &nothing, entry, now, spare, None);
        // A request just made or renewed is not shared yet.
        match Arc::get_mut(&mut req) {
            Some(r) => r.lend_payload(),
            None => unreachable!("a new request is shared"),
        }
        (req, buf)
    }

    /// Starts an accepted request already in the ledger. A request that completes inline (an
    /// inline handler no policy holds back, such as echo) is returned for the caller to queue
    /// with its batch (a batch item goes to its batch instead). A pool job goes to `handoff`.
    pub(super) fn start_request(
        &self,
        req: Arc<Request>,
        payload: Payload,
        handoff: &mut Handoff<'_>,
    ) -> Option<Arc<Request>> {
        if let Some(answer) = inline_answer(&req) {
            // Never lent: only a native handler's payload is (`lends_to`).
            let outcome = answer(payload.into_spent());
            let status = outcome.status;
            if let Some(won) = req.claim_inline(outcome) {
                let c = &self.shared.counters;
                c.count_started(1);
                c.count_completion(status, true);
                if let Some(b) = won.batch {
                    batch::deliver(&self.shared, b);
                    return None;
                }
                return Some(req);
            }
            return None;
        }
        dispatch::start(&self.shared, req, payload, handoff);
        None
    }
}

/// True when a lent payload of `sub` is read in place: it is not empty and the first stage
/// runs on the pool, the one reader of a lent payload (under the hand-off of `lend.rs`); every
/// other handler takes its bytes by value or keeps them past its completion, so it gets a copy.
fn lends_to(sub: &Submission<'_>, entry: &HandlerEntry) -> bool {
    fn native(entry: &HandlerEntry) -> bool {
        match &entry.kind {
            HandlerKind::Pipeline(stages) => stages.first().is_some_and(|s| native(s)),
            HandlerKind::Blocking(_) => true,
            _ => false,
        }
    }
    !sub.payload.is_empty() && native(entry)
}

/// Counts accepted requests per addressed handler, one atomic add per run of equal handlers.
fn count_submitted_by_handler(entries: &[Arc<HandlerEntry>]) {
    let mut i = 0;
    while i < entries.len() {
        let run = entries[i..]
            .iter()
            .take_while(|e| Arc::ptr_eq(e, &entries[i]))
            .count();
        entries[i].metrics.count_submitted(run as u64);
        i += run;
    }
}

/// True for requests that complete inside the submit call: they need no deadline.
pub(super) fn completes_inline(req: &Request) -> bool {
    inline_answer(req).is_some()
}

/// The answer of a request that completes inside the submit call: an inline handler that no
/// concurrency limit holds back.
fn inline_answer(req: &Request) -> Option<fn(Vec<u8>) -> Outcome> {
    match req.handler.kind {
        HandlerKind::Inline(answer) if req.handler.policies.holds_nothing_back() => Some(answer),
        _ => None,
    }
}

pub(super) fn validate_first_stage(entry: &HandlerEntry, payload: &[u8]) -> Result<()> {
    match &entry.kind {
        HandlerKind::Async(h) => h.validate(payload),
        HandlerKind::Pipeline(stages) => stages
            .first()
            .map_or(Ok(()), |s| validate_first_stage(s, payload)),
        HandlerKind::Delay(delay) => delay(payload).map(|_| ()),
        HandlerKind::Inline(_) | HandlerKind::Blocking(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::types::Submission;
    use super::super::{Config, Engine};
    use super::Status;
    use std::time::Duration;

    /// A submit that reserved intake before a `CANCEL_NOW` shutdown but records its request
    /// after the shutdown's cancel pass (simulated: the mark is set, intake stays open)
    /// cancels the request itself instead of running it past the shutdown.
    #[test]
    fn a_request_recorded_after_the_cancel_pass_is_cancelled() {
        let eng = Engine::new(Config::default()).unwrap();
        let sleep = eng.lookup("sleep").unwrap();
        eng.shared.ledger.cancel_from_now("cancelled by shutdown");
        let sub = Submission {
            handler: sleep,
            timeout_ms: 0,
            user_data: 0,
            payload: b"60000",
        };
        let ids = [
            eng.submit(&sub).unwrap(),
            eng.submit_wait(&sub, None).unwrap(),
        ];
        // Cancelled inside the submit calls: both are ready without waiting.
        let (seen, _) = eng.poll_owned(8, Some(Duration::ZERO)).unwrap();
        assert_eq!(seen.iter().map(|c| c.id).collect::<Vec<_>>(), ids);
        for c in &seen {
            assert_eq!(c.status, Status::PORTWAY_CANCELLED);
            assert_eq!(c.data, b"cancelled by shutdown");
        }
    }
}
