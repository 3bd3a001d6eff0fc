//! HTTP/2 requests the server did not process: streams above a GOAWAY's last-stream-id and
//! streams refused with REFUSED_STREAM are sent again on a new connection, whatever their
//! method and without counting against `retries` (RFC 9113 sections 6.8 and 8.7).

mod http_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_support::*;
use portway::Status;
use portway::handlers::http::HttpOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the test server saw.
#[derive(Default)]
struct Seen {
    gets: AtomicUsize,
    posts: AtomicUsize,
    goaways: AtomicUsize,
}

/// An h2c server that answers each request with 200 "ok"; `refuse(n)` (n counts streams over
/// all connections) resets a stream with REFUSED_STREAM instead, and after `per_conn` streams
/// a connection shuts down gracefully with GOAWAY (as nginx does after keepalive_requests).
/// Like nginx it closes the socket "lingering": it stops writing, then reads and discards
/// what the client still sends, so the client reads the GOAWAY instead of a reset.
fn h2_server(per_conn: usize, refuse: fn(usize) -> bool) -> (Server, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let streams = Arc::new(AtomicUsize::new(0));
    let counted = seen.clone();
    let server = Server::raw(move |stream, _| {
        let (seen, streams) = (counted.clone(), streams.clone());
        async move {
            let std = stream.into_std().unwrap();
            let linger = tokio::net::TcpStream::from_std(std.try_clone().unwrap()).unwrap();
            let stream = tokio::net::TcpStream::from_std(std).unwrap();
            serve_h2(stream, per_conn, refuse, &seen, &streams).await;
            let mut linger = linger;
            let _ = linger.shutdown().await;
            let mut sink = [0u8; 4096];
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while matches!(linger.read(&mut sink).await, Ok(n) if n > 0) {}
            })
            .await;
        }
    });
    (server, seen)
}

async fn serve_h2(
    stream: tokio::net::TcpStream,
    per_conn: usize,
    refuse: fn(usize) -> bool,
    seen: &Seen,
    streams: &AtomicUsize,
) {
    let Ok(mut conn) = h2::server::handshake(stream).await else {
        return;
    };
    let mut on_this = 0;
    while let Some(Ok((req, mut respond))) = conn.accept().await {
        on_this += 1;
        if on_this == per_conn {
            seen.goaways.fetch_add(1, Ordering::SeqCst);
            conn.graceful_shutdown();
        }
        if refuse(streams.fetch_add(1, Ordering::SeqCst)) {
            respond.send_reset(h2::Reason::REFUSED_STREAM);
            continue;
        }
        let counter = if req.method() == http::Method::POST {
            &seen.posts
        } else {
            &seen.gets
        };
        counter.fetch_add(1, Ordering::SeqCst);
        let resp = http::Response::builder()
            .status(200)
            .header("x-method", req.method().as_str())
            .body(())
            .unwrap();
        if let Ok(mut body) = respond.send_response(resp, false) {
            let _ = body.send_data(Bytes::from_static(b"ok"), true);
        }
    }
}

fn h2c_handler(engine: &portway::Engine, name: &str) -> u32 {
    engine
        .register_http(
            name,
            HttpOptions {
                http2_prior_knowledge: true,
                retries: 0,
                ..HttpOptions::default()
            },
        )
        .unwrap()
}

#[test]
fn gets_above_goaway_last_stream_id_are_sent_again() {
    // 10 rounds of 300 concurrent requests, GOAWAY after every 20 streams of a connection.
    let (server, seen) = h2_server(20, |_| false);
    let engine = engine();
    let http = h2c_handler(&engine, "h2c");
    let mut posts_ok = 0;
    for _ in 0..10 {
        let mut posts = std::collections::HashSet::new();
        for i in 0..300 {
            if i % 6 == 5 {
                let post = format!(
                    "POST {} HTTP/1.1\r\nContent-Length: 1\r\n\r\nx",
                    server.url("/")
                );
                posts.insert(submit(&engine, http, post.as_bytes(), 0));
            } else {
                submit(&engine, http, &get(&server.url("/get")), 0);
            }
        }
        for c in wait_all(&engine, 300) {
            if posts.contains(&c.id) {
                // A POST may fail when hyper cannot tell whether its stream was sent.
                posts_ok += usize::from(c.status == Status::PORTWAY_OK);
            } else {
                assert_status(&c, Status::PORTWAY_OK);
                assert_eq!(text(&c), "ok");
            }
        }
    }
    assert!(seen.gets.load(Ordering::SeqCst) >= 2500);
    // A POST is never sent again after the server may have processed it.
    assert!(seen.posts.load(Ordering::SeqCst) <= 500);
    assert!(posts_ok <= seen.posts.load(Ordering::SeqCst));
    let goaways = seen.goaways.load(Ordering::SeqCst);
    assert!(goaways >= 10, "only {goaways} GOAWAYs");
}

#[test]
fn refused_streams_are_sent_again_without_using_retries() {
    // Every other stream is refused, POSTs included; retries is 0.
    let (server, seen) = h2_server(usize::MAX, |n| n % 2 == 0);
    let engine = engine();
    let http = h2c_handler(&engine, "h2c-refusing");
    for _ in 0..100 {
        let post = format!(
            "POST {} HTTP/1.1\r\nContent-Length: 1\r\n\r\nx",
            server.url("/")
        );
        submit(&engine, http, post.as_bytes(), 0);
    }
    for c in wait_all(&engine, 100) {
        assert_status(&c, Status::PORTWAY_OK);
    }
    assert_eq!(seen.posts.load(Ordering::SeqCst), 100);
}

#[test]
fn a_server_that_refuses_everything_fails_after_a_bounded_number_of_attempts() {
    let (server, seen) = h2_server(usize::MAX, |_| true);
    let engine = engine();
    let http = h2c_handler(&engine, "h2c-refusing-all");
    let c = run(&engine, http, &get(&server.url("/")), 0);
    assert_status(&c, Status::PORTWAY_PROTOCOL_ERROR);
    assert!(
        text(&c).contains("none processed by the server"),
        "{}",
        text(&c)
    );
    assert_eq!(seen.gets.load(Ordering::SeqCst), 0);
}
