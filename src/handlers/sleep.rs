//! The built-in `sleep`: its payload is ASCII decimal milliseconds, and it responds empty once
//! they have passed. It declares itself a delay, so the waiting is done by the engine timer
//! (`engine/timer.rs`): no task and no thread per sleeper.

use std::time::Duration;

use crate::contract::Handler;
use crate::error::{Error, Result};

/// The declaration `sleep` registers with.
pub(crate) fn handler() -> Handler {
    Handler::Delay(delay)
}

/// How long a request sleeps; also checks its payload at submit.
fn delay(payload: &[u8]) -> Result<Duration> {
    parse_millis(payload).map(Duration::from_millis)
}

/// Longest sleep accepted: one day.
const MAX_SLEEP_MS: u64 = 86_400_000;

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
