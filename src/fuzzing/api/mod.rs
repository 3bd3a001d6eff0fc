//! The API-sequence target: one engine driven through the C ABI (the `portway_*` functions,
//! called directly) by an arbitrary program of submits, batches, waits, cancels, polls,
//! releases and shutdowns, with arbitrary ids, counts, lengths and handler ids. A model of
//! what was accepted checks every step, and at the end (drain to close) that every accepted
//! request completed exactly once, nothing is left in flight and no slot leaked.
//!
//! Pointer/length pairs are truthful (a length never exceeds its buffer), except in the
//! absurd-count operations (`Op::Absurd` below, `ops.rs`), which pass counts and lengths no buffer can
//! have (`SIZE_MAX`, `2^60`, `isize::MAX + 1`): the library must refuse each before forming
//! any slice.

use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::ptr;
use std::time::Duration;

use super::Input;
use crate::ffi::*;
use crate::status::Status;
use model::*;

mod batch;
mod check;
mod model;
mod ops;
mod policy;

/// Longest any wait for the engine may take before the target reports it stuck.
const STUCK: Duration = Duration::from_secs(20);

/// Most operations in one program.
const MAX_OPS: usize = 48;

/// The engine under test and the model of what it owes.
struct Run {
    eng: *mut portway_engine,
    max_in_flight: u32,
    max_payload: u64,
    echo: u32,
    sleep: u32,
    native: u32,
    pipeline: u32,
    /// Accepted requests by `user_data` (unique per request).
    accepted: HashMap<u64, Accepted>,
    /// Accepted columnar batches by `user_data` (`portway_batch_submit`).
    batches: HashMap<u64, Batched>,
    /// Items of the accepted batches (each counted by `portway_stats.accepted`).
    batch_items: u64,
    /// Ids returned by submits (nonzero, never reused).
    ids: HashSet<u64>,
    /// Requests offered to the engine (what `portway_stats.submitted` counts).
    offered: u64,
    next_user_data: u64,
    /// Completions polled and not yet released.
    unreleased: Vec<portway_completion>,
    /// Completions released (their pointers are dead; only ids are used).
    released: Vec<portway_completion>,
    shut_down: bool,
    closed: bool,
    /// The policies set on each of our handlers (echo, sleep, native, pipeline).
    policies: HashMap<u32, Policy>,
}

impl Run {
    fn new(input: &mut Input<'_>) -> Run {
        let max_in_flight = 1 + u32::from(input.below(8));
        let max_payload = [16u64, 64, 1 << 20][usize::from(input.below(3))];
        let default_timeout = [0u32, 0, 2, 50][usize::from(input.below(4))];
        let workers = 1 + u32::from(input.below(2));
        // SAFETY: each call gets a live config or engine and valid out-pointers.
        unsafe {
            let cfg = portway_config_new();
            assert!(!cfg.is_null());
            for status in [
                portway_config_set_runtime_threads(cfg, 1),
                portway_config_set_pool_workers(cfg, workers),
                portway_config_set_max_in_flight(cfg, max_in_flight),
                portway_config_set_max_payload(cfg, max_payload),
                portway_config_set_default_timeout_ms(cfg, default_timeout),
            ] {
                assert_eq!(status, Status::PORTWAY_OK, "{}", last_error());
            }
            let mut eng = ptr::null_mut();
            assert_eq!(portway_engine_new(cfg, &mut eng), Status::PORTWAY_OK);
            portway_config_free(cfg);
            let lookup = |name: &CStr| {
                let mut id = 0;
                assert_eq!(
                    portway_handler_lookup(eng, name.as_ptr(), &mut id),
                    Status::PORTWAY_OK
                );
                id
            };
            let (echo, sleep) = (lookup(c"echo"), lookup(c"sleep"));
            let mut native_id = 0;
            assert_eq!(
                // Its answer depends on the payload only: safe to repeat, so hedging may run it.
                portway_register_handler_ex(
                    eng,
                    c"native".as_ptr(),
                    Some(native),
                    ptr::null_mut(),
                    PORTWAY_HANDLER_IDEMPOTENT,
                    &mut native_id
                ),
                Status::PORTWAY_OK
            );
            let stages = [echo, native_id];
            let mut pipeline = 0;
            assert_eq!(
                portway_pipeline_new(eng, c"pipe".as_ptr(), stages.as_ptr(), 2, &mut pipeline),
                Status::PORTWAY_OK
            );
            Run {
                eng,
                max_in_flight,
                max_payload,
                echo,
                sleep,
                native: native_id,
                pipeline,
                accepted: HashMap::new(),
                batches: HashMap::new(),
                batch_items: 0,
                ids: HashSet::new(),
                offered: 0,
                next_user_data: 1,
                unreleased: Vec::new(),
                released: Vec::new(),
                shut_down: false,
                closed: false,
                policies: [echo, sleep, native_id, pipeline]
                    .into_iter()
                    .map(|id| (id, Policy::NONE))
                    .collect(),
            }
        }
    }

    fn offer(&mut self, input: &mut Input<'_>) -> Offer {
        let (kind, handler) = match input.below(7) {
            0 | 1 => (Kind::Echo, self.echo),
            2 => (Kind::Sleep, self.sleep),
            3 => (Kind::Native, self.native),
            4 => (Kind::Pipeline, self.pipeline),
            5 => (Kind::Unknown, 0xFFFF_FF00 | u32::from(input.byte())),
            _ => {
                // A small id: one of ours, or one made unknown for sure (small ids also
                // include the built-in "http" handler, which would go to the network).
                let id = u32::from(input.byte());
                match id {
                    id if id == self.echo => (Kind::Echo, id),
                    id if id == self.sleep => (Kind::Sleep, id),
                    id if id == self.native => (Kind::Native, id),
                    id if id == self.pipeline => (Kind::Pipeline, id),
                    id => (Kind::Unknown, 0xFFFF_0000 | id),
                }
            }
        };
        let shape = input.byte();
        let payload = payload(kind, shape, input);
        let timeout_ms = [0u32, 0, 1, 2, 1000, 0][usize::from((shape >> 2) % 6)];
        let user_data = self.next_user_data;
        self.next_user_data += 1;
        Offer {
            kind,
            handler,
            payload,
            null_with_len: shape >> 5 == 7,
            timeout_ms,
            user_data,
        }
    }

    /// Records an accepted offer and checks what a refusal must satisfy.
    fn accepted(&mut self, offer: Offer, id: Option<u64>) {
        assert!(!self.shut_down, "a submit was accepted after shutdown");
        assert!(
            !offer.null_with_len,
            "a NULL payload with a length was accepted"
        );
        assert_ne!(
            offer.kind,
            Kind::Unknown,
            "an unknown handler accepted a request"
        );
        assert!(offer.payload.len() as u64 <= self.max_payload);
        if let Some(id) = id {
            assert_ne!(id, 0);
            assert!(self.ids.insert(id), "id {id} handed out twice");
        }
        self.accepted.insert(
            offer.user_data,
            Accepted {
                kind: offer.kind,
                payload: offer.payload,
                id,
                completed: false,
            },
        );
    }

    fn refused(&self, offer: &Offer, status: Status) {
        // The length is checked before anything else, so a payload too large to read is
        // refused as such whatever else is wrong with the request.
        if offer.claimed_len() as u64 > self.max_payload {
            assert_eq!(status, Status::PORTWAY_PAYLOAD_TOO_LARGE);
        } else if offer.null_with_len {
            assert_eq!(status, Status::PORTWAY_INVALID_ARGUMENT);
        } else if offer.kind == Kind::Unknown {
            assert_eq!(status, Status::PORTWAY_UNKNOWN_HANDLER);
        }
        refused(
            status,
            &[
                Status::PORTWAY_BUSY,
                Status::PORTWAY_SHUTDOWN,
                Status::PORTWAY_UNKNOWN_HANDLER,
                Status::PORTWAY_PAYLOAD_TOO_LARGE,
                Status::PORTWAY_INVALID_ARGUMENT,
            ],
            "submit",
        );
    }
}

/// Runs one program (see the module documentation).
pub fn api_sequence(data: &[u8]) {
    let mut input = Input::new(data);
    let mut run = Run::new(&mut input);
    for _ in 0..MAX_OPS {
        if input.is_empty() || run.closed {
            break;
        }
        match input.below(15) {
            0 | 1 => run.submit(&mut input, false),
            2 => run.submit(&mut input, true),
            3 | 4 => run.submit_batch(&mut input),
            5 => run.cancel(&mut input),
            6 => run.cancel_all(),
            7 | 8 => {
                let cap = usize::from(input.below(9));
                run.poll(cap, 1, i32::from(input.below(3)));
            }
            9 => {
                let cap = usize::from(input.below(9));
                let min = usize::from(input.byte()) % (cap + 2);
                let timeout = [0, 1, 2, -5][usize::from(input.below(4))];
                run.poll(cap, min, timeout);
            }
            10 | 11 => run.release(&mut input),
            12 => {
                if input.byte().is_multiple_of(4) {
                    run.shutdown(&mut input);
                } else {
                    run.check_counters();
                }
            }
            // Op::Absurd — calls with counts and lengths no buffer can have.
            13 => run.absurd(&mut input),
            _ => match input.byte() % 8 {
                // Free the engine with everything in any state: nothing to check but that
                // it neither crashes nor leaks (ASan's leak check in the fuzzer).
                0 => {
                    // SAFETY: the engine is live and freed once; `run` is not used after.
                    unsafe { portway_engine_free(run.eng) };
                    return;
                }
                // Policies (in this arm so that the older corpus keeps its meaning).
                1..=4 => run.set_policy(&mut input),
                5 | 6 => {
                    let handler = run.policy_target(&mut input);
                    run.policy_state(handler);
                }
                // Columnar batches (here too, for the older corpus's sake).
                _ => {
                    if input.byte().is_multiple_of(2) {
                        run.batch_submit(&mut input);
                    } else {
                        run.batch_result(&mut input);
                    }
                }
            },
        }
    }
    run.finish();
}
