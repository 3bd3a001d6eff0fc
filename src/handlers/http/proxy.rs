//! Forward proxies: which proxy (if any) a request goes through, from the `proxy` option or
//! the environment, and the CONNECT tunnel for https targets.
//!
//! Environment rules (curl's, plus Go's loopback exemption): `http_proxy` (lowercase only:
//! the uppercase form can be set by a CGI client through the `Proxy:` header) for http URLs;
//! `https_proxy` or `HTTPS_PROXY` for https URLs; `all_proxy` / `ALL_PROXY` for either when
//! the specific one is unset. `no_proxy` / `NO_PROXY` is a comma-separated list of host names
//! or IP literals (a name also matches its subdomains; a leading `.` is ignored; `*` matches
//! everything). Requests to `localhost` and loopback addresses never use an environment proxy.
//! Only `http://` proxies are supported.

use base64::Engine as _;
use http::HeaderValue;
use percent_encoding::percent_decode_str;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::errors::{HttpError, Kind};
use super::request::Origin;
use crate::error::{Error, Result};

/// A proxy to send requests through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Proxy {
    /// Where the proxy listens (port 1080 when the URL gives none, as curl does).
    pub addr: Origin,
    /// `Proxy-Authorization` from the URL's user:password.
    pub auth: Option<HeaderValue>,
}

/// The proxy settings of one handler.
#[derive(Clone, Debug, Default)]
pub(crate) struct Proxies {
    http: Option<Proxy>,
    https: Option<Proxy>,
    no_proxy: Vec<String>,
    /// From the environment: loopback targets go direct.
    from_env: bool,
}

impl Proxies {
    /// From the `proxy` option: None = the environment, "" = no proxy, else a proxy URL for
    /// every request.
    pub fn new(option: Option<&str>) -> Result<Proxies> {
        match option {
            Some("") => Ok(Proxies::default()),
            Some(url) => {
                let p = parse_proxy_url(url)
                    .map_err(|why| Error::invalid(format!("proxy {url:?} is not usable: {why}")))?;
                Ok(Proxies {
                    http: Some(p.clone()),
                    https: Some(p),
                    ..Proxies::default()
                })
            }
            None => Ok(Proxies::from_lookup(|name| std::env::var(name).ok())),
        }
    }

    /// The environment rules, reading variables through `var`. An unusable proxy URL in the
    /// environment is ignored (as curl's own parse failure would skip it).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Proxies {
        let get = |names: &[&str]| {
            names
                .iter()
                .filter_map(|n| var(n))
                .find(|v| !v.trim().is_empty())
        };
        let all = get(&["all_proxy", "ALL_PROXY"]);
        let http = get(&["http_proxy"]).or_else(|| all.clone());
        let https = get(&["https_proxy", "HTTPS_PROXY"]).or(all);
        let no_proxy = get(&["no_proxy", "NO_PROXY"])
            .map(|v| {
                v.split(',')
                    .map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase())
                    .filter(|e| !e.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Proxies {
            http: http.and_then(|u| parse_proxy_url(u.trim()).ok()),
            https: https.and_then(|u| parse_proxy_url(u.trim()).ok()),
            no_proxy,
            from_env: true,
        }
    }

    /// The proxy for `origin`, or None to go direct.
    pub fn for_origin(&self, origin: &Origin) -> Option<&Proxy> {
        let proxy = if origin.tls { &self.https } else { &self.http };
        let proxy = proxy.as_ref()?;
        if self.from_env && is_loopback(&origin.host) {
            return None;
        }
        let host = origin.host.as_str();
        let excluded = self.no_proxy.iter().any(|e| {
            e == "*"
                || host == e
                || (host.len() > e.len()
                    && host.ends_with(e.as_str())
                    && host.as_bytes()[host.len() - e.len() - 1] == b'.')
        });
        (!excluded).then_some(proxy)
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `http://[user:password@]host[:port]`; a URL without scheme is taken as http (as curl does).
fn parse_proxy_url(url: &str) -> std::result::Result<Proxy, String> {
    let full = if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    };
    let uri: http::Uri = full.parse().map_err(|e| format!("{e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err("only http:// proxies are supported".into());
    }
    let authority = uri.authority().ok_or("it has no host")?.as_str();
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let target: http::uri::Authority = hostport.parse().map_err(|e| format!("{e}"))?;
    let host = target.host().trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("it has no host".into());
    }
    let auth = userinfo.map(|u| {
        let (user, pass) = u.split_once(':').unwrap_or((u, ""));
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        let token = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            decode(user),
            decode(pass)
        ));
        HeaderValue::from_str(&format!("Basic {token}")).expect("base64 is a valid header value")
    });
    Ok(Proxy {
        addr: Origin {
            tls: false,
            host: host.to_ascii_lowercase(),
            port: target.port_u16().unwrap_or(1080),
        },
        auth,
    })
}

/// Asks the proxy on `stream` for a tunnel to `origin` (HTTP CONNECT) and reads its answer;
/// the stream then carries the TLS connection to the origin.
pub(crate) async fn connect_tunnel(
    stream: &mut TcpStream,
    proxy: &Proxy,
    origin: &Origin,
) -> std::result::Result<(), HttpError> {
    let target = if origin.host.contains(':') {
        format!("[{}]:{}", origin.host, origin.port)
    } else {
        format!("{}:{}", origin.host, origin.port)
    };
    let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(auth) = &proxy.auth {
        head.push_str("Proxy-Authorization: ");
        head.push_str(auth.to_str().unwrap_or_default());
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let failed = |why: String| {
        HttpError::new(
            Kind::Connect,
            format!("the proxy {} gave no tunnel to {origin}: {why}", proxy.addr),
        )
    };
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(|e| failed(e.to_string()))?;
    // Read the answer's head byte by byte through a small buffer that never reads past it:
    // the proxy sends nothing more before the client speaks TLS.
    let mut reader = BufReader::with_capacity(1, &mut *stream);
    let mut status_line = String::new();
    let mut line = String::new();
    let mut total = 0;
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .await
            .map_err(|e| failed(e.to_string()))?;
        total += n;
        if n == 0 || total > 16 << 10 {
            return Err(failed("its answer ended early or is too long".into()));
        }
        if status_line.is_empty() {
            status_line = line.trim_end().to_owned();
        } else if line == "\r\n" || line == "\n" {
            break;
        }
    }
    let code = status_line.split(' ').nth(1).unwrap_or_default();
    if !code.starts_with('2') || code.len() != 3 {
        return Err(failed(format!("it answered {status_line:?}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(tls: bool, host: &str) -> Origin {
        Origin {
            tls,
            host: host.into(),
            port: if tls { 443 } else { 80 },
        }
    }

    fn env(vars: &[(&str, &str)]) -> Proxies {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Proxies::from_lookup(move |n| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()))
    }

    #[test]
    fn environment_rules_follow_curl() {
        let p = env(&[("http_proxy", "http://p:3128"), ("HTTPS_PROXY", "q:8080")]);
        assert_eq!(
            p.for_origin(&origin(false, "a.test")).unwrap().addr.host,
            "p"
        );
        let q = p.for_origin(&origin(true, "a.test")).unwrap();
        assert_eq!((q.addr.host.as_str(), q.addr.port), ("q", 8080));
        // Uppercase HTTP_PROXY is ignored; ALL_PROXY fills in.
        let p = env(&[("HTTP_PROXY", "http://x:1"), ("ALL_PROXY", "http://all:2")]);
        assert_eq!(
            p.for_origin(&origin(false, "a.test")).unwrap().addr.host,
            "all"
        );
        // NO_PROXY: exact names, domain suffixes, "*"; loopback always goes direct.
        let p = env(&[
            ("all_proxy", "http://p:1"),
            ("no_proxy", "skip.test, .corp"),
        ]);
        assert!(p.for_origin(&origin(false, "skip.test")).is_none());
        assert!(p.for_origin(&origin(false, "a.skip.test")).is_none());
        assert!(p.for_origin(&origin(false, "x.corp")).is_none());
        assert!(p.for_origin(&origin(false, "notskip.test")).is_some());
        assert!(p.for_origin(&origin(false, "127.0.0.1")).is_none());
        assert!(p.for_origin(&origin(false, "localhost")).is_none());
        let p = env(&[("all_proxy", "http://p:1"), ("NO_PROXY", "*")]);
        assert!(p.for_origin(&origin(true, "a.test")).is_none());
        assert!(env(&[]).for_origin(&origin(true, "a.test")).is_none());
    }

    #[test]
    fn the_option_wins_and_credentials_become_proxy_authorization() {
        let p = Proxies::new(Some("http://us%40r:p%3Ass@127.0.0.1:3128")).unwrap();
        let proxy = p.for_origin(&origin(true, "127.0.0.1")).unwrap();
        // base64("us@r:p:ss")
        assert_eq!(proxy.auth.as_ref().unwrap(), "Basic dXNAcjpwOnNz");
        assert!(
            Proxies::new(Some(""))
                .unwrap()
                .for_origin(&origin(true, "a"))
                .is_none()
        );
        let e = Proxies::new(Some("socks5://p:1")).unwrap_err().to_string();
        assert!(e.contains("only http://"), "{e}");
    }
}
