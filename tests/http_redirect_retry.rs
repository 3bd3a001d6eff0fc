//! Redirects (off by default, limited when on) and retries of idempotent requests.

mod http_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http_support::*;
use portway::Status;
use portway::handlers::http::HttpOptions;

/// /a -> 302 /b -> 301 absolute /c -> 200; /post -> 303 /seen; /loop -> 307 /loop.
fn redirect_server() -> Server {
    let own = Arc::new(std::sync::OnceLock::<String>::new());
    let own2 = own.clone();
    let server = Server::http(move |req| match req.target.as_str() {
        "/a" => response(302, &[("Location", "/b")], b"to b"),
        "/b" => {
            let abs = format!("{}/c", own2.get().unwrap());
            response(301, &[("Location", &abs)], b"")
        }
        "/c" => response(200, &[("X-Final", "c")], b"final"),
        "/post" => response(303, &[("Location", "seen?from=post")], b""),
        "/keep" => response(307, &[("Location", "/seen")], b""),
        "/loop" => response(307, &[("Location", "/loop")], b""),
        _ => {
            let line = format!(
                "{} {} len={} type={}",
                req.method,
                req.target,
                req.body.len(),
                req.header("content-type").unwrap_or("-")
            );
            response(200, &[], line.as_bytes())
        }
    });
    own.set(server.url("")).unwrap();
    server
}

fn following(max_redirects: u32) -> HttpOptions {
    HttpOptions {
        follow_redirects: true,
        max_redirects,
        ..HttpOptions::default()
    }
}

#[test]
fn redirects_are_returned_as_is_by_default() {
    let server = redirect_server();
    let engine = engine();
    let http = engine.lookup("http").unwrap();
    let c = run(&engine, http, &get(&server.url("/a")), 0);
    assert_status(&c, Status::PORTWAY_OK);
    assert_eq!(c.code, 302);
    assert_eq!(meta(&c, "location"), Some("/b"));
    assert_eq!(text(&c), "to b");
}

#[test]
fn a_redirect_chain_is_followed_when_enabled() {
    let server = redirect_server();
    let engine = engine();
    let http = engine.register_http("http-follow", following(10)).unwrap();
    let c = run(&engine, http, &get(&server.url("/a")), 0);
    assert_status(&c, Status::PORTWAY_OK);
    assert_eq!(c.code, 200);
    assert_eq!(text(&c), "final");
    assert_eq!(meta(&c, "x-final"), Some("c"));
    assert!(
        meta(&c, "location").is_none(),
        "the meta are the final response's headers"
    );

    // 303 turns a POST into a body-less GET, with a relative Location.
    let post = format!(
        "POST {} HTTP/1.1\r\nContent-Type: text/plain\r\n\r\npayload",
        server.url("/post")
    );
    let c = run(&engine, http, post.as_bytes(), 0);
    assert_status(&c, Status::PORTWAY_OK);
    assert_eq!(text(&c), "GET /seen?from=post len=0 type=-");

    // 307 keeps the method and the body.
    let post = format!(
        "POST {} HTTP/1.1\r\nContent-Type: text/plain\r\n\r\npayload",
        server.url("/keep")
    );
    let c = run(&engine, http, post.as_bytes(), 0);
    assert_status(&c, Status::PORTWAY_OK);
    assert_eq!(text(&c), "POST /seen len=7 type=text/plain");
}

#[test]
fn the_redirect_limit_is_enforced() {
    let server = redirect_server();
    let engine = engine();
    // The chain /a -> /b -> /c needs two redirects.
    let one = engine.register_http("http-follow-1", following(1)).unwrap();
    let c = run(&engine, one, &get(&server.url("/a")), 0);
    assert_status(&c, Status::PORTWAY_PROTOCOL_ERROR);
    assert!(text(&c).contains("too many redirects"), "{}", text(&c));
    let two = engine.register_http("http-follow-2", following(2)).unwrap();
    let c = run(&engine, two, &get(&server.url("/a")), 0);
    assert_status(&c, Status::PORTWAY_OK);
    assert_eq!(text(&c), "final");

    let c = run(&engine, two, &get(&server.url("/loop")), 0);
    assert_status(&c, Status::PORTWAY_PROTOCOL_ERROR);
}

/// A server failing the first `failures` requests with `code`, then answering 200.
fn flaky_server(failures: usize, code: u16) -> (Server, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let server = Server::http(move |_| {
        let n = h.fetch_add(1, Ordering::SeqCst) + 1;
        if n <= failures {
            response(code, &[], format!("attempt {n} failed").as_bytes())
        } else {
            response(200, &[], format!("attempt {n} ok").as_bytes())
        }
    });
    (server, hits)
}

fn retrying(retries: u32, base_ms: u32) -> HttpOptions {
    HttpOptions {
        retries,
        retry_base_backoff_ms: base_ms,
        ..HttpOptions::default()
    }
}

#[test]
fn idempotent_requests_are_retried_and_succeed_on_the_third_attempt() {
    let (server, hits) = flaky_server(2, 503);
    let engine = engine();
    let http = engine.register_http("http-retry", retrying(3, 20)).unwrap();
    let started = Instant::now();
    let c = run(&engine, http, &get(&server.url("/flaky")), 0);
    assert_status(&c, Status::PORTWAY_OK);
    assert_eq!(c.code, 200);
    assert_eq!(text(&c), "attempt 3 ok");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    // Backoffs of 20 and 40 ms, each jittered to at least half.
    assert!(
        started.elapsed() >= Duration::from_millis(30),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn retries_stop_at_the_limit_and_return_the_last_response() {
    let (server, hits) = flaky_server(10, 502);
    let engine = engine();
    let http = engine.register_http("http-retry", retrying(2, 1)).unwrap();
    let put = format!("PUT {} HTTP/1.1\r\n\r\nx", server.url("/"));
    let c = run(&engine, http, put.as_bytes(), 0);
    assert_status(&c, Status::PORTWAY_OK);
    assert_eq!(c.code, 502);
    assert_eq!(text(&c), "attempt 3 failed");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

#[test]
fn non_idempotent_requests_and_other_statuses_are_not_retried() {
    let engine = engine();
    let http = engine.register_http("http-retry", retrying(3, 1)).unwrap();

    let (server, hits) = flaky_server(2, 503);
    let post = format!("POST {} HTTP/1.1\r\n\r\nx", server.url("/"));
    let c = run(&engine, http, post.as_bytes(), 0);
    assert_eq!((c.status, c.code), (Status::PORTWAY_OK, 503));
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    let (server, hits) = flaky_server(2, 500);
    let c = run(&engine, http, &get(&server.url("/")), 0);
    assert_eq!((c.status, c.code), (Status::PORTWAY_OK, 500));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[test]
fn connect_errors_are_retried_with_backoff() {
    let engine = engine();
    let http = engine.register_http("http-retry", retrying(2, 40)).unwrap();
    let url = format!("http://127.0.0.1:{}/", closed_port());
    let started = Instant::now();
    let c = run(&engine, http, &get(&url), 0);
    assert_status(&c, Status::PORTWAY_CONNECT_ERROR);
    assert!(text(&c).contains("after 3 attempts"), "{}", text(&c));
    // Backoffs of 40 and 80 ms, each jittered to at least half.
    assert!(
        started.elapsed() >= Duration::from_millis(60),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn retries_are_off_by_default() {
    let (server, hits) = flaky_server(1, 503);
    let engine = engine();
    let http = engine.lookup("http").unwrap();
    let c = run(&engine, http, &get(&server.url("/")), 0);
    assert_eq!((c.status, c.code), (Status::PORTWAY_OK, 503));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}
