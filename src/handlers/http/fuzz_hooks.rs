//! The http handler's fuzz target bodies (reached through `crate::fuzzing`): the request-head
//! parser and validator, and the response side portway owns (the HTTP/1 head limit it
//! configures, the body limit, the headers' meta encoding, redirects and `Retry-After`).
//! Each function panics when an invariant the handler's documentation promises is broken.

use std::ffi::CStr;
use std::sync::OnceLock;
use std::time::Duration;

use http::header::{
    AUTHORIZATION, CONNECTION, CONTENT_LENGTH, COOKIE, HOST, TRANSFER_ENCODING, UPGRADE,
};
use http::{Method, Version};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::client::Client;
use super::options::HttpOptions;
use super::pool::ReqBody;
use super::request::{Prepared, check, parse_head, parse_target, prepare};
use super::response::{ReadWatch, read_response};
use super::{connect, errors, redirect, retry};
use crate::status::Status;

/// One client (TLS roots parsed once) for building requests the way the handler does.
fn client() -> &'static Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT.get_or_init(|| Client::new(&HttpOptions::default()).expect("default http options"))
}

/// Parses `data` as an http payload; when accepted, checks that the head keeps every promise
/// of the handler's documentation and that the requests built from it are well formed.
pub(crate) fn request_head(data: &[u8]) {
    // The submit-time check and the full parse must agree on every payload, message included.
    let checked = check(data).map_err(|e| e.to_string());
    assert_eq!(
        checked,
        parse_head(data).map(|_| ()).map_err(|e| e.to_string())
    );
    let head = match parse_head(data) {
        Ok(head) => head,
        Err(e) => {
            assert_eq!(e.status(), Status::PORTWAY_INVALID_ARGUMENT, "{e}");
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let end = head.body_start;
    assert!(end <= data.len() && data[..end].ends_with(b"\r\n\r\n"));
    for (i, &b) in data[..end].iter().enumerate() {
        match b {
            b'\r' => assert_eq!(data.get(i + 1), Some(&b'\n'), "bare CR accepted at {i}"),
            b'\n' => assert!(i > 0 && data[i - 1] == b'\r', "bare LF accepted at {i}"),
            _ => {}
        }
    }
    assert_ne!(head.method, Method::CONNECT);
    assert_eq!(head.uri.scheme_str(), Some(head.origin.scheme()));
    assert!(!head.origin.host.is_empty());
    assert_ne!(head.origin.port, 0);
    assert_eq!(head.origin.host, head.origin.host.to_ascii_lowercase());
    assert!(!head.headers.contains_key(TRANSFER_ENCODING));
    assert!(head.headers.get_all(HOST).iter().count() <= 1);
    let body_len = (data.len() - end) as u64;
    for value in head.headers.get_all(CONTENT_LENGTH) {
        let declared: u64 = value.to_str().unwrap().trim().parse().unwrap();
        assert_eq!(declared, body_len);
    }
    // The origin (the pool key) written out is a URL that names the same origin.
    let shown = format!("{}/", head.origin);
    let (_, again) =
        parse_target(&shown).unwrap_or_else(|e| panic!("origin {shown} does not reparse: {e}"));
    assert_eq!(again, head.origin);

    let prepared = prepare(data.to_vec()).expect("prepare refused what parse_head accepted");
    assert_eq!(&prepared.body[..], &data[end..]);
    check_built(&prepared);
}

/// The hyper requests the handler would send for `req`, over HTTP/1 and HTTP/2.
fn check_built(req: &Prepared) {
    let h1 = client().build(req, false);
    assert_eq!(h1.version(), Version::HTTP_11);
    assert!(h1.uri().scheme().is_none() && h1.uri().authority().is_none());
    let target = h1.uri().to_string();
    assert!(target.starts_with('/') || target == "*", "{target:?}");
    assert!(
        h1.headers().contains_key(HOST),
        "HTTP/1 request without Host"
    );

    let h2 = client().build(req, true);
    assert_eq!(h2.version(), Version::HTTP_2);
    assert!(h2.uri().scheme().is_some() && h2.uri().authority().is_some());
    for name in [CONNECTION, TRANSFER_ENCODING, UPGRADE, HOST] {
        assert!(
            !h2.headers().contains_key(&name),
            "HTTP/2 request with {name}"
        );
    }
}

/// Response fuzzing knobs, from the first byte of the input.
struct ResponseKnobs {
    max_header_bytes: u32,
    body_limit: u64,
    method: &'static str,
}

impl ResponseKnobs {
    fn from(byte: u8) -> Self {
        ResponseKnobs {
            max_header_bytes: [1024, 2048, 8192, 64 << 10][usize::from(byte & 3)],
            body_limit: [u64::MAX, 0, 16, 1024][usize::from((byte >> 2) & 3)],
            method: ["GET", "POST", "HEAD", "PUT"][usize::from((byte >> 4) & 3)],
        }
    }
}

/// Runs one HTTP/1 exchange with the handler's client settings against a peer that answers
/// with `data[1..]` (over an in-memory pipe), then turns the response into a completion the
/// way the handler does, and follows its redirect if it is one.
pub(crate) fn response(data: &[u8]) {
    let Some((&knob, reply)) = data.split_first() else {
        return;
    };
    let knobs = ResponseKnobs::from(knob);
    let payload = format!(
        "{} http://fuzz.invalid/a/b?q HTTP/1.1\r\nAuthorization: t\r\nContent-Length: 4\r\n\r\nbody",
        knobs.method
    );
    let req = prepare(payload.into_bytes()).expect("the fixed request is valid");

    thread_local! {
        static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime");
    }
    let result = RT.with(|rt| {
        rt.block_on(async {
            let exchange = exchange(&req, &knobs, reply.to_vec());
            tokio::time::timeout(Duration::from_secs(10), exchange)
                .await
                .expect("an exchange with a peer that closed its side never ended")
        })
    });
    match result {
        Ok(resp) => check_response(&req, &knobs, resp),
        Err(e) => {
            let status = e.status();
            assert!(
                matches!(
                    status,
                    Status::PORTWAY_PROTOCOL_ERROR | Status::PORTWAY_BODY_TOO_LARGE
                ),
                "{status:?}: {e}"
            );
            assert!(
                e.message.contains("http://fuzz.invalid:80"),
                "{}",
                e.message
            );
        }
    }
}

async fn exchange(
    req: &Prepared,
    knobs: &ResponseKnobs,
    reply: Vec<u8>,
) -> Result<super::response::Response, errors::HttpError> {
    let (ours, mut peer) = tokio::io::duplex(1 << 16);
    let (mut sender, conn) = connect::h1_builder(knobs.max_header_bytes, true)
        .handshake::<_, ReqBody>(TokioIo::new(ours))
        .await
        .expect("a handshake over a pipe");
    let conn = tokio::spawn(conn);
    // The peer reads the request head, answers, closes its side and drains the rest.
    let peer = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            match peer.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        let _ = peer.write_all(&reply).await;
        let _ = peer.shutdown().await;
        let _ = tokio::io::copy(&mut peer, &mut tokio::io::sink()).await;
    });
    let origin = &req.origin;
    let result = async {
        let resp = sender
            .send_request(client().build(req, false))
            .await
            .map_err(|e| errors::exchange_failed(origin, &e, knobs.max_header_bytes))?;
        read_response(
            resp,
            knobs.body_limit,
            false,
            &mut ReadWatch::new(None, origin),
        )
        .await
    }
    .await;
    drop(sender);
    conn.abort();
    let _ = peer.await;
    result
}

fn check_response(req: &Prepared, knobs: &ResponseKnobs, resp: super::response::Response) {
    assert!(resp.body.len() as u64 <= knobs.body_limit);
    // The head limit: what hyper accepted fits max_header_bytes. A head is at least its
    // status line ("HTTP/1.1 200" and LF), each header's name, ':', value and LF, and the LF
    // of the empty line.
    let head_floor: usize = 13
        + resp
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 2)
            .sum::<usize>()
        + 1;
    assert!(
        head_floor <= knobs.max_header_bytes as usize,
        "a response head of at least {head_floor} bytes passed max_header_bytes {}",
        knobs.max_header_bytes
    );
    if let Some(after) = retry::retry_after(&resp.headers) {
        assert!(after <= Duration::from_secs(30));
    }
    let expected: Vec<(Vec<u8>, Vec<u8>)> = resp
        .headers
        .iter()
        .map(|(n, v)| (strip_nul(n.as_str().as_bytes()), strip_nul(v.as_bytes())))
        .collect();
    let status = resp.status;
    let location = resp.headers.get(http::header::LOCATION).cloned();
    let body = resp.body.clone();
    let outcome = super::into_outcome(resp);
    assert!(outcome.is_ok());
    assert_eq!(outcome.code, u32::from(status.as_u16()));
    assert_eq!(outcome.data.as_slice(), &body[..]);
    let (view, n) = outcome.meta.c_view();
    // The headers, then the `:http-version` pair every http completion ends with.
    assert_eq!(n, expected.len() + 1);
    // SAFETY: `view` holds `n` pairs of NUL-terminated strings owned by `outcome`.
    let last = unsafe { *view.add(n - 1) };
    assert_eq!(
        unsafe { CStr::from_ptr(last.key) }.to_bytes(),
        super::VERSION_META.as_bytes()
    );
    for (i, (k, v)) in expected.iter().enumerate() {
        // SAFETY: `view` holds `n` pairs of NUL-terminated strings owned by `outcome`.
        let pair = unsafe { *view.add(i) };
        let key = unsafe { CStr::from_ptr(pair.key) }.to_bytes();
        let value = unsafe { CStr::from_ptr(pair.value) }.to_bytes();
        assert_eq!((key, value), (&k[..], &v[..]), "meta pair {i}");
    }

    if redirect::is_redirect(status)
        && let Some(location) = location
    {
        match redirect::follow(req, status, location.as_bytes()) {
            Ok(next) => {
                assert_eq!(next.uri.scheme_str(), Some(next.origin.scheme()));
                assert!(!next.origin.host.is_empty() && next.origin.port != 0);
                if next.origin != req.origin {
                    for name in [AUTHORIZATION, COOKIE, HOST] {
                        assert!(
                            !next.headers.contains_key(&name),
                            "{name} kept across origins"
                        );
                    }
                }
                check_built(&next);
            }
            Err(e) => assert_eq!(e.status(), Status::PORTWAY_PROTOCOL_ERROR, "{e}"),
        }
    }
}

fn strip_nul(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().copied().filter(|&b| b != 0).collect()
}
