//! HTTPS and HTTP/2: ALPN over TLS with a test CA passed as the extra CA, certificate
//! failures, and h2c with prior knowledge.

mod http_support;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use http_support::pki::TestPki;
use http_support::*;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use portway::Status;
use portway::handlers::http::HttpOptions;

/// Answers every request with its protocol version, method, path and body.
async fn describe(
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let version = format!("{:?}", req.version());
    let line = format!("{} {} ", req.method(), req.uri().path());
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut out = line.into_bytes();
    out.extend_from_slice(&body);
    Ok(hyper::Response::builder()
        .header("x-version", version)
        .body(Full::new(Bytes::from(out)))
        .unwrap())
}

/// An HTTPS server offering h2 and http/1.1 in ALPN.
fn tls_server(pki: &TestPki) -> Server {
    tls_server_alpn(pki, &[b"h2", b"http/1.1"])
}

/// An HTTPS server offering `alpn`; `/slow` paths are answered after 100 ms.
fn tls_server_alpn(pki: &TestPki, alpn: &[&[u8]]) -> Server {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pki.chain.clone(), pki.key.clone_key())
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    Server::raw(move |stream, _| {
        let acceptor = acceptor.clone();
        async move {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let io = TokioIo::new(tls);
            let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                if req.uri().path().starts_with("/slow") {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                describe(req).await
            });
            if h2 {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(io, service)
                    .await;
            } else {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            }
        }
    })
}

fn https_url(server: &Server, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", server.addr.port())
}

#[test]
fn http2_over_tls_with_the_test_ca_as_extra_ca() {
    let pki = TestPki::new("h2");
    let server = tls_server(&pki);
    let engine = engine();
    let http = engine
        .register_http(
            "https-test-ca",
            HttpOptions {
                extra_ca_pem_path: Some(pki.ca_pem_path.clone()),
                ..HttpOptions::default()
            },
        )
        .unwrap();
    let post = format!(
        "POST {} HTTP/1.1\r\nContent-Type: text/plain\r\nConnection: keep-alive\r\n\r\nover tls",
        https_url(&server, "/secure")
    );
    let c = run(&engine, http, post.as_bytes(), 0);
    assert_status(&c, Status::PORTWAY_OK);
    assert_eq!(c.code, 200);
    assert_eq!(meta(&c, "x-version"), Some("HTTP/2.0"));
    assert_eq!(text(&c), "POST /secure over tls");

    // Many concurrent requests share the one HTTP/2 connection.
    for i in 0..50 {
        submit(
            &engine,
            http,
            &get(&https_url(&server, &format!("/m/{i}"))),
            0,
        );
    }
    for c in wait_all(&engine, 50) {
        assert_status(&c, Status::PORTWAY_OK);
        assert_eq!(meta(&c, "x-version"), Some("HTTP/2.0"));
    }
    assert_eq!(server.accepted(), 1, "one multiplexed connection");
}

#[test]
fn the_same_server_fails_verification_without_the_extra_ca() {
    let pki = TestPki::new("untrusted");
    let server = tls_server(&pki);
    let engine = engine();
    let http = engine.lookup("http").unwrap();
    let c = run(&engine, http, &get(&https_url(&server, "/")), 0);
    assert_status(&c, Status::PORTWAY_TLS_ERROR);
    assert!(text(&c).contains("certificate"), "{}", text(&c));

    // Only the option named for it turns verification off.
    let insecure = engine
        .register_http(
            "https-insecure",
            HttpOptions {
                danger_accept_invalid_certs: true,
                ..HttpOptions::default()
            },
        )
        .unwrap();
    let c = run(&engine, insecure, &get(&https_url(&server, "/")), 0);
    assert_status(&c, Status::PORTWAY_OK);
}

#[test]
fn a_certificate_for_another_name_is_a_tls_error() {
    let pki = TestPki::for_names("wrong-name", &["other.test"]);
    let server = tls_server(&pki);
    let engine = engine();
    let http = engine
        .register_http(
            "https-test-ca",
            HttpOptions {
                extra_ca_pem_path: Some(pki.ca_pem_path.clone()),
                ..HttpOptions::default()
            },
        )
        .unwrap();
    let c = run(&engine, http, &get(&https_url(&server, "/")), 0);
    assert_status(&c, Status::PORTWAY_TLS_ERROR);
    assert!(text(&c).contains("not valid for name"), "{}", text(&c));
}

#[test]
fn h2c_with_prior_knowledge() {
    let server = Server::raw(|stream, _| async move {
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), service_fn(describe))
            .await;
    });
    let engine = engine();
    let h2c = engine
        .register_http(
            "h2c",
            HttpOptions {
                http2_prior_knowledge: true,
                ..HttpOptions::default()
            },
        )
        .unwrap();
    for i in 0..20 {
        submit(&engine, h2c, &get(&server.url(&format!("/p/{i}"))), 0);
    }
    for c in wait_all(&engine, 20) {
        assert_status(&c, Status::PORTWAY_OK);
        assert_eq!(meta(&c, "x-version"), Some("HTTP/2.0"));
        assert!(text(&c).starts_with("GET /p/"), "{}", text(&c));
    }
    assert_eq!(server.accepted(), 1);

    // Without prior knowledge the same server does not understand the HTTP/1.1 request.
    let http = engine.lookup("http").unwrap();
    let c = run(&engine, http, &get(&server.url("/")), 0);
    assert_status(&c, Status::PORTWAY_PROTOCOL_ERROR);
}

#[test]
fn cancelling_an_http2_request_resets_only_its_stream() {
    let (got_tx, got) = std::sync::mpsc::channel::<()>();
    let got_tx = Arc::new(std::sync::Mutex::new(got_tx));
    let server = Server::raw(move |stream, _| {
        let got_tx = got_tx.clone();
        async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let got_tx = got_tx.clone();
                async move {
                    if req.uri().path() == "/hang" {
                        let _ = got_tx.lock().unwrap().send(());
                        std::future::pending::<()>().await;
                    }
                    describe(req).await
                }
            });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
    });
    let engine = engine();
    let h2c = engine
        .register_http(
            "h2c",
            HttpOptions {
                http2_prior_knowledge: true,
                ..HttpOptions::default()
            },
        )
        .unwrap();
    let id = submit(&engine, h2c, &get(&server.url("/hang")), 0);
    got.recv_timeout(WAIT)
        .expect("the request reached the server");
    engine.cancel(id).unwrap();
    let c = wait_all(&engine, 1).pop().unwrap();
    assert_status(&c, Status::PORTWAY_CANCELLED);
    let c = run(&engine, h2c, &get(&server.url("/after")), 0);
    assert_status(&c, Status::PORTWAY_OK);
    assert_eq!(text(&c), "GET /after ");
    assert_eq!(
        server.accepted(),
        1,
        "the shared connection survived the cancel"
    );
}

fn with_test_ca(engine: &portway::Engine, name: &str, pki: &TestPki, max_conns: u32) -> u32 {
    engine
        .register_http(
            name,
            HttpOptions {
                extra_ca_pem_path: Some(pki.ca_pem_path.clone()),
                max_connections_per_host: max_conns,
                ..HttpOptions::default()
            },
        )
        .unwrap()
}

#[test]
fn a_cold_burst_to_an_h2_origin_shares_one_connection() {
    // Nothing is known about the origin when 300 requests arrive at once: they wait for the
    // first connection's ALPN instead of each opening their own.
    let pki = TestPki::new("cold-h2");
    let server = tls_server(&pki);
    let engine = engine();
    let http = with_test_ca(&engine, "https-cold", &pki, 256);
    for i in 0..300 {
        submit(
            &engine,
            http,
            &get(&https_url(&server, &format!("/slow/{i}"))),
            0,
        );
    }
    for c in wait_all(&engine, 300) {
        assert_status(&c, Status::PORTWAY_OK);
        assert_eq!(meta(&c, "x-version"), Some("HTTP/2.0"));
    }
    assert_eq!(server.accepted(), 1, "one connection for the whole burst");
}

#[test]
fn a_cold_burst_to_an_http1_origin_fans_out_up_to_the_cap() {
    let pki = TestPki::new("cold-h1");
    let server = tls_server_alpn(&pki, &[b"http/1.1"]);
    let engine = engine();
    let http = with_test_ca(&engine, "https-cold-h1", &pki, 4);
    for i in 0..20 {
        submit(
            &engine,
            http,
            &get(&https_url(&server, &format!("/slow/{i}"))),
            0,
        );
    }
    for c in wait_all(&engine, 20) {
        assert_status(&c, Status::PORTWAY_OK);
        assert_eq!(meta(&c, "x-version"), Some("HTTP/1.1"));
    }
    assert_eq!(server.accepted(), 4);
}

#[test]
fn a_cold_burst_shares_the_failure_of_the_first_connection() {
    let pki = TestPki::new("cold-untrusted");
    let server = tls_server(&pki);
    let engine = engine();
    let http = engine.lookup("http").unwrap();
    for _ in 0..50 {
        submit(&engine, http, &get(&https_url(&server, "/")), 0);
    }
    for c in wait_all(&engine, 50) {
        assert_status(&c, Status::PORTWAY_TLS_ERROR);
        assert!(text(&c).contains("certificate"), "{}", text(&c));
    }
    // Requests that waited for the first handshake got its error instead of trying their own.
    assert!(server.accepted() < 50, "{} handshakes", server.accepted());
}

#[test]
fn the_version_is_reported_and_http1_only_keeps_https_on_http1() {
    let pki = TestPki::new("http1-only");
    let server = tls_server(&pki);
    let engine = engine();
    let h2 = with_test_ca(&engine, "https-any", &pki, 256);
    let c = run(&engine, h2, &get(&https_url(&server, "/")), 0);
    assert_status(&c, Status::PORTWAY_OK);
    assert_eq!(
        c.meta.last().unwrap(),
        &(":http-version".into(), "HTTP/2".into())
    );
    let h1 = engine
        .register_http(
            "https-http1-only",
            HttpOptions {
                extra_ca_pem_path: Some(pki.ca_pem_path.clone()),
                http1_only: true,
                ..HttpOptions::default()
            },
        )
        .unwrap();
    let c = run(&engine, h1, &get(&https_url(&server, "/")), 0);
    assert_status(&c, Status::PORTWAY_OK);
    assert_eq!(meta(&c, "x-version"), Some("HTTP/1.1"));
    assert_eq!(meta(&c, ":http-version"), Some("HTTP/1.1"));
    let e = engine
        .register_http(
            "both",
            HttpOptions {
                http1_only: true,
                http2_prior_knowledge: true,
                ..HttpOptions::default()
            },
        )
        .unwrap_err();
    assert!(e.to_string().contains("http1_only"), "{e}");
}

#[test]
fn https_through_a_proxy_uses_a_connect_tunnel() {
    let pki = TestPki::new("proxied");
    let server = tls_server(&pki);
    let (proxy, seen) = http_support::proxy::forward_proxy(false);
    let engine = engine();
    let http = engine
        .register_http(
            "https-proxied",
            HttpOptions {
                extra_ca_pem_path: Some(pki.ca_pem_path.clone()),
                proxy: Some(format!("http://me:secret@{}", proxy.addr)),
                ..HttpOptions::default()
            },
        )
        .unwrap();
    let c = run(&engine, http, &get(&https_url(&server, "/tunnelled")), 0);
    assert_status(&c, Status::PORTWAY_OK);
    assert_eq!(meta(&c, ":http-version"), Some("HTTP/2"));
    assert_eq!(text(&c), "GET /tunnelled ");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [(
            "CONNECT".to_owned(),
            format!("127.0.0.1:{}", server.addr.port()),
            "Basic bWU6c2VjcmV0".to_owned()
        )]
    );
}
