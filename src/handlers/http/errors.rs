//! Failures of an http request and their mapping onto completion statuses. Every failure
//! carries a message naming the origin and what went wrong; it becomes the completion's data.

use std::error::Error as StdError;
use std::fmt;
use std::io;

use super::request::Origin;
use crate::contract::Outcome;
use crate::status::Status;

/// Which completion status a failure gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Resolving, connecting or the connect timeout (`PORTWAY_CONNECT_ERROR`).
    Connect,
    /// TLS handshake or certificate verification (`PORTWAY_TLS_ERROR`).
    Tls,
    /// The peer broke HTTP: malformed or cut-off response, reset, bad redirect
    /// (`PORTWAY_PROTOCOL_ERROR`).
    Protocol,
    /// No byte of the response arrived within `read_timeout_ms` (`PORTWAY_TIMEOUT`).
    Timeout,
    /// The response body (or its announced length) is over `max_body_bytes`
    /// (`PORTWAY_BODY_TOO_LARGE`).
    BodyTooLarge,
    /// A bug in portway (`PORTWAY_INTERNAL`).
    Internal,
}

/// A failed exchange.
#[derive(Clone, Debug)]
pub(crate) struct HttpError {
    pub kind: Kind,
    pub message: String,
}

impl HttpError {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        HttpError {
            kind,
            message: message.into(),
        }
    }

    pub fn protocol(message: impl Into<String>) -> Self {
        Self::new(Kind::Protocol, message)
    }

    /// The completion status.
    pub fn status(&self) -> Status {
        match self.kind {
            Kind::Connect => Status::PORTWAY_CONNECT_ERROR,
            Kind::Tls => Status::PORTWAY_TLS_ERROR,
            Kind::Protocol => Status::PORTWAY_PROTOCOL_ERROR,
            Kind::Timeout => Status::PORTWAY_TIMEOUT,
            Kind::BodyTooLarge => Status::PORTWAY_BODY_TOO_LARGE,
            Kind::Internal => Status::PORTWAY_INTERNAL,
        }
    }

    pub fn into_outcome(self) -> Outcome {
        Outcome::failed(self.status(), self.message)
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A TCP connect to `addr` failed.
pub(crate) fn connect_failed(
    origin: &Origin,
    addr: &std::net::SocketAddr,
    e: &io::Error,
) -> HttpError {
    let what = match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        io::ErrorKind::HostUnreachable => "host unreachable".to_owned(),
        io::ErrorKind::NetworkUnreachable => "network unreachable".to_owned(),
        _ => e.to_string(),
    };
    HttpError::new(
        Kind::Connect,
        format!("cannot connect to {origin} (address {addr}): {what}"),
    )
}

/// The TLS handshake failed.
pub(crate) fn tls_failed(origin: &Origin, e: &io::Error) -> HttpError {
    let why = match find_rustls(e) {
        Some(tls) => tls.to_string(),
        None => e.to_string(),
    };
    HttpError::new(
        Kind::Tls,
        format!("TLS handshake with {origin} failed: {why}"),
    )
}

/// Sending the request or receiving the response head failed.
pub(crate) fn exchange_failed(
    origin: &Origin,
    e: &hyper::Error,
    max_header_bytes: u32,
) -> HttpError {
    if let Some(tls) = find_rustls(e) {
        return HttpError::new(Kind::Tls, format!("TLS error with {origin}: {tls}"));
    }
    // hyper reports a head over the size limit, or with too many headers, this way.
    let message = if e.is_parse() && e.to_string().contains("too large") {
        format!(
            "the response head from {origin} is too large: over max_header_bytes \
             ({max_header_bytes} bytes) or over {} header lines (one per 256 bytes of \
             max_header_bytes, at least 256)",
            super::connect::max_header_lines(max_header_bytes)
        )
    } else if e.is_parse() {
        format!("malformed response from {origin}: {}", chain(e))
    } else if e.is_incomplete_message() {
        format!("{origin} closed the connection before sending a complete response")
    } else {
        format!("request to {origin} failed: {}", chain(e))
    };
    HttpError::protocol(message)
}

/// The server sent GOAWAY on the connection this stream was meant for.
pub(crate) fn is_go_away(e: &hyper::Error) -> bool {
    find::<h2::Error>(e).is_some_and(|h2| h2.is_go_away() && h2.is_remote())
}

/// The server reset the request's stream with REFUSED_STREAM: it did not process it (RFC 9113
/// section 8.7), so it may be sent again on a new connection whatever the method.
pub(crate) fn is_refused(e: &hyper::Error) -> bool {
    find::<h2::Error>(e).is_some_and(|h2| {
        h2.is_remote() && h2.is_reset() && h2.reason() == Some(h2::Reason::REFUSED_STREAM)
    })
}

/// hyper's HTTP/2 dispatcher dropped the request without an answer. It does that when the
/// connection shuts down after a GOAWAY while the request's stream waits for a free slot
/// (MAX_CONCURRENT_STREAMS), usually before the stream was sent. (The connection task is
/// never aborted while a request uses it, and the runtime outlives every request, which are
/// hyper's other reasons for this error.) hyper has no predicate for it: `is_user` plus its
/// fixed text.
pub(crate) fn h2_dropped_unopened(e: &hyper::Error) -> bool {
    e.is_user() && e.to_string().starts_with("dispatch task is gone")
}

/// Reading the response body failed.
pub(crate) fn body_failed(origin: &Origin, e: &hyper::Error) -> HttpError {
    if let Some(tls) = find_rustls(e) {
        return HttpError::new(
            Kind::Tls,
            format!("TLS error with {origin} in the response body: {tls}"),
        );
    }
    HttpError::protocol(format!(
        "the response body from {origin} was cut off: {}",
        chain(e)
    ))
}

/// The error and its causes, joined with ": " (repeats left out).
pub(crate) fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = next_cause(e);
    while let Some(c) = cur {
        let part = c.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cur = next_cause(c);
    }
    text
}

/// The next error in the chain; looks inside `io::Error`, whose `source()` skips the wrapped
/// error itself.
fn next_cause<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    if let Some(io) = e.downcast_ref::<io::Error>()
        && let Some(inner) = io.get_ref()
    {
        return Some(inner);
    }
    e.source()
}

fn find_rustls<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    find(e)
}

/// The first error of type `T` in the chain (hyper wraps the h2 and rustls errors).
fn find<'a, T: StdError + 'static>(e: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(found) = c.downcast_ref::<T>() {
            return Some(found);
        }
        cur = next_cause(c);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_rustls_inside_io() {
        let e = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let origin = Origin {
            tls: true,
            host: "h".into(),
            port: 1,
        };
        let err = tls_failed(&origin, &e);
        assert_eq!(err.status(), Status::PORTWAY_TLS_ERROR);
        assert!(err.message.contains("UnknownIssuer"), "{}", err.message);
    }
}
