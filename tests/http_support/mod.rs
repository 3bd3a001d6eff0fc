//! Shared pieces of the http handler tests: an engine, small test servers on 127.0.0.1 with
//! random ports (each on its own runtime), and helpers to submit and wait.

#![allow(dead_code)]

pub mod pki;
pub mod proxy;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use portway::{Config, Engine, OwnedCompletion, Submission};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

/// Longest any single test waits for a completion.
pub const WAIT: Duration = Duration::from_secs(20);

/// An engine with one pool worker (the http handler needs none).
pub fn engine() -> Engine {
    Engine::new(Config {
        pool_workers: 1,
        ..Config::default()
    })
    .expect("engine")
}

/// Submits `payload` to `handler` and waits for its completion.
pub fn run(engine: &Engine, handler: u32, payload: &[u8], timeout_ms: u32) -> OwnedCompletion {
    let id = submit(engine, handler, payload, timeout_ms);
    let mut all = wait_all(engine, 1);
    let c = all.pop().unwrap();
    assert_eq!(c.id, id);
    c
}

/// Submits and returns the id; panics when the submit is rejected.
pub fn submit(engine: &Engine, handler: u32, payload: &[u8], timeout_ms: u32) -> u64 {
    engine
        .submit(&Submission {
            handler,
            timeout_ms,
            user_data: 7,
            payload,
        })
        .unwrap_or_else(|e| panic!("submit rejected: {e}"))
}

/// Polls until `n` completions arrived.
pub fn wait_all(engine: &Engine, n: usize) -> Vec<OwnedCompletion> {
    let end = Instant::now() + WAIT;
    let mut out = Vec::new();
    while out.len() < n {
        let left = end.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "only {} of {n} completions arrived",
            out.len()
        );
        let (got, _) = engine.poll_owned(64, Some(left)).expect("poll");
        out.extend(got);
    }
    out
}

/// The body as text.
pub fn text(c: &OwnedCompletion) -> String {
    String::from_utf8_lossy(&c.data).into_owned()
}

/// The first value of meta `key`.
pub fn meta<'a>(c: &'a OwnedCompletion, key: &str) -> Option<&'a str> {
    c.meta
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}

/// Asserts the status, printing the message on mismatch.
#[track_caller]
pub fn assert_status(c: &OwnedCompletion, status: portway::Status) {
    assert_eq!(c.status, status, "completion data: {}", text(c));
}

/// A request parsed by the test servers.
#[derive(Clone, Debug, Default)]
pub struct Req {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one HTTP/1.1 request (Content-Length bodies only); None at a clean end of stream.
pub async fn read_request<R: tokio::io::AsyncRead + Unpin>(r: &mut BufReader<R>) -> Option<Req> {
    let mut line = String::new();
    if r.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let mut req = Req {
        method: parts.next()?.to_owned(),
        target: parts.next()?.to_owned(),
        ..Req::default()
    };
    loop {
        line.clear();
        if r.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':')?;
        req.headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let len: usize = req
        .header("content-length")
        .map_or(0, |v| v.parse().unwrap());
    req.body = vec![0; len];
    r.read_exact(&mut req.body).await.ok()?;
    Some(req)
}

/// A response with a Content-Length.
pub fn response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} X\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

type ConnFn = dyn Fn(TcpStream, usize) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync;

/// A test server: a listener on 127.0.0.1, a runtime of its own, and a count of accepted
/// connections.
pub struct Server {
    pub addr: SocketAddr,
    pub accepts: Arc<AtomicUsize>,
    rt: Option<Runtime>,
}

impl Server {
    /// Runs `on_conn(stream, connection_index)` for every accepted connection.
    pub fn raw<F, Fut>(on_conn: F) -> Server
    where
        F: Fn(TcpStream, usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let on_conn: Arc<ConnFn> = Arc::new(move |s, n| Box::pin(on_conn(s, n)));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(AtomicUsize::new(0));
        let counter = accepts.clone();
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let n = counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(on_conn(stream, n));
            }
        });
        Server {
            addr,
            accepts,
            rt: Some(rt),
        }
    }

    /// A keep-alive HTTP/1.1 server answering each request with `respond(request)` (raw
    /// response bytes, written as they are).
    pub fn http<F>(respond: F) -> Server
    where
        F: Fn(Req) -> Vec<u8> + Send + Sync + 'static,
    {
        let respond = Arc::new(respond);
        Server::raw(move |stream, _| {
            let respond = respond.clone();
            async move {
                let (r, mut w) = stream.into_split();
                let mut r = BufReader::new(r);
                while let Some(req) = read_request(&mut r).await {
                    let out = respond(req);
                    if w.write_all(&out).await.is_err() {
                        return;
                    }
                }
            }
        })
    }

    /// `http://127.0.0.1:port` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    /// Runs a future on the server's runtime.
    pub fn spawn(&self, f: impl Future<Output = ()> + Send + 'static) {
        self.rt.as_ref().unwrap().spawn(f);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// A port on 127.0.0.1 with nothing listening.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `GET url HTTP/1.1` with no headers.
pub fn get(url: &str) -> Vec<u8> {
    format!("GET {url} HTTP/1.1\r\n\r\n").into_bytes()
}
