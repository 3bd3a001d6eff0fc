//! Keep-alive pooling: connections are reused and capped per origin.

mod http_support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use http_support::*;
use portway::Status;
use portway::handlers::http::HttpOptions;

#[test]
fn ten_thousand_requests_at_256_in_flight_use_at_most_32_connections() {
    const TOTAL: usize = 10_000;
    const IN_FLIGHT: usize = 256;
    const MAX_CONNS: u32 = 32;
    let server = Server::http(|req| {
        let body = req.target.trim_start_matches("/n/").as_bytes().to_vec();
        response(200, &[], &body)
    });
    let engine = engine();
    let http = engine
        .register_http(
            "http32",
            HttpOptions {
                max_connections_per_host: MAX_CONNS,
                ..HttpOptions::default()
            },
        )
        .unwrap();
    let payloads: Vec<Vec<u8>> = (0..TOTAL)
        .map(|i| get(&server.url(&format!("/n/{i}"))))
        .collect();
    let started = Instant::now();
    let mut next = 0;
    let mut done = 0;
    let mut seen = HashSet::new();
    let sub = |next: &mut usize| {
        let i = *next;
        engine
            .submit(&portway::Submission {
                handler: http,
                timeout_ms: 0,
                user_data: i as u64,
                payload: &payloads[i],
            })
            .unwrap();
        *next += 1;
    };
    while next < IN_FLIGHT {
        sub(&mut next);
    }
    while done < TOTAL {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "stalled at {done} of {TOTAL}"
        );
        let (got, _) = engine
            .poll_owned(256, Some(Duration::from_secs(5)))
            .unwrap();
        for c in got {
            assert_status(&c, Status::PORTWAY_OK);
            assert_eq!(
                text(&c),
                c.user_data.to_string(),
                "body of request {}",
                c.user_data
            );
            assert!(seen.insert(c.user_data));
            done += 1;
            if next < TOTAL {
                sub(&mut next);
            }
        }
    }
    let accepted = server.accepted();
    eprintln!(
        "{TOTAL} requests over {accepted} connections in {:?}",
        started.elapsed()
    );
    assert!(
        accepted <= MAX_CONNS as usize,
        "{accepted} connections opened, limit {MAX_CONNS}"
    );
    assert!(accepted >= 2, "requests ran concurrently");
}

#[test]
fn sequential_requests_reuse_one_connection() {
    let server = Server::http(|_| response(200, &[], b"ok"));
    let engine = engine();
    let http = engine.lookup("http").unwrap();
    for _ in 0..20 {
        let c = run(&engine, http, &get(&server.url("/")), 0);
        assert_status(&c, Status::PORTWAY_OK);
    }
    assert_eq!(server.accepted(), 1);
    // The metrics exposition reports the same: one connection opened, the rest reused.
    let metrics = engine.metrics_text().unwrap();
    for line in [
        "portway_http_connections_opened_total{handler=\"http\"} 1",
        "portway_http_connections_reused_total{handler=\"http\"} 19",
        "portway_http_connections_open{handler=\"http\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line:?} in\n{metrics}"
        );
    }
}

#[test]
fn a_connection_the_server_closed_is_replaced() {
    // Every response says "Connection: close" and the server closes after it: each request
    // needs a fresh connection, and none fails because of a dead pooled one.
    let server = Server::raw(|stream, _| async move {
        use tokio::io::{AsyncWriteExt, BufReader};
        let mut r = BufReader::new(stream);
        if read_request(&mut r).await.is_some() {
            let resp = response(200, &[("Connection", "close")], b"once");
            let _ = r.get_mut().write_all(&resp).await;
        }
    });
    let engine = engine();
    let http = engine.lookup("http").unwrap();
    for _ in 0..5 {
        let c = run(&engine, http, &get(&server.url("/")), 0);
        assert_status(&c, Status::PORTWAY_OK);
        assert_eq!(text(&c), "once");
    }
    assert_eq!(server.accepted(), 5);
}

#[test]
fn idle_connections_expire_after_the_pool_idle_timeout() {
    let (closed_tx, closed) = std::sync::mpsc::channel();
    let server = Server::raw(move |stream, _| {
        let closed = closed_tx.clone();
        async move {
            use tokio::io::{AsyncWriteExt, BufReader};
            let mut r = BufReader::new(stream);
            while read_request(&mut r).await.is_some() {
                r.get_mut()
                    .write_all(&response(200, &[], b"ok"))
                    .await
                    .unwrap();
            }
            let _ = closed.send(());
        }
    });
    let engine = engine();
    let http = engine
        .register_http(
            "http-short-idle",
            HttpOptions {
                pool_idle_timeout_ms: 200,
                ..HttpOptions::default()
            },
        )
        .unwrap();
    let c = run(&engine, http, &get(&server.url("/")), 0);
    assert_status(&c, Status::PORTWAY_OK);
    closed
        .recv_timeout(Duration::from_secs(5))
        .expect("the idle connection was closed by the pool");
    let c = run(&engine, http, &get(&server.url("/")), 0);
    assert_status(&c, Status::PORTWAY_OK);
    assert_eq!(server.accepted(), 2);
}

#[test]
fn requests_waiting_for_a_connection_can_be_cancelled() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
    let (got_tx, got) = std::sync::mpsc::channel();
    let server = Server::raw(move |stream, _| {
        let got = got_tx.clone();
        async move {
            let mut r = BufReader::new(stream);
            while let Some(req) = read_request(&mut r).await {
                if req.target == "/hang" {
                    let _ = got.send(());
                    let mut sink = [0u8; 64];
                    while matches!(r.read(&mut sink).await, Ok(n) if n > 0) {}
                    return;
                }
                r.get_mut()
                    .write_all(&response(200, &[], b"ok"))
                    .await
                    .unwrap();
            }
        }
    });
    let engine = engine();
    let http = engine
        .register_http(
            "http-one-conn",
            HttpOptions {
                max_connections_per_host: 1,
                ..HttpOptions::default()
            },
        )
        .unwrap();
    let hang = submit(&engine, http, &get(&server.url("/hang")), 0);
    got.recv_timeout(WAIT)
        .expect("the request reached the server");
    let waiting = submit(&engine, http, &get(&server.url("/ok")), 0);
    let (none, _) = engine
        .poll_owned(8, Some(Duration::from_millis(100)))
        .unwrap();
    assert!(
        none.is_empty(),
        "the second request waits for the only connection"
    );
    assert_eq!(server.accepted(), 1);
    engine.cancel(waiting).unwrap();
    engine.cancel(hang).unwrap();
    for c in wait_all(&engine, 2) {
        assert_status(&c, Status::PORTWAY_CANCELLED);
    }
    let c = run(&engine, http, &get(&server.url("/ok")), 0);
    assert_status(&c, Status::PORTWAY_OK);
    assert_eq!(server.accepted(), 2);
}
