//! Per-handler policies on the `http` built-in (issue 16): which outcomes the circuit breaker
//! counts as failures — a 5xx response and a connection that cannot be made do, a 4xx does
//! not — that an open breaker refuses without reaching the upstream, and that the breaker is
//! kept per origin: a failing upstream refuses only its own requests.

mod http_support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_support::*;
use portway::Status;
use portway::engine::{LogLevel, PolicySettings};

fn breaker(failures: u32) -> PolicySettings {
    PolicySettings {
        breaker_failures: failures,
        breaker_cooldown: Duration::from_secs(3600),
        ..Default::default()
    }
}

#[test]
fn five_hundreds_open_the_breaker_and_four_hundreds_do_not() {
    let server = Server::http(|req| match req.target.as_str() {
        "/missing" => response(404, &[], b"not here"),
        _ => response(500, &[], b"boom"),
    });
    let engine = engine();
    let http = engine.lookup("http").unwrap();
    engine.set_policy(http, &breaker(2)).unwrap();
    for _ in 0..3 {
        let c = run(&engine, http, &get(&server.url("/missing")), 0);
        assert_eq!((c.status, c.code), (Status::PORTWAY_OK, 404));
    }
    assert_eq!(engine.policy_state(http).unwrap().breaker_state, 0);
    for _ in 0..2 {
        let c = run(&engine, http, &get(&server.url("/boom")), 0);
        assert_eq!((c.status, c.code), (Status::PORTWAY_OK, 500));
    }
    let state = engine.policy_state(http).unwrap();
    assert_eq!((state.breaker_state, state.breaker_trips), (1, 1));
    // Open: refused at once, whatever the path; the upstream sees nothing more.
    let c = run(&engine, http, &get(&server.url("/missing")), 0);
    assert_status(&c, Status::PORTWAY_UNAVAILABLE);
    assert_eq!(engine.policy_state(http).unwrap().breaker_rejected, 1);
}

#[test]
fn connect_errors_open_the_breaker() {
    let engine = engine();
    let http = engine.lookup("http").unwrap();
    engine.set_policy(http, &breaker(2)).unwrap();
    let url = format!("http://127.0.0.1:{}/", closed_port());
    for _ in 0..2 {
        assert_status(
            &run(&engine, http, &get(&url), 0),
            Status::PORTWAY_CONNECT_ERROR,
        );
    }
    assert_status(
        &run(&engine, http, &get(&url), 0),
        Status::PORTWAY_UNAVAILABLE,
    );
    let text = engine.metrics_text().unwrap();
    assert!(text.contains("portway_policy_breaker_state{handler=\"http\"} 1"));
}

#[test]
fn one_failing_origin_opens_only_its_own_breaker() {
    let bad_calls = Arc::new(AtomicUsize::new(0));
    let seen = bad_calls.clone();
    let bad = Server::http(move |_| {
        seen.fetch_add(1, Ordering::SeqCst);
        response(503, &[], b"down")
    });
    let good = Server::http(|_| response(200, &[], b"fine"));
    let engine = engine();
    let log: Arc<Mutex<Vec<(LogLevel, String)>>> = Arc::default();
    let sink = log.clone();
    engine
        .set_log(
            Some(Arc::new(move |level: LogLevel, msg: &str| {
                sink.lock().unwrap().push((level, msg.to_owned()));
            })),
            LogLevel::Info,
        )
        .unwrap();
    let http = engine.lookup("http").unwrap();
    engine.set_policy(http, &breaker(2)).unwrap();
    // Interleaved: the good origin's successes do not reset the bad one's count.
    for _ in 0..2 {
        let c = run(&engine, http, &get(&bad.url("/")), 0);
        assert_eq!((c.status, c.code), (Status::PORTWAY_OK, 503));
        let c = run(&engine, http, &get(&good.url("/")), 0);
        assert_eq!((c.status, c.code), (Status::PORTWAY_OK, 200));
    }
    let bad_origin = bad.url("").trim_end_matches('/').to_owned();
    let refused = run(&engine, http, &get(&bad.url("/other")), 0);
    assert_status(&refused, Status::PORTWAY_UNAVAILABLE);
    assert!(text(&refused).contains(&bad_origin), "{}", text(&refused));
    for _ in 0..3 {
        let c = run(&engine, http, &get(&good.url("/")), 0);
        assert_eq!((c.status, c.code), (Status::PORTWAY_OK, 200));
    }
    assert_eq!(
        bad_calls.load(Ordering::SeqCst),
        2,
        "the open origin saw nothing more"
    );
    let state = engine.policy_state(http).unwrap();
    assert_eq!(
        (
            state.breaker_state,
            state.breaker_open,
            state.breaker_trips,
            state.breaker_rejected
        ),
        (1, 1, 1, 1)
    );
    let metrics = engine.metrics_text().unwrap();
    assert!(metrics.contains("portway_policy_breaker_open{handler=\"http\"} 1"));
    let log = log.lock().unwrap();
    let trips: Vec<_> = log
        .iter()
        .filter(|(_, m)| m.contains("circuit breaker"))
        .collect();
    assert_eq!(trips.len(), 1, "{trips:?}");
    assert!(trips[0].1.contains(&bad_origin), "{trips:?}");
}

#[test]
fn the_half_open_trial_is_per_origin() {
    let down = Arc::new(AtomicBool::new(true));
    let flag = down.clone();
    let a = Server::http(move |_| {
        if flag.load(Ordering::SeqCst) {
            response(500, &[], b"boom")
        } else {
            response(200, &[], b"back")
        }
    });
    let b = Server::http(|_| response(500, &[], b"boom"));
    let engine = engine();
    let http = engine.lookup("http").unwrap();
    // Long enough that no cooldown ends between two requests of the test, on a busy machine.
    let cooldown = Duration::from_millis(500);
    engine
        .set_policy(
            http,
            &PolicySettings {
                breaker_cooldown: cooldown,
                ..breaker(1)
            },
        )
        .unwrap();
    assert_eq!(run(&engine, http, &get(&a.url("/")), 0).code, 500);
    assert_eq!(run(&engine, http, &get(&b.url("/")), 0).code, 500);
    assert_eq!(engine.policy_state(http).unwrap().breaker_open, 2);
    down.store(false, Ordering::SeqCst);
    std::thread::sleep(cooldown + Duration::from_millis(20));
    // Each origin gets its own trial: a's succeeds and closes a's breaker, b's fails.
    assert_eq!(run(&engine, http, &get(&a.url("/")), 0).code, 200);
    assert_eq!(run(&engine, http, &get(&b.url("/")), 0).code, 500);
    assert_eq!(run(&engine, http, &get(&a.url("/")), 0).code, 200);
    assert_status(
        &run(&engine, http, &get(&b.url("/")), 0),
        Status::PORTWAY_UNAVAILABLE,
    );
    let state = engine.policy_state(http).unwrap();
    assert_eq!((state.breaker_open, state.breaker_trips), (1, 3));
}
