//! Hedged requests (issue 16): a second attempt of a slow run, the first success wins and the
//! other attempt is cancelled; only handlers safe to repeat; the budget; cancel and deadlines
//! reach both attempts with exactly one completion. Counts and flags, never timings: a "slow"
//! attempt waits for a signal (its cancellation, the other attempt), not for a clock.
//!
//! The handlers below tell the first call from the hedge by the order in which calls begin.
//! The hedge is sent 20 ms after the first call, so the two could only swap if a pool worker
//! that took the first call were held off the CPU for that long before its first instruction.

mod common;
mod http_support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{collect, one, sub};
use portway::contract::{AsyncHandler, Call, Idempotent, Outcome, OutcomeFuture};
use portway::engine::{HedgeSettings, PolicySettings};
use portway::{Engine, OwnedCompletion, Status, Submission};

fn engine() -> Engine {
    common::engine()
}

fn hedge_after(ms: u64, budget_percent: u32) -> PolicySettings {
    PolicySettings {
        hedge: HedgeSettings {
            after: Duration::from_millis(ms),
            after_p95: false,
            budget_percent,
        },
        ..PolicySettings::default()
    }
}

/// Waits (at most 10 s, then fails) until `cond` holds.
fn until(what: &str, cond: impl Fn() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < give_up, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Blocks a call until it is cancelled; counts the cancellations seen.
fn wait_cancelled(call: &Call, seen: &AtomicUsize) {
    let give_up = Instant::now() + Duration::from_secs(10);
    while !call.is_cancelled() && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(1));
    }
    if call.is_cancelled() {
        seen.fetch_add(1, SeqCst);
    }
}

fn hedge_meta(c: &OwnedCompletion) -> Option<&str> {
    c.meta
        .iter()
        .find(|(k, _)| k == "portway-hedge")
        .map(|(_, v)| v.as_str())
}

#[derive(Default)]
struct Seen {
    calls: AtomicUsize,
    cancelled: AtomicUsize,
    flag: AtomicBool,
    flag2: AtomicBool,
}

/// Registers `name`, an idempotent pool handler running `f(call, seen, n)` for its `n`th call
/// (0: the first), hedged after `delay_ms`.
fn hedged(
    eng: &Engine,
    name: &str,
    delay_ms: u64,
    f: impl Fn(&mut Call, &Seen, usize) + Send + Sync + 'static,
) -> (u32, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    let handler = Idempotent(move |call: &mut Call| f(call, &s, s.calls.fetch_add(1, SeqCst)));
    let h = eng.register_blocking(name, handler).unwrap();
    eng.set_policy(h, &hedge_after(delay_ms, 0)).unwrap();
    (h, seen)
}

/// (hedges started, won, cancelled) of handler `h`.
fn hedges(eng: &Engine, h: u32) -> (u64, u64, u64) {
    let st = eng.policy_state(h).unwrap();
    (st.hedges_started, st.hedges_won, st.hedges_cancelled)
}

/// Submits `payload` to `h` and polls its completion.
fn run(eng: &Engine, h: u32, payload: &[u8]) -> OwnedCompletion {
    eng.submit(&sub(h, payload)).unwrap();
    one(eng)
}

#[test]
fn a_fast_hedge_wins_and_the_slow_first_call_is_cancelled() {
    let eng = engine();
    let (h, seen) = hedged(&eng, "lookup", 20, |call, seen, n| match n {
        0 => wait_cancelled(call, &seen.cancelled),
        _ => call.respond(b"hedge").unwrap(),
    });
    let c = run(&eng, h, b"key");
    assert_eq!((c.status, &c.data[..]), (Status::PORTWAY_OK, &b"hedge"[..]));
    assert_eq!(hedge_meta(&c), Some("won"));
    until("the first call to see its cancellation", || {
        seen.cancelled.load(SeqCst) == 1
    });
    assert_eq!(hedges(&eng, h), (1, 1, 1));
    let text = eng.metrics_text().unwrap();
    let line = "portway_policy_hedges_won_total{handler=\"lookup\"} 1";
    assert!(text.contains(line), "{text}");
    assert_eq!(seen.calls.load(SeqCst), 2);
}

#[test]
fn a_first_call_that_ends_before_the_delay_is_not_hedged() {
    let eng = engine();
    let (h, seen) = hedged(&eng, "lookup", 60_000, |call, _, _| {
        call.respond(b"at once").unwrap()
    });
    for _ in 0..20 {
        eng.submit(&sub(h, b"key")).unwrap();
    }
    for c in collect(&eng, 20) {
        assert_eq!(c.status, Status::PORTWAY_OK);
        assert_eq!(hedge_meta(&c), None);
    }
    assert_eq!(seen.calls.load(SeqCst), 20);
    assert_eq!(hedges(&eng, h), (0, 0, 0));
}

#[test]
fn the_first_call_wins_when_it_ends_first_and_the_hedge_is_cancelled() {
    let eng = engine();
    let (h, seen) = hedged(&eng, "lookup", 20, |call, seen, n| {
        if n == 0 {
            until("the hedge to start", || seen.flag.load(SeqCst));
            call.respond(b"first").unwrap();
        } else {
            seen.flag.store(true, SeqCst);
            wait_cancelled(call, &seen.cancelled);
        }
    });
    let c = run(&eng, h, b"key");
    assert_eq!((c.status, &c.data[..]), (Status::PORTWAY_OK, &b"first"[..]));
    assert_eq!(hedge_meta(&c), None);
    until("the hedge to see its cancellation", || {
        seen.cancelled.load(SeqCst) == 1
    });
    assert_eq!(hedges(&eng, h), (1, 0, 1));
}

#[test]
fn in_a_pipeline_the_losing_call_is_cancelled_before_the_next_stage_ends() {
    let eng = engine();
    let (lookup, seen) = hedged(&eng, "lookup", 20, |call, seen, n| match n {
        0 => wait_cancelled(call, &seen.cancelled),
        _ => call.respond(b"hedge").unwrap(),
    });
    let s = seen.clone();
    // The next stage ends only once the first call of the stage before saw its cancellation
    // (the request is still running then: the loser is cancelled as the hedge wins).
    let gate = eng
        .register_blocking("gate", move |call: &mut Call| {
            let give_up = Instant::now() + Duration::from_secs(10);
            while s.cancelled.load(SeqCst) == 0 && Instant::now() < give_up {
                std::thread::sleep(Duration::from_millis(1));
            }
            s.flag.store(s.cancelled.load(SeqCst) == 1, SeqCst);
            let payload = call.payload().to_vec();
            call.respond(&payload).unwrap();
        })
        .unwrap();
    let pipe = eng.register_pipeline("pipe", &[lookup, gate]).unwrap();
    let c = run(&eng, pipe, b"key");
    assert_eq!((c.status, &c.data[..]), (Status::PORTWAY_OK, &b"hedge"[..]));
    assert!(
        seen.flag.load(SeqCst),
        "the loser ran on into the next stage"
    );
    assert_eq!(hedges(&eng, lookup), (1, 1, 1));
    // The first stage's hedge won: the completion says so, though the last stage was not hedged.
    assert_eq!(hedge_meta(&c), Some("won"));
}

#[test]
fn a_pipeline_completion_carries_the_mark_once_when_any_stage_hedge_won() {
    let eng = engine();
    // Each stage's first call waits for its cancellation; its hedge answers.
    let stage = |name: &str| {
        hedged(&eng, name, 20, |call, seen, n| match n {
            0 => wait_cancelled(call, &seen.cancelled),
            _ => call.respond(call.payload().to_vec().as_slice()).unwrap(),
        })
        .0
    };
    // One budget of one hedge per stage handler: a handler for each place.
    let fail = eng
        .register_blocking("fail", |call: &mut Call| call.fail("no").unwrap())
        .unwrap();
    let echo = eng.lookup("echo").unwrap();
    let cases = [
        (
            "both-won",
            vec![stage("a1"), stage("a2")],
            Status::PORTWAY_OK,
        ),
        (
            "first-won",
            vec![echo, stage("b"), echo],
            Status::PORTWAY_OK,
        ),
        (
            "failed-after",
            vec![stage("c"), fail],
            Status::PORTWAY_HANDLER_ERROR,
        ),
        ("none", vec![echo, echo], Status::PORTWAY_OK),
    ];
    for (name, stages, status) in cases {
        let pipe = eng.register_pipeline(name, &stages).unwrap();
        let c = run(&eng, pipe, b"key");
        assert_eq!(c.status, status, "{name}");
        let marks = c.meta.iter().filter(|(k, _)| k == "portway-hedge").count();
        assert_eq!(marks, usize::from(name != "none"), "{name}: {:?}", c.meta);
        if name != "none" {
            assert_eq!(hedge_meta(&c), Some("won"), "{name}");
        }
    }
}

#[test]
fn a_failed_call_waits_for_the_other_one() {
    let eng = engine();
    let (h, _) = hedged(&eng, "lookup", 20, |call, seen, n| {
        if n == 0 {
            until("the hedge to start", || seen.flag.load(SeqCst));
            call.fail("first call failed").unwrap();
            seen.flag2.store(true, SeqCst);
        } else {
            seen.flag.store(true, SeqCst);
            until("the first call to fail", || seen.flag2.load(SeqCst));
            // Its failure reaches the race after this handler's return: give it time to
            // arrive first, so that a race that took it would be seen.
            std::thread::sleep(Duration::from_millis(20));
            call.respond(b"hedge").unwrap();
        }
    });
    let c = run(&eng, h, b"key");
    assert_eq!((c.status, &c.data[..]), (Status::PORTWAY_OK, &b"hedge"[..]));
    assert_eq!(hedge_meta(&c), Some("won"));
    assert_eq!(hedges(&eng, h), (1, 1, 0));
}

#[test]
fn when_both_calls_fail_the_request_fails_once() {
    let eng = engine();
    let (h, _) = hedged(&eng, "lookup", 20, |call, seen, n| {
        if n == 0 {
            until("the hedge to start", || seen.flag.load(SeqCst));
        } else {
            seen.flag.store(true, SeqCst);
        }
        call.fail("failed").unwrap();
    });
    let c = run(&eng, h, b"key");
    let failed = (Status::PORTWAY_HANDLER_ERROR, &b"failed"[..]);
    assert_eq!((c.status, &c.data[..]), failed);
    assert_nothing_more(&eng);
    assert_eq!(hedges(&eng, h), (1, 0, 0));
}

fn assert_nothing_more(eng: &Engine) {
    let more = eng
        .poll_owned(8, Some(Duration::from_millis(50)))
        .unwrap()
        .0;
    assert!(more.is_empty(), "{more:?}");
}

/// Two calls of one request both running, each waiting for its cancellation.
fn both_calls_running(eng: &Engine, timeout_ms: u32) -> (u64, Arc<Seen>) {
    let (h, seen) = hedged(eng, "stuck", 1, |call, seen, _| {
        wait_cancelled(call, &seen.cancelled)
    });
    let req = Submission {
        handler: h,
        timeout_ms,
        user_data: 0,
        payload: b"key",
    };
    let id = eng.submit(&req).unwrap();
    until("both calls to run", || seen.calls.load(SeqCst) == 2);
    (id, seen)
}

#[test]
fn cancel_reaches_both_calls_of_a_hedged_request_with_one_completion() {
    let eng = engine();
    let (id, seen) = both_calls_running(&eng, 0);
    eng.cancel(id).unwrap();
    let c = one(&eng);
    assert_eq!((c.id, c.status), (id, Status::PORTWAY_CANCELLED));
    until("both calls to see the cancel", || {
        seen.cancelled.load(SeqCst) == 2
    });
    assert_nothing_more(&eng);
    assert_eq!(hedges(&eng, eng.lookup("stuck").unwrap()), (1, 0, 0));
}

#[test]
fn the_deadline_reaches_both_calls_of_a_hedged_request_with_one_completion() {
    let eng = engine();
    let (id, seen) = both_calls_running(&eng, 300);
    let c = one(&eng);
    assert_eq!((c.id, c.status), (id, Status::PORTWAY_TIMEOUT));
    until("both calls to see the deadline", || {
        seen.cancelled.load(SeqCst) == 2
    });
    assert_nothing_more(&eng);
}

#[test]
fn shutdown_reaches_both_calls_of_a_hedged_request() {
    let eng = engine();
    let (id, seen) = both_calls_running(&eng, 0);
    eng.shutdown(portway::ShutdownMode::CancelNow, None)
        .unwrap();
    let c = one(&eng);
    assert_eq!((c.id, c.status), (id, Status::PORTWAY_CANCELLED));
    until("both calls to see the shutdown", || {
        seen.cancelled.load(SeqCst) == 2
    });
}

/// The first call of each payload takes 40 ms; any later one answers at once.
#[derive(Default)]
struct SlowFirst {
    calls: Mutex<HashMap<Vec<u8>, u32>>,
}

/// The handler as registered, sharing its call counts with the test.
struct SlowFirstHandler(Arc<SlowFirst>);

impl AsyncHandler for SlowFirstHandler {
    fn call(&self, payload: Vec<u8>) -> OutcomeFuture {
        let n = {
            let mut calls = self.0.calls.lock().unwrap();
            let n = calls.entry(payload).or_default();
            *n += 1;
            *n
        };
        Box::pin(async move {
            if n == 1 {
                tokio::time::sleep(Duration::from_millis(40)).await;
                Outcome::ok(b"slow".to_vec())
            } else {
                Outcome::ok(b"fast".to_vec())
            }
        })
    }

    fn idempotent(&self, _payload: &[u8]) -> bool {
        true
    }
}

#[test]
fn the_budget_caps_hedges_over_many_requests() {
    let eng = engine();
    let handler = Arc::new(SlowFirst::default());
    let h = eng
        .register_async("slow-first", SlowFirstHandler(handler.clone()))
        .unwrap();
    eng.set_policy(h, &hedge_after(1, 5)).unwrap();
    let n = 200;
    let payloads: Vec<Vec<u8>> = (0..n).map(|i| format!("{i}").into_bytes()).collect();
    for p in &payloads {
        eng.submit(&sub(h, p)).unwrap();
    }
    let done = collect(&eng, n);
    assert!(done.iter().all(|c| c.status == Status::PORTWAY_OK));
    let won = done.iter().filter(|c| hedge_meta(c) == Some("won")).count() as u64;
    let st = eng.policy_state(h).unwrap();
    // One hedge banked when the policy was set, then 5 per 100 requests.
    assert!(
        (1..=1 + 10).contains(&st.hedges_started),
        "{} hedges for {n} requests at 5 %",
        st.hedges_started
    );
    assert_eq!(st.hedges_won, won);
    let calls: u32 = handler.calls.lock().unwrap().values().sum();
    assert_eq!(u64::from(calls), n as u64 + st.hedges_started);
}

/// Sets hedging after 20 ms (budget 100 %) and a concurrency limit of `limit` on `h`.
fn limit_and_hedge(eng: &Engine, h: u32, limit: u32) {
    let policy = PolicySettings {
        max_concurrency: limit,
        ..hedge_after(20, 100)
    };
    eng.set_policy(h, &policy).unwrap();
}

#[test]
fn a_hedge_with_no_free_slot_is_skipped_and_counted() {
    let eng = engine();
    let (h, seen) = hedged(&eng, "lookup", 20, |call, seen, _| {
        until("the test to let the call end", || seen.flag.load(SeqCst));
        call.respond(b"first").unwrap();
    });
    limit_and_hedge(&eng, h, 1);
    eng.submit(&sub(h, b"key")).unwrap();
    until("the hedge to be skipped", || {
        eng.policy_state(h).unwrap().hedges_skipped == 1
    });
    seen.flag.store(true, SeqCst);
    let c = one(&eng);
    assert_eq!((c.status, &c.data[..]), (Status::PORTWAY_OK, &b"first"[..]));
    assert_eq!(hedge_meta(&c), None);
    assert_eq!(seen.calls.load(SeqCst), 1);
    assert_eq!(hedges(&eng, h), (0, 0, 0));
    let text = eng.metrics_text().unwrap();
    let line = "portway_policy_hedges_skipped_total{handler=\"lookup\"} 1";
    assert!(text.contains(line), "{text}");
}

#[test]
fn a_hedge_holds_a_slot_while_it_runs_and_gives_it_back() {
    let eng = engine();
    // Request a: its first call waits for its cancellation, its hedge for the test. Request
    // b (the third call) answers at once, once it gets a slot.
    let (h, seen) = hedged(&eng, "lookup", 20, |call, seen, n| match n {
        0 => wait_cancelled(call, &seen.cancelled),
        1 => {
            until("the test to let the hedge end", || seen.flag.load(SeqCst));
            call.respond(b"hedge").unwrap();
        }
        _ => call.respond(b"b").unwrap(),
    });
    limit_and_hedge(&eng, h, 2);
    let a = eng.submit(&sub(h, b"a")).unwrap();
    until("a's first call and hedge to hold both slots", || {
        eng.policy_state(h).unwrap().running == 2
    });
    let b = eng.submit(&sub(h, b"b")).unwrap();
    until("b to wait for a slot", || {
        eng.policy_state(h).unwrap().waiting == 1
    });
    assert_eq!(seen.calls.load(SeqCst), 2, "b ran past the limit");
    seen.flag.store(true, SeqCst);
    let done: HashMap<u64, OwnedCompletion> =
        collect(&eng, 2).into_iter().map(|c| (c.id, c)).collect();
    assert_eq!(&done[&a].data[..], b"hedge");
    assert_eq!(hedge_meta(&done[&a]), Some("won"));
    assert_eq!(&done[&b].data[..], b"b");
    until("every slot to be given back", || {
        let st = eng.policy_state(h).unwrap();
        (st.running, st.waiting) == (0, 0)
    });
    assert_eq!(hedges(&eng, h), (1, 1, 1));
}

#[test]
fn hedging_is_refused_where_a_second_call_could_never_apply() {
    let eng = engine();
    let plain = eng.register_blocking("plain", |call: &mut Call| {
        call.respond(b"").unwrap();
    });
    let plain = plain.unwrap();
    let echo = eng.lookup("echo").unwrap();
    let sleep = eng.lookup("sleep").unwrap();
    let pipe = eng.register_pipeline("pipe", &[echo, sleep]).unwrap();
    for id in [plain, echo, sleep, pipe] {
        let err = eng.set_policy(id, &hedge_after(10, 0)).unwrap_err();
        assert_eq!(err.status(), Status::PORTWAY_INVALID_ARGUMENT, "{err}");
    }
    let http = eng.lookup("http").unwrap();
    let err = eng.set_policy(http, &hedge_after(10, 101)).unwrap_err();
    assert!(err.to_string().contains("at most 100"), "{err}");
    eng.set_policy(http, &hedge_after(10, 100)).unwrap();
    // Hedging off is fine anywhere.
    eng.set_policy(plain, &hedge_after(0, 0)).unwrap();
}

mod http {
    use super::*;
    use http_support::{Server, read_request, response};
    use tokio::io::{AsyncWriteExt, BufReader};

    /// A server whose first connection reads its request and never answers; later ones answer
    /// 200 "fast". Counts the requests it read.
    fn first_connection_hangs() -> (Server, Arc<AtomicUsize>) {
        let reads = Arc::new(AtomicUsize::new(0));
        let r = reads.clone();
        let server = Server::raw(move |stream, conn| {
            let reads = r.clone();
            async move {
                let (rd, mut w) = stream.into_split();
                let mut rd = BufReader::new(rd);
                while read_request(&mut rd).await.is_some() {
                    reads.fetch_add(1, SeqCst);
                    if conn == 0 {
                        std::future::pending::<()>().await;
                    }
                    if w.write_all(&response(200, &[], b"fast")).await.is_err() {
                        return;
                    }
                }
            }
        });
        (server, reads)
    }

    #[test]
    fn a_get_is_hedged_on_a_second_connection() {
        let (server, reads) = first_connection_hangs();
        let eng = engine();
        let http = eng.lookup("http").unwrap();
        eng.set_policy(http, &hedge_after(20, 0)).unwrap();
        let req = format!("GET {} HTTP/1.1\r\n\r\n", server.url("/item"));
        eng.submit(&sub(http, req.as_bytes())).unwrap();
        let c = one(&eng);
        assert_eq!((c.status, c.code), (Status::PORTWAY_OK, 200));
        // The mark comes first: the response's own pairs keep their order, and the
        // `:http-version` pair the bindings read stays last.
        let won = ("portway-hedge".to_owned(), "won".to_owned());
        assert_eq!(c.meta.first(), Some(&won));
        assert_eq!(c.meta.last().unwrap().0, ":http-version");
        assert_eq!(reads.load(SeqCst), 2);
        let st = eng.policy_state(http).unwrap();
        assert_eq!(
            (st.hedges_started, st.hedges_won, st.hedges_cancelled),
            (1, 1, 1)
        );
    }

    #[test]
    fn a_post_is_never_hedged() {
        let (server, reads) = first_connection_hangs();
        let eng = engine();
        let http = eng.lookup("http").unwrap();
        eng.set_policy(http, &hedge_after(1, 100)).unwrap();
        let req = format!(
            "POST {} HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi",
            server.url("/orders")
        );
        let id = eng
            .submit(&Submission {
                handler: http,
                timeout_ms: 300,
                user_data: 0,
                payload: req.as_bytes(),
            })
            .unwrap();
        let c = one(&eng);
        assert_eq!((c.id, c.status), (id, Status::PORTWAY_TIMEOUT));
        assert_eq!(reads.load(SeqCst), 1);
        assert_eq!(eng.policy_state(http).unwrap().hedges_started, 0);
    }
}

mod c_abi {
    use portway::Status;
    use portway::ffi::*;
    use std::ffi::c_void;
    use std::ptr;
    use std::sync::atomic::Ordering::SeqCst;
    use std::time::{Duration, Instant};

    unsafe extern "C-unwind" fn respond(_ctx: *mut c_void, call: *mut portway_call) {
        // SAFETY: the call lent to this handler.
        unsafe { portway_call_respond(call, ptr::null(), 0) };
    }

    /// Counts calls; the first waits for `portway_call_is_cancelled`, the others answer.
    unsafe extern "C-unwind" fn first_waits(ctx: *mut c_void, call: *mut portway_call) {
        // SAFETY: `ctx` is the test's `Seen`, alive until the engine is freed.
        let seen = unsafe { &*ctx.cast::<super::Seen>() };
        if seen.calls.fetch_add(1, SeqCst) == 0 {
            let give_up = Instant::now() + Duration::from_secs(10);
            // SAFETY: the call lent to this handler, until it returns.
            while !unsafe { portway_call_is_cancelled(call) } && Instant::now() < give_up {
                std::thread::sleep(Duration::from_millis(1));
            }
            if unsafe { portway_call_is_cancelled(call) } {
                seen.cancelled.fetch_add(1, SeqCst);
            }
        } else {
            // SAFETY: as above.
            unsafe { portway_call_respond(call, b"hedge".as_ptr(), 5) };
        }
    }

    #[test]
    fn a_native_hedge_wins_and_the_first_call_sees_its_cancellation() {
        let seen = Box::new(super::Seen::default());
        let ctx = (&*seen as *const super::Seen).cast_mut().cast::<c_void>();
        let mut eng: *mut portway_engine = ptr::null_mut();
        // SAFETY: plain C ABI use with valid pointers throughout; `seen` outlives the engine.
        unsafe {
            assert_eq!(
                portway_engine_new(ptr::null(), &mut eng),
                Status::PORTWAY_OK
            );
            let mut h = 0u32;
            let flags = PORTWAY_HANDLER_IDEMPOTENT;
            let f: portway_handler_fn = Some(first_waits);
            let name = c"native".as_ptr();
            assert_eq!(
                portway_register_handler_ex(eng, name, f, ctx, flags, &mut h),
                Status::PORTWAY_OK
            );
            let mut p = std::mem::zeroed::<portway_policy>();
            p.hedge_after_ms = 5;
            assert_eq!(portway_handler_set_policy(eng, h, &p), Status::PORTWAY_OK);
            let req = portway_request {
                handler: h,
                timeout_ms: 0,
                user_data: 9,
                payload: b"k".as_ptr(),
                payload_len: 1,
            };
            let mut id = 0;
            assert_eq!(portway_submit(eng, &req, &mut id), Status::PORTWAY_OK);
            let mut c = std::mem::zeroed::<portway_completion>();
            let mut n = 0;
            while n == 0 {
                assert_eq!(
                    portway_poll(eng, &mut c, 1, 10_000, &mut n),
                    Status::PORTWAY_OK
                );
            }
            assert_eq!((c.id, c.status), (id, Status::PORTWAY_OK as u32));
            assert_eq!(std::slice::from_raw_parts(c.data, c.len), b"hedge");
            assert_eq!(c.meta_len, 1);
            let pair = *c.meta;
            let key = std::ffi::CStr::from_ptr(pair.key);
            let value = std::ffi::CStr::from_ptr(pair.value);
            assert_eq!((key, value), (c"portway-hedge", c"won"));
            assert_eq!(portway_release(eng, &c, 1), Status::PORTWAY_OK);
            super::until("the first call to see its cancellation", || {
                seen.cancelled.load(SeqCst) == 1
            });
            let mut st = portway_policy_state::default();
            assert_eq!(
                portway_handler_policy_state(eng, h, &mut st),
                Status::PORTWAY_OK
            );
            assert_eq!(
                (st.hedges_started, st.hedges_won, st.hedges_cancelled),
                (1, 1, 1)
            );
            portway_engine_free(eng);
        }
        drop(seen);
    }

    #[test]
    fn only_natives_registered_idempotent_take_hedging() {
        let mut eng: *mut portway_engine = ptr::null_mut();
        // SAFETY: plain C ABI use with valid pointers throughout.
        unsafe {
            assert_eq!(
                portway_engine_new(ptr::null(), &mut eng),
                Status::PORTWAY_OK
            );
            let (mut plain, mut idem, mut bad) = (0u32, 0u32, 0u32);
            let f: portway_handler_fn = Some(respond);
            assert_eq!(
                portway_register_handler(eng, c"plain".as_ptr(), f, ptr::null_mut(), &mut plain),
                Status::PORTWAY_OK
            );
            assert_eq!(
                portway_register_handler_ex(
                    eng,
                    c"idem".as_ptr(),
                    f,
                    ptr::null_mut(),
                    PORTWAY_HANDLER_IDEMPOTENT,
                    &mut idem
                ),
                Status::PORTWAY_OK
            );
            assert_eq!(
                portway_register_handler_ex(eng, c"bad".as_ptr(), f, ptr::null_mut(), 2, &mut bad),
                Status::PORTWAY_INVALID_ARGUMENT
            );
            let mut p = std::mem::zeroed::<portway_policy>();
            assert_eq!(portway_policy_default(&mut p), Status::PORTWAY_OK);
            p.hedge_after_ms = 50;
            assert_eq!(
                portway_handler_set_policy(eng, plain, &p),
                Status::PORTWAY_INVALID_ARGUMENT
            );
            assert_eq!(
                portway_handler_set_policy(eng, idem, &p),
                Status::PORTWAY_OK
            );
            p.hedge_budget_percent = 101;
            assert_eq!(
                portway_handler_set_policy(eng, idem, &p),
                Status::PORTWAY_INVALID_ARGUMENT
            );
            portway_engine_free(eng);
        }
    }
}
