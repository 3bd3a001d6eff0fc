//! Taking completions out: poll (showing each once, outside the queue lock), release, and the
//! notify fd, hook and wake.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::Engine;
use super::queue::{NotifyHook, PollEnd};
use super::registry::HandlerEntry;
use super::request::Request;
use super::types::{Completion, OwnedCompletion, Polled};
use crate::error::{Error, Result};
use crate::status::Status;

impl Engine {
    /// Waits up to `timeout` (None = forever) for completions and shows up to `cap` of them to
    /// `f` (outside the queue lock: a slow `f` never holds up the threads posting completions).
    /// Each completion is shown once; `f` may release it (or any other) while it looks at it:
    /// the release takes effect at once (slot, ledger) but the completion's memory is freed
    /// only after `f` returns, so a `Completion` is valid for the whole call of `f`.
    pub fn poll(
        &self,
        cap: usize,
        timeout: Option<Duration>,
        f: impl FnMut(usize, Completion<'_>),
    ) -> Result<Polled> {
        self.poll_min(cap, 1, timeout, f)
    }

    /// Like [`Engine::poll`], but waits until at least `min` completions are ready, or fewer
    /// when every request accepted and not yet polled has completed (so a `min` above the work
    /// in flight never waits forever). A timeout or a wake still ends the wait early. Hosts
    /// that keep many requests in flight use it to take completions in batches, one wake-up
    /// per batch. `min` must be between 1 and `cap`.
    pub fn poll_min(
        &self,
        cap: usize,
        min: usize,
        timeout: Option<Duration>,
        mut f: impl FnMut(usize, Completion<'_>),
    ) -> Result<Polled> {
        self.check_fork()?;
        if cap == 0 {
            return Err(Error::invalid("poll capacity must be at least 1"));
        }
        if min == 0 || min > cap {
            return Err(Error::invalid(
                "poll minimum must be at least 1 and at most the capacity",
            ));
        }
        let metrics = self.shared.config.metrics;
        let mut recorded = PolledRecorder::default();
        // Requests the host released while `f` was looking at them: freed here, after `f`.
        let mut released_while_shown: Vec<Arc<Request>> = Vec::new();
        // A batch counts as its items in the stats (its items were counted as accepted).
        let mut batch_items = 0u64;
        let busy = || self.shared.pool_busy.count() as usize;
        let end = self.shared.queue.poll(cap, min, timeout, busy, |i, req| {
            if req.is_batch() {
                batch_items += req.slots().saturating_sub(1);
            }
            let released = req.show(|req, outcome| {
                // A batch's items were recorded when it was assembled.
                if metrics && !req.is_batch() {
                    let (queued, ran) = req.timings();
                    recorded.add(&req.handler, outcome.status, queued, ran);
                }
                f(i, Completion { req, outcome });
            });
            released_while_shown.extend(released);
        });
        recorded.flush();
        if !released_while_shown.is_empty() {
            self.shared.recycler.give(released_while_shown);
        }
        match end {
            PollEnd::Taken(n) => {
                let polled = n as u64 + batch_items;
                self.shared.counters.polled.fetch_add(polled, Relaxed);
                Ok(Polled::Ready(n))
            }
            PollEnd::Closed => Ok(Polled::Closed),
        }
    }

    /// Releases completions by id, freeing their slots. Ids that are unknown, not yet polled
    /// or already released are ignored. A completion a poll is showing right now (inside its
    /// callback, on this thread or another) is released too, and its memory is freed when
    /// that poll is done with it. Returns how many were released.
    pub fn release(&self, ids: impl IntoIterator<Item = u64>) -> Result<usize> {
        self.check_fork()?;
        let (n, slots) = self.shared.recycler.release(&self.shared.ledger, ids);
        self.shared.counters.released.fetch_add(slots, Relaxed);
        Ok(n)
    }

    /// Polls and releases in one step, copying the completions out.
    pub fn poll_owned(
        &self,
        cap: usize,
        timeout: Option<Duration>,
    ) -> Result<(Vec<OwnedCompletion>, bool)> {
        let mut out = Vec::new();
        let end = self.poll(cap, timeout, |_, c| {
            out.push(OwnedCompletion {
                id: c.id(),
                user_data: c.user_data(),
                status: c.status(),
                code: c.code(),
                data: c.data().as_slice().to_vec(),
                meta: c
                    .meta()
                    .pairs()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            })
        })?;
        self.release(out.iter().map(|c| c.id))?;
        Ok((out, end == Polled::Closed))
    }

    /// The notify descriptor: readable while completions wait to be polled (or once closed).
    pub fn notify_fd(&self) -> Result<i32> {
        self.check_fork()?;
        Ok(self.shared.queue.fd())
    }

    /// Installs (or clears) a hook called when completions become ready after none were.
    /// Returns once the hook it replaced is no longer running (at once from inside a hook).
    pub fn set_notify(&self, hook: Option<NotifyHook>) -> Result<()> {
        self.check_fork()?;
        self.shared.queue.set_hook(hook);
        Ok(())
    }

    /// Makes one blocked poll return with no completions.
    pub fn wake(&self) -> Result<()> {
        self.check_fork()?;
        self.shared.queue.wake();
        Ok(())
    }
}

/// Gathers the timings of polled completions and records them into their handlers' metrics
/// after the queue lock is released: one histogram lock per run of equal handlers.
#[derive(Default)]
struct PolledRecorder {
    runs: Vec<(Arc<HandlerEntry>, Vec<Sample>)>,
}

/// One polled completion's (status, queue wait ns, run ns).
type Sample = (Status, u64, u64);

impl PolledRecorder {
    fn add(&mut self, handler: &Arc<HandlerEntry>, status: Status, queued: u64, ran: u64) {
        match self.runs.last_mut() {
            Some((h, items)) if Arc::ptr_eq(h, handler) => items.push((status, queued, ran)),
            _ => {
                let mut items = Vec::with_capacity(64);
                items.push((status, queued, ran));
                self.runs.push((handler.clone(), items));
            }
        }
    }

    fn flush(self) {
        for (handler, items) in self.runs {
            handler.metrics.record(items);
        }
    }
}
