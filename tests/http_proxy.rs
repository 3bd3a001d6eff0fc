//! Forward proxies for plain http targets: absolute-form requests with Proxy-Authorization
//! from the proxy URL's credentials, "" for no proxy, and a proxy that refuses.
//! (https targets through CONNECT: tests/http_tls.rs; the environment rules: unit tests.)

mod http_support;

use http_support::proxy::forward_proxy;
use http_support::*;
use portway::Status;
use portway::handlers::http::HttpOptions;

fn through(engine: &portway::Engine, name: &str, proxy: &str) -> u32 {
    engine
        .register_http(
            name,
            HttpOptions {
                proxy: Some(proxy.to_owned()),
                ..HttpOptions::default()
            },
        )
        .unwrap()
}

#[test]
fn http_requests_go_through_the_proxy_with_its_credentials() {
    let origin = Server::http(|req| response(200, &[("X-Target", &req.target)], b"via"));
    let (proxy, seen) = forward_proxy(false);
    let engine = engine();
    let url = format!("http://user:p%40ss@{}", proxy.addr);
    let http = through(&engine, "proxied", &url);
    let c = run(&engine, http, &get(&origin.url("/x?y=1")), 0);
    assert_status(&c, Status::PORTWAY_OK);
    assert_eq!(text(&c), "via");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let (method, target, auth) = &seen[0];
    assert_eq!(method, "GET");
    assert_eq!(target, &origin.url("/x?y=1"), "absolute form to the proxy");
    // base64("user:p@ss")
    assert_eq!(auth, "Basic dXNlcjpwQHNz");

    // "" = no proxy, even with one in the environment.
    let direct = through(&engine, "direct", "");
    let c = run(&engine, direct, &get(&origin.url("/d")), 0);
    assert_status(&c, Status::PORTWAY_OK);
    assert_eq!(meta(&c, "x-target"), Some("/d"));
}

#[test]
fn a_refused_tunnel_or_a_dead_proxy_is_a_connect_error() {
    let (proxy, _) = forward_proxy(true);
    let engine = engine();
    let http = through(&engine, "refusing", &format!("http://{}", proxy.addr));
    let c = run(
        &engine,
        http,
        b"GET https://127.0.0.1:9/ HTTP/1.1\r\n\r\n",
        0,
    );
    assert_status(&c, Status::PORTWAY_CONNECT_ERROR);
    assert!(text(&c).contains("407"), "{}", text(&c));

    let dead = through(
        &engine,
        "dead",
        &format!("http://127.0.0.1:{}", closed_port()),
    );
    let c = run(&engine, dead, &get("http://127.0.0.1:9/"), 0);
    assert_status(&c, Status::PORTWAY_CONNECT_ERROR);

    let e = engine
        .register_http(
            "socks",
            HttpOptions {
                proxy: Some("socks5://127.0.0.1:1080".into()),
                ..HttpOptions::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.status(), Status::PORTWAY_INVALID_ARGUMENT);
}
