//! Built-in handlers, native handlers and the completion record, through the Rust API.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{collect, engine, one, sub};
use portway::{Error, Status, Submission};

#[test]
fn echo_responds_with_the_payload_and_echoes_user_data() {
    let eng = engine();
    let echo = eng.lookup("echo").unwrap();
    let id = eng
        .submit(&Submission {
            handler: echo,
            timeout_ms: 0,
            user_data: 42,
            payload: b"hello",
        })
        .unwrap();
    assert_ne!(id, 0);
    let c = one(&eng);
    assert_eq!(
        (c.id, c.user_data, c.status, c.data.as_slice()),
        (id, 42, Status::PORTWAY_OK, &b"hello"[..])
    );
    assert_eq!(eng.stats().unwrap().in_flight, 0);
}

#[test]
fn ids_are_nonzero_and_unique() {
    let eng = engine();
    let echo = eng.lookup("echo").unwrap();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..1000 {
        let id = eng.submit(&sub(echo, b"x")).unwrap();
        assert!(id != 0 && seen.insert(id));
    }
    assert_eq!(collect(&eng, 1000).len(), 1000);
}

#[test]
fn sleep_waits_without_holding_a_thread() {
    let eng = common::engine_with(|c| {
        c.set_runtime_threads(1).unwrap();
    });
    let sleep = eng.lookup("sleep").unwrap();
    let start = Instant::now();
    for _ in 0..2000 {
        eng.submit(&sub(sleep, b"50")).unwrap();
    }
    let all = collect(&eng, 2000);
    assert!(
        all.iter()
            .all(|c| c.status == Status::PORTWAY_OK && c.data.is_empty())
    );
    // 2000 sleeps of 50 ms on one runtime thread finish together, not one after another.
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn sleeps_finish_in_time_order_whatever_the_submit_order() {
    let eng = engine();
    let sleep = eng.lookup("sleep").unwrap();
    let mut ids = Vec::new();
    for ms in [b"300", b"100", b"200"] {
        ids.push(eng.submit(&sub(sleep, ms)).unwrap());
    }
    // A cancelled sleep completes at once, and its timer entry never completes it again.
    let cancelled = eng.submit(&sub(sleep, b"150")).unwrap();
    eng.cancel(cancelled).unwrap();
    let order: Vec<(u64, Status)> = collect(&eng, 4).iter().map(|c| (c.id, c.status)).collect();
    assert_eq!(
        order,
        [
            (cancelled, Status::PORTWAY_CANCELLED),
            (ids[1], Status::PORTWAY_OK),
            (ids[2], Status::PORTWAY_OK),
            (ids[0], Status::PORTWAY_OK),
        ]
    );
    std::thread::sleep(Duration::from_millis(20));
    let st = eng.stats().unwrap();
    assert_eq!((st.completed_total(), st.in_flight), (4, 0));
}

#[test]
fn sleep_rejects_a_bad_payload_at_submit() {
    let eng = engine();
    let sleep = eng.lookup("sleep").unwrap();
    let err = eng.submit(&sub(sleep, b"soon")).unwrap_err();
    assert_eq!(err.status(), Status::PORTWAY_INVALID_ARGUMENT);
    assert!(err.to_string().contains("milliseconds"), "{err}");
    assert_eq!(eng.stats().unwrap().accepted, 0);
}

#[test]
fn unknown_handler_and_oversized_payload_are_refused() {
    let eng = common::engine_with(|c| c.set_max_payload(4).unwrap());
    assert_eq!(
        eng.submit(&sub(999, b"")).unwrap_err(),
        Error::UnknownHandler(999)
    );
    assert_eq!(
        eng.submit(&sub(0, b"")).unwrap_err(),
        Error::UnknownHandler(0)
    );
    let echo = eng.lookup("echo").unwrap();
    let err = eng.submit(&sub(echo, b"12345")).unwrap_err();
    assert_eq!(err.status(), Status::PORTWAY_PAYLOAD_TOO_LARGE);
    assert!(
        err.to_string().contains("5 bytes") && err.to_string().contains("4 bytes"),
        "{err}"
    );
    let s = eng.stats().unwrap();
    assert_eq!(
        (s.accepted, s.rejected_invalid, s.completed_total()),
        (0, 3, 0)
    );
}

#[test]
fn lookup_of_a_missing_name_is_not_found_and_duplicates_are_refused() {
    let eng = engine();
    assert_eq!(
        eng.lookup("nope").unwrap_err().status(),
        Status::PORTWAY_NOT_FOUND
    );
    let err = eng
        .register_blocking("echo", |_c: &mut portway::handlers::Call| {})
        .unwrap_err();
    assert_eq!(err.status(), Status::PORTWAY_INVALID_ARGUMENT);
}

#[test]
fn blocking_handler_responds_with_code_and_meta() {
    let eng = engine();
    let id = eng
        .register_blocking("upper", |c: &mut portway::handlers::Call| {
            let up = c.payload().to_ascii_uppercase();
            c.set_code(201);
            c.add_meta("k", "v").unwrap();
            c.respond(&up).unwrap();
            assert!(c.respond(b"again").is_err());
        })
        .unwrap();
    eng.submit(&sub(id, b"abc")).unwrap();
    let c = one(&eng);
    assert_eq!(
        (c.status, c.code, c.data.as_slice()),
        (Status::PORTWAY_OK, 201, &b"ABC"[..])
    );
    assert_eq!(c.meta, vec![("k".to_owned(), "v".to_owned())]);
}

#[test]
fn handler_that_does_not_respond_or_fails_is_a_handler_error() {
    let eng = engine();
    let silent = eng
        .register_blocking("silent", |_c: &mut portway::handlers::Call| {})
        .unwrap();
    let failing = eng
        .register_blocking("failing", |c: &mut portway::handlers::Call| {
            c.fail("bad thing").unwrap()
        })
        .unwrap();
    eng.submit(&sub(silent, b"")).unwrap();
    let c = one(&eng);
    assert_eq!(c.status, Status::PORTWAY_HANDLER_ERROR);
    assert!(String::from_utf8_lossy(&c.data).contains("without responding"));
    eng.submit(&sub(failing, b"")).unwrap();
    let c = one(&eng);
    assert_eq!(
        (c.status, c.data.as_slice()),
        (Status::PORTWAY_HANDLER_ERROR, &b"bad thing"[..])
    );
}

#[test]
fn panicking_handler_completes_with_panic() {
    let eng = engine();
    let boom = eng
        .register_blocking("boom", |_c: &mut portway::handlers::Call| panic!("kaboom"))
        .unwrap();
    eng.submit(&sub(boom, b"")).unwrap();
    let c = one(&eng);
    assert_eq!(c.status, Status::PORTWAY_PANIC);
    assert!(String::from_utf8_lossy(&c.data).contains("kaboom"));
    // The pool survives the panic.
    eng.submit(&sub(boom, b"")).unwrap();
    assert_eq!(one(&eng).status, Status::PORTWAY_PANIC);
}

#[test]
fn concurrency_limit_bounds_running_calls() {
    let eng = common::engine_with(|c| c.set_pool_workers(4).unwrap());
    let running = Arc::new(AtomicU32::new(0));
    let peak = Arc::new(AtomicU32::new(0));
    let (r, p) = (running.clone(), peak.clone());
    let slow = eng
        .register_blocking("slow", move |c: &mut portway::handlers::Call| {
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
            r.fetch_sub(1, Ordering::SeqCst);
            c.respond(b"").unwrap();
        })
        .unwrap();
    eng.set_concurrency(slow, 1).unwrap();
    for _ in 0..40 {
        eng.submit(&sub(slow, b"")).unwrap();
    }
    let all = collect(&eng, 40);
    assert!(all.iter().all(|c| c.status == Status::PORTWAY_OK));
    assert_eq!(peak.load(Ordering::SeqCst), 1);
}

#[test]
fn completion_timings_are_reported() {
    let eng = engine();
    let sleep = eng.lookup("sleep").unwrap();
    eng.submit(&sub(sleep, b"20")).unwrap();
    let mut timings = None;
    let deadline = Instant::now() + Duration::from_secs(5);
    while timings.is_none() && Instant::now() < deadline {
        eng.poll(8, Some(Duration::from_millis(100)), |_, c| {
            timings = Some(c.timings())
        })
        .unwrap();
    }
    let (queued, run) = timings.expect("a completion");
    assert!(run >= 20_000_000, "run_ns {run}");
    assert!(queued < run);
}

#[test]
fn a_slow_native_call_does_not_delay_others_on_an_idle_worker() {
    let eng = engine(); // two pool workers
    let slow = eng
        .register_blocking("slow", |c: &mut portway::handlers::Call| {
            std::thread::sleep(Duration::from_millis(400));
            c.respond(b"slow").unwrap();
        })
        .unwrap();
    let fast = eng
        .register_blocking("fast", |c: &mut portway::handlers::Call| {
            c.respond(b"fast").unwrap()
        })
        .unwrap();
    let mut batch = vec![sub(slow, b"")];
    batch.extend((0..10).map(|_| sub(fast, b"")));
    eng.submit_batch(&batch, None).1.unwrap();
    // The slow call takes 400 ms; the ten fast ones finish on the other worker meanwhile.
    let first_ten = collect(&eng, 10);
    assert!(
        first_ten.iter().all(|c| c.data == b"fast"),
        "a fast call waited behind the slow one"
    );
    assert_eq!(one(&eng).data, b"slow");
}

#[test]
fn blocking_responses_of_every_size_arrive_intact_whatever_the_payload_size() {
    // Small responses live in the call until the handler returns, and the spent payload
    // buffer is reused for the response when it fits: every combination must give back the
    // exact bytes, including responses made from the payload itself.
    let eng = engine();
    let id = eng
        .register_blocking("sized", |c: &mut portway::handlers::Call| {
            let (want, rest) = c.payload().split_at(4);
            let want = u32::from_le_bytes(want.try_into().unwrap()) as usize;
            let response: Vec<u8> = if want <= rest.len() {
                rest[..want].to_vec()
            } else {
                (0..want).map(|i| (i % 251) as u8).collect()
            };
            c.respond(&response).unwrap();
        })
        .unwrap();
    let sizes = [
        0usize, 1, 31, 63, 64, 65, 200, 1023, 1024, 1025, 5000, 70_000,
    ];
    let mut expected = Vec::new();
    for &payload_len in &sizes {
        for &want in &sizes {
            let mut payload = (want as u32).to_le_bytes().to_vec();
            payload.extend((0..payload_len).map(|i| (i % 13) as u8 + b'a'));
            let response: Vec<u8> = if want <= payload_len {
                payload[4..4 + want].to_vec()
            } else {
                (0..want).map(|i| (i % 251) as u8).collect()
            };
            let req = eng.submit(&sub(id, &payload)).unwrap();
            expected.push((req, response));
        }
    }
    let mut got = common::collect(&eng, expected.len());
    got.sort_by_key(|c| c.id);
    assert_eq!(got.len(), expected.len());
    for (c, (id, response)) in got.iter().zip(&expected) {
        assert_eq!(c.id, *id);
        assert_eq!(c.status, Status::PORTWAY_OK);
        assert_eq!(c.data, *response, "request {id}: {} bytes", response.len());
    }
}

#[test]
fn released_requests_are_reused_without_carrying_anything_over() {
    // Released requests (and their buffers) are recycled by later submits: a request must
    // come back with nothing of its previous life: not its code, meta, bytes, status,
    // deadline or cancellation.
    let eng = engine();
    let marked = eng
        .register_blocking("marked", |c: &mut portway::handlers::Call| {
            c.set_code(7);
            c.add_meta("previous", "life").unwrap();
            let long = c.payload().repeat(3);
            c.respond(&long).unwrap();
        })
        .unwrap();
    let plain = eng
        .register_blocking("plain", |c: &mut portway::handlers::Call| {
            let p = c.payload().to_vec();
            c.respond(&p).unwrap();
        })
        .unwrap();
    let sleep = eng.lookup("sleep").unwrap();
    for round in 0..5 {
        let mut first = Vec::new();
        for i in 0..64 {
            first.push(sub(marked, b"first life payload"));
            let mut timed = sub(sleep, b"60000");
            timed.timeout_ms = 1 + i % 3;
            first.push(timed);
        }
        let (n, r) = eng.submit_batch(&first, None);
        r.unwrap();
        let got = common::collect(&eng, n);
        assert!(got.iter().any(|c| c.status == Status::PORTWAY_TIMEOUT));
        let payloads: Vec<Vec<u8>> = (0..128u32).map(|i| i.to_le_bytes().to_vec()).collect();
        let second: Vec<_> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| Submission {
                handler: plain,
                timeout_ms: 0,
                user_data: i as u64,
                payload: p,
            })
            .collect();
        let (n, r) = eng.submit_batch(&second, None);
        r.unwrap();
        for c in common::collect(&eng, n) {
            let i = c.user_data as usize;
            assert_eq!(c.status, Status::PORTWAY_OK, "round {round}");
            assert_eq!((c.code, c.meta.len()), (0, 0), "round {round}");
            assert_eq!(c.data, payloads[i], "round {round}");
        }
    }
}
