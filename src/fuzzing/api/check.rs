//! The checker: each polled completion against the model, the counters the model knows
//! exactly, and the end of a program (everything collected, every slot back, closed).

use std::ffi::CStr;
use std::ptr;
use std::time::{Duration, Instant};

use super::model::*;
use super::{Run, STUCK};
use crate::ffi::*;
use crate::status::Status;

impl Run {
    /// Checks one polled completion against the model.
    pub(super) fn completed(&mut self, c: &portway_completion) {
        if self.batches.contains_key(&c.user_data) {
            self.batch_completed(c);
            return;
        }
        let a = self
            .accepted
            .get_mut(&c.user_data)
            .unwrap_or_else(|| panic!("completion for user_data {} never accepted", c.user_data));
        assert!(!a.completed, "request {} completed twice", c.user_data);
        a.completed = true;
        assert_ne!(c.id, 0);
        if let Some(id) = a.id {
            assert_eq!(c.id, id, "completion id");
        } else {
            assert!(self.ids.insert(c.id), "completion id {} reused", c.id);
            a.id = Some(c.id);
        }
        let (kind, payload) = (a.kind, a.payload.clone());
        assert!(!c.data.is_null());
        // SAFETY: `data` holds `len` bytes and a NUL until the completion is released.
        let data = unsafe { std::slice::from_raw_parts(c.data, c.len + 1) };
        assert_eq!(data[c.len], 0, "data not NUL-terminated");
        assert_eq!(c.meta.is_null(), c.meta_len == 0);
        let meta = if c.meta_len == 0 {
            &[][..]
        } else {
            // SAFETY: `meta` holds `meta_len` pairs until the completion is released.
            unsafe { std::slice::from_raw_parts(c.meta, c.meta_len) }
        };
        let result = Outcome {
            status: c.status,
            code: c.code,
            data: &data[..c.len],
            meta,
        };
        self.check_outcome(kind, &payload, &result);
    }

    /// Checks one request's outcome (a completion's, or a batch item's) against what its
    /// handler promises for `payload`.
    pub(super) fn check_outcome(&self, kind: Kind, payload: &[u8], r: &Outcome<'_>) {
        let mut hedge_won = 0;
        for pair in r.meta {
            // SAFETY: each pair holds NUL-terminated strings while its owner is unreleased.
            let (k, v) = unsafe { (CStr::from_ptr(pair.key), CStr::from_ptr(pair.value)) };
            if (k, v) == (c"portway-hedge", c"won") && self.policies[&self.native].hedge_ever {
                hedge_won += 1;
                continue;
            }
            assert_eq!((k, v), (c"k", c"v"));
        }
        let status = r.status;
        let ok = status == Status::PORTWAY_OK as u32;
        // An open breaker on the handler (or a pipeline's stage) completes it UNAVAILABLE.
        let breakers: &[u32] = match kind {
            Kind::Echo => &[self.echo],
            Kind::Sleep => &[self.sleep],
            Kind::Native => &[self.native],
            Kind::Pipeline => &[self.pipeline, self.echo, self.native],
            Kind::Unknown => &[],
        };
        let unavailable = breakers.iter().any(|h| self.policies[h].breaker_ever);
        assert!(
            [
                Status::PORTWAY_OK,
                Status::PORTWAY_TIMEOUT,
                Status::PORTWAY_CANCELLED,
                Status::PORTWAY_HANDLER_ERROR,
            ]
            .iter()
            .any(|&s| s as u32 == status)
                || (unavailable && status == Status::PORTWAY_UNAVAILABLE as u32),
            "completion status {status}"
        );
        if !ok {
            assert!(!r.data.is_empty(), "status {status} without a message");
            return;
        }
        match kind {
            Kind::Echo => assert_eq!(r.data, payload),
            Kind::Sleep => assert!(r.data.is_empty()),
            Kind::Native | Kind::Pipeline => {
                let mode = native_mode(payload);
                assert!(mode != 2 && mode != 3, "native mode {mode} completed OK");
                assert_eq!(r.data, payload);
                assert!(hedge_won <= 1, "two hedge marks");
                assert_eq!(r.meta.len(), usize::from(mode == 1) + hedge_won);
                assert_eq!(r.code, if mode == 1 { 7 } else { 0 });
            }
            Kind::Unknown => unreachable!("never accepted"),
        }
    }

    /// Requests accepted: plain ones and batch items (what `portway_stats.accepted` counts).
    fn accepted_total(&self) -> u64 {
        self.accepted.len() as u64 + self.batch_items
    }

    /// Whether every accepted request and batch has completed.
    pub(super) fn all_completed(&self) -> bool {
        self.accepted.values().all(|a| a.completed) && self.batches.values().all(|b| b.completed)
    }

    /// The counters the model knows exactly (every submit ran on this thread).
    pub(super) fn check_counters(&self) {
        let s = self.stats();
        assert_eq!(s.accepted, self.accepted_total(), "accepted");
        assert_eq!(s.submitted, self.offered, "submitted");
        assert_eq!(
            s.submitted,
            s.accepted + s.rejected_busy + s.rejected_shutdown + s.rejected_invalid,
            "submitted = accepted + rejected: {s:?}"
        );
        let polled = self.accepted.values().filter(|a| a.completed).count() as u64;
        assert!(s.completed.iter().sum::<u64>() >= polled);
    }

    /// Polls until every accepted request has completed (or the engine closed).
    pub(super) fn collect_all(&mut self) {
        let start = Instant::now();
        while !self.closed && !self.all_completed() {
            assert!(start.elapsed() < STUCK, "completions never came");
            self.poll(8, 1, 10);
        }
    }

    pub(super) fn release_all(&mut self) {
        let batch = std::mem::take(&mut self.unreleased);
        // SAFETY: `batch` holds `batch.len()` records.
        let status = unsafe { portway_release(self.eng, batch.as_ptr(), batch.len()) };
        assert_eq!(status, Status::PORTWAY_OK);
        self.released.extend(batch);
    }

    /// Waits until the gauges say nothing is held (a cancelled native call may still be
    /// running for a moment after its completion was released).
    pub(super) fn wait_idle(&self) -> portway_stats_record {
        let start = Instant::now();
        loop {
            let s = self.stats();
            if s.in_flight == 0 && s.queued == 0 && s.running == 0 && s.ready == 0 {
                assert_eq!(s.unreleased, 0);
                return s;
            }
            assert!(start.elapsed() < STUCK, "slots still held: {s:?}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Ends the program: every request collected and released, every slot back (proved by
    /// filling them all again), then shutdown, drained to `PORTWAY_CLOSED`.
    pub(super) fn finish(mut self) {
        if !self.shut_down {
            self.cancel_all();
            self.collect_all();
            self.release_all();
            self.wait_idle();
            self.check_counters();
            self.lift_policies();
            let fill: Vec<Offer> = (0..self.max_in_flight)
                .map(|_| {
                    let user_data = self.next_user_data;
                    self.next_user_data += 1;
                    Offer {
                        kind: Kind::Echo,
                        handler: self.echo,
                        payload: b"fill".to_vec(),
                        null_with_len: false,
                        timeout_ms: 0,
                        user_data,
                    }
                })
                .collect();
            let reqs: Vec<portway_request> = fill.iter().map(Offer::request).collect();
            let mut accepted = 0;
            // SAFETY: `reqs` holds its requests with truthful payloads.
            let status = unsafe {
                portway_submit_batch(
                    self.eng,
                    reqs.as_ptr(),
                    reqs.len(),
                    ptr::null_mut(),
                    &mut accepted,
                )
            };
            assert_eq!(
                status,
                Status::PORTWAY_OK,
                "a slot leaked: {}",
                last_error()
            );
            self.offered += reqs.len() as u64;
            for offer in fill {
                self.accepted(offer, None);
            }
            // SAFETY: a live engine.
            let status = unsafe { portway_engine_shutdown(self.eng, PORTWAY_DRAIN, 0) };
            assert_eq!(status, Status::PORTWAY_OK);
            self.shut_down = true;
        } else {
            // Escalate whatever shutdown ran (a drain without deadline may wait on a long sleep).
            // SAFETY: a live engine.
            let status = unsafe { portway_engine_shutdown(self.eng, PORTWAY_CANCEL_NOW, 0) };
            assert_eq!(status, Status::PORTWAY_OK);
        }
        let start = Instant::now();
        while !self.closed {
            assert!(start.elapsed() < STUCK, "the engine never closed");
            self.poll(8, 8, 10);
        }
        self.release_all();
        let s = self.wait_idle();
        self.check_counters();
        assert_eq!(
            s.completed.iter().sum::<u64>(),
            self.accepted_total(),
            "completions posted vs accepted: {s:?}"
        );
        // SAFETY: the engine is live and freed once.
        unsafe { portway_engine_free(self.eng) };
    }
}
