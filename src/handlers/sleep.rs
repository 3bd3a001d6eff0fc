//! The built-in `sleep` handler: waits on a runtime timer (no thread held), responds empty.

use std::time::Duration;

use super::{AsyncHandler, OutcomeFuture};
use crate::engine::Outcome;
use crate::error::{Error, Result};

/// Longest sleep accepted: one day.
const MAX_SLEEP_MS: u64 = 86_400_000;

/// Waits for the number of milliseconds given as ASCII decimal in the payload.
pub struct Sleep;

/// Parses the payload: ASCII decimal milliseconds, surrounding whitespace allowed.
pub fn parse_millis(payload: &[u8]) -> Result<u64> {
    let text = std::str::from_utf8(payload)
        .map_err(|_| Error::invalid("sleep payload must be ASCII decimal milliseconds"))?
        .trim();
    let ms: u64 = text.parse().map_err(|_| {
        Error::invalid(format!(
            "sleep payload must be ASCII decimal milliseconds, got {text:?}"
        ))
    })?;
    if ms > MAX_SLEEP_MS {
        return Err(Error::invalid(format!(
            "sleep of {ms} ms exceeds the limit of {MAX_SLEEP_MS} ms"
        )));
    }
    Ok(ms)
}

impl AsyncHandler for Sleep {
    fn validate(&self, payload: &[u8]) -> Result<()> {
        parse_millis(payload).map(|_| ())
    }

    fn call(&self, payload: Vec<u8>) -> OutcomeFuture {
        Box::pin(async move {
            match parse_millis(&payload) {
                Ok(ms) => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Outcome::ok(Vec::new())
                }
                // Reachable only as a later pipeline stage, where the payload was not checked
                // at submit time.
                Err(e) => Outcome::failed(e.status(), e.to_string()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_millis() {
        assert_eq!(parse_millis(b"25"), Ok(25));
        assert_eq!(parse_millis(b" 7\n"), Ok(7));
        assert!(parse_millis(b"").is_err());
        assert!(parse_millis(b"-1").is_err());
        assert!(parse_millis(b"1.5").is_err());
        assert!(parse_millis(b"\xff").is_err());
        assert!(parse_millis(b"999999999999").is_err());
    }
}
