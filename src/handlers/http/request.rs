//! The payload of an http request: an HTTP/1.1 request head in absolute form, then the body.
//! Parsed with `httparse` and checked strictly, so that a bad payload is rejected at submit
//! time with a message naming the problem.

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

use crate::error::{Error, Result};

/// Where a request goes: scheme, host and port. Also the key of the connection pool.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Origin {
    /// `https` rather than `http`.
    pub tls: bool,
    /// Host name or IP literal, lowercase, without IPv6 brackets.
    pub host: String,
    /// Port, explicit or the scheme's default.
    pub port: u16,
}

impl Origin {
    /// The scheme name.
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.scheme(), self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.scheme(), self.host, self.port)
        }
    }
}

/// The parsed request head; the body starts at `body_start` in the payload.
#[derive(Debug)]
pub(crate) struct Head {
    pub method: Method,
    /// Absolute URL with an `http` or `https` scheme.
    pub uri: Uri,
    pub origin: Origin,
    /// Headers in the order given.
    pub headers: HeaderMap,
    pub body_start: usize,
}

/// A request ready to send (also the state carried across redirects and retries).
#[derive(Clone, Debug)]
pub(crate) struct Prepared {
    pub method: Method,
    pub uri: Uri,
    pub origin: Origin,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The URL's authority as a `Host` value sharing the payload's bytes, for HTTP/1 requests
    /// without a Host header of their own (`None`: made from the URL when needed).
    pub host_value: Option<HeaderValue>,
}

/// Header lines a head may have before its parse needs a heap-allocated slot array.
const STACK_SLOTS: usize = 32;

/// A checked head, borrowed from the payload: what both [`check`] and [`parse_head`] need.
struct Scanned<'h> {
    method: Method,
    /// The request target, still unparsed.
    target: &'h str,
    headers: &'h [httparse::Header<'h>],
    body_start: usize,
}

/// Runs `f` on the payload's head, scanned and checked (everything but the URL), with slots
/// for its header lines on the stack when they fit.
fn with_scanned<T>(payload: &[u8], f: impl FnOnce(Scanned<'_>) -> Result<T>) -> Result<T> {
    let Some(end) = find(payload, b"\r\n\r\n") else {
        return Err(Error::invalid(
            "http payload has no end of head: the request line and headers must be followed \
             by an empty line (CRLF CRLF), then the body",
        ));
    };
    let head = &payload[..end + 4];
    check_line_endings(&head[..end + 2])?;
    let lines = head.windows(2).filter(|w| w == b"\r\n").count();
    let mut stack = [httparse::EMPTY_HEADER; STACK_SLOTS];
    let mut heap;
    let slots: &mut [httparse::Header<'_>] = if lines <= STACK_SLOTS {
        &mut stack[..lines]
    } else {
        heap = vec![httparse::EMPTY_HEADER; lines];
        &mut heap
    };
    let mut req = httparse::Request::new(slots);
    match req.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        Ok(_) => {
            return Err(Error::invalid(
                "http payload head is incomplete (internal parser disagreement)",
            ));
        }
        Err(e) => return Err(describe_parse_error(e, head)),
    }
    let method_str = req.method.unwrap_or_default();
    let method = Method::from_bytes(method_str.as_bytes())
        .map_err(|_| Error::invalid(format!("invalid method {method_str:?}")))?;
    if method == Method::CONNECT {
        return Err(Error::invalid("the CONNECT method is not supported"));
    }
    let headers: &[httparse::Header<'_>] = req.headers;
    let mut hosts = 0;
    let body_len = (payload.len() - head.len()) as u64;
    for h in headers {
        // httparse admits only token characters in a name and no control characters but tab
        // in a value; the http crate also caps a name's length.
        if h.name.len() >= MAX_HEADER_NAME_LEN {
            return Err(Error::invalid(format!(
                "invalid header name {}: over {MAX_HEADER_NAME_LEN} bytes",
                show(h.name.as_bytes())
            )));
        }
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Error::invalid(
                "Transfer-Encoding is not allowed in an http payload: the bytes after the head \
                 are the body, sent as is with a Content-Length",
            ));
        }
        if h.name.eq_ignore_ascii_case("host") {
            hosts += 1;
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let declared = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "Content-Length {} is not a decimal number",
                        show(h.value)
                    ))
                })?;
            if declared != body_len {
                return Err(Error::invalid(format!(
                    "Content-Length is {declared} but the body after the head is {body_len} bytes"
                )));
            }
        }
    }
    if hosts > 1 {
        return Err(Error::invalid("http payload has more than one Host header"));
    }
    f(Scanned {
        method,
        target: req.path.unwrap_or_default(),
        headers,
        body_start: head.len(),
    })
}

/// The longest header name the http crate takes.
const MAX_HEADER_NAME_LEN: usize = 1 << 16;

/// Checks a payload as [`parse_head`] does, building nothing it does not need: the check at
/// submit time, which runs on the host's thread for every request.
pub(crate) fn check(payload: &[u8]) -> Result<()> {
    with_scanned(payload, |head| check_target(head.target))
}

/// Parses and checks a payload without copying its body.
pub(crate) fn parse_head(payload: &[u8]) -> Result<Head> {
    with_scanned(payload, |head| {
        let (uri, origin) = parse_target(head.target)?;
        let headers = header_map(head.headers, HeaderValue::from_bytes)?;
        Ok(Head {
            method: head.method,
            uri,
            origin,
            headers,
            body_start: head.body_start,
        })
    })
}

/// The headers as a map, in the order given; `value` makes each value (copied, or a slice
/// of the payload).
fn header_map(
    headers: &[httparse::Header<'_>],
    mut value: impl FnMut(&[u8]) -> std::result::Result<HeaderValue, http::header::InvalidHeaderValue>,
) -> Result<HeaderMap> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for h in headers {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| Error::invalid(format!("invalid header name {:?}", h.name)))?;
        let value = value(h.value).map_err(|_| {
            Error::invalid(format!(
                "header {:?} has a value with control characters: {}",
                h.name,
                show(h.value)
            ))
        })?;
        map.append(name, value);
    }
    Ok(map)
}

/// Parses a payload into a request ready to send, taking ownership of its bytes: the URL,
/// the header values and the body are slices of them, not copies.
pub(crate) fn prepare(payload: Vec<u8>) -> Result<Prepared> {
    let bytes = Bytes::from(payload);
    let shared = |v: &[u8]| HeaderValue::from_maybe_shared(bytes.slice_ref(v));
    let (method, uri, origin, headers, host_value, body_start) = with_scanned(&bytes, |head| {
        let target = bytes.slice_ref(head.target.as_bytes());
        let uri = Uri::from_maybe_shared(target)
            .map_err(|e| Error::invalid(format!("URL {:?} is not valid: {e}", head.target)))?;
        let origin = origin_from_uri(&uri, head.target)?;
        let headers = header_map(head.headers, shared)?;
        // Any run of the target's bytes that spells the authority will do.
        let host_value = uri.authority().and_then(|a| {
            let at = head.target.find(a.as_str())?;
            shared(&head.target.as_bytes()[at..at + a.as_str().len()]).ok()
        });
        Ok((
            head.method,
            uri,
            origin,
            headers,
            host_value,
            head.body_start,
        ))
    })?;
    Ok(Prepared {
        method,
        uri,
        origin,
        headers,
        body: bytes.slice(body_start..),
        host_value,
    })
}

/// The origin a payload's request line names, read without parsing the headers (the circuit
/// breaker's key, asked for before each run); `None` when the line is not `METHOD URL ...`
/// with an absolute http(s) URL.
pub(crate) fn origin_of(payload: &[u8]) -> Option<Origin> {
    let line = &payload[..find(payload, b"\r\n")?];
    let mut parts = std::str::from_utf8(line).ok()?.split(' ');
    let (_method, target) = (parts.next()?, parts.next()?);
    parse_target(target).ok().map(|(_, origin)| origin)
}

/// Parses an absolute `http`/`https` URL (request target or redirect location).
pub(crate) fn parse_target(target: &str) -> Result<(Uri, Origin)> {
    let uri: Uri = target
        .parse()
        .map_err(|e| Error::invalid(format!("URL {target:?} is not valid: {e}")))?;
    let origin = origin_from_uri(&uri, target)?;
    Ok((uri, origin))
}

/// Checks a URL as [`parse_target`] does, without building its origin.
fn check_target(target: &str) -> Result<()> {
    let uri: Uri = target
        .parse()
        .map_err(|e| Error::invalid(format!("URL {target:?} is not valid: {e}")))?;
    scheme_host_port(&uri, target).map(|_| ())
}

/// The origin of a parsed absolute URL (`target` is its text, for messages).
fn origin_from_uri(uri: &Uri, target: &str) -> Result<Origin> {
    let (tls, host, port) = scheme_host_port(uri, target)?;
    Ok(Origin {
        tls,
        host: host.to_ascii_lowercase(),
        port,
    })
}

/// Scheme (`https` or not), host (as written, without IPv6 brackets) and port of an absolute
/// `http`/`https` URL.
fn scheme_host_port<'u>(uri: &'u Uri, target: &str) -> Result<(bool, &'u str, u16)> {
    let Some(scheme) = uri.scheme() else {
        return Err(Error::invalid(format!(
            "URL {target:?} is not absolute: write the request target in absolute form, \
             e.g. GET http://host:port/path HTTP/1.1"
        )));
    };
    let tls = if *scheme == Scheme::HTTPS {
        true
    } else if *scheme == Scheme::HTTP {
        false
    } else {
        return Err(Error::invalid(format!(
            "URL scheme {:?} is not supported: only http and https are",
            scheme.as_str()
        )));
    };
    let authority = uri
        .authority()
        .ok_or_else(|| Error::invalid(format!("URL {target:?} has no host")))?;
    let (host, port) = host_and_port(authority, tls)
        .map_err(|why| Error::invalid(format!("URL {target:?} {why}")))?;
    Ok((tls, host, port))
}

fn host_and_port(authority: &Authority, tls: bool) -> std::result::Result<(&str, u16), String> {
    let text = authority.as_str();
    if text.contains('@') {
        return Err("has credentials before the host, which are not supported: \
                    send an Authorization header instead"
            .into());
    }
    let host = authority.host();
    let rest = &text[host.len()..];
    let default = if tls { 443 } else { 80 };
    let port = match rest.strip_prefix(':') {
        None if rest.is_empty() => default,
        Some("") => default,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("has an invalid port {p:?}"))?,
        None => return Err("has an invalid authority".into()),
    };
    // The URL parser takes brackets anywhere in a host and any text inside them; only an
    // IPv6 address (without a zone identifier) may be bracketed, and only as the whole host,
    // or the text would be resolved as a host name. `http://[]/` names no host at all.
    let host = if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').unwrap_or(inner);
        if !inner.is_empty() && inner.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("has an invalid IPv6 address [{inner}]"));
        }
        inner
    } else if host.contains(['[', ']']) {
        return Err(format!(
            "has an invalid host {host:?}: brackets belong only around a whole IPv6 address"
        ));
    } else {
        host
    };
    if host.is_empty() {
        return Err("has an empty host".into());
    }
    Ok((host, port))
}

/// Finds bare CR or LF in the head (the request line and header lines are split by CRLF
/// only; a lone CR or LF would be a line break inside a value).
fn check_line_endings(head: &[u8]) -> Result<()> {
    for (i, &b) in head.iter().enumerate() {
        let bare = match b {
            b'\r' => head.get(i + 1) != Some(&b'\n'),
            b'\n' => i == 0 || head[i - 1] != b'\r',
            _ => false,
        };
        if bare {
            let which = if b == b'\r' { "CR" } else { "LF" };
            let line_start = find_last(&head[..i], b"\r\n").map_or(0, |p| p + 2);
            let line = &head[line_start..i];
            return Err(Error::invalid(if line_start == 0 {
                format!("the request line contains a bare {which}")
            } else {
                let name = line.split(|&c| c == b':').next().unwrap_or_default();
                format!(
                    "header {} contains a bare {which}: CR and LF are not allowed inside a \
                     header value",
                    show(name)
                )
            }));
        }
    }
    Ok(())
}

fn describe_parse_error(e: httparse::Error, head: &[u8]) -> Error {
    let first_line_end = find(head, b"\r\n").unwrap_or(head.len());
    let request_line = &head[..first_line_end];
    match e {
        httparse::Error::Token => Error::invalid(format!(
            "malformed request line {}: expected METHOD URL HTTP/1.1",
            show(request_line)
        )),
        httparse::Error::Version => Error::invalid(format!(
            "request line {} must end with HTTP/1.1",
            show(request_line)
        )),
        httparse::Error::HeaderName => {
            let bad = header_lines(head)
                .find(|line| !valid_header_line(line))
                .unwrap_or_default();
            Error::invalid(format!(
                "malformed header line {}: expected Name: value",
                show(bad)
            ))
        }
        httparse::Error::HeaderValue => {
            let bad = header_lines(head)
                .find(|line| line.iter().any(|&c| c.is_ascii_control() && c != b'\t'))
                .unwrap_or_default();
            Error::invalid(format!(
                "header line {} has a value with control characters",
                show(bad)
            ))
        }
        other => Error::invalid(format!("malformed http payload head: {other}")),
    }
}

fn header_lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    let start = find(head, b"\r\n").map_or(head.len(), |p| p + 2);
    head[start..]
        .split(|&c| c == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty())
}

fn valid_header_line(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&c| c == b':') else {
        return false;
    };
    colon > 0 && HeaderName::from_bytes(&line[..colon]).is_ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

/// Quotes bytes for a message, escaped and cut to a readable length.
fn show(bytes: &[u8]) -> String {
    const MAX: usize = 80;
    let cut = &bytes[..bytes.len().min(MAX)];
    let more = if bytes.len() > MAX { "..." } else { "" };
    format!("\"{}{more}\"", cut.escape_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(payload: &[u8]) -> String {
        parse_head(payload).unwrap_err().to_string()
    }

    #[test]
    fn parses_absolute_form_with_body() {
        let p = prepare(
            b"POST http://Example.com:8080/items?x=1 HTTP/1.1\r\nContent-Type: text/plain\r\n\
              X-A: 1\r\nX-A: 2\r\nContent-Length: 3\r\n\r\nabc"
                .to_vec(),
        )
        .unwrap();
        assert_eq!(p.method, Method::POST);
        assert_eq!(p.origin.host, "example.com");
        assert_eq!(p.origin.port, 8080);
        assert!(!p.origin.tls);
        assert_eq!(&p.body[..], b"abc");
        let xa: Vec<_> = p.headers.get_all("x-a").iter().collect();
        assert_eq!(xa, ["1", "2"]);
    }

    #[test]
    fn the_submit_check_and_prepare_allocate_little() {
        let payload = b"GET http://Example.com:8080/items?x=1 HTTP/1.1\r\nAccept: */*\r\n\
                        X-Trace: 1\r\n\r\n";
        // The check runs on the host thread for every request: the URL (a copy, and its shared
        // part once sliced) is all it builds.
        let (checked, n) = crate::alloc_count::allocations(|| check(payload));
        assert!(checked.is_ok());
        assert_eq!(n, 2, "allocations of the submit check");
        // Prepare slices the URL and the header values out of the payload: the shared buffer,
        // the header map (indices and entries), the custom name, the lowercase host.
        let owned = payload.to_vec();
        let (p, n) = crate::alloc_count::allocations(|| prepare(owned).unwrap());
        assert_eq!(n, 5, "allocations of prepare");
        assert_eq!(p.uri, "http://Example.com:8080/items?x=1");
        assert_eq!(p.origin.host, "example.com");
        assert_eq!(p.headers["x-trace"], "1");
        // A head with more lines than the stack slots still parses.
        let many: String = (0..STACK_SLOTS + 5)
            .map(|i| format!("X-{i}: {i}\r\n"))
            .collect();
        let payload = format!("GET http://h/ HTTP/1.1\r\n{many}\r\n").into_bytes();
        assert!(check(&payload).is_ok());
        assert_eq!(prepare(payload).unwrap().headers.len(), STACK_SLOTS + 5);
    }

    #[test]
    fn default_ports_and_ipv6() {
        let h = parse_head(b"GET https://[::1]/ HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(h.origin.host, "::1");
        assert_eq!(h.origin.port, 443);
        assert!(h.origin.tls);
        let h = parse_head(b"GET http://h HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(h.origin.port, 80);
    }

    #[test]
    fn the_origin_is_read_from_the_request_line_alone() {
        let origin = |p: &[u8]| origin_of(p).map(|o| o.to_string());
        assert_eq!(
            origin(b"GET http://Example.com/a HTTP/1.1\r\nX: y\r\n\r\n").as_deref(),
            Some("http://example.com:80")
        );
        assert_eq!(
            origin(b"PUT https://[::1]:8443/ HTTP/1.1\r\n").as_deref(),
            Some("https://[::1]:8443")
        );
        assert_eq!(origin(b"GET /relative HTTP/1.1\r\n\r\n"), None);
        assert_eq!(origin(b"GET http://h/ HTTP/1.1"), None);
        assert_eq!(origin(b"\xff\xfe\r\n"), None);
    }

    #[test]
    fn rejects_with_a_message_naming_the_problem() {
        assert!(err(b"GET http://h/ HTTP/1.1\r\n").contains("no end of head"));
        assert!(err(b"GET /items HTTP/1.1\r\n\r\n").contains("not absolute"));
        assert!(err(b"GET ftp://h/ HTTP/1.1\r\n\r\n").contains("scheme"));
        assert!(err(b"GET http://h:99999/ HTTP/1.1\r\n\r\n").contains("port"));
        assert!(err(b"GET http://u:p@h/ HTTP/1.1\r\n\r\n").contains("credentials"));
        assert!(
            err(b"GET http://h/ HTTP/1.1\r\nX-A: a\nb\r\n\r\n")
                .contains("\"X-A\" contains a bare LF")
        );
        assert!(err(b"GET http://h/ HTTP/1.1\r\nX-A: a\rb\r\n\r\n").contains("bare CR"));
        assert!(err(b"GET http://h/ HTTP/1.1\r\nNoColon\r\n\r\n").contains("NoColon"));
        assert!(err(b"GET http://h/ HTTP/1.1\r\nX: \x01\r\n\r\n").contains("control"));
        assert!(err(b"GET http://h/ HTTP/9.9\r\n\r\n").contains("HTTP/1.1"));
        assert!(err(b"G(T http://h/ HTTP/1.1\r\n\r\n").contains("request line"));
        assert!(
            err(b"POST http://h/ HTTP/1.1\r\nContent-Length: 5\r\n\r\nabc")
                .contains("Content-Length is 5 but the body after the head is 3 bytes")
        );
        assert!(err(b"POST http://h/ HTTP/1.1\r\nContent-Length: x\r\n\r\n").contains("decimal"));
        assert!(
            err(b"POST http://h/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
                .contains("Transfer-Encoding")
        );
        assert!(err(b"CONNECT http://h:1/ HTTP/1.1\r\n\r\n").contains("CONNECT"));
        // Found by the http_request_head fuzz target: brackets around nothing.
        assert!(err(b"GET https://[]/ HTTP/1.1\r\n\r\n").contains("empty host"));
        assert!(err(b"GET https://[tc%1]/ HTTP/1.1\r\n\r\n").contains("invalid IPv6 address"));
        assert!(err(b"GET http://[fe80::1%25eth0]/ HTTP/1.1\r\n\r\n").contains("IPv6"));
        assert!(err(b"GET https://z[1e]:/ HTTP/1.1\r\n\r\n").contains("brackets belong"));
    }
}
