//! The http handler against a real nginx (Debian's package): TLS with a CA made here, HTTP/2
//! through ALPN, gzip, and nginx's own connection handling (GOAWAY after
//! `keepalive_requests`). `make test-http-real` installs nginx when it is missing; without it
//! this test passes with a loud message on stderr.
//!
//! Everything runs in one test so that one nginx serves all checks and is stopped at the end
//! (also on failure: the guard kills it when dropped).

mod http_support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http_support::pki::TestPki;
use http_support::*;
use portway::handlers::http::HttpOptions;
use portway::{Engine, Status};

/// A running nginx with its temporary directory; stopped and removed when dropped.
struct Nginx {
    child: Child,
    dir: PathBuf,
    /// Port of the server with `keepalive_requests 100` (GOAWAY every 100 requests).
    short_port: u16,
    /// Port of the server with nginx's default `keepalive_requests` (1000).
    long_port: u16,
    pki: TestPki,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn find_nginx() -> Option<PathBuf> {
    let mut candidates = vec![PathBuf::from("/usr/sbin/nginx")];
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("nginx")));
    }
    candidates.into_iter().find(|p| p.is_file())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// 4 KiB of compressible text: what `/` serves.
fn page() -> String {
    "portway and nginx, line after line of the same text. "
        .repeat(80)
        .chars()
        .take(4096)
        .collect()
}

impl Nginx {
    fn start(bin: &Path) -> Nginx {
        let dir = std::env::temp_dir().join(format!("portway-nginx-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("www")).unwrap();
        let pki = TestPki::new("nginx");
        std::fs::write(dir.join("cert.pem"), &pki.cert_pem).unwrap();
        std::fs::write(dir.join("key.pem"), &pki.key_pem).unwrap();
        std::fs::write(dir.join("www/index.txt"), page()).unwrap();
        let (short_port, long_port) = (free_port(), free_port());
        let d = dir.display();
        // As root, nginx would switch its worker to an unprivileged user that cannot read the
        // temporary directory; it runs as one process here anyway.
        let user = if unsafe { libc::geteuid() } == 0 {
            "user root;"
        } else {
            ""
        };
        let server = |port: u16, keepalive: u32| {
            format!(
                "server {{
                    listen 127.0.0.1:{port} ssl http2;
                    ssl_certificate {d}/cert.pem;
                    ssl_certificate_key {d}/key.pem;
                    keepalive_requests {keepalive};
                    root {d}/www;
                    location = / {{ try_files /index.txt =404; }}
                }}"
            )
        };
        let conf = format!(
            "{user}
            daemon off;
            master_process off;
            worker_processes 1;
            pid {d}/nginx.pid;
            error_log {d}/error.log warn;
            events {{ worker_connections 4096; }}
            http {{
                default_type text/plain;
                log_format portway '$server_port $connection $server_protocol $status';
                access_log {d}/access.log portway;
                client_body_temp_path {d}/tmp-body;
                proxy_temp_path {d}/tmp-proxy;
                fastcgi_temp_path {d}/tmp-fastcgi;
                uwsgi_temp_path {d}/tmp-uwsgi;
                scgi_temp_path {d}/tmp-scgi;
                gzip on;
                gzip_types text/plain;
                gzip_min_length 256;
                {}
                {}
            }}",
            server(short_port, 100),
            server(long_port, 1000),
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nginx");
        let mut nginx = Nginx {
            child,
            dir,
            short_port,
            long_port,
            pki,
        };
        nginx.wait_listening();
        nginx
    }

    fn wait_listening(&mut self) {
        let end = Instant::now() + Duration::from_secs(10);
        for port in [self.short_port, self.long_port] {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                let exited = self.child.try_wait().ok().flatten().is_some();
                assert!(
                    !exited && Instant::now() < end,
                    "nginx did not listen: {}",
                    std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    fn url(&self, port: u16, path: &str) -> String {
        format!("https://127.0.0.1:{port}{path}")
    }

    /// Access log lines for `port` so far: (connection serial, protocol, status).
    fn log(&self, port: u16) -> Vec<(u64, String, u16)> {
        let text = std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let mut f = l.split(' ');
                let p: u16 = f.next()?.parse().ok()?;
                let conn = f.next()?.parse().ok()?;
                let proto = f.next()?.to_owned();
                let status = f.next()?.parse().ok()?;
                (p == port).then_some((conn, proto, status))
            })
            .collect()
    }

    /// A handler trusting the test CA through `extra_ca_pem_path`.
    fn handler(&self, engine: &Engine, name: &str) -> u32 {
        engine
            .register_http(
                name,
                HttpOptions {
                    extra_ca_pem_path: Some(self.pki.ca_pem_path.clone()),
                    ..HttpOptions::default()
                },
            )
            .unwrap()
    }
}

#[test]
fn against_nginx() {
    let Some(bin) = find_nginx() else {
        eprintln!(
            "\n*** SKIPPED: nginx is not installed; `make test-http-real` installs it \
             (apt-get install nginx-light) ***\n"
        );
        return;
    };
    let nginx = Nginx::start(&bin);
    goaway_after_keepalive_requests_loses_nothing(&nginx);
    a_cold_burst_opens_at_most_four_connections(&nginx);
    gzip_bodies_are_decoded(&nginx);
    ssl_cert_file_is_trusted_unless_bundled_roots_only(&nginx);
}

/// The test CA given only through SSL_CERT_FILE (the platform store's override) is trusted,
/// except by a handler limited to the bundled roots.
fn ssl_cert_file_is_trusted_unless_bundled_roots_only(nginx: &Nginx) {
    // SAFETY: this binary runs one test; no other thread reads the environment now.
    unsafe { std::env::set_var("SSL_CERT_FILE", &nginx.pki.ca_pem_path) };
    let engine = engine();
    let system = engine
        .register_http("nginx-system-store", HttpOptions::default())
        .unwrap();
    let bundled = engine
        .register_http(
            "nginx-bundled-only",
            HttpOptions {
                bundled_roots_only: true,
                ..HttpOptions::default()
            },
        )
        .unwrap();
    // SAFETY: as above.
    unsafe { std::env::remove_var("SSL_CERT_FILE") };
    let url = nginx.url(nginx.long_port, "/");
    let c = run(&engine, system, &get(&url), 0);
    assert_status(&c, Status::PORTWAY_OK);
    let c = run(&engine, bundled, &get(&url), 0);
    assert_status(&c, Status::PORTWAY_TLS_ERROR);
    assert!(text(&c).contains("UnknownIssuer"), "{}", text(&c));
}

/// nginx gzips the page when asked: portway asks and hands back the page itself.
fn gzip_bodies_are_decoded(nginx: &Nginx) {
    let engine = engine();
    let http = nginx.handler(&engine, "nginx-gzip");
    let c = run(&engine, http, &get(&nginx.url(nginx.long_port, "/")), 0);
    assert_status(&c, Status::PORTWAY_OK);
    assert_eq!(meta(&c, "content-encoding"), Some("gzip"));
    assert_eq!(meta(&c, ":http-version"), Some("HTTP/2"));
    assert_eq!(text(&c), page());
}

/// nginx ends each connection with GOAWAY after 100 requests: 10 rounds of 300 concurrent
/// GETs cross 30 GOAWAYs, and every GET succeeds.
fn goaway_after_keepalive_requests_loses_nothing(nginx: &Nginx) {
    let engine = engine();
    let http = nginx.handler(&engine, "nginx-goaway");
    let url = nginx.url(nginx.short_port, "/");
    for round in 0..10 {
        for _ in 0..300 {
            submit(&engine, http, &get(&url), 0);
        }
        for c in wait_all(&engine, 300) {
            assert_status(&c, Status::PORTWAY_OK);
            assert_eq!(c.code, 200, "round {round}");
        }
    }
    let log = nginx.log(nginx.short_port);
    let conns: HashSet<u64> = log.iter().map(|(c, _, _)| *c).collect();
    assert!(log.len() >= 3000, "{} requests logged", log.len());
    assert!(conns.len() >= 11, "only {} connections", conns.len());
}

/// 1,000 concurrent GETs on a fresh handler: nginx's log shows at most 4 connections.
fn a_cold_burst_opens_at_most_four_connections(nginx: &Nginx) {
    let engine = engine();
    let http = nginx.handler(&engine, "nginx-cold");
    let url = nginx.url(nginx.long_port, "/");
    for _ in 0..1000 {
        submit(&engine, http, &get(&url), 0);
    }
    for c in wait_all(&engine, 1000) {
        assert_status(&c, Status::PORTWAY_OK);
    }
    let log = nginx.log(nginx.long_port);
    assert_eq!(log.len(), 1000);
    assert!(log.iter().all(|(_, proto, _)| proto == "HTTP/2.0"));
    let conns: HashSet<u64> = log.iter().map(|(c, _, _)| *c).collect();
    assert!(conns.len() <= 4, "{} connections", conns.len());
}
