//! Registering extra "http" handlers with their own limits.

use std::ffi::c_char;

use super::engine::portway_engine;
use super::guard::{Castable, guard, require_out, utf8, write_out};
use crate::handlers::http::HttpOptions;
use crate::status::portway_status;

/// Limits and behaviour of an http handler. Fill it with `portway_http_options_default`, then
/// change what you need. Strings are copied by `portway_register_http`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct portway_http_options {
    /// Most connections open at once to one origin (scheme, host, port); 0 = no limit.
    /// Default 256.
    pub max_connections_per_host: u32,
    /// Largest response head in bytes (at least 1024). Default 65536. HTTP/1 responses may
    /// also have one header line per 256 bytes of it, and at least 256 lines. (An origin's
    /// HTTP/1 connections parse up to 100 lines, the cheaper way, until it sends a longer head:
    /// that GET, HEAD, PUT, DELETE or OPTIONS is then sent once more on a connection that takes
    /// them all, as are all later requests to it; POST and PATCH always are.)
    pub max_header_bytes: u32,
    /// Largest response body in bytes; more fails with `PORTWAY_BODY_TOO_LARGE`; 0 = no limit.
    /// Default 64 MiB.
    pub max_body_bytes: u64,
    /// Limit on DNS + connect + TLS handshake in ms (`PORTWAY_CONNECT_ERROR` past it);
    /// 0 = none. Default 10000.
    pub connect_timeout_ms: u32,
    /// How long an idle keep-alive connection is kept, in ms; 0 = no limit. Default 90000.
    pub pool_idle_timeout_ms: u32,
    /// Follow 301/302/303/307/308 responses. Default false.
    pub follow_redirects: bool,
    /// Most redirects followed when `follow_redirects` is set (at most 100). Default 10.
    pub max_redirects: u32,
    /// Extra attempts for idempotent methods after connect errors and 502/503/504, with
    /// jittered exponential backoff; 0 = off (default); at most 100. Requests the server did
    /// not process (never sent, HTTP/2 REFUSED_STREAM; for idempotent methods also streams
    /// failed by a GOAWAY) are sent again on a new connection without counting against it.
    pub retries: u32,
    /// First retry delay in ms, doubled for each later retry. Default 100.
    pub retry_base_backoff_ms: u32,
    /// User-Agent sent when the request has none: NULL = `portway/<version>`, "" = none.
    pub user_agent: *const c_char,
    /// Speak HTTP/2 without negotiation (h2c on http://, only h2 in ALPN on https://).
    /// Default false.
    pub http2_prior_knowledge: bool,
    /// Path of a PEM file of CA certificates trusted besides the other roots;
    /// NULL = none.
    pub extra_ca_pem_path: *const c_char,
    /// Accept any server certificate without verification. Only for tests: it removes the
    /// protection TLS gives. Default false.
    pub danger_accept_invalid_certs: bool,
    /// Longest wait for any byte of the response, in ms: from sending the request to the
    /// response head, then between two pieces of the body. Past it the request fails with
    /// `PORTWAY_TIMEOUT` (message naming read_timeout_ms). 0 = none. Default 30000.
    pub read_timeout_ms: u32,
    /// Send `Accept-Encoding: gzip, br, zstd, deflate` when the request has none and decode
    /// such bodies (`max_body_bytes` applies to the decoded size; headers stay as received).
    /// A body that is corrupt or ends before its encoded stream does (cut short) fails with
    /// `PORTWAY_PROTOCOL_ERROR`, never as a shorter body. Default true.
    pub decompress: bool,
    /// Trust only the bundled web PKI roots. Default false: the platform's trust store
    /// (honouring `SSL_CERT_FILE` / `SSL_CERT_DIR`) is trusted too.
    pub bundled_roots_only: bool,
    /// Offer only HTTP/1.1 in ALPN on https:// (not with `http2_prior_knowledge`).
    /// Default false.
    pub http1_only: bool,
    /// Forward proxy: NULL = from the environment (http_proxy, https_proxy/HTTPS_PROXY,
    /// all_proxy/ALL_PROXY, no_proxy/NO_PROXY as curl reads them; loopback targets go direct),
    /// "" = none, or `http://[user:password@]host:port` for every request (CONNECT for
    /// https targets; user:password sent as Proxy-Authorization). Default NULL.
    pub proxy: *const c_char,
}

/// Writes the default options (those of the built-in "http" handler) to `*out`.
/// Returns `PORTWAY_OK` or `PORTWAY_INVALID_ARGUMENT` (NULL out).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_http_options_default(
    out: *mut portway_http_options,
) -> portway_status {
    guard(|| {
        let d = HttpOptions::default();
        let opts = portway_http_options {
            max_connections_per_host: d.max_connections_per_host,
            max_header_bytes: d.max_header_bytes,
            max_body_bytes: d.max_body_bytes,
            connect_timeout_ms: d.connect_timeout_ms,
            pool_idle_timeout_ms: d.pool_idle_timeout_ms,
            follow_redirects: d.follow_redirects,
            max_redirects: d.max_redirects,
            retries: d.retries,
            retry_base_backoff_ms: d.retry_base_backoff_ms,
            user_agent: std::ptr::null(),
            http2_prior_knowledge: d.http2_prior_knowledge,
            extra_ca_pem_path: std::ptr::null(),
            danger_accept_invalid_certs: d.danger_accept_invalid_certs,
            read_timeout_ms: d.read_timeout_ms,
            decompress: d.decompress,
            bundled_roots_only: d.bundled_roots_only,
            http1_only: d.http1_only,
            proxy: std::ptr::null(),
        };
        // SAFETY: the caller passes NULL or a writable struct.
        unsafe { write_out(out, "out", opts) }
    })
}

/// Registers another http handler named `name` with its own connection pool and limits
/// (`opts` NULL = defaults) and writes its id to `*out_id`. Payloads and completions are as
/// for the built-in "http". Returns `PORTWAY_OK`, `PORTWAY_INVALID_ARGUMENT` (NULL or duplicate
/// name, an option out of range, an unreadable CA file), `PORTWAY_SHUTDOWN` (shutdown has begun)
/// or `PORTWAY_FORKED`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn portway_register_http(
    eng: *mut portway_engine,
    name: *const c_char,
    opts: *const portway_http_options,
    out_id: *mut u32,
) -> portway_status {
    guard(|| {
        // SAFETY: NULL or a live engine.
        let engine = unsafe { portway_engine::borrow(eng) }?;
        // SAFETY: NULL or a NUL-terminated string.
        let name = unsafe { utf8(name, "name") }?;
        require_out(out_id, "out_id")?;
        let mut options = HttpOptions::default();
        // SAFETY: NULL or a readable options struct.
        if let Some(o) = unsafe { opts.as_ref() } {
            options.max_connections_per_host = o.max_connections_per_host;
            options.max_header_bytes = o.max_header_bytes;
            options.max_body_bytes = o.max_body_bytes;
            options.connect_timeout_ms = o.connect_timeout_ms;
            options.pool_idle_timeout_ms = o.pool_idle_timeout_ms;
            options.follow_redirects = o.follow_redirects;
            options.max_redirects = o.max_redirects;
            options.retries = o.retries;
            options.retry_base_backoff_ms = o.retry_base_backoff_ms;
            if !o.user_agent.is_null() {
                // SAFETY: non-NULL, NUL-terminated per the caller.
                options.user_agent = unsafe { utf8(o.user_agent, "opts->user_agent") }?.to_owned();
            }
            options.http2_prior_knowledge = o.http2_prior_knowledge;
            if !o.extra_ca_pem_path.is_null() {
                // SAFETY: non-NULL, NUL-terminated per the caller.
                let path = unsafe { utf8(o.extra_ca_pem_path, "opts->extra_ca_pem_path") }?;
                options.extra_ca_pem_path = Some(path.into());
            }
            options.danger_accept_invalid_certs = o.danger_accept_invalid_certs;
            options.read_timeout_ms = o.read_timeout_ms;
            options.decompress = o.decompress;
            options.bundled_roots_only = o.bundled_roots_only;
            options.http1_only = o.http1_only;
            if !o.proxy.is_null() {
                // SAFETY: non-NULL, NUL-terminated per the caller.
                options.proxy = Some(unsafe { utf8(o.proxy, "opts->proxy") }?.to_owned());
            }
        }
        let id = engine.register_http(name, options)?;
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out_id, "out_id", id) }
    })
}
