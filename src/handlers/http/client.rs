//! One exchange: take a connection from the pool (or open one within the per-origin cap),
//! send the request, read the whole response body within the limit, and put the connection
//! back only when the exchange completed cleanly.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    ACCEPT_ENCODING, CONNECTION, HOST, PROXY_AUTHORIZATION, TE, TRANSFER_ENCODING, UPGRADE,
    USER_AGENT,
};
use http::uri::Authority;
use http::{HeaderName, HeaderValue, Version};
use http_body_util::Full;
use hyper::body::Incoming;

use super::connect::{Connected, Connector};
use super::decode;
use super::errors::{self, HttpError, Kind};
use super::options::HttpOptions;
use super::pool::{H1Conn, H2Conn, Host, Pool, Probe, ReqBody};
use super::request::{Origin, Prepared};
use super::response::{ReadWatch, Response, read_response};
use super::retry::is_idempotent;
use super::target::{origin_form, with_authority};
use crate::error::Result as PwResult;

/// A connection taken for one exchange.
enum Lease {
    H1 { conn: H1Conn, host: Arc<Host> },
    H2 { conn: H2Conn, host: Arc<Host> },
}

/// Most times one exchange is repeated because the server did not process it (GOAWAY,
/// REFUSED_STREAM, a connection closed before the request was sent). These repeats do not
/// count against `retries` (gRPC calls them transparent retries), but a server that refuses
/// everything must not loop forever.
const MAX_UNPROCESSED_REPEATS: u32 = 10;

/// A failed exchange, and whether it may be repeated on another connection.
struct Failure {
    error: HttpError,
    /// The server did not process the request: it was never sent, or its HTTP/2 stream was
    /// refused with REFUSED_STREAM (RFC 9113 section 8.7), or (for idempotent methods only)
    /// it failed with the connection's GOAWAY. Repeated whatever `retries` says.
    ///
    /// Why GOAWAY counts only for idempotent methods: h2 fails exactly the streams above
    /// GOAWAY's last-stream-id, but hyper's HTTP/2 dispatcher also hands the GOAWAY error to
    /// a request whose stream it had just opened when the GOAWAY arrived, a stream the server
    /// may well process. Repeating a POST on that error could run it twice.
    unprocessed: bool,
    /// Idempotent and got no response head, as when a pooled connection was closed by the
    /// server just before it was used.
    may_repeat: bool,
    /// Idempotent, and the response head was too large for the narrow HTTP/1 connection it
    /// came on: the origin is now wide, and the request is sent again on a wide connection.
    widen: bool,
}

impl From<HttpError> for Failure {
    fn from(error: HttpError) -> Self {
        Failure {
            error,
            unprocessed: false,
            may_repeat: false,
            widen: false,
        }
    }
}

/// The pooled client of one http handler.
pub(crate) struct Client {
    pool: Arc<Pool>,
    connector: Connector,
    body_limit: u64,
    max_header_bytes: u32,
    read_timeout: Option<Duration>,
    decompress: bool,
    user_agent: Option<HeaderValue>,
}

impl Client {
    pub fn new(opts: &HttpOptions) -> PwResult<Self> {
        let user_agent = match opts.user_agent.as_str() {
            "" => None,
            ua => Some(HeaderValue::from_str(ua).map_err(|_| {
                crate::error::Error::invalid("user_agent is not a valid header value")
            })?),
        };
        Ok(Client {
            pool: Arc::new(Pool::new(
                opts.max_connections_per_host,
                opts.pool_idle_timeout(),
                opts.http2_prior_knowledge,
            )),
            connector: Connector::new(opts)?,
            body_limit: opts.body_limit(),
            max_header_bytes: opts.max_header_bytes,
            read_timeout: opts.read_timeout(),
            decompress: opts.decompress,
            user_agent,
        })
    }

    /// Connection figures for the metrics exposition: (opened, reused, open now).
    pub fn connection_counts(&self) -> (u64, u64, u64) {
        (
            self.pool.opened_total.load(Ordering::Relaxed),
            self.pool.reused_total.load(Ordering::Relaxed),
            self.pool.open_connections(),
        )
    }

    /// Sends `req` once and reads the whole response. A request the server did not process
    /// is sent again on another connection (up to [`MAX_UNPROCESSED_REPEATS`] times); a pooled
    /// connection that turns out to be dead before the response head is replaced by another,
    /// once; so is a narrow connection that got a head too large for it (see the pool's
    /// module doc), once.
    pub async fn exchange(&self, req: &Prepared) -> Result<Response, HttpError> {
        let mut reused_failures = 0;
        let mut unprocessed = 0;
        let mut widened = false;
        let idempotent = is_idempotent(&req.method);
        loop {
            let (lease, reused) = self.checkout(&req.origin, idempotent).await?;
            let counter = if reused {
                &self.pool.reused_total
            } else {
                &self.pool.opened_total
            };
            counter.fetch_add(1, Ordering::Relaxed);
            match self.send(lease, req).await {
                Ok(resp) => return Ok(resp),
                Err(f) if f.unprocessed && unprocessed < MAX_UNPROCESSED_REPEATS => {
                    unprocessed += 1
                }
                Err(mut f) if f.unprocessed => {
                    f.error.message = format!(
                        "{} ({} attempts, none processed by the server)",
                        f.error.message,
                        unprocessed + 1
                    );
                    return Err(f.error);
                }
                Err(f) if f.widen && !widened => widened = true,
                Err(f) if f.may_repeat && reused && reused_failures == 0 => reused_failures += 1,
                Err(f) => return Err(f.error),
            }
        }
    }

    /// Takes an idle or shared connection, or opens one within the cap, or waits for one.
    /// While the first connection to an https origin is being opened, waits for it to learn
    /// the protocol (see the pool's module doc). A request that may not be sent twice makes
    /// the origin's HTTP/1 connections wide first. The flag says whether the connection was
    /// used before.
    async fn checkout(
        &self,
        origin: &Origin,
        idempotent: bool,
    ) -> Result<(Lease, bool), HttpError> {
        self.pool.start_reaper();
        let host = self.pool.host(origin);
        if !idempotent {
            host.set_wide();
        }
        let idle = |host: &Arc<Host>| {
            let conn = host.take_idle(self.pool.idle_timeout)?;
            let host = host.clone();
            Some((Lease::H1 { conn, host }, true))
        };
        loop {
            if host.h2_known() {
                return self.checkout_h2(origin, host).await;
            }
            // An idle connection first: registering with `notify` takes its lock twice (in and
            // out), which a request that finds a connection at once need not pay.
            if let Some(lease) = idle(&host) {
                return Ok(lease);
            }
            let notified = host.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Again once registered, so that a connection put back in between is not missed.
            if let Some(lease) = idle(&host) {
                return Ok(lease);
            }
            let probe = if self.connector.may_speak_h2(origin) && !host.h1_known() {
                match host.join_probe() {
                    Probe::Lead(guard) => Some(guard),
                    Probe::Wait(generation) => {
                        notified.await;
                        if let Some(e) = host.probe_error(generation) {
                            return Err(e);
                        }
                        continue;
                    }
                }
            } else {
                None
            };
            let permit = match host.permits.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => tokio::select! {
                    _ = &mut notified, if probe.is_none() => continue,
                    p = host.permits.clone().acquire_owned() => p.map_err(closed_pool)?,
                },
            };
            let opened = self.opened(origin, host.clone(), permit).await;
            if let Some(guard) = probe {
                guard.finish(opened.as_ref().err());
            }
            return Ok((opened?, false));
        }
    }

    async fn checkout_h2(
        &self,
        origin: &Origin,
        host: Arc<Host>,
    ) -> Result<(Lease, bool), HttpError> {
        if let Some(conn) = host.live_h2() {
            return Ok((Lease::H2 { conn, host }, true));
        }
        let _opening = host.h2_connecting.lock().await;
        if let Some(conn) = host.live_h2() {
            return Ok((
                Lease::H2 {
                    conn,
                    host: host.clone(),
                },
                true,
            ));
        }
        let permit = match host.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // Idle HTTP/1 connections from before the origin spoke HTTP/2 hold the permits.
                host.clear_idle();
                host.permits
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(closed_pool)?
            }
        };
        Ok((self.opened(origin, host.clone(), permit).await?, false))
    }

    async fn opened(
        &self,
        origin: &Origin,
        host: Arc<Host>,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<Lease, HttpError> {
        let wide = host.wide();
        Ok(match self.connector.connect(origin, permit, wide).await? {
            Connected::H1(conn) => {
                host.set_h1();
                Lease::H1 { conn, host }
            }
            Connected::H2(conn) => {
                host.set_h2(conn.clone());
                Lease::H2 { conn, host }
            }
        })
    }

    async fn send(&self, lease: Lease, req: &Prepared) -> Result<Response, Failure> {
        let origin = &req.origin;
        let idempotent = is_idempotent(&req.method);
        // Decode only what portway asked for: a caller's own Accept-Encoding gets raw bytes.
        let decode = self.decompress && !req.headers.contains_key(ACCEPT_ENCODING);
        let failed = |e: hyper::Error, unsent: bool| Failure {
            unprocessed: unsent
                || errors::is_refused(&e)
                || (idempotent && (errors::is_go_away(&e) || errors::h2_dropped_unopened(&e))),
            may_repeat: unsent || (idempotent && !e.is_parse()),
            widen: false,
            error: errors::exchange_failed(origin, &e, self.max_header_bytes),
        };
        match lease {
            Lease::H1 { mut conn, host } => {
                let wide = conn.wide;
                if let Err(e) = conn.sender.ready().await {
                    return Err(failed(e, true));
                }
                let request = self.build(req, false);
                let sent = conn.sender.try_send_request(request);
                // As for HTTP/2 below: a request queued just as the connection closes comes
                // back unsent once this, its only sender, is dropped.
                let ended = conn.ended.clone();
                let timer = conn.timer.take();
                let mut held = Some(conn);
                let answered = answered_or_released(sent, ended, || held = None);
                let mut watch = ReadWatch::resume(self.read_timeout, origin, timer);
                let resp = match watch.step("head", answered).await? {
                    Ok(r) => r,
                    Err(mut e) => {
                        let unsent = e.take_message().is_some();
                        let e = e.into_error();
                        let widen = !wide && idempotent && e.is_parse_too_large();
                        if widen {
                            host.set_wide();
                        }
                        return Err(Failure {
                            widen,
                            ..failed(e, unsent)
                        });
                    }
                };
                let resp = self.read(resp, decode, &mut watch).await?;
                if let Some(mut conn) = held {
                    conn.timer = watch.into_timer();
                    host.put_idle(conn);
                }
                Ok(resp)
            }
            Lease::H2 { mut conn, host } => {
                if let Err(e) = conn.sender.ready().await {
                    host.drop_h2(&conn);
                    return Err(failed(e, true));
                }
                let request = self.build(req, true);
                let sent = conn.sender.try_send_request(request);
                // A request queued while the connection's dispatcher shuts down can be left
                // in hyper's queue after the dispatcher drained it (tokio's channel frees
                // such a late message only when its last sender drops), so it would never
                // be answered (seen about once in 60 runs of tests/http_h2_unprocessed.rs:
                // a GET waited for its read timeout). Once the connection task has ended,
                // every sender this request holds or shares through the pool is dropped:
                // the queued request then comes back unsent, and is sent again on another
                // connection.
                let ended = conn.ended.clone();
                let mut held = Some(conn);
                let answered = answered_or_released(sent, ended, || {
                    if let Some(conn) = held.take() {
                        host.drop_h2(&conn);
                    }
                });
                let mut watch = ReadWatch::new(self.read_timeout, origin);
                let resp = match watch.step("head", answered).await? {
                    Ok(r) => r,
                    Err(mut e) => {
                        let unsent = e.take_message().is_some();
                        // After a GOAWAY the connection takes no new streams: later requests
                        // must open another one while this one finishes its older streams.
                        if let Some(conn) = &held
                            && (conn.sender.is_closed() || errors::is_go_away(e.error()))
                        {
                            host.drop_h2(conn);
                        }
                        return Err(failed(e.into_error(), unsent));
                    }
                };
                // The connection (its task guard) stays held while the body is read.
                let _conn = held;
                Ok(self.read(resp, decode, &mut watch).await?)
            }
        }
    }

    /// Reads the body within the handler's limit.
    async fn read(
        &self,
        resp: hyper::Response<Incoming>,
        decode: bool,
        watch: &mut ReadWatch<'_>,
    ) -> Result<Response, HttpError> {
        read_response(resp, self.body_limit, decode, watch).await
    }

    /// The hyper request for one connection: origin-form with a Host header for HTTP/1,
    /// absolute form without connection-specific headers for HTTP/2.
    pub(crate) fn build(&self, req: &Prepared, h2: bool) -> hyper::Request<ReqBody> {
        let mut headers = req.headers.clone();
        if let Some(ua) = &self.user_agent
            && !headers.contains_key(USER_AGENT)
        {
            headers.insert(USER_AGENT, ua.clone());
        }
        if self.decompress && !headers.contains_key(ACCEPT_ENCODING) {
            headers.insert(ACCEPT_ENCODING, HeaderValue::from_static(decode::ACCEPT));
        }
        let mut uri = req.uri.clone();
        let version;
        if h2 {
            version = Version::HTTP_2;
            for name in [CONNECTION, TRANSFER_ENCODING, UPGRADE] {
                headers.remove(name);
            }
            for name in ["keep-alive", "proxy-connection"] {
                headers.remove(HeaderName::from_static(name));
            }
            if headers.get(TE).is_some_and(|v| v != "trailers") {
                headers.remove(TE);
            }
            // An explicit Host becomes the :authority.
            if let Some(host) = headers.remove(HOST)
                && let Ok(authority) = Authority::try_from(host.as_bytes())
            {
                uri = with_authority(&uri, authority);
            }
        } else {
            version = Version::HTTP_11;
            if !headers.contains_key(HOST)
                && let Some(authority) = uri.authority()
                && let Some(v) = (req.host_value.clone())
                    .or_else(|| HeaderValue::from_str(authority.as_str()).ok())
            {
                headers.insert(HOST, v);
            }
            match self.connector.proxy_for(&req.origin) {
                // Plain http through a proxy: the absolute URL tells the proxy where to go.
                Some(proxy) if !req.origin.tls => {
                    if let Some(auth) = &proxy.auth
                        && !headers.contains_key(PROXY_AUTHORIZATION)
                    {
                        headers.insert(PROXY_AUTHORIZATION, auth.clone());
                    }
                }
                _ => uri = origin_form(&uri),
            }
        }
        let mut out = hyper::Request::new(Full::new(Bytes::clone(&req.body)));
        *out.method_mut() = req.method.clone();
        *out.uri_mut() = uri;
        *out.version_mut() = version;
        *out.headers_mut() = headers;
        out
    }
}

/// Awaits `sent`, a request handed to a connection's dispatcher. If the connection task ends
/// first, `release` drops every sender of that connection the request holds or shares, so
/// that a request stranded in the dispatcher's queue comes back unsent, and then `sent` is
/// awaited to the end.
async fn answered_or_released<F: std::future::Future>(
    sent: F,
    mut ended: tokio::sync::watch::Receiver<()>,
    release: impl FnOnce(),
) -> F::Output {
    tokio::pin!(sent);
    tokio::select! {
        r = &mut sent => r,
        _ = ended.changed() => {
            release();
            sent.await
        }
    }
}

fn closed_pool(_: tokio::sync::AcquireError) -> HttpError {
    HttpError::new(Kind::Internal, "the connection pool was closed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http1_request_is_built_with_few_allocations() {
        let client = Client::new(&HttpOptions::default()).unwrap();
        let req =
            super::super::request::prepare(b"GET http://h:1/items?x=1 HTTP/1.1\r\n\r\n".to_vec())
                .unwrap();
        // The first build shares the client's User-Agent bytes (a one-time allocation).
        drop(client.build(&req, false));
        let (built, n) = crate::alloc_count::allocations(|| client.build(&req, false));
        assert_eq!(built.uri(), "/items?x=1");
        assert_eq!(built.headers()[HOST], "h:1");
        // The header map (indices and entries): the target and the Host value share the
        // URL's bytes.
        assert_eq!(n, 2, "allocations of build");
        // The shared Host value is the authority as written, whatever else the URL repeats.
        for (url, host) in [
            ("http://[::1]:8080/", "[::1]:8080"),
            ("http://h/h", "h"),
            ("http://ht:80/", "ht:80"),
        ] {
            let payload = format!("GET {url} HTTP/1.1\r\n\r\n").into_bytes();
            let req = super::super::request::prepare(payload).unwrap();
            assert_eq!(client.build(&req, false).headers()[HOST], host);
        }
        // No path, only a fragment (found by the request-head fuzz replay): the target hyper
        // writes is "/", not "".
        let req = super::super::request::prepare(b"GET http://h2#f HTTP/1.1\r\n\r\n".to_vec());
        assert_eq!(client.build(&req.unwrap(), false).uri().to_string(), "/");
    }
}
