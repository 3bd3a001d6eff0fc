//! The operations of a program that call the C ABI (submit, batch, cancel, poll, release,
//! shutdown, absurd counts), each checked against the model as it returns.

use std::ptr;

use super::model::*;
use super::{Input, Run};
use crate::ffi::*;
use crate::status::Status;

impl Run {
    pub(super) fn submit(&mut self, input: &mut Input<'_>, wait: bool) {
        let offer = self.offer(input);
        let req = offer.request();
        let wait_ms = [0i32, 1, 2, -2][usize::from(input.below(4))];
        let mut id = 0u64;
        // SAFETY: a live engine, a request whose payload pointer/length are truthful.
        let status = unsafe {
            if wait {
                portway_submit_wait(self.eng, &req, wait_ms, &mut id)
            } else {
                portway_submit(self.eng, &req, &mut id)
            }
        };
        // Both are refused by the C layer, before the engine counts an offer.
        let too_large = offer.claimed_len() as u64 > self.max_payload;
        let refused_early = (offer.null_with_len && !too_large) || (wait && wait_ms < -1);
        if !refused_early {
            self.offered += 1;
        }
        if status == Status::PORTWAY_OK {
            self.accepted(offer, Some(id));
        } else {
            assert_eq!(id, 0, "out_id written on failure");
            if wait && wait_ms < -1 {
                refused(status, &[Status::PORTWAY_INVALID_ARGUMENT], "submit_wait");
            } else {
                self.refused(&offer, status);
            }
        }
    }

    pub(super) fn submit_batch(&mut self, input: &mut Input<'_>) {
        let n = usize::from(input.below(9));
        let offers: Vec<Offer> = (0..n).map(|_| self.offer(input)).collect();
        let reqs: Vec<portway_request> = offers.iter().map(Offer::request).collect();
        let with_ids = !input.byte().is_multiple_of(3);
        let mut ids = vec![0u64; n + usize::from(input.below(2))];
        let reqs_ptr = if n == 0 && input.byte().is_multiple_of(2) {
            ptr::null()
        } else {
            reqs.as_ptr()
        };
        let mut accepted = usize::MAX;
        // SAFETY: `reqs_ptr` holds `n` requests with truthful payloads; `ids` has room for `n`.
        let status = unsafe {
            portway_submit_batch(
                self.eng,
                reqs_ptr,
                n,
                if with_ids {
                    ids.as_mut_ptr()
                } else {
                    ptr::null_mut()
                },
                &mut accepted,
            )
        };
        // The batch is read up to its first payload too large to read: a NULL payload with a
        // length before that one makes the whole call invalid; one after it is never read.
        let max = self.max_payload;
        let readable = offers
            .iter()
            .take_while(|o| !o.null_with_len && o.claimed_len() as u64 <= max)
            .count();
        if offers
            .get(readable)
            .is_some_and(|o| o.null_with_len && o.claimed_len() as u64 <= max)
        {
            assert_eq!(status, Status::PORTWAY_INVALID_ARGUMENT);
            assert_eq!(
                accepted,
                usize::MAX,
                "out_accepted written for invalid arguments"
            );
            assert!(!last_error().is_empty());
            return;
        }
        // BUSY and SHUTDOWN decide every request after the stop; any other refusal decides
        // the refused one alone (the engine does not count the rest).
        let whole = matches!(
            status,
            Status::PORTWAY_OK | Status::PORTWAY_BUSY | Status::PORTWAY_SHUTDOWN
        );
        self.offered += if whole { n } else { accepted + 1 } as u64;
        assert!(accepted <= n, "{accepted} of {n} accepted");
        assert_eq!(status == Status::PORTWAY_OK, accepted == n, "{status:?}");
        let mut offers = offers.into_iter();
        for (i, offer) in offers.by_ref().take(accepted).enumerate() {
            self.accepted(offer, with_ids.then(|| ids[i]));
        }
        if let Some(stopper) = offers.next() {
            self.refused(&stopper, status);
        }
    }

    /// An id to cancel: one handed out, one never handed out, or 0.
    pub(super) fn some_id(&self, input: &mut Input<'_>) -> u64 {
        match input.below(3) {
            0 if !self.ids.is_empty() => {
                let i = usize::from(input.byte()) % self.ids.len();
                *self.ids.iter().nth(i).unwrap_or(&0)
            }
            1 => (1 << 40) + input.u64() % (1 << 20),
            _ => 0,
        }
    }

    pub(super) fn cancel(&mut self, input: &mut Input<'_>) {
        let id = self.some_id(input);
        // SAFETY: a live engine.
        let status = unsafe { portway_cancel(self.eng, id) };
        let polled = self
            .unreleased
            .iter()
            .chain(&self.released)
            .any(|c| c.id == id);
        if !self.ids.contains(&id) || polled {
            assert_eq!(status, Status::PORTWAY_NOT_FOUND, "cancel of id {id}");
        } else {
            assert!(
                matches!(status, Status::PORTWAY_OK | Status::PORTWAY_NOT_FOUND),
                "cancel: {status:?}"
            );
        }
    }

    pub(super) fn cancel_all(&mut self) {
        // SAFETY: a live engine.
        let status = unsafe { portway_cancel_all(self.eng) };
        assert_eq!(status, Status::PORTWAY_OK, "{}", last_error());
    }

    /// `portway_poll_min` with a buffer of exactly `cap` records; returns how many came.
    pub(super) fn poll(&mut self, cap: usize, min: usize, timeout_ms: i32) -> usize {
        let mut out = vec![blank(); cap];
        let mut n = usize::MAX;
        let out_ptr = if cap == 0 {
            ptr::null_mut()
        } else {
            out.as_mut_ptr()
        };
        // SAFETY: `out` has room for `cap` records.
        let status = unsafe { portway_poll_min(self.eng, out_ptr, cap, min, timeout_ms, &mut n) };
        match status {
            Status::PORTWAY_OK => {
                assert!(n <= cap, "{n} completions in a buffer of {cap}");
                for c in &out[..n] {
                    self.completed(c);
                }
                self.unreleased.extend_from_slice(&out[..n]);
                n
            }
            Status::PORTWAY_CLOSED => {
                assert!(self.shut_down, "CLOSED before shutdown");
                assert_eq!(n, usize::MAX, "out_n written with CLOSED");
                assert!(
                    self.all_completed(),
                    "CLOSED before every request completed"
                );
                self.closed = true;
                0
            }
            other => {
                assert!(cap == 0 || min == 0 || min > cap || timeout_ms < -1);
                refused(other, &[Status::PORTWAY_INVALID_ARGUMENT], "poll");
                0
            }
        }
    }

    pub(super) fn release(&mut self, input: &mut Input<'_>) {
        let mut batch = Vec::new();
        let mask = input.byte();
        let mut keep = Vec::new();
        for (i, c) in self.unreleased.drain(..).enumerate() {
            if mask & (1 << (i % 8)) != 0 {
                batch.push(c);
            } else {
                keep.push(c);
            }
        }
        self.unreleased = keep;
        let released_now = batch.len();
        let extra = input.byte();
        if extra & 1 != 0
            && let Some(&old) = self.released.last()
        {
            batch.push(old); // released before: ignored
        }
        if extra & 2 != 0 {
            let id = self.some_id(input);
            if !self.unreleased.iter().any(|c| c.id == id) {
                // Never polled or unknown: ignored.
                batch.push(portway_completion { id, ..blank() });
            }
        }
        let ptr = if batch.is_empty() && extra & 4 != 0 {
            ptr::null()
        } else {
            batch.as_ptr()
        };
        // SAFETY: `batch` holds `batch.len()` records.
        let status = unsafe { portway_release(self.eng, ptr, batch.len()) };
        assert_eq!(status, Status::PORTWAY_OK, "{}", last_error());
        self.released.extend(batch.into_iter().take(released_now));
    }

    pub(super) fn shutdown(&mut self, input: &mut Input<'_>) {
        let mode = u32::from(input.below(3));
        let deadline = u32::from(input.below(4));
        // SAFETY: a live engine.
        let status = unsafe { portway_engine_shutdown(self.eng, mode, deadline) };
        if mode > 1 {
            refused(status, &[Status::PORTWAY_INVALID_ARGUMENT], "shutdown");
        } else {
            assert_eq!(status, Status::PORTWAY_OK, "{}", last_error());
            self.shut_down = true;
        }
    }

    pub(super) fn stats(&self) -> portway_stats_record {
        let mut s = portway_stats_record::default();
        // SAFETY: a live engine and a writable record.
        assert_eq!(
            unsafe { portway_stats(self.eng, &mut s) },
            Status::PORTWAY_OK
        );
        s
    }

    /// Calls with counts and lengths far beyond their (real, small) buffers; each must be
    /// refused with `PORTWAY_INVALID_ARGUMENT` or `PORTWAY_PAYLOAD_TOO_LARGE` and a message.
    pub(super) fn absurd(&mut self, input: &mut Input<'_>) {
        const HUGE: [usize; 4] = [usize::MAX, usize::MAX / 2, 1 << 60, isize::MAX as usize + 1];
        let n = HUGE[usize::from(input.below(4))];
        let buf = [0u8; 64];
        let reqs = [portway_request {
            handler: self.echo,
            timeout_ms: 0,
            user_data: 0,
            payload: buf.as_ptr(),
            payload_len: 1,
        }];
        let mut id = 0u64;
        let mut accepted = usize::MAX;
        // SAFETY: deliberately not: each count lies about its buffer; the library must refuse
        // it before forming any slice.
        let status = unsafe {
            match input.below(4) {
                0 => {
                    let req = portway_request {
                        payload_len: n,
                        ..reqs[0]
                    };
                    portway_submit(self.eng, &req, &mut id)
                }
                1 => {
                    portway_submit_batch(self.eng, reqs.as_ptr(), n, ptr::null_mut(), &mut accepted)
                }
                2 => portway_release(
                    self.eng,
                    ptr::null::<portway_completion>().wrapping_add(1),
                    n,
                ),
                _ => {
                    let stages = [self.echo];
                    let mut out = 0;
                    portway_pipeline_new(self.eng, c"absurd".as_ptr(), stages.as_ptr(), n, &mut out)
                }
            }
        };
        refused(
            status,
            &[
                Status::PORTWAY_INVALID_ARGUMENT,
                Status::PORTWAY_PAYLOAD_TOO_LARGE,
            ],
            "absurd count",
        );
        assert_eq!(id, 0);
        assert!(accepted == usize::MAX || accepted == 0);
        // Whether such a call counts as offered depends on the layer that refuses it.
        self.offered = self.stats().submitted;
    }
}
