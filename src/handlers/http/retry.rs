//! When and how long to wait before another attempt.

use std::time::Duration;

use http::{HeaderMap, Method, StatusCode};

/// Longest delay between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Methods that may be sent again without changing the outcome (RFC 9110, 9.2.2).
pub(crate) fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

/// Responses that say "try again": 502, 503, 504.
pub(crate) fn is_retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 502..=504)
}

/// The delay before retry number `retry` (0 for the first): `base * 2^retry`, capped at 30 s,
/// jittered uniformly to between half and all of that.
pub(crate) fn backoff(base_ms: u32, retry: u32) -> Duration {
    let full = u64::from(base_ms)
        .saturating_mul(1u64 << retry.min(32))
        .min(MAX_BACKOFF.as_millis() as u64);
    let jittered = if full < 2 {
        full
    } else {
        fastrand::u64(full / 2..=full)
    };
    Duration::from_millis(jittered)
}

/// A `Retry-After` given in seconds (the HTTP-date form is ignored), capped at 30 s.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_BACKOFF))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        for retry in 0..5 {
            let full = 100u64 << retry;
            for _ in 0..50 {
                let d = backoff(100, retry).as_millis() as u64;
                assert!((full / 2..=full).contains(&d), "retry {retry}: {d}");
            }
        }
        assert!(backoff(1000, 40) <= MAX_BACKOFF);
        assert_eq!(backoff(0, 3), Duration::ZERO);
    }

    #[test]
    fn classifies_methods_and_statuses() {
        assert!(is_idempotent(&Method::PUT));
        assert!(!is_idempotent(&Method::POST));
        assert!(!is_idempotent(&Method::PATCH));
        assert!(is_retryable_status(StatusCode::SERVICE_UNAVAILABLE));
        assert!(!is_retryable_status(StatusCode::INTERNAL_SERVER_ERROR));
        let mut h = HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
    }
}
