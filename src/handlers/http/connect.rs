//! Opening a connection: resolve, TCP connect, TLS with ALPN, then the hyper handshake for
//! HTTP/1.1 or HTTP/2. All of it runs under the connect timeout.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_rustls::TlsConnector;

use super::errors::{self, HttpError, Kind, chain};
use super::options::HttpOptions;
use super::pool::{H1Conn, H2Conn, TaskGuard};
use super::proxy::{Proxies, Proxy, connect_tunnel};
use super::request::Origin;
use crate::error::Result as PwResult;

/// hyper's smallest HTTP/1 read buffer.
const MIN_H1_BUF: usize = 8192;
/// hyper's default HTTP/1 read buffer limit (about 400 KB).
const DEFAULT_H1_BUF: usize = 8192 + 4096 * 100;

/// A byte stream a connection runs over: plain TCP or TLS.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// A freshly opened connection.
pub(crate) enum Connected {
    H1(H1Conn),
    H2(H2Conn),
}

/// Opens connections with one handler's settings.
pub(crate) struct Connector {
    tls: TlsConnector,
    connect_timeout: Option<Duration>,
    h2_prior_knowledge: bool,
    http1_only: bool,
    max_header_bytes: u32,
    proxies: Proxies,
}

impl Connector {
    pub fn new(opts: &HttpOptions) -> PwResult<Self> {
        Ok(Connector {
            tls: TlsConnector::from(super::tls::client_config(opts)?),
            connect_timeout: opts.connect_timeout(),
            h2_prior_knowledge: opts.http2_prior_knowledge,
            http1_only: opts.http1_only,
            proxies: Proxies::new(opts.proxy.as_deref())?,
            max_header_bytes: opts.max_header_bytes,
        })
    }

    /// Whether a new connection to `origin` may turn out to speak HTTP/2 (ALPN offers h2 on
    /// https); plain http without prior knowledge is always HTTP/1.1.
    pub fn may_speak_h2(&self, origin: &Origin) -> bool {
        origin.tls && !self.http1_only
    }

    /// The proxy requests to `origin` go through, if any.
    pub fn proxy_for(&self, origin: &Origin) -> Option<&Proxy> {
        self.proxies.for_origin(origin)
    }

    /// Opens a connection to `origin`; the connection keeps `permit` until it closes. An
    /// HTTP/1 connection takes [`max_header_lines`] header lines per response head when `wide`,
    /// hyper's default of 100 otherwise.
    pub async fn connect(
        &self,
        origin: &Origin,
        permit: OwnedSemaphorePermit,
        wide: bool,
    ) -> Result<Connected, HttpError> {
        let opening = self.open(origin, permit, wide);
        match self.connect_timeout {
            None => opening.await,
            Some(limit) => tokio::time::timeout(limit, opening)
                .await
                .unwrap_or_else(|_| {
                    Err(HttpError::new(
                        Kind::Connect,
                        format!(
                            "connecting to {origin} timed out after {} ms (connect_timeout_ms)",
                            limit.as_millis()
                        ),
                    ))
                }),
        }
    }

    async fn open(
        &self,
        origin: &Origin,
        permit: OwnedSemaphorePermit,
        wide: bool,
    ) -> Result<Connected, HttpError> {
        let proxy = self.proxies.for_origin(origin);
        let mut tcp = tcp_connect(proxy.map_or(origin, |p| &p.addr)).await?;
        let _ = tcp.set_nodelay(true);
        if let Some(proxy) = proxy
            && origin.tls
        {
            connect_tunnel(&mut tcp, proxy, origin).await?;
        }
        let (stream, h2): (Box<dyn Stream>, bool) = if origin.tls {
            let name = ServerName::try_from(origin.host.clone()).map_err(|_| {
                HttpError::new(
                    Kind::Tls,
                    format!("{:?} is not a valid TLS server name", origin.host),
                )
            })?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| errors::tls_failed(origin, &e))?;
            let h2 = match tls.get_ref().1.alpn_protocol() {
                Some(p) => p == b"h2",
                None => self.h2_prior_knowledge,
            };
            (Box::new(tls), h2)
        } else {
            (Box::new(tcp), self.h2_prior_knowledge)
        };
        let io = TokioIo::new(stream);
        let failed = |e: hyper::Error| {
            HttpError::protocol(format!("handshake with {origin} failed: {}", chain(&e)))
        };
        if h2 {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .max_header_list_size(self.max_header_bytes)
                .handshake(io)
                .await
                .map_err(failed)?;
            let (ending, ended) = tokio::sync::watch::channel(());
            let task = tokio::spawn(async move {
                let _permit = permit;
                let _ending = ending;
                let _ = conn.await;
            });
            Ok(Connected::H2(H2Conn {
                sender,
                _task: Arc::new(TaskGuard(task.abort_handle())),
                ended,
            }))
        } else {
            let (sender, conn) = h1_builder(self.max_header_bytes, wide)
                .handshake(io)
                .await
                .map_err(failed)?;
            let (ending, ended) = tokio::sync::watch::channel(());
            let task = tokio::spawn(async move {
                let _permit = permit;
                let _ending = ending;
                let _ = conn.await;
            });
            Ok(Connected::H1(H1Conn {
                sender,
                _task: TaskGuard(task.abort_handle()),
                ended,
                wide,
                timer: None,
            }))
        }
    }
}

/// The HTTP/1 client settings of every connection: the response head limit, its line count
/// (all of [`max_header_lines`] when `wide`, hyper's default otherwise), and a read buffer with
/// room for a head of that size. (Shared with the response fuzz target, which runs these
/// settings over an in-memory pipe.)
///
/// Why narrow by default: hyper parses a head into slot arrays on the stack for its default of
/// 100 lines; any other count makes it allocate and fill two heap arrays of that
/// many slots for every response (about 5% of the CPU of a small GET in W3's profile). A wide
/// connection is opened only where a head needs more lines (see the pool's module doc).
pub(crate) fn h1_builder(max_header_bytes: u32, wide: bool) -> http1::Builder {
    let head = max_header_bytes as usize;
    let mut builder = http1::Builder::new();
    builder
        .max_header_size(head)
        .max_buf_size(DEFAULT_H1_BUF.max(head + MIN_H1_BUF));
    if wide {
        builder.max_headers(max_header_lines(max_header_bytes));
    }
    builder
}

/// How many header lines an HTTP/1 response may have: one per 256 bytes of
/// `max_header_bytes`, at least [`MIN_HEADER_LINES`]. hyper's own default is 100, which real
/// servers exceed (long `Set-Cookie` and CSP lists); the parser reserves one slot per line for
/// every head it parses, so the count scales with the byte limit rather than being unbounded.
pub(crate) fn max_header_lines(max_header_bytes: u32) -> usize {
    (max_header_bytes as usize / 256).max(MIN_HEADER_LINES)
}

/// Fewest header lines an HTTP/1 response may always have.
pub(crate) const MIN_HEADER_LINES: usize = 256;

/// Resolves the host (unless it is an IP literal) and connects to each address in turn.
async fn tcp_connect(origin: &Origin) -> Result<TcpStream, HttpError> {
    let addrs: Vec<SocketAddr> = match origin.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, origin.port)],
        Err(_) => tokio::net::lookup_host((origin.host.as_str(), origin.port))
            .await
            .map_err(|e| {
                HttpError::new(
                    Kind::Connect,
                    format!("cannot resolve host {:?} of {origin}: {e}", origin.host),
                )
            })?
            .collect(),
    };
    let mut last = HttpError::new(
        Kind::Connect,
        format!("host {:?} of {origin} resolves to no address", origin.host),
    );
    for addr in &addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = errors::connect_failed(origin, addr, &e),
        }
    }
    Err(last)
}
