//! Following a redirect: resolving `Location` against the current URL and rewriting the
//! request the way browsers and curl do.

use bytes::Bytes;
use http::header::{
    AUTHORIZATION, CONTENT_ENCODING, CONTENT_LANGUAGE, CONTENT_LENGTH, CONTENT_LOCATION,
    CONTENT_TYPE, COOKIE, HOST, PROXY_AUTHORIZATION,
};
use http::{HeaderMap, Method, StatusCode, Uri};

use super::errors::HttpError;
use super::request::{Prepared, parse_target};

/// True for the statuses that are followed: 301, 302, 303, 307, 308.
pub(crate) fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// The request to send after `status` with `location` in answer to `req`.
///
/// 303 turns any method but HEAD into a body-less GET, and so do 301 and 302 for POST; 307
/// and 308 keep the method and body. Credentials (Authorization, Cookie) and an explicit Host
/// are dropped when the origin changes.
pub(crate) fn follow(
    req: &Prepared,
    status: StatusCode,
    location: &[u8],
) -> Result<Prepared, HttpError> {
    let location = std::str::from_utf8(location)
        .ok()
        .filter(|l| !l.trim().is_empty())
        .ok_or_else(|| {
            HttpError::protocol(format!(
                "redirect {status} from {} has an unusable Location header",
                req.origin
            ))
        })?;
    let target = resolve(&req.uri, location.trim());
    let (uri, origin) = parse_target(&target).map_err(|e| {
        HttpError::protocol(format!(
            "redirect {status} from {} points to an unusable URL: {e}",
            req.origin
        ))
    })?;

    let to_get = match status.as_u16() {
        303 => req.method != Method::HEAD,
        301 | 302 => req.method == Method::POST,
        _ => false,
    };
    let mut headers = req.headers.clone();
    let (method, body) = if to_get {
        for name in [
            CONTENT_LENGTH,
            CONTENT_TYPE,
            CONTENT_ENCODING,
            CONTENT_LANGUAGE,
            CONTENT_LOCATION,
        ] {
            headers.remove(name);
        }
        (Method::GET, Bytes::new())
    } else {
        (req.method.clone(), req.body.clone())
    };
    if origin != req.origin {
        strip_origin_bound(&mut headers);
    }
    Ok(Prepared {
        method,
        uri,
        origin,
        headers,
        body,
        host_value: None,
    })
}

fn strip_origin_bound(headers: &mut HeaderMap) {
    for name in [AUTHORIZATION, PROXY_AUTHORIZATION, COOKIE, HOST] {
        headers.remove(name);
    }
}

/// Resolves a reference against an absolute base URL (RFC 3986, section 5.2, without the
/// fragment, which is never sent).
pub(crate) fn resolve(base: &Uri, reference: &str) -> String {
    let reference = reference.split('#').next().unwrap_or_default();
    let scheme = base.scheme_str().unwrap_or("http");
    let authority = base.authority().map_or("", |a| a.as_str());
    if has_scheme(reference) {
        return reference.to_owned();
    }
    if reference.starts_with("//") {
        return format!("{scheme}:{reference}");
    }
    let base_path = match base.path() {
        "" => "/",
        p => p,
    };
    let (path, query) = match reference.find('?') {
        Some(i) => (&reference[..i], Some(&reference[i + 1..])),
        None => (reference, None),
    };
    let (path, query) = if path.is_empty() {
        (base_path.to_owned(), query.or(base.query()))
    } else if path.starts_with('/') {
        (remove_dot_segments(path), query)
    } else {
        let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
        (remove_dot_segments(&format!("{dir}{path}")), query)
    };
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    format!("{scheme}://{authority}{path}{query}")
}

fn has_scheme(reference: &str) -> bool {
    match reference.find(':') {
        Some(i) if i > 0 => {
            let s = &reference[..i];
            s.starts_with(|c: char| c.is_ascii_alphabetic())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        _ => false,
    }
}

/// RFC 3986, section 5.2.4.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    if joined.starts_with('/') {
        joined
    } else {
        format!("/{joined}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(base: &str, reference: &str) -> String {
        resolve(&base.parse().unwrap(), reference)
    }

    #[test]
    fn resolves_references() {
        let base = "http://a/b/c/d;p?q";
        assert_eq!(r(base, "g"), "http://a/b/c/g");
        assert_eq!(r(base, "./g"), "http://a/b/c/g");
        assert_eq!(r(base, "g/"), "http://a/b/c/g/");
        assert_eq!(r(base, "/g"), "http://a/g");
        assert_eq!(r(base, "//g"), "http://g");
        assert_eq!(r(base, "?y"), "http://a/b/c/d;p?y");
        assert_eq!(r(base, "g?y"), "http://a/b/c/g?y");
        assert_eq!(r(base, "g#s"), "http://a/b/c/g");
        assert_eq!(r(base, ""), "http://a/b/c/d;p?q");
        assert_eq!(r(base, "."), "http://a/b/c/");
        assert_eq!(r(base, ".."), "http://a/b/");
        assert_eq!(r(base, "../g"), "http://a/b/g");
        assert_eq!(r(base, "../../../g"), "http://a/g");
        assert_eq!(r(base, "https://x:1/y"), "https://x:1/y");
        assert_eq!(r("http://h:8/", "/next"), "http://h:8/next");
    }

    #[test]
    fn rewrites_methods_and_credentials() {
        let req = super::super::request::prepare(
            b"POST http://a/x HTTP/1.1\r\nAuthorization: t\r\nContent-Type: text/plain\r\n\r\nbody"
                .to_vec(),
        )
        .unwrap();
        let n = follow(&req, StatusCode::SEE_OTHER, b"/y").unwrap();
        assert_eq!(n.method, Method::GET);
        assert!(n.body.is_empty());
        assert!(n.headers.get(CONTENT_TYPE).is_none());
        assert!(n.headers.get(AUTHORIZATION).is_some());
        let n = follow(&req, StatusCode::TEMPORARY_REDIRECT, b"http://other/y").unwrap();
        assert_eq!(n.method, Method::POST);
        assert_eq!(&n.body[..], b"body");
        assert!(n.headers.get(AUTHORIZATION).is_none());
        assert!(follow(&req, StatusCode::FOUND, b"ftp://x/").is_err());
    }
}
