//! Per-handler policies on the `http` built-in (issue 16): which outcomes the circuit breaker
//! counts as failures — a 5xx response and a connection that cannot be made do, a 4xx does
//! not — and that an open breaker refuses without reaching the upstream.

mod http_support;

use std::time::Duration;

use http_support::*;
use portway::Status;
use portway::engine::PolicySettings;

fn breaker(failures: u32) -> PolicySettings {
    PolicySettings {
        max_concurrency: 0,
        adaptive: false,
        min_concurrency: 0,
        rate_per_s: 0.0,
        burst: 0,
        breaker_failures: failures,
        breaker_cooldown: Duration::from_secs(3600),
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
