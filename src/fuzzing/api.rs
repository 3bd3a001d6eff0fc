//! The API-sequence target: one engine driven through the C ABI (the `portway_*` functions,
//! called directly) by an arbitrary program of submits, batches, waits, cancels, polls,
//! releases and shutdowns, with arbitrary ids, counts, lengths and handler ids. A model of
//! what was accepted checks every step, and at the end (drain to close) that every accepted
//! request completed exactly once, nothing is left in flight and no slot leaked.
//!
//! Pointer/length pairs are truthful (a length never exceeds its buffer), except in the
//! absurd-count operations (`Op::Absurd` below), which pass counts and lengths no buffer can
//! have (`SIZE_MAX`, `2^60`, `isize::MAX + 1`): the library must refuse each before forming
//! any slice.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, c_void};
use std::ptr;
use std::time::{Duration, Instant};

use super::Input;
use crate::ffi::*;
use crate::status::Status;

/// Longest any wait for the engine may take before the target reports it stuck.
const STUCK: Duration = Duration::from_secs(20);

/// Most operations in one program.
const MAX_OPS: usize = 48;

/// What a request was sent to, which decides what its completion may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Echo,
    Sleep,
    /// The native handler below; its mode is the payload's first byte.
    Native,
    /// The pipeline echo -> native.
    Pipeline,
    Unknown,
}

/// A request the engine accepted.
struct Accepted {
    kind: Kind,
    payload: Vec<u8>,
    /// The id, when the submit reported it.
    id: Option<u64>,
    completed: bool,
}

/// The native handler: what it does depends on the first payload byte (mod 5): respond with
/// the payload; respond with code 7 and one meta pair; fail; return without responding; wait
/// (up to 2 ms) for cancellation, then respond.
unsafe extern "C-unwind" fn native(_ctx: *mut c_void, call: *mut portway_call) {
    let mut data = ptr::null();
    let mut len = 0usize;
    // SAFETY: `call` is the live call the engine lent this handler; the outputs are locals.
    unsafe {
        assert_eq!(
            portway_call_payload(call, &mut data, &mut len),
            Status::PORTWAY_OK
        );
        let payload = std::slice::from_raw_parts(data, len).to_vec();
        match native_mode(&payload) {
            0 => {}
            1 => {
                portway_call_set_code(call, 7);
                assert_eq!(
                    portway_call_add_meta(call, c"k".as_ptr(), c"v".as_ptr()),
                    Status::PORTWAY_OK
                );
            }
            2 => {
                assert_eq!(
                    portway_call_fail(call, c"native failure".as_ptr()),
                    Status::PORTWAY_OK
                );
                return;
            }
            3 => return,
            _ => {
                let start = Instant::now();
                while !portway_call_is_cancelled(call) && start.elapsed() < Duration::from_millis(2)
                {
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
        }
        portway_call_respond(call, payload.as_ptr(), payload.len());
    }
}

fn native_mode(payload: &[u8]) -> u8 {
    payload.first().map_or(0, |b| b % 5)
}

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

/// What the model knows of one handler's policies.
#[derive(Clone, Copy, Debug)]
struct Policy {
    /// The concurrency limit in force (0 = none).
    limit: u32,
    /// What `running` may be now: the limit, or more while calls admitted under an earlier,
    /// higher (or no) limit still run; `u32::MAX` when unknown. Once `running` is seen at or
    /// under the limit, it stays there.
    bound: u32,
    /// The token bucket's size (0 = no rate limit).
    burst: u32,
    /// Whether a circuit breaker was ever on: only then may `PORTWAY_UNAVAILABLE` come.
    breaker_ever: bool,
    /// Whether hedging was ever on: only then may hedges be counted and a completion say
    /// `portway-hedge: won`.
    hedge_ever: bool,
    /// The adaptive limit's bounds when it is on: its live figure moves within them.
    adaptive: Option<(u32, u32)>,
}

impl Policy {
    const NONE: Policy = Policy {
        limit: 0,
        bound: u32::MAX,
        burst: 0,
        breaker_ever: false,
        hedge_ever: false,
        adaptive: None,
    };

    /// The most calls the limit lets run at once (0 = no limit).
    fn cap(&self) -> u32 {
        self.adaptive.map_or(self.limit, |(_, max)| max)
    }
}

/// A request about to be offered, with the buffer its payload pointer points into.
struct Offer {
    kind: Kind,
    handler: u32,
    payload: Vec<u8>,
    /// NULL payload pointer with a nonzero length: must be refused before the engine.
    null_with_len: bool,
    timeout_ms: u32,
    user_data: u64,
}

impl Offer {
    fn request(&self) -> portway_request {
        // NULL for a claimed length (refused), and sometimes for an empty payload (allowed).
        let null =
            self.null_with_len || (self.payload.is_empty() && self.timeout_ms.is_multiple_of(2));
        let payload = if null {
            ptr::null()
        } else {
            self.payload.as_ptr()
        };
        portway_request {
            handler: self.handler,
            timeout_ms: self.timeout_ms,
            user_data: self.user_data,
            payload,
            payload_len: self.claimed_len(),
        }
    }

    /// The length the request claims for its payload.
    fn claimed_len(&self) -> usize {
        if self.null_with_len {
            self.payload.len().max(1)
        } else {
            self.payload.len()
        }
    }
}

fn last_error() -> String {
    // SAFETY: `portway_last_error` returns a NUL-terminated string owned by this thread.
    unsafe { CStr::from_ptr(portway_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// Checks a refused call: a documented status and a message.
fn refused(status: Status, allowed: &[Status], what: &str) {
    assert!(allowed.contains(&status), "{what}: unexpected {status:?}");
    assert!(
        !last_error().is_empty(),
        "{what}: {status:?} without a message"
    );
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
        let payload = if kind == Kind::Sleep && !shape.is_multiple_of(4) {
            // Mostly short valid sleeps; sometimes arbitrary bytes.
            format!("{}", shape % 3).into_bytes()
        } else {
            let len = usize::from(input.below(24));
            input.bytes(len).to_vec()
        };
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

    fn submit(&mut self, input: &mut Input<'_>, wait: bool) {
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

    fn submit_batch(&mut self, input: &mut Input<'_>) {
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
    fn some_id(&self, input: &mut Input<'_>) -> u64 {
        match input.below(3) {
            0 if !self.ids.is_empty() => {
                let i = usize::from(input.byte()) % self.ids.len();
                *self.ids.iter().nth(i).unwrap_or(&0)
            }
            1 => (1 << 40) + input.u64() % (1 << 20),
            _ => 0,
        }
    }

    fn cancel(&mut self, input: &mut Input<'_>) {
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

    fn cancel_all(&mut self) {
        // SAFETY: a live engine.
        let status = unsafe { portway_cancel_all(self.eng) };
        assert_eq!(status, Status::PORTWAY_OK, "{}", last_error());
    }

    /// `portway_poll_min` with a buffer of exactly `cap` records; returns how many came.
    fn poll(&mut self, cap: usize, min: usize, timeout_ms: i32) -> usize {
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
                for (user_data, a) in &self.accepted {
                    assert!(
                        a.completed,
                        "CLOSED but request {user_data} never completed"
                    );
                }
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

    /// Checks one polled completion against the model.
    fn completed(&mut self, c: &portway_completion) {
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
        assert!(!c.data.is_null());
        // SAFETY: `data` holds `len` bytes and a NUL until the completion is released.
        let data = unsafe { std::slice::from_raw_parts(c.data, c.len + 1) };
        assert_eq!(data[c.len], 0, "data not NUL-terminated");
        let data = &data[..c.len];
        assert_eq!(c.meta.is_null(), c.meta_len == 0);
        let mut hedge_won = 0;
        for i in 0..c.meta_len {
            // SAFETY: `meta` holds `meta_len` pairs of NUL-terminated strings.
            let pair = unsafe { *c.meta.add(i) };
            let (k, v) = unsafe { (CStr::from_ptr(pair.key), CStr::from_ptr(pair.value)) };
            if (k, v) == (c"portway-hedge", c"won") && self.policies[&self.native].hedge_ever {
                hedge_won += 1;
                continue;
            }
            assert_eq!((k, v), (c"k", c"v"));
        }
        let status = c.status;
        let ok = status == Status::PORTWAY_OK as u32;
        // An open breaker on the handler (or a pipeline's stage) completes it UNAVAILABLE.
        let breakers: &[u32] = match a.kind {
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
            assert!(!data.is_empty(), "status {status} without a message");
            return;
        }
        match a.kind {
            Kind::Echo => assert_eq!(data, &a.payload[..]),
            Kind::Sleep => assert!(data.is_empty()),
            Kind::Native | Kind::Pipeline => {
                let mode = native_mode(&a.payload);
                assert!(mode != 2 && mode != 3, "native mode {mode} completed OK");
                assert_eq!(data, &a.payload[..]);
                assert!(hedge_won <= 1, "two hedge marks");
                assert_eq!(c.meta_len, usize::from(mode == 1) + hedge_won);
                assert_eq!(c.code, if mode == 1 { 7 } else { 0 });
            }
            Kind::Unknown => unreachable!("never accepted"),
        }
    }

    fn release(&mut self, input: &mut Input<'_>) {
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

    /// One of our handlers, for a policy call.
    fn policy_target(&self, input: &mut Input<'_>) -> u32 {
        [self.echo, self.sleep, self.native, self.pipeline][usize::from(input.below(4))]
    }

    /// `portway_handler_set_policy` with small figures (rates of a few tokens per second up
    /// to a few per ms, so tokens run out; cooldowns of a few ms, so the breaker cycles), and
    /// sometimes a field not supported yet or an invalid one (hedging on a handler that is not
    /// idempotent, a budget above 100 %): refused, and nothing changes. The native handler is
    /// registered idempotent, so hedging it runs for real. With the adaptive limit on, its live
    /// figure is checked within its bounds.
    fn set_policy(&mut self, input: &mut Input<'_>) {
        let handler = self.policy_target(input);
        let mut p = blank_policy();
        let shape = input.byte();
        p.max_concurrency = [0, 0, 1, 2, 3, 8][usize::from(shape % 6)];
        if shape & 0x40 != 0 {
            p.rate_per_s = [2.0, 50.0, 500.0, 5000.0, 0.5][usize::from(input.below(5))];
            p.burst = u32::from(input.below(4));
        }
        if shape & 0x80 != 0 {
            p.breaker_failures = 1 + u32::from(input.below(3));
            p.breaker_cooldown_ms = [1, 2, 5][usize::from(input.below(3))];
        }
        // Hedging after a ms or two (the native handler's slow mode waits 2 ms for its
        // cancellation), a budget from a trickle to every request.
        if shape & 0x20 != 0 {
            p.hedge_after_ms = 1 + u32::from(input.below(2));
            p.hedge_after_p95 = input.below(2) == 1;
            p.hedge_budget_percent = [0, 1, 50, 100][usize::from(input.below(4))];
        }
        if shape & 0x10 != 0 {
            p.adaptive = true;
            p.min_concurrency = u32::from(input.below(3));
        }
        // Invalid settings: a field not supported yet, or a figure out of range.
        let invalid = match input.below(12) {
            0 => {
                // An adaptive floor above its ceiling.
                p.adaptive = true;
                p.max_concurrency = p.max_concurrency.max(1);
                p.min_concurrency = p.max_concurrency + 1 + u32::from(input.byte());
                true
            }
            1 => {
                // A floor without the adaptive limit it is the floor of.
                p.adaptive = false;
                p.min_concurrency = 2 + u32::from(input.byte());
                true
            }
            // Hedging on any handler (only the native one, registered idempotent, takes it),
            // or a budget above 100 %: judged below, on the final settings.
            2 => {
                p.hedge_after_ms = 1 + u32::from(input.below(4));
                false
            }
            3 => {
                p.hedge_after_p95 = true;
                p.hedge_after_ms = u32::from(input.below(3));
                false
            }
            4 => {
                p.hedge_budget_percent = [1, 4, 6, 100, 101][usize::from(input.below(5))];
                false
            }
            5 => {
                p.rate_per_s = [-1.0, f64::NAN, f64::INFINITY, 2e9][usize::from(input.below(4))];
                true
            }
            6 => {
                p.rate_per_s = 0.0;
                p.burst = 1 + u32::from(input.below(4));
                true
            }
            _ => false,
        };
        // A breaker or an adaptive limit is refused on a pipeline (they belong on the stages),
        // so is an adaptive floor above its ceiling, and hedging on all but the native handler.
        let invalid = invalid
            || (handler == self.pipeline && (p.breaker_failures != 0 || p.adaptive))
            || (p.adaptive && p.max_concurrency != 0 && p.min_concurrency > p.max_concurrency)
            || ((p.hedge_after_ms != 0 || p.hedge_after_p95) && handler != self.native)
            || p.hedge_budget_percent > 100;
        let before = self.policy_state(handler);
        // SAFETY: a live engine and a readable policy.
        let status = unsafe { portway_handler_set_policy(self.eng, handler, &p) };
        if invalid {
            refused(status, &[Status::PORTWAY_INVALID_ARGUMENT], "set_policy");
            let after = self.policy_state(handler);
            // An adaptive limit may move on its own between the two reads (within its
            // bounds, which policy_state checks).
            if self.policies[&handler].adaptive.is_none() {
                assert_eq!(
                    after.concurrency_limit, before.concurrency_limit,
                    "a refused policy changed the limit"
                );
            }
            return;
        }
        assert_eq!(status, Status::PORTWAY_OK, "set_policy: {}", last_error());
        let model = self.policies.get_mut(&handler).expect("one of ours");
        let limit = p.max_concurrency;
        let adaptive = p.adaptive.then(|| {
            (
                p.min_concurrency.max(1),
                if limit == 0 { 1000 } else { limit },
            )
        });
        let cap = adaptive.map_or(limit, |(_, max)| max);
        model.bound = if cap == 0 || model.cap() == 0 {
            u32::MAX
        } else {
            model.bound.max(cap)
        };
        model.limit = limit;
        model.adaptive = adaptive;
        model.burst = if p.rate_per_s == 0.0 {
            0
        } else if p.burst == 0 {
            p.rate_per_s.max(1.0) as u32
        } else {
            p.burst
        };
        model.breaker_ever |= p.breaker_failures != 0;
        model.hedge_ever |= p.hedge_after_ms != 0 || p.hedge_after_p95;
        self.policy_state(handler);
    }

    /// `portway_handler_policy_state`, checked against the model: the limit set, `running`
    /// within it (see `Policy::bound`), tokens within the bucket, a known breaker state.
    fn policy_state(&mut self, handler: u32) -> portway_policy_state {
        let mut s = portway_policy_state::default();
        // SAFETY: a live engine and a writable record.
        let status = unsafe { portway_handler_policy_state(self.eng, handler, &mut s) };
        assert_eq!(status, Status::PORTWAY_OK, "policy_state: {}", last_error());
        let model = self.policies.get_mut(&handler).expect("one of ours");
        match model.adaptive {
            Some((min, max)) => assert!(
                (min..=max).contains(&s.concurrency_limit),
                "adaptive limit outside {min}..={max}: {s:?}"
            ),
            None => assert_eq!(s.concurrency_limit, model.limit, "limit in force: {s:?}"),
        }
        assert!(s.running <= model.bound, "running beyond the limit: {s:?}");
        let cap = model.cap();
        if cap != 0 && s.running <= cap {
            model.bound = cap;
        }
        assert!(
            [
                PORTWAY_BREAKER_CLOSED,
                PORTWAY_BREAKER_OPEN,
                PORTWAY_BREAKER_HALF_OPEN
            ]
            .contains(&s.breaker_state),
            "breaker state: {s:?}"
        );
        if !model.breaker_ever {
            assert_eq!(s.breaker_state, PORTWAY_BREAKER_CLOSED, "{s:?}");
            assert_eq!((s.breaker_trips, s.breaker_rejected), (0, 0), "{s:?}");
        }
        assert!(
            s.tokens >= 0.0 && s.tokens <= f64::from(model.burst),
            "tokens: {s:?}"
        );
        assert!(
            s.hedges_won <= s.hedges_started && s.hedges_cancelled <= s.hedges_started,
            "hedges: {s:?}"
        );
        if !model.hedge_ever {
            assert_eq!(
                (s.hedges_started, s.hedges_won, s.hedges_cancelled),
                (0, 0, 0),
                "{s:?}"
            );
        }
        // No handler here names breaker keys: one breaker each, open or not.
        assert!(
            s.breaker_open <= u32::from(model.breaker_ever),
            "breakers open: {s:?}"
        );
        s
    }

    /// Lifts every policy (the final fill must not wait for tokens) and checks that nothing
    /// is left running or waiting behind them.
    fn lift_policies(&mut self) {
        let handlers: Vec<u32> = self.policies.keys().copied().collect();
        // Every request the breaker refused completed UNAVAILABLE, and only those (all are
        // collected now).
        let rejected: u64 = handlers
            .iter()
            .map(|&h| self.policy_state(h).breaker_rejected)
            .sum();
        let unavailable = self
            .released
            .iter()
            .filter(|c| c.status == Status::PORTWAY_UNAVAILABLE as u32)
            .count();
        assert_eq!(
            rejected, unavailable as u64,
            "breaker refusals vs UNAVAILABLE completions"
        );
        for h in handlers {
            let p = blank_policy();
            // SAFETY: a live engine and a readable policy.
            let status = unsafe { portway_handler_set_policy(self.eng, h, &p) };
            assert_eq!(status, Status::PORTWAY_OK, "{}", last_error());
            let model = self.policies.get_mut(&h).expect("one of ours");
            model.limit = 0;
            model.adaptive = None;
            model.bound = u32::MAX;
            model.burst = 0;
            let start = Instant::now();
            loop {
                let s = self.policy_state(h);
                if s.running == 0 && s.waiting == 0 {
                    break;
                }
                assert!(start.elapsed() < STUCK, "policy gauges stuck: {s:?}");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    fn shutdown(&mut self, input: &mut Input<'_>) {
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

    fn stats(&self) -> portway_stats_record {
        let mut s = portway_stats_record::default();
        // SAFETY: a live engine and a writable record.
        assert_eq!(
            unsafe { portway_stats(self.eng, &mut s) },
            Status::PORTWAY_OK
        );
        s
    }

    /// The counters the model knows exactly (every submit ran on this thread).
    fn check_counters(&self) {
        let s = self.stats();
        assert_eq!(s.accepted, self.accepted.len() as u64, "accepted");
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
    fn collect_all(&mut self) {
        let start = Instant::now();
        while !self.closed && self.accepted.values().any(|a| !a.completed) {
            assert!(start.elapsed() < STUCK, "completions never came");
            self.poll(8, 1, 10);
        }
    }

    fn release_all(&mut self) {
        let batch = std::mem::take(&mut self.unreleased);
        // SAFETY: `batch` holds `batch.len()` records.
        let status = unsafe { portway_release(self.eng, batch.as_ptr(), batch.len()) };
        assert_eq!(status, Status::PORTWAY_OK);
        self.released.extend(batch);
    }

    /// Waits until the gauges say nothing is held (a cancelled native call may still be
    /// running for a moment after its completion was released).
    fn wait_idle(&self) -> portway_stats_record {
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
    fn finish(mut self) {
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
            self.accepted.len() as u64,
            "completions posted vs accepted: {s:?}"
        );
        // SAFETY: the engine is live and freed once.
        unsafe { portway_engine_free(self.eng) };
    }

    /// Calls with counts and lengths far beyond their (real, small) buffers; each must be
    /// refused with `PORTWAY_INVALID_ARGUMENT` or `PORTWAY_PAYLOAD_TOO_LARGE` and a message.
    fn absurd(&mut self, input: &mut Input<'_>) {
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

fn blank_policy() -> portway_policy {
    let mut p = portway_policy {
        max_concurrency: 0,
        adaptive: false,
        min_concurrency: 0,
        rate_per_s: 0.0,
        burst: 0,
        hedge_after_ms: 0,
        hedge_after_p95: false,
        hedge_budget_percent: 0,
        breaker_failures: 0,
        breaker_cooldown_ms: 0,
    };
    // SAFETY: a writable record.
    assert_eq!(
        unsafe { portway_policy_default(&mut p) },
        Status::PORTWAY_OK
    );
    p
}

fn blank() -> portway_completion {
    portway_completion {
        id: 0,
        user_data: 0,
        status: 0,
        code: 0,
        data: ptr::null(),
        len: 0,
        meta: ptr::null(),
        meta_len: 0,
        queued_ns: 0,
        run_ns: 0,
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
                _ => {}
            },
        }
    }
    run.finish();
}
