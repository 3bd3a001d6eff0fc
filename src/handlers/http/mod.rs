//! The built-in `"http"` handler: outbound HTTP/1.1 and HTTP/2 (ALPN over TLS, or h2c with
//! prior knowledge) on the engine's runtime, with pooled keep-alive connections.
//!
//! # Payload
//! An HTTP/1.1 request head in absolute form, then the body:
//!
//! ```text
//! POST http://127.0.0.1:8080/items HTTP/1.1\r\n
//! Content-Type: application/json\r\n
//! \r\n
//! {"name":"x"}
//! ```
//!
//! The head is checked at submit time; a malformed head, a relative URL, a scheme other than
//! http or https, a CR or LF inside a header value, a `Content-Length` that disagrees with the
//! body, or a `Transfer-Encoding` header rejects the submit with `PORTWAY_INVALID_ARGUMENT`
//! and a message naming the problem. `Host` (from the URL) and `User-Agent` (from the
//! options) are added when missing; `Content-Length` is set from the body.
//!
//! # Completion
//! - `PORTWAY_OK` for every HTTP response, 4xx and 5xx included: `code` is the HTTP status,
//!   `meta` the response headers (names lowercase, in the order received, values of a
//!   repeated name together), `data` the body. With `decompress` on (the default) and no
//!   `Accept-Encoding` in the request, portway asks for `gzip, br, zstd, deflate` and `data`
//!   is the decoded body, while `meta` keeps the headers as received (`content-encoding`,
//!   and `content-length` of the encoded body, included). The last `meta` pair is always
//!   `:http-version` (a name no header can have) with `HTTP/1.0`, `HTTP/1.1` or `HTTP/2`.
//! - `PORTWAY_CONNECT_ERROR`: the host (or the proxy) could not be resolved or connected to,
//!   the proxy refused the CONNECT tunnel, or opening the connection (TLS handshake included)
//!   took longer than `connect_timeout_ms`.
//! - `PORTWAY_TLS_ERROR`: the TLS handshake or certificate verification failed.
//! - `PORTWAY_PROTOCOL_ERROR`: a malformed response, a response head over
//!   `max_header_bytes`, a connection closed or reset before the response was complete, an
//!   unusable redirect, or more than `max_redirects` redirects.
//! - `PORTWAY_BODY_TOO_LARGE`: the body (or its announced length) is over `max_body_bytes`.
//! - `PORTWAY_TIMEOUT`: no byte of the response arrived for `read_timeout_ms` (the message
//!   names it), or the request's own deadline passed (set by the engine).
//! - `PORTWAY_TIMEOUT` / `PORTWAY_CANCELLED`: set by the engine, which drops the request's
//!   future; an HTTP/1 connection in use is then closed, never returned to the pool (an
//!   HTTP/2 stream is reset; its shared connection stays).
//!
//! On failure `data` holds a message naming the origin and the cause.
//!
//! # Requests the server did not process
//! An HTTP/2 server closing a connection with GOAWAY (nginx does after `keepalive_requests`)
//! or refusing a stream with REFUSED_STREAM has not processed those requests (RFC 9113
//! sections 6.8 and 8.7). They are sent again on a new connection, up to 10 times, without
//! counting against `retries`: refused streams and requests never sent whatever the method,
//! requests failed by a GOAWAY when their method is idempotent (hyper can report a GOAWAY for
//! a stream it had just sent, so a POST is not repeated on that evidence alone).

mod client;
mod connect;
mod decode;
mod errors;
pub(crate) mod fuzz_hooks;
mod options;
mod pool;
mod proxy;
mod redirect;
mod request;
mod response;
mod retry;
mod target;
mod tls;

use std::sync::Arc;

pub use options::{HttpOptions, default_user_agent};

use super::{AsyncHandler, OutcomeFuture};
use crate::contract::{Handler, Meta, Outcome};
use crate::error::Result;
use client::Client;
use errors::HttpError;
use request::Prepared;
use response::Response;

/// An http handler: one connection pool and one set of [`HttpOptions`].
pub struct HttpHandler {
    inner: Arc<Inner>,
}

struct Inner {
    opts: HttpOptions,
    client: Client,
}

impl HttpHandler {
    /// Builds a handler; fails when an option is out of range or the extra CA file cannot be
    /// used. Needs no runtime: connections are opened by the calls, on the engine's runtime.
    pub fn new(opts: HttpOptions) -> Result<Self> {
        opts.validate()?;
        let client = Client::new(&opts)?;
        Ok(HttpHandler {
            inner: Arc::new(Inner { opts, client }),
        })
    }

    /// The options the handler was built with.
    pub fn options(&self) -> &HttpOptions {
        &self.inner.opts
    }
}

impl AsyncHandler for HttpHandler {
    fn validate(&self, payload: &[u8]) -> Result<()> {
        request::check(payload)
    }

    fn call(&self, payload: Vec<u8>) -> OutcomeFuture {
        let inner = self.inner.clone();
        Box::pin(async move {
            match request::prepare(payload) {
                Ok(req) => match inner.run(req).await {
                    Ok(resp) => into_outcome(resp),
                    Err(e) => e.into_outcome(),
                },
                // Reachable only as a later pipeline stage, where the payload was not checked
                // at submit time.
                Err(e) => Outcome::failed(e.status(), e.to_string()),
            }
        })
    }

    /// GET, HEAD, OPTIONS, PUT and DELETE are safe to send twice (RFC 9110 9.2.2); any other
    /// method, POST and PATCH among them, is never hedged. Read from the request line only.
    fn idempotent(&self, payload: &[u8]) -> bool {
        let method = payload.split(|&b| b == b' ').next().unwrap_or_default();
        matches!(method, b"GET" | b"HEAD" | b"OPTIONS" | b"PUT" | b"DELETE")
    }

    /// The request's origin: the circuit breaker keeps one state per origin. A redirect to
    /// another origin does not move the run: it is judged by the breaker of the origin the
    /// payload names.
    fn policy_key(&self, payload: &[u8]) -> Option<String> {
        request::origin_of(payload).map(|origin| origin.to_string())
    }

    fn metrics(&self) -> Vec<(&'static str, &'static str, &'static str, u64)> {
        let (opened, reused, open) = self.inner.client.connection_counts();
        vec![
            (
                "http_connections_opened_total",
                "Requests that opened a new connection.",
                "counter",
                opened,
            ),
            (
                "http_connections_reused_total",
                "Requests sent on an already-open connection.",
                "counter",
                reused,
            ),
            (
                "http_connections_open",
                "Connections open now, idle or busy.",
                "gauge",
                open,
            ),
        ]
    }
}

impl Inner {
    /// Follows redirects (when enabled) around [`Inner::attempts`].
    async fn run(&self, mut req: Prepared) -> std::result::Result<Response, HttpError> {
        let mut followed = 0;
        loop {
            let resp = self.attempts(&req).await?;
            if !self.opts.follow_redirects || !redirect::is_redirect(resp.status) {
                return Ok(resp);
            }
            let Some(location) = resp.headers.get(http::header::LOCATION) else {
                return Ok(resp);
            };
            if followed == self.opts.max_redirects {
                return Err(HttpError::protocol(format!(
                    "too many redirects: {} redirected again after {followed} (max_redirects), \
                     to {}",
                    req.origin,
                    String::from_utf8_lossy(location.as_bytes())
                )));
            }
            req = redirect::follow(&req, resp.status, location.as_bytes())?;
            followed += 1;
        }
    }

    /// One exchange, repeated for idempotent methods after a connect error or a 502/503/504
    /// while retries are left, with jittered exponential backoff.
    async fn attempts(&self, req: &Prepared) -> std::result::Result<Response, HttpError> {
        let allowed = if retry::is_idempotent(&req.method) {
            self.opts.retries
        } else {
            0
        };
        let mut retry_no = 0;
        loop {
            let result = self.client.exchange(req).await;
            let retryable = match &result {
                Ok(resp) => retry::is_retryable_status(resp.status),
                Err(e) => e.kind == errors::Kind::Connect,
            };
            if !retryable || retry_no == allowed {
                return result.map_err(|mut e| {
                    if retry_no > 0 {
                        e.message = format!("{} (after {} attempts)", e.message, retry_no + 1);
                    }
                    e
                });
            }
            let mut delay = retry::backoff(self.opts.retry_base_backoff_ms, retry_no);
            if let Ok(resp) = &result
                && let Some(after) = retry::retry_after(&resp.headers)
            {
                delay = delay.max(after);
            }
            drop(result);
            tokio::time::sleep(delay).await;
            retry_no += 1;
        }
    }
}

/// The name of the last meta pair of every response: the HTTP version used.
pub const VERSION_META: &str = ":http-version";

fn version_name(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

fn into_outcome(resp: Response) -> Outcome {
    let version = version_name(resp.version);
    let meta = Meta::from_byte_pairs(|| {
        resp.headers
            .iter()
            .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()))
            .chain(std::iter::once((
                VERSION_META.as_bytes(),
                version.as_bytes(),
            )))
    });
    Outcome::ok(resp.body)
        .with_code(u32::from(resp.status.as_u16()))
        .with_meta(meta)
}

/// The declaration an http handler with `opts` registers with: a future per request on the
/// engine's runtime. Fails when an option is out of range or the extra CA file cannot be used.
pub(crate) fn handler(opts: HttpOptions) -> Result<Handler> {
    Ok(Handler::Async(Arc::new(HttpHandler::new(opts)?)))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener};

    use super::*;
    use crate::status::Status;

    /// A keep-alive HTTP/1.1 server on threads of its own (so that its allocations are not
    /// counted), answering every request as W3's Go server does: three headers, 64 bytes.
    fn w3_like_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                std::thread::spawn(move || {
                    let mut response = b"HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\
                        Content-Type: text/plain; charset=utf-8\r\n\
                        Date: Tue, 01 Dec 2026 10:00:00 GMT\r\n\r\n"
                        .to_vec();
                    response.extend_from_slice(&[b'x'; 64]);
                    let (mut buf, mut have) = ([0u8; 4096], Vec::new());
                    while let Ok(n @ 1..) = stream.read(&mut buf) {
                        have.extend_from_slice(&buf[..n]);
                        while let Some(end) = have.windows(4).position(|w| w == b"\r\n\r\n") {
                            have.drain(..end + 4);
                            if stream.write_all(&response).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    #[test]
    fn a_get_on_a_pooled_http1_connection_makes_few_allocations() {
        let addr = w3_like_server();
        let handler = HttpHandler::new(HttpOptions::default()).unwrap();
        // One thread runs the request and its connection task, so every allocation of the
        // exchange is counted.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let payload = format!("GET http://{addr}/ HTTP/1.1\r\n\r\n").into_bytes();
        // What the engine does per request: the check at submit, the payload copy, the call.
        let get = || {
            handler.validate(&payload).unwrap();
            let out = rt.block_on(handler.call(payload.clone()));
            assert_eq!(out.status, Status::PORTWAY_OK);
            assert_eq!(out.code, 200);
            assert_eq!(out.data.as_slice(), &[b'x'; 64]);
        };
        // Opens the connection, starts the reaper, fills the one-time caches.
        for _ in 0..3 {
            get();
        }
        // The fewest of a few runs: a run can meet a one-off (a buffer grown, a timer level).
        let fewest = (0..5)
            .map(|_| crate::alloc_count::allocations(get).1)
            .min()
            .unwrap();
        eprintln!("allocations per pooled GET: {fewest}");
        assert!(
            fewest <= ALLOCATIONS_PER_GET,
            "allocations per pooled GET: {fewest}"
        );
    }

    /// The allocations of one pooled HTTP/1 GET, from the submit-time check to the outcome.
    const ALLOCATIONS_PER_GET: u64 = 14;
}
