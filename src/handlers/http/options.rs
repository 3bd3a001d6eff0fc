//! [`HttpOptions`]: the limits and switches of one http handler, with the documented defaults.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// Most retries accepted in [`HttpOptions::retries`].
pub(crate) const MAX_RETRIES: u32 = 100;

/// Most redirects accepted in [`HttpOptions::max_redirects`].
pub(crate) const MAX_REDIRECTS: u32 = 100;

/// Smallest accepted [`HttpOptions::max_header_bytes`].
pub(crate) const MIN_HEADER_BYTES: u32 = 1024;

/// The settings of one http handler. The built-in `"http"` handler uses
/// `HttpOptions::default()`; [`Engine::register_http`](crate::Engine::register_http) adds
/// handlers with other settings.
///
/// Every field is plain data so that the C struct `portway_http_options` maps onto it
/// one-to-one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpOptions {
    /// Most connections open at once to one origin (scheme, host, port), idle ones included.
    /// Requests beyond what those connections can carry wait for one to come free.
    /// An HTTP/2 origin gets one connection (RFC 9113 section 9.1), shared by all requests;
    /// those beyond the server's MAX_CONCURRENT_STREAMS queue on it. While the first
    /// connection to an https origin is opened, other requests wait to learn whether it
    /// speaks HTTP/2 instead of opening their own. 0 = no limit. Default 256.
    pub max_connections_per_host: u32,
    /// Largest response body accepted, in bytes; a longer body fails the request with
    /// `PORTWAY_BODY_TOO_LARGE` and reading stops at the limit. 0 = no limit. Default 64 MiB.
    pub max_body_bytes: u64,
    /// Largest response head accepted, in bytes (HTTP/1: status line and headers; HTTP/2: the
    /// decoded header list); a larger one fails the request with `PORTWAY_PROTOCOL_ERROR`.
    /// At least 1024. Default 64 KiB. HTTP/1 responses may also have at most one header line
    /// per 256 bytes of this limit, and at least 256 lines (so 256 by default). (An origin's
    /// HTTP/1 connections parse up to 100 lines, the cheaper way, until it sends a longer head:
    /// that GET, HEAD, PUT, DELETE or OPTIONS is then sent once more on a connection that takes
    /// them all, as are all later requests to it; POST and PATCH always are.)
    pub max_header_bytes: u32,
    /// How long resolving the host, connecting and the TLS handshake may take together, in
    /// ms; past it the request fails with `PORTWAY_CONNECT_ERROR`. 0 = no limit (the request's
    /// own deadline still applies). Default 10 000.
    pub connect_timeout_ms: u32,
    /// How long the request may go without receiving a byte of its response, in ms: from
    /// sending it to the response head, then between two pieces of the body. Past it the
    /// request fails with `PORTWAY_TIMEOUT` and a message naming `read_timeout_ms` (its HTTP/1
    /// connection is closed; an HTTP/2 stream is reset). Catches servers that go silent, which
    /// a request without its own deadline would otherwise wait for forever. 0 = no limit.
    /// Default 30 000.
    pub read_timeout_ms: u32,
    /// Ask for compressed responses and decode them: a request without `Accept-Encoding` is
    /// sent with `Accept-Encoding: gzip, br, zstd, deflate` and a response body in one of
    /// those encodings is decoded as it arrives, `max_body_bytes` applying to the decoded
    /// size. The response headers stay as received. A request that sets its own
    /// `Accept-Encoding` gets the body as sent. Default true.
    pub decompress: bool,
    /// How long an idle keep-alive connection stays in the pool, in ms. 0 = no limit.
    /// Default 90 000.
    pub pool_idle_timeout_ms: u32,
    /// Follow 301, 302, 303, 307 and 308 responses. Default false: the 3xx response is the
    /// completion.
    pub follow_redirects: bool,
    /// Most redirects followed for one request when `follow_redirects` is on; one more fails
    /// the request with `PORTWAY_PROTOCOL_ERROR`. At most 100. Default 10.
    pub max_redirects: u32,
    /// Extra attempts for idempotent requests (GET, HEAD, PUT, DELETE, OPTIONS, TRACE) after a
    /// connect error or a 502, 503 or 504 response. 0 = no retries (the default); at most 100.
    /// Requests the server did not process are sent again whatever this says, up to 10 times
    /// and for any method: never sent, or refused with HTTP/2 REFUSED_STREAM; idempotent ones
    /// also when their HTTP/2 stream failed with the connection's GOAWAY.
    pub retries: u32,
    /// Delay before the first retry, in ms; each later retry doubles it (capped at 30 s) and
    /// every delay is jittered to between half and all of its value. A `Retry-After` in
    /// seconds on a 502/503/504 lengthens the delay (to at most 30 s). Default 100.
    pub retry_base_backoff_ms: u32,
    /// The `User-Agent` sent when the request has none; empty = send none.
    /// Default `portway/<version>`.
    pub user_agent: String,
    /// Speak HTTP/2 without negotiation: h2c on `http://` URLs, and only `h2` offered in ALPN on
    /// `https://` URLs. Default false (HTTP/1.1 on `http://`, ALPN picks on `https://`).
    pub http2_prior_knowledge: bool,
    /// Offer only HTTP/1.1 in ALPN on `https://` URLs (for servers or middleboxes whose
    /// HTTP/2 misbehaves). Cannot be combined with `http2_prior_knowledge`. Default false.
    pub http1_only: bool,
    /// The forward proxy: None = from the environment (`http_proxy`, `https_proxy` /
    /// `HTTPS_PROXY`, `all_proxy` / `ALL_PROXY`, `no_proxy` / `NO_PROXY`, with curl's rules;
    /// loopback targets always go direct), `""` = none, or an `http://[user:password@]host:port`
    /// URL used for every request (https targets through a CONNECT tunnel; user:password is
    /// sent as `Proxy-Authorization: Basic`). Default None.
    pub proxy: Option<String>,
    /// Trust only the web PKI roots bundled in portway (Mozilla's, from `webpki-roots`).
    /// Default false: the platform's trust store is trusted as well (on Linux the CA file and
    /// directory OpenSSL uses, or those named by `SSL_CERT_FILE` / `SSL_CERT_DIR`), so that a
    /// root installed by the system or an administrator is honoured.
    pub bundled_roots_only: bool,
    /// A PEM file of CA certificates trusted in addition to the other roots.
    /// Default none.
    pub extra_ca_pem_path: Option<PathBuf>,
    /// Accept any server certificate without verifying it. Only for tests against servers
    /// with throwaway certificates: it removes all protection TLS gives. Default false.
    pub danger_accept_invalid_certs: bool,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            max_connections_per_host: 256,
            max_body_bytes: 64 << 20,
            max_header_bytes: 64 << 10,
            connect_timeout_ms: 10_000,
            read_timeout_ms: 30_000,
            decompress: true,
            bundled_roots_only: false,
            http1_only: false,
            proxy: None,
            pool_idle_timeout_ms: 90_000,
            follow_redirects: false,
            max_redirects: 10,
            retries: 0,
            retry_base_backoff_ms: 100,
            user_agent: default_user_agent(),
            http2_prior_knowledge: false,
            extra_ca_pem_path: None,
            danger_accept_invalid_certs: false,
        }
    }
}

/// The default `User-Agent`: `portway/<version>`.
pub fn default_user_agent() -> String {
    format!("portway/{}", env!("CARGO_PKG_VERSION"))
}

impl HttpOptions {
    /// Checks every field; the error names the first one out of range.
    pub fn validate(&self) -> Result<()> {
        if self.max_header_bytes < MIN_HEADER_BYTES {
            return Err(Error::invalid(format!(
                "max_header_bytes must be at least {MIN_HEADER_BYTES}, got {}",
                self.max_header_bytes
            )));
        }
        if self.max_redirects > MAX_REDIRECTS {
            return Err(Error::invalid(format!(
                "max_redirects must be at most {MAX_REDIRECTS}, got {}",
                self.max_redirects
            )));
        }
        if self.retries > MAX_RETRIES {
            return Err(Error::invalid(format!(
                "retries must be at most {MAX_RETRIES}, got {}",
                self.retries
            )));
        }
        if self.http1_only && self.http2_prior_knowledge {
            return Err(Error::invalid(
                "http1_only and http2_prior_knowledge cannot both be set",
            ));
        }
        if http::HeaderValue::from_str(&self.user_agent).is_err() {
            return Err(Error::invalid(
                "user_agent must be visible ASCII or spaces (no CR, LF or other control characters)",
            ));
        }
        Ok(())
    }

    pub(crate) fn connect_timeout(&self) -> Option<Duration> {
        millis(self.connect_timeout_ms)
    }

    pub(crate) fn read_timeout(&self) -> Option<Duration> {
        millis(self.read_timeout_ms)
    }

    pub(crate) fn pool_idle_timeout(&self) -> Option<Duration> {
        millis(self.pool_idle_timeout_ms)
    }

    pub(crate) fn body_limit(&self) -> u64 {
        match self.max_body_bytes {
            0 => u64::MAX,
            n => n,
        }
    }
}

fn millis(ms: u32) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(u64::from(ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented() {
        let o = HttpOptions::default();
        assert!(o.validate().is_ok());
        assert_eq!(o.max_body_bytes, 64 << 20);
        assert!(!o.follow_redirects);
        assert_eq!(o.retries, 0);
        assert_eq!(o.user_agent, format!("portway/{}", crate::VERSION));
    }

    #[test]
    fn out_of_range_fields_are_named() {
        let bad = |f: fn(&mut HttpOptions)| {
            let mut o = HttpOptions::default();
            f(&mut o);
            o.validate().unwrap_err().to_string()
        };
        assert!(bad(|o| o.max_header_bytes = 10).contains("max_header_bytes"));
        assert!(bad(|o| o.retries = 1000).contains("retries"));
        assert!(bad(|o| o.max_redirects = 1000).contains("max_redirects"));
        assert!(bad(|o| o.user_agent = "a\r\nb".into()).contains("user_agent"));
    }
}
