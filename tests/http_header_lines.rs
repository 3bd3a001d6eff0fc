//! HTTP/1 response heads with many header lines (issue 14's guarantee: one line per 256 bytes
//! of max_header_bytes, at least 256) on narrow and wide connections: an origin's connections
//! take hyper's default of 100 lines until a head needs more or a request that may not be sent
//! twice goes to it (see the pool's module doc).

mod http_support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http_support::*;
use portway::Status;
use portway::handlers::http::HttpOptions;

/// Answers `/N` with N header lines `X-Hi: i` (and a Content-Length) and counts the requests it
/// got per method and target.
fn many_headers_server() -> (Server, Arc<Mutex<HashMap<String, usize>>>) {
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let counts = seen.clone();
    let server = Server::http(move |req| {
        *counts
            .lock()
            .unwrap()
            .entry(format!("{} {}", req.method, req.target))
            .or_insert(0) += 1;
        let n: usize = req.target.trim_start_matches('/').parse().unwrap();
        let headers: Vec<(String, String)> =
            (0..n).map(|i| (format!("X-H{i}"), i.to_string())).collect();
        let refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        response(200, &refs, b"ok")
    });
    (server, seen)
}

fn seen(counts: &Mutex<HashMap<String, usize>>, key: &str) -> usize {
    counts.lock().unwrap().get(key).copied().unwrap_or(0)
}

#[test]
fn http1_responses_with_hundreds_of_header_lines_pass_up_to_the_limit() {
    // hyper's default limit is 100 header lines; real servers send more (Set-Cookie lists).
    // The limit is one line per 256 bytes of max_header_bytes, at least 256.
    let (server, _) = many_headers_server();
    let engine = engine();
    let http = engine.lookup("http").unwrap();
    // 250 lines + Content-Length: within the default 256.
    let c = run(&engine, http, &get(&server.url("/250")), 0);
    assert_status(&c, Status::PORTWAY_OK);
    assert_eq!(meta(&c, "x-h249"), Some("249"));
    assert_eq!(meta(&c, ":http-version"), Some("HTTP/1.1"));
    assert_eq!(c.meta.len(), 252);
    let c = run(&engine, http, &get(&server.url("/300")), 0);
    assert_status(&c, Status::PORTWAY_PROTOCOL_ERROR);
    assert!(text(&c).contains("over 256 header lines"), "{}", text(&c));
    // A larger byte limit allows more lines: 256 KiB / 256 = 1024.
    let big = engine
        .register_http(
            "http-many-headers",
            HttpOptions {
                max_header_bytes: 256 << 10,
                ..HttpOptions::default()
            },
        )
        .unwrap();
    let c = run(&engine, big, &get(&server.url("/1000")), 0);
    assert_status(&c, Status::PORTWAY_OK);
    assert_eq!(c.meta.len(), 1002);
}

#[test]
fn a_get_whose_head_a_narrow_connection_cannot_take_is_sent_again_on_a_wide_one() {
    let (server, counts) = many_headers_server();
    let engine = engine();
    let http = engine.lookup("http").unwrap();
    // Small heads: one narrow connection, one request each.
    for _ in 0..3 {
        assert_status(
            &run(&engine, http, &get(&server.url("/5")), 0),
            Status::PORTWAY_OK,
        );
    }
    assert_eq!(seen(&counts, "GET /5"), 3);
    assert_eq!(server.accepted(), 1);
    // 150 lines: over a narrow connection's 100, so the GET is sent again on a new, wide
    // connection, and the completion is the wide connection's response.
    let c = run(&engine, http, &get(&server.url("/150")), 0);
    assert_status(&c, Status::PORTWAY_OK);
    assert_eq!(meta(&c, "x-h149"), Some("149"));
    assert_eq!(seen(&counts, "GET /150"), 2);
    assert_eq!(server.accepted(), 2);
    // The origin is wide from now on: once per request, on the wide connection.
    let c = run(&engine, http, &get(&server.url("/150")), 0);
    assert_status(&c, Status::PORTWAY_OK);
    assert_eq!(seen(&counts, "GET /150"), 3);
    assert_status(
        &run(&engine, http, &get(&server.url("/5")), 0),
        Status::PORTWAY_OK,
    );
    assert_eq!(seen(&counts, "GET /5"), 4);
    assert_eq!(server.accepted(), 2);
}

#[test]
fn a_post_to_a_new_origin_goes_once_on_a_wide_connection() {
    // A POST may not be sent twice: it never goes on a narrow connection, so a head of 250
    // lines passes on the first and only try.
    let (server, counts) = many_headers_server();
    let engine = engine();
    let http = engine.lookup("http").unwrap();
    let post = format!(
        "POST {} HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi",
        server.url("/250")
    );
    let c = run(&engine, http, post.as_bytes(), 0);
    assert_status(&c, Status::PORTWAY_OK);
    assert_eq!(meta(&c, "x-h249"), Some("249"));
    assert_eq!(seen(&counts, "POST /250"), 1);
    // The origin stays wide: a GET of a large head goes once too.
    assert_status(
        &run(&engine, http, &get(&server.url("/250")), 0),
        Status::PORTWAY_OK,
    );
    assert_eq!(seen(&counts, "GET /250"), 1);
    assert_eq!(server.accepted(), 1);
}

#[test]
fn a_head_over_the_wide_limit_fails_after_one_repeat() {
    let (server, counts) = many_headers_server();
    let engine = engine();
    let http = engine.lookup("http").unwrap();
    let c = run(&engine, http, &get(&server.url("/300")), 0);
    assert_status(&c, Status::PORTWAY_PROTOCOL_ERROR);
    assert!(text(&c).contains("over 256 header lines"), "{}", text(&c));
    assert_eq!(seen(&counts, "GET /300"), 2);
    let c = run(&engine, http, &get(&server.url("/300")), 0);
    assert_status(&c, Status::PORTWAY_PROTOCOL_ERROR);
    assert_eq!(seen(&counts, "GET /300"), 3);
}
