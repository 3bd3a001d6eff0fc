//! Request targets: the origin form an HTTP/1 request line carries, and a URL whose authority
//! an explicit Host header replaces (HTTP/2's `:authority`).

use http::Uri;
use http::uri::{Authority, PathAndQuery};

/// `/path?query` of an absolute URL (`/` when the path is empty). Shares the URL's bytes
/// rather than parsing a copy: this runs for every HTTP/1 request.
pub(crate) fn origin_form(uri: &Uri) -> Uri {
    match uri.path_and_query() {
        // Also what `as_str` says of an empty path, which `Uri::from` would print as "".
        Some(pq) if pq.as_str() == "/" => Uri::from_static("/"),
        Some(pq) if pq.as_str().starts_with('/') || pq.as_str() == "*" => Uri::from(pq.clone()),
        pq => {
            let fixed = format!("/{}", pq.map_or("", PathAndQuery::as_str));
            fixed.parse().unwrap_or_else(|_| Uri::from_static("/"))
        }
    }
}

/// `uri` with `authority` in place of its own.
pub(crate) fn with_authority(uri: &Uri, authority: Authority) -> Uri {
    let mut parts = uri.clone().into_parts();
    parts.authority = Some(authority);
    Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_form_keeps_path_and_query() {
        let u: Uri = "http://h:1/a/b?x=1".parse().unwrap();
        assert_eq!(origin_form(&u), "/a/b?x=1");
        let u: Uri = "http://h?x=1".parse().unwrap();
        assert_eq!(origin_form(&u), "/?x=1");
        let u: Uri = "http://h".parse().unwrap();
        assert_eq!(origin_form(&u), "/");
        // What hyper writes as the request target.
        assert_eq!(origin_form(&u).to_string(), "/");
        for (url, target) in [
            ("http://h/", "/"),
            ("http://h/a?b", "/a?b"),
            ("http://h?q", "/?q"),
        ] {
            let u: Uri = url.parse().unwrap();
            assert_eq!(origin_form(&u).to_string(), target);
        }
    }
}
