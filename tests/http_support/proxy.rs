//! A small forward proxy for the tests: CONNECT tunnels and absolute-form HTTP/1.1 requests,
//! each recorded as (method, target, Proxy-Authorization).

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{Server, read_request};

/// What the proxy was asked: method, target, Proxy-Authorization (or "").
pub type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// A forward proxy; with `refuse` set it answers every request 407.
pub fn forward_proxy(refuse: bool) -> (Server, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let server = Server::raw(move |stream, _| {
        let log = log.clone();
        async move {
            let mut client = BufReader::new(stream);
            let Some(req) = read_request(&mut client).await else {
                return;
            };
            let auth = req.header("proxy-authorization").unwrap_or("").to_owned();
            log.lock()
                .unwrap()
                .push((req.method.clone(), req.target.clone(), auth));
            if refuse {
                let _ = client
                    .get_mut()
                    .write_all(
                        b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n",
                    )
                    .await;
                return;
            }
            let hostport = if req.method == "CONNECT" {
                req.target.clone()
            } else {
                let rest = req.target.trim_start_matches("http://");
                rest.split('/').next().unwrap_or_default().to_owned()
            };
            let Ok(mut upstream) = TcpStream::connect(&hostport).await else {
                return;
            };
            if req.method == "CONNECT" {
                if client
                    .get_mut()
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
            } else {
                let mut head = format!("{} {} HTTP/1.1\r\n", req.method, req.target);
                for (k, v) in &req.headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                let mut out = head.into_bytes();
                out.extend_from_slice(&req.body);
                if upstream.write_all(&out).await.is_err() {
                    return;
                }
            }
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        }
    });
    (server, seen)
}
