//! The http handler against plain HTTP/1.1 test servers: methods, headers and bodies, chunked
//! responses, submit-time validation, and every failure status.

mod http_support;

use std::sync::mpsc;
use std::time::Duration;

use http_support::*;
use portway::Status;
use portway::handlers::http::HttpOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};

/// Answers with what it received: method, target, chosen headers and the body.
fn echo_server() -> Server {
    Server::http(|req| {
        let code = match req.method.as_str() {
            "POST" => 201,
            _ => 200,
        };
        let mut body = format!("{} {} ", req.method, req.target).into_bytes();
        body.extend_from_slice(&req.body);
        response(
            code,
            &[
                ("X-Method", &req.method),
                ("X-Host", req.header("host").unwrap_or("-")),
                ("X-UA", req.header("user-agent").unwrap_or("-")),
                ("X-Token", req.header("x-token").unwrap_or("-")),
                ("X-Type", req.header("content-type").unwrap_or("-")),
                ("Set-Cookie", "a=1"),
                ("Set-Cookie", "b=2"),
            ],
            &body,
        )
    })
}

#[test]
fn get_post_put_delete_with_headers_and_bodies() {
    let server = echo_server();
    let engine = engine();
    let http = engine.lookup("http").unwrap();

    let c = run(&engine, http, &get(&server.url("/items?x=1")), 0);
    assert_status(&c, Status::PORTWAY_OK);
    assert_eq!(c.code, 200);
    assert_eq!(text(&c), "GET /items?x=1 ");
    assert_eq!(c.user_data, 7);
    assert_eq!(meta(&c, "x-host"), Some(server.addr.to_string().as_str()));
    assert_eq!(
        meta(&c, "x-ua"),
        Some(format!("portway/{}", portway::VERSION).as_str())
    );
    let names: Vec<&str> = c.meta.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "x-method",
            "x-host",
            "x-ua",
            "x-token",
            "x-type",
            "set-cookie",
            "set-cookie",
            "content-length",
            ":http-version"
        ],
        "headers in the order received, then the version"
    );
    let cookies: Vec<&str> = c
        .meta
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(cookies, ["a=1", "b=2"]);

    let body = r#"{"name":"x"}"#;
    let post = format!(
        "POST {} HTTP/1.1\r\nContent-Type: application/json\r\nX-Token: t1\r\nUser-Agent: mine/1\r\n\r\n{body}",
        server.url("/items")
    );
    let c = run(&engine, http, post.as_bytes(), 0);
    assert_status(&c, Status::PORTWAY_OK);
    assert_eq!(c.code, 201);
    assert_eq!(text(&c), format!("POST /items {body}"));
    assert_eq!(meta(&c, "x-type"), Some("application/json"));
    assert_eq!(meta(&c, "x-token"), Some("t1"));
    assert_eq!(
        meta(&c, "x-ua"),
        Some("mine/1"),
        "an explicit User-Agent wins"
    );

    let put = format!(
        "PUT {} HTTP/1.1\r\nContent-Length: 5\r\nHost: example.test\r\n\r\nhello",
        server.url("/items/1")
    );
    let c = run(&engine, http, put.as_bytes(), 0);
    assert_status(&c, Status::PORTWAY_OK);
    assert_eq!(text(&c), "PUT /items/1 hello");
    assert_eq!(
        meta(&c, "x-host"),
        Some("example.test"),
        "an explicit Host wins"
    );

    let delete = format!(
        "DELETE {} HTTP/1.1\r\nX-Token: t2\r\n\r\n",
        server.url("/items/1")
    );
    let c = run(&engine, http, delete.as_bytes(), 0);
    assert_status(&c, Status::PORTWAY_OK);
    assert_eq!(text(&c), "DELETE /items/1 ");
    assert_eq!(meta(&c, "x-token"), Some("t2"));

    // The GET went on a narrow connection; the POST, which may not be sent twice, made the
    // origin's connections wide (tests/http_header_lines.rs), and PUT and DELETE reused it.
    assert_eq!(
        server.accepted(),
        2,
        "the GET over one keep-alive connection, the other three over another"
    );
}

#[test]
fn error_responses_complete_ok_with_their_code() {
    let server = Server::http(|req| match req.target.as_str() {
        "/missing" => response(404, &[], b"not here"),
        _ => response(500, &[], b"boom"),
    });
    let engine = engine();
    let http = engine.lookup("http").unwrap();
    let c = run(&engine, http, &get(&server.url("/missing")), 0);
    assert_status(&c, Status::PORTWAY_OK);
    assert_eq!((c.code, text(&c).as_str()), (404, "not here"));
    let c = run(&engine, http, &get(&server.url("/fail")), 0);
    assert_status(&c, Status::PORTWAY_OK);
    assert_eq!((c.code, text(&c).as_str()), (500, "boom"));
}

#[test]
fn chunked_responses_are_reassembled_and_the_connection_reused() {
    let server = Server::raw(|stream, _| async move {
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        while read_request(&mut r).await.is_some() {
            let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n";
            w.write_all(head.as_bytes()).await.unwrap();
            for piece in ["hello", " chunked", " world"] {
                w.write_all(format!("{:x}\r\n{piece}\r\n", piece.len()).as_bytes())
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            w.write_all(b"0\r\n\r\n").await.unwrap();
        }
    });
    let engine = engine();
    let http = engine.lookup("http").unwrap();
    for _ in 0..3 {
        let c = run(&engine, http, &get(&server.url("/")), 0);
        assert_status(&c, Status::PORTWAY_OK);
        assert_eq!(text(&c), "hello chunked world");
        assert_eq!(meta(&c, "transfer-encoding"), Some("chunked"));
    }
    assert_eq!(server.accepted(), 1);
}

#[test]
fn invalid_payloads_are_rejected_at_submit_with_a_message() {
    let engine = engine();
    let http = engine.lookup("http").unwrap();
    let cases: [(&[u8], &str); 8] = [
        (
            b"GET http://127.0.0.1:1/ HTTP/1.1\r\nX: y\r\n",
            "no end of head",
        ),
        (b"GET /items HTTP/1.1\r\n\r\n", "not absolute"),
        (b"GET ftp://127.0.0.1/ HTTP/1.1\r\n\r\n", "scheme"),
        (
            b"GET http://127.0.0.1:1/ HTTP/1.1\r\nX-A: a\nInjected: 1\r\n\r\n",
            "bare LF",
        ),
        (
            b"GET http://127.0.0.1:1/ HTTP/1.1\r\nX-A: a\rb\r\n\r\n",
            "bare CR",
        ),
        (
            b"POST http://127.0.0.1:1/ HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",
            "Content-Length is 10",
        ),
        (
            b"GET http://127.0.0.1:1/ HTTP/1.1\r\nBad Header\r\n\r\n",
            "malformed header line",
        ),
        (b"not http at all\r\n\r\n", "request line"),
    ];
    for (payload, expected) in cases {
        let err = engine
            .submit(&portway::Submission {
                handler: http,
                timeout_ms: 0,
                user_data: 0,
                payload,
            })
            .expect_err("must be rejected");
        assert_eq!(err.status(), Status::PORTWAY_INVALID_ARGUMENT);
        assert!(
            err.to_string().contains(expected),
            "{:?}: message {:?} lacks {expected:?}",
            payload.escape_ascii().to_string(),
            err.to_string()
        );
    }
    let (posted, _) = engine
        .poll_owned(8, Some(Duration::from_millis(50)))
        .unwrap();
    assert!(posted.is_empty(), "a rejected submit posts no completion");
}

#[test]
fn connection_refused_is_a_connect_error() {
    let engine = engine();
    let http = engine.lookup("http").unwrap();
    let url = format!("http://127.0.0.1:{}/", closed_port());
    let c = run(&engine, http, &get(&url), 0);
    assert_status(&c, Status::PORTWAY_CONNECT_ERROR);
    assert!(text(&c).contains("refused"), "{}", text(&c));
    assert!(text(&c).contains("127.0.0.1"), "{}", text(&c));
}

/// A server that reads one request, never answers, and reports when the client closes.
fn silent_server(got: mpsc::Sender<()>, closed: mpsc::Sender<()>) -> Server {
    Server::raw(move |stream, _| {
        let (got, closed) = (got.clone(), closed.clone());
        async move {
            let mut r = BufReader::new(stream);
            if read_request(&mut r).await.is_some() {
                let _ = got.send(());
                let mut sink = [0u8; 64];
                while matches!(r.read(&mut sink).await, Ok(n) if n > 0) {}
                let _ = closed.send(());
            }
        }
    })
}

#[test]
fn a_server_that_never_answers_times_out_and_its_connection_is_closed() {
    let (got_tx, got) = mpsc::channel();
    let (closed_tx, closed) = mpsc::channel();
    let server = silent_server(got_tx, closed_tx);
    let engine = engine();
    let http = engine.lookup("http").unwrap();
    let c = run(&engine, http, &get(&server.url("/slow")), 300);
    assert_status(&c, Status::PORTWAY_TIMEOUT);
    got.recv_timeout(WAIT)
        .expect("the request reached the server");
    closed
        .recv_timeout(Duration::from_secs(5))
        .expect("the timed-out request's connection was closed");
}

#[test]
fn cancelling_an_in_flight_request_closes_its_connection() {
    let (got_tx, got) = mpsc::channel();
    let (closed_tx, closed) = mpsc::channel();
    // The first connection never answers; later ones do.
    let server = Server::raw(move |stream, n| {
        let (got, closed) = (got_tx.clone(), closed_tx.clone());
        async move {
            let mut r = BufReader::new(stream);
            if n > 0 {
                while read_request(&mut r).await.is_some() {
                    r.get_mut()
                        .write_all(&response(200, &[], b"fresh"))
                        .await
                        .unwrap();
                }
                return;
            }
            if read_request(&mut r).await.is_some() {
                let _ = got.send(());
                let mut sink = [0u8; 64];
                while matches!(r.read(&mut sink).await, Ok(n) if n > 0) {}
                let _ = closed.send(());
            }
        }
    });
    let engine = engine();
    let http = engine.lookup("http").unwrap();
    let id = submit(&engine, http, &get(&server.url("/hang")), 0);
    got.recv_timeout(WAIT)
        .expect("the request reached the server");
    engine.cancel(id).expect("still in flight");
    let c = wait_all(&engine, 1).pop().unwrap();
    assert_eq!(c.id, id);
    assert_status(&c, Status::PORTWAY_CANCELLED);
    closed
        .recv_timeout(Duration::from_secs(5))
        .expect("the cancelled request's connection was closed");

    let c = run(&engine, http, &get(&server.url("/next")), 0);
    assert_status(&c, Status::PORTWAY_OK);
    assert_eq!(text(&c), "fresh");
    assert_eq!(
        server.accepted(),
        2,
        "the cancelled connection was not reused"
    );
}

#[test]
fn bodies_over_the_limit_fail_and_bodies_at_the_limit_pass() {
    let server = Server::raw(|stream, _| async move {
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        while let Some(req) = read_request(&mut r).await {
            match req.target.as_str() {
                "/announced" => w
                    .write_all(&response(200, &[], &[b'a'; 5000]))
                    .await
                    .unwrap(),
                "/exact" => w
                    .write_all(&response(200, &[], &[b'e'; 1000]))
                    .await
                    .unwrap(),
                _ => {
                    w.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                        .await
                        .unwrap();
                    for _ in 0..10 {
                        let chunk = format!("1f4\r\n{}\r\n", "c".repeat(500));
                        if w.write_all(chunk.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    let _ = w.write_all(b"0\r\n\r\n").await;
                }
            }
        }
    });
    let engine = engine();
    let small = engine
        .register_http(
            "http-small",
            HttpOptions {
                max_body_bytes: 1000,
                ..HttpOptions::default()
            },
        )
        .unwrap();
    let c = run(&engine, small, &get(&server.url("/announced")), 0);
    assert_status(&c, Status::PORTWAY_BODY_TOO_LARGE);
    assert!(text(&c).contains("5000 bytes"), "{}", text(&c));
    let c = run(&engine, small, &get(&server.url("/chunked")), 0);
    assert_status(&c, Status::PORTWAY_BODY_TOO_LARGE);
    assert!(
        text(&c).contains("max_body_bytes (1000 bytes)"),
        "{}",
        text(&c)
    );
    let c = run(&engine, small, &get(&server.url("/exact")), 0);
    assert_status(&c, Status::PORTWAY_OK);
    assert_eq!(c.data.len(), 1000);
}

#[test]
fn a_server_that_resets_or_closes_mid_body_is_a_protocol_error() {
    let server = Server::raw(|stream, _| async move {
        let mut r = BufReader::new(stream);
        let Some(req) = read_request(&mut r).await else {
            return;
        };
        let stream = r.into_inner();
        let mut partial = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
        partial.extend_from_slice(&[b'x'; 1000]);
        let mut stream = stream;
        stream.write_all(&partial).await.unwrap();
        stream.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        if req.target == "/reset" {
            stream.set_zero_linger().unwrap();
        }
        drop(stream);
    });
    let engine = engine();
    let http = engine.lookup("http").unwrap();
    for path in ["/reset", "/close"] {
        let c = run(&engine, http, &get(&server.url(path)), 0);
        assert_status(&c, Status::PORTWAY_PROTOCOL_ERROR);
        assert!(text(&c).contains("cut off"), "{path}: {}", text(&c));
    }
}

#[test]
fn malformed_responses_and_oversized_heads_are_protocol_errors() {
    let server = Server::http(|req| match req.target.as_str() {
        "/garbage" => b"this is not http\r\n\r\n".to_vec(),
        _ => {
            let big = "v".repeat(8000);
            let headers: Vec<(String, String)> = (0..12)
                .map(|i| (format!("X-Big-{i}"), big.clone()))
                .collect();
            let refs: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            response(200, &refs, b"")
        }
    });
    let engine = engine();
    let http = engine.lookup("http").unwrap();
    let c = run(&engine, http, &get(&server.url("/garbage")), 0);
    assert_status(&c, Status::PORTWAY_PROTOCOL_ERROR);
    assert!(text(&c).contains("malformed response"), "{}", text(&c));
    let c = run(&engine, http, &get(&server.url("/big-head")), 0);
    assert_status(&c, Status::PORTWAY_PROTOCOL_ERROR);
    assert!(text(&c).contains("max_header_bytes"), "{}", text(&c));
}

#[test]
fn the_concurrency_limit_applies_to_http_handlers() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (n2, p2) = (now.clone(), peak.clone());
    let server = Server::raw(move |stream, _| {
        let (now, peak) = (n2.clone(), p2.clone());
        async move {
            let (r, mut w) = stream.into_split();
            let mut r = BufReader::new(r);
            while read_request(&mut r).await.is_some() {
                let cur = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(cur, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(30)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                w.write_all(&response(200, &[], b"ok")).await.unwrap();
            }
        }
    });
    let engine = engine();
    let http = engine
        .register_http("http-limited", HttpOptions::default())
        .unwrap();
    engine.set_concurrency(http, 2).unwrap();
    for _ in 0..10 {
        submit(&engine, http, &get(&server.url("/")), 0);
    }
    for c in wait_all(&engine, 10) {
        assert_status(&c, Status::PORTWAY_OK);
    }
    assert_eq!(peak.load(Ordering::SeqCst), 2);
    assert!(server.accepted() <= 2);
}

#[test]
fn register_http_rejects_bad_options() {
    let engine = engine();
    let e = engine
        .register_http(
            "bad",
            HttpOptions {
                extra_ca_pem_path: Some("/nonexistent/portway-ca.pem".into()),
                ..HttpOptions::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.status(), Status::PORTWAY_INVALID_ARGUMENT);
    assert!(e.to_string().contains("extra_ca_pem_path"), "{e}");
    let e = engine
        .register_http(
            "bad",
            HttpOptions {
                max_header_bytes: 0,
                ..HttpOptions::default()
            },
        )
        .unwrap_err();
    assert!(e.to_string().contains("max_header_bytes"), "{e}");
    assert!(engine.lookup("bad").is_err());
}

#[test]
fn a_connect_that_hangs_fails_after_the_connect_timeout() {
    // A listener that never accepts, with its accept queue filled: Linux then drops further
    // SYNs, so the next connect hangs until the client gives up.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    let full = (0..300).any(|_| {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
            Ok(s) => {
                fillers.push(s);
                false
            }
            Err(_) => true,
        }
    });
    if !full {
        eprintln!("skipped: the accept queue never filled on this system");
        return;
    }
    let engine = engine();
    let http = engine
        .register_http(
            "http-fast-connect-timeout",
            HttpOptions {
                connect_timeout_ms: 200,
                ..HttpOptions::default()
            },
        )
        .unwrap();
    let started = std::time::Instant::now();
    let c = run(&engine, http, &get(&format!("http://{addr}/")), 0);
    assert_status(&c, Status::PORTWAY_CONNECT_ERROR);
    assert!(text(&c).contains("timed out after 200 ms"), "{}", text(&c));
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(listener);
}

#[test]
fn a_silent_server_fails_after_read_timeout_and_a_slow_steady_one_does_not() {
    let (got_tx, got) = mpsc::channel();
    let (closed_tx, closed) = mpsc::channel();
    let silent = silent_server(got_tx, closed_tx);
    let engine = engine();
    let http = engine
        .register_http(
            "http-read-timeout",
            HttpOptions {
                read_timeout_ms: 300,
                ..HttpOptions::default()
            },
        )
        .unwrap();
    // No deadline of its own: only read_timeout_ms ends it.
    let c = run(&engine, http, &get(&silent.url("/silent")), 0);
    assert_status(&c, Status::PORTWAY_TIMEOUT);
    assert!(text(&c).contains("read_timeout_ms"), "{}", text(&c));
    assert!(text(&c).contains("response head"), "{}", text(&c));
    got.recv_timeout(WAIT)
        .expect("the request reached the server");
    closed
        .recv_timeout(WAIT)
        .expect("the timed-out request's connection was closed");

    // A body that stalls after its head fails the same way.
    let stalls = Server::raw(|stream, _| async move {
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        if read_request(&mut r).await.is_some() {
            let _ = w
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
                .await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    });
    let c = run(&engine, http, &get(&stalls.url("/stall")), 0);
    assert_status(&c, Status::PORTWAY_TIMEOUT);
    assert!(text(&c).contains("response body"), "{}", text(&c));

    // The limit is per wait, not for the whole response: a body that keeps arriving, for
    // longer in total than the limit, completes.
    let steady = Server::raw(|stream, _| async move {
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        if read_request(&mut r).await.is_some() {
            let _ = w
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await;
            for _ in 0..12 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = w.write_all(b"1\r\nx\r\n").await;
            }
            let _ = w.write_all(b"0\r\n\r\n").await;
        }
    });
    let slow = engine
        .register_http(
            "http-read-timeout-steady",
            HttpOptions {
                read_timeout_ms: 400,
                ..HttpOptions::default()
            },
        )
        .unwrap();
    let c = run(&engine, slow, &get(&steady.url("/drip")), 0);
    assert_status(&c, Status::PORTWAY_OK);
    assert_eq!(text(&c), "x".repeat(12));
}

#[test]
fn compressed_bodies_are_asked_for_and_decoded_within_the_limit() {
    use std::io::Write;
    let plain = b"compress me, ".repeat(1000);
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&plain).unwrap();
        e.finish().unwrap()
    };
    let deflate = {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&plain).unwrap();
        e.finish().unwrap()
    };
    let zstd = zstd::encode_all(&plain[..], 3).unwrap();
    let br = {
        let mut out = Vec::new();
        let mut e = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        e.write_all(&plain).unwrap();
        drop(e);
        out
    };
    let bomb = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![0u8; 8 << 20]).unwrap();
        e.finish().unwrap()
    };
    let server = Server::http(move |req| {
        let accept = req.header("accept-encoding").unwrap_or("-").to_owned();
        // `/cut/<coding>`: a complete HTTP response whose encoded body stops halfway (as a
        // truncating proxy or a crashed upstream leaves it).
        let (path, cut) = match req.target.strip_prefix("/cut") {
            Some(rest) => (rest, true),
            None => (req.target.as_str(), false),
        };
        let (coding, mut body) = match path {
            "/gzip" => ("gzip", gz.clone()),
            "/deflate" => ("deflate", deflate.clone()),
            "/zstd" => ("zstd", zstd.clone()),
            "/br" => ("br", br.clone()),
            "/bomb" => ("gzip", bomb.clone()),
            _ => ("gzip", b"\x1f\x8bnot really gzip".to_vec()),
        };
        if cut {
            body.truncate(body.len() / 2);
        }
        response(
            200,
            &[("Content-Encoding", coding), ("X-Accept", &accept)],
            &body,
        )
    });
    let engine = engine();
    let http = engine.lookup("http").unwrap();
    for path in ["/gzip", "/deflate", "/zstd", "/br"] {
        let c = run(&engine, http, &get(&server.url(path)), 0);
        assert_status(&c, Status::PORTWAY_OK);
        assert_eq!(c.data, plain, "{path}");
        assert_eq!(meta(&c, "x-accept"), Some("gzip, br, zstd, deflate"));
        // The headers stay as received.
        assert_eq!(meta(&c, "content-encoding"), Some(&path[1..]));
        // Cut halfway: an error, never a shorter body.
        let c = run(&engine, http, &get(&server.url(&format!("/cut{path}"))), 0);
        assert_status(&c, Status::PORTWAY_PROTOCOL_ERROR);
        assert!(
            text(&c).contains("cannot be decoded"),
            "{path}: {}",
            text(&c)
        );
    }
    let c = run(&engine, http, &get(&server.url("/corrupt")), 0);
    assert_status(&c, Status::PORTWAY_PROTOCOL_ERROR);
    assert!(text(&c).contains("cannot be decoded"), "{}", text(&c));

    // A zip bomb: 8 MiB of zeros in a few KiB, against a 1 MiB limit.
    let small = engine
        .register_http(
            "http-1mib",
            HttpOptions {
                max_body_bytes: 1 << 20,
                ..HttpOptions::default()
            },
        )
        .unwrap();
    let c = run(&engine, small, &get(&server.url("/bomb")), 0);
    assert_status(&c, Status::PORTWAY_BODY_TOO_LARGE);
    assert!(text(&c).contains("decoded (gzip)"), "{}", text(&c));

    // A caller's own Accept-Encoding, or decompress off: the body as sent.
    let own = format!(
        "GET {} HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n",
        server.url("/gzip")
    );
    let c = run(&engine, http, own.as_bytes(), 0);
    assert_eq!(meta(&c, "x-accept"), Some("gzip"));
    assert_ne!(c.data, plain);
    let raw = engine
        .register_http(
            "http-raw",
            HttpOptions {
                decompress: false,
                ..HttpOptions::default()
            },
        )
        .unwrap();
    let c = run(&engine, raw, &get(&server.url("/gzip")), 0);
    assert_eq!(meta(&c, "x-accept"), Some("-"));
    assert_ne!(c.data, plain);
}
