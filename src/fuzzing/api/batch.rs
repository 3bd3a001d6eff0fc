//! Columnar batch operations of a program: `portway_batch_submit` (n payloads to one handler
//! as one unit, well formed or not) and `portway_batch_result` (on batch completions and on
//! anything else), with the checks the plain submits get: a batch is accepted whole or not at
//! all, its one completion comes exactly once, and its view holds exactly one outcome per item,
//! each what its handler promises.

use std::ptr;

use super::model::*;
use super::{Input, Run};
use crate::ffi::*;
use crate::status::Status;

impl Run {
    /// `portway_batch_submit` of 0–9 payloads to one handler (one of ours, or unknown), laid
    /// out after 0–2 leading bytes; sometimes with NULL offsets, decreasing offsets, NULL data
    /// or NULL `out_id`, which are refused before the engine and not counted.
    pub(super) fn batch_submit(&mut self, input: &mut Input<'_>) {
        let n = usize::from(input.below(10));
        let first = self.offer(input);
        let mut payloads = Vec::with_capacity(n);
        if n > 0 {
            payloads.push(first.payload.clone());
        }
        while payloads.len() < n {
            let shape = input.byte();
            payloads.push(payload(first.kind, shape, input));
        }
        let lead = usize::from(input.below(3));
        let mut data = vec![0xAAu8; lead];
        let mut offsets = vec![lead as u64];
        for p in &payloads {
            data.extend_from_slice(p);
            offsets.push(data.len() as u64);
        }
        let span = data.len() - lead;
        let flaw = input.byte() % 16;
        if flaw == 1 && n > 0 {
            offsets[0] = offsets[1] + 1; // decreasing at item 0
        }
        let offsets_ptr = if flaw == 0 {
            ptr::null()
        } else {
            offsets.as_ptr()
        };
        let data_ptr = if flaw == 2 {
            ptr::null()
        } else {
            data.as_ptr()
        };
        let mut id = 0u64;
        let out_id = if flaw == 3 {
            ptr::null_mut()
        } else {
            &raw mut id
        };
        // SAFETY: `data` and `offsets` are truthful (n + 1 offsets within `data`) unless NULL
        // or decreasing, which the library must refuse before reading through them.
        let status = unsafe {
            portway_batch_submit(
                self.eng,
                first.handler,
                data_ptr,
                offsets_ptr,
                n,
                first.timeout_ms,
                first.user_data,
                out_id,
            )
        };
        let malformed = n == 0 || flaw == 0 || flaw == 1 || (flaw == 2 && span > 0) || flaw == 3;
        if malformed {
            refused(
                status,
                &[Status::PORTWAY_INVALID_ARGUMENT],
                "batch_submit args",
            );
            assert_eq!(id, 0, "out_id written for invalid arguments");
            return;
        }
        self.offered += n as u64;
        let too_large = payloads.iter().any(|p| p.len() as u64 > self.max_payload);
        if status != Status::PORTWAY_OK {
            assert_eq!(id, 0, "out_id written on failure");
            let expected = if n > self.max_in_flight as usize {
                Some(Status::PORTWAY_INVALID_ARGUMENT)
            } else if first.kind == Kind::Unknown {
                Some(Status::PORTWAY_UNKNOWN_HANDLER)
            } else if too_large {
                Some(Status::PORTWAY_PAYLOAD_TOO_LARGE)
            } else {
                None
            };
            if let Some(e) = expected {
                assert_eq!(status, e, "batch of {n}: {}", last_error());
            }
            refused(
                status,
                &[
                    Status::PORTWAY_INVALID_ARGUMENT,
                    Status::PORTWAY_BUSY,
                    Status::PORTWAY_SHUTDOWN,
                    Status::PORTWAY_UNKNOWN_HANDLER,
                    Status::PORTWAY_PAYLOAD_TOO_LARGE,
                ],
                "batch_submit",
            );
            return;
        }
        assert!(!self.shut_down, "a batch was accepted after shutdown");
        assert_ne!(
            first.kind,
            Kind::Unknown,
            "an unknown handler accepted a batch"
        );
        assert!(
            n <= self.max_in_flight as usize,
            "a batch above max_in_flight"
        );
        assert!(!too_large, "a batch with a payload above max_payload");
        // The batch id and its items' ids (id + 1 + i) are never handed out again.
        for i in 0..=n as u64 {
            assert!(self.ids.insert(id + i), "id {} handed out twice", id + i);
        }
        self.batch_items += n as u64;
        self.batches.insert(
            first.user_data,
            Batched {
                kind: first.kind,
                payloads,
                id,
                completed: false,
            },
        );
    }

    /// A polled batch completion: once, with the batch id, `PORTWAY_OK`, no data or meta, and a
    /// view of exactly one outcome per item whose failures are the completion's code.
    pub(super) fn batch_completed(&mut self, c: &portway_completion) {
        let b = self.batches.get_mut(&c.user_data).expect("a batch");
        assert!(!b.completed, "batch {} completed twice", c.user_data);
        b.completed = true;
        assert_eq!(c.id, b.id, "batch completion id");
        assert_eq!(
            c.status,
            Status::PORTWAY_OK as u32,
            "batch completion status"
        );
        assert_eq!((c.len, c.meta_len), (0, 0), "batch completion carries data");
        assert!(!c.data.is_null());
        // SAFETY: `data` holds `len` bytes and a NUL until the completion is released.
        assert_eq!(unsafe { *c.data }, 0, "data not NUL-terminated");
        self.check_view(c);
    }

    /// `portway_batch_result` of `c`, checked item by item against the batch's payloads.
    fn check_view(&self, c: &portway_completion) {
        let b = &self.batches[&c.user_data];
        let mut view = blank_view();
        // SAFETY: a live engine, a readable completion, a writable view.
        let status = unsafe { portway_batch_result(self.eng, c, &mut view) };
        assert_eq!(status, Status::PORTWAY_OK, "{}", last_error());
        let n = b.payloads.len();
        assert_eq!(view.n, n, "items in the view");
        // SAFETY: the view's columns hold n (statuses, codes) and n + 1 (offsets) entries, and
        // `data` offsets[n] bytes and a NUL, until the completion is released.
        let (statuses, codes, offsets, meta_offsets) = unsafe {
            (
                std::slice::from_raw_parts(view.statuses, n),
                std::slice::from_raw_parts(view.codes, n),
                std::slice::from_raw_parts(view.offsets, n + 1),
                std::slice::from_raw_parts(view.meta_offsets, n + 1),
            )
        };
        assert_eq!((offsets[0], meta_offsets[0]), (0, 0));
        assert!(
            offsets.is_sorted() && meta_offsets.is_sorted(),
            "offsets decrease"
        );
        assert!(!view.data.is_null());
        let total = offsets[n] as usize;
        // SAFETY: as above.
        let data = unsafe { std::slice::from_raw_parts(view.data, total + 1) };
        assert_eq!(data[total], 0, "batch data not NUL-terminated");
        let pairs = meta_offsets[n] as usize;
        assert_eq!(view.meta.is_null(), pairs == 0);
        let meta = if pairs == 0 {
            &[][..]
        } else {
            // SAFETY: `meta` holds meta_offsets[n] pairs until the completion is released.
            unsafe { std::slice::from_raw_parts(view.meta, pairs) }
        };
        let failures = statuses
            .iter()
            .filter(|&&s| s != Status::PORTWAY_OK as u32)
            .count();
        assert_eq!(
            c.code as usize, failures,
            "the code counts the failed items"
        );
        for (i, payload) in b.payloads.iter().enumerate() {
            let (d, m) = (
                offsets[i] as usize..offsets[i + 1] as usize,
                meta_offsets[i] as usize..meta_offsets[i + 1] as usize,
            );
            let item = Outcome {
                status: statuses[i],
                code: codes[i],
                data: &data[d],
                meta: &meta[m],
            };
            self.check_outcome(b.kind, payload, &item);
        }
    }

    /// `portway_batch_result` on a polled batch completion (checked again: the view stays put
    /// until release), a plain one, a released one, an id never polled, or NULL arguments:
    /// only an unreleased batch completion has a view; anything else is refused and writes
    /// nothing.
    pub(super) fn batch_result(&mut self, input: &mut Input<'_>) {
        let pick = input.byte();
        let c = match pick % 4 {
            0 | 1 if !self.unreleased.is_empty() => {
                self.unreleased[usize::from(input.byte()) % self.unreleased.len()]
            }
            2 if !self.released.is_empty() => {
                self.released[usize::from(input.byte()) % self.released.len()]
            }
            _ => portway_completion {
                id: self.some_id(input),
                ..blank()
            },
        };
        let is_batch = |c: &portway_completion| {
            self.unreleased
                .iter()
                .any(|u| u.id == c.id && self.batches.contains_key(&u.user_data))
        };
        if pick & 0x70 == 0 && is_batch(&c) {
            let own = *self
                .unreleased
                .iter()
                .find(|u| u.id == c.id)
                .expect("polled");
            self.check_view(&own);
            return;
        }
        let mut view = blank_view();
        let null_c = pick & 0x20 != 0;
        let null_out = pick & 0x40 != 0;
        // SAFETY: a live engine; `c` and `view` readable/writable, or NULL.
        let status = unsafe {
            portway_batch_result(
                self.eng,
                if null_c { ptr::null() } else { &c },
                if null_out { ptr::null_mut() } else { &mut view },
            )
        };
        if null_c || null_out || !is_batch(&c) {
            refused(status, &[Status::PORTWAY_INVALID_ARGUMENT], "batch_result");
            assert_eq!(view.n, 0, "view written on failure");
        } else {
            assert_eq!(status, Status::PORTWAY_OK, "{}", last_error());
        }
    }
}

fn blank_view() -> portway_batch_view {
    portway_batch_view {
        n: 0,
        statuses: ptr::null(),
        codes: ptr::null(),
        offsets: ptr::null(),
        data: ptr::null(),
        meta_offsets: ptr::null(),
        meta: ptr::null(),
    }
}
