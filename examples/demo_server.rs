//! The embedded demo target: a small local HTTP API that the fan-out examples call.
//!
//! ```text
//! cargo run --release --example demo_server [-- --port N]
//! ```
//!
//! It listens on 127.0.0.1 (a random free port unless `--port` is given) and prints
//! `LISTENING http://127.0.0.1:PORT` as its first line on stdout, so a parent can read the
//! address. It speaks HTTP/1.1 with keep-alive, and HTTP/2 with prior knowledge (h2c) on the
//! same port. Endpoints, each answering like a small real service:
//!
//! - `GET /health`: `ok`, at once.
//! - `GET /items/{id}`: a JSON item after 1-5 ms of jittered latency; 400 if `id` is not a number.
//! - `POST /echo`: the request body back (up to 16 MiB), with the request's content type.
//! - `GET /slow?ms=N`: waits N ms (at most 60000), then `{"slept_ms":N}`.
//! - `GET /status/{code}`: an empty response with that HTTP status (200-999).
//!
//! It stops on SIGTERM or SIGINT, and when its stdin closes if stdin is a pipe, a socket or a
//! terminal (so a parent that holds the write end of a pipe stops it by exiting, even after a
//! crash). Stdin from /dev/null or a file is ignored.

use std::convert::Infallible;
use std::io::{IsTerminal, Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::FileTypeExt;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

/// Largest body `POST /echo` accepts.
const MAX_ECHO_BODY: usize = 16 << 20;
/// Longest wait `GET /slow` accepts, in ms.
const MAX_SLOW_MS: u64 = 60_000;
/// What an HTTP/2 client sends first when it speaks h2c with prior knowledge.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn main() {
    let port = match parse_port(std::env::args().skip(1)) {
        Ok(port) => port,
        Err(msg) => {
            eprintln!("demo_server: {msg}\nusage: demo_server [--port N]");
            std::process::exit(2);
        }
    };
    // Block SIGTERM/SIGINT before any thread starts, so that every thread inherits the mask
    // and only the watcher thread below receives them.
    let signals = block_stop_signals();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || wait_for_stop_signal(signals))
        .expect("spawn the signal thread");
    if watch_stdin() {
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(|| {
                let mut sink = [0u8; 512];
                let mut stdin = std::io::stdin().lock();
                loop {
                    match stdin.read(&mut sink) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                eprintln!("demo_server: stdin closed, stopping");
                std::process::exit(0);
            })
            .expect("spawn the stdin thread");
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("build the tokio runtime");
    runtime.block_on(serve(port));
}

/// `--port N` or nothing (0: the OS picks a free port).
fn parse_port(mut args: impl Iterator<Item = String>) -> Result<u16, String> {
    let mut port = 0;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => {
                let value = args.next().ok_or("--port needs a value")?;
                port = value.parse().map_err(|_| format!("bad port {value:?}"))?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(port)
}

async fn serve(port: u16) {
    let listener = match TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("demo_server: cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    let addr = listener.local_addr().expect("local address");
    {
        let mut out = std::io::stdout().lock();
        // The parent reads this line to learn the port; it must arrive before any request.
        let _ = writeln!(out, "LISTENING http://{addr}");
        let _ = out.flush();
    }
    eprintln!(
        "demo_server: GET /health, GET /items/{{id}}, POST /echo, GET /slow?ms=N, GET /status/{{code}}"
    );
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(stream));
            }
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning or exiting.
                eprintln!("demo_server: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves one connection, as HTTP/2 if it opens with the h2c preface, else HTTP/1.1.
async fn serve_connection(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Some(h2) = starts_with_h2_preface(&stream).await else {
        return;
    };
    let io = TokioIo::new(stream);
    let result = if h2 {
        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, service_fn(route))
            .await
    } else {
        hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .serve_connection(io, service_fn(route))
            .await
    };
    // Clients that drop idle keep-alive connections are normal; report only real errors.
    match result {
        Err(e) if !e.is_incomplete_message() => eprintln!("demo_server: connection error: {e}"),
        _ => {}
    }
}

/// Peeks at the first bytes: `Some(true)` for the HTTP/2 preface, `Some(false)` for anything
/// else, `None` if the peer closed or failed before sending enough to tell.
async fn starts_with_h2_preface(stream: &TcpStream) -> Option<bool> {
    let mut buf = [0u8; H2_PREFACE.len()];
    loop {
        let n = stream.peek(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        if buf[..n] != H2_PREFACE[..n] {
            return Some(false);
        }
        if n == H2_PREFACE.len() {
            return Some(true);
        }
        // A partial preface: peek returns at once while data is buffered, so wait a little.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn route(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let response = match (req.method(), segments.as_slice()) {
        (&Method::GET | &Method::HEAD, ["health"]) => text(StatusCode::OK, "ok\n"),
        (&Method::GET, ["items", id]) => item(id).await,
        (&Method::POST, ["echo"]) => echo(req).await,
        (&Method::GET, ["slow"]) => slow(req.uri().query()).await,
        (&Method::GET, ["status", code]) => match code.parse::<u16>().ok().filter(|c| *c >= 200) {
            Some(code) => match StatusCode::from_u16(code) {
                Ok(status) => text(status, ""),
                Err(_) => json_error(StatusCode::BAD_REQUEST, "status must be 200-999"),
            },
            None => json_error(StatusCode::BAD_REQUEST, "status must be 200-999"),
        },
        (_, ["health" | "echo" | "slow"] | ["items" | "status", _]) => {
            json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => json_error(StatusCode::NOT_FOUND, "no such endpoint"),
    };
    Ok(response)
}

/// `GET /items/{id}`: a made-up item, after 1-5 ms like a small database lookup.
async fn item(id: &str) -> Response<Full<Bytes>> {
    let Ok(id) = id.parse::<u64>() else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "item id must be a non-negative integer",
        );
    };
    let latency_us = fastrand::u64(1_000..=5_000);
    tokio::time::sleep(Duration::from_micros(latency_us)).await;
    const COLORS: [&str; 5] = ["red", "green", "blue", "amber", "violet"];
    let color = COLORS[(id % COLORS.len() as u64) as usize];
    let body = format!(
        "{{\"id\":{id},\"name\":\"item-{id}\",\"color\":\"{color}\",\"price_cents\":{},\"in_stock\":{},\"latency_us\":{latency_us}}}",
        100 + (id.wrapping_mul(7919) % 99_900),
        id % 7 != 0,
    );
    json(StatusCode::OK, body)
}

/// `POST /echo`: the body back with the request's content type.
async fn echo(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let content_type = req.headers().get(CONTENT_TYPE).cloned();
    match Limited::new(req.into_body(), MAX_ECHO_BODY).collect().await {
        Ok(body) => {
            let mut response = Response::new(Full::new(body.to_bytes()));
            let content_type =
                content_type.unwrap_or(HeaderValue::from_static("application/octet-stream"));
            response.headers_mut().insert(CONTENT_TYPE, content_type);
            response
        }
        Err(e) => json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("cannot read the body: {e}"),
        ),
    }
}

/// `GET /slow?ms=N`: waits N ms.
async fn slow(query: Option<&str>) -> Response<Full<Bytes>> {
    let ms = query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("ms="))
        .map(str::parse::<u64>);
    match ms {
        Some(Ok(ms)) if ms <= MAX_SLOW_MS => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            json(StatusCode::OK, format!("{{\"slept_ms\":{ms}}}"))
        }
        _ => json_error(StatusCode::BAD_REQUEST, "need ?ms=N with N at most 60000"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    with_type(
        status,
        Bytes::from_static(body.as_bytes()),
        "text/plain; charset=utf-8",
    )
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    with_type(status, Bytes::from(body), "application/json")
}

fn json_error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let escaped = message.replace('\\', "\\\\").replace('"', "\\\"");
    json(status, format!("{{\"error\":\"{escaped}\"}}"))
}

fn with_type(status: StatusCode, body: Bytes, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Whether stdin closing should stop the server: only for a pipe, a socket or a terminal.
/// A parent that starts it with stdin from /dev/null (`cmd &` in a script) must not stop it.
fn watch_stdin() -> bool {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return true;
    }
    match std::fs::metadata("/dev/stdin") {
        Ok(meta) => {
            let kind = meta.file_type();
            kind.is_fifo() || kind.is_socket()
        }
        Err(_) => false,
    }
}

/// Blocks SIGTERM and SIGINT in the calling thread (and so in every thread it starts later).
fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it, and
    // pthread_sigmask only changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Waits for SIGTERM or SIGINT, then exits the process.
fn wait_for_stop_signal(set: libc::sigset_t) {
    let mut signal: libc::c_int = 0;
    // SAFETY: `set` was initialised by block_stop_signals and `signal` is a valid out pointer.
    while unsafe { libc::sigwait(&set, &mut signal) } != 0 {}
    let name = if signal == libc::SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    };
    eprintln!("demo_server: {name}, stopping");
    std::process::exit(0);
}
