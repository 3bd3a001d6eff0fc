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
pub(crate) const MAX_SLEEP_MS: u64 = 86_400_000;

/// The bytes allowed around the digits: ASCII space, tab, CR and LF (not form feed, vertical
/// tab or any Unicode space).
pub(crate) const SPACE: &[u8] = b" \t\r\n";

/// Parses the payload. The grammar (documented on `portway_engine_new`): one or more ASCII
/// digits `0`-`9`, optionally preceded and followed by `SPACE` bytes, at most `MAX_SLEEP_MS`.
/// No sign, no other characters. `str::parse` is not used because it also takes a leading
/// `+`, and `str::trim` strips Unicode spaces.
pub fn parse_millis(payload: &[u8]) -> Result<u64> {
    let start = payload.iter().position(|b| !SPACE.contains(b));
    let end = payload.iter().rposition(|b| !SPACE.contains(b));
    let digits = match (start, end) {
        (Some(s), Some(e)) => &payload[s..=e],
        _ => &[][..],
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        let shown = String::from_utf8_lossy(&digits[..digits.len().min(40)]);
        let more = if digits.len() > 40 { "…" } else { "" };
        return Err(Error::invalid(format!(
            "sleep payload must be ASCII decimal milliseconds (digits only, no sign), got \
             {shown:?}{more}"
        )));
    }
    let mut ms: u64 = 0;
    for &d in digits {
        ms = ms * 10 + u64::from(d - b'0');
        if ms > MAX_SLEEP_MS {
            return Err(Error::invalid(format!(
                "sleep of {} ms exceeds the limit of {MAX_SLEEP_MS} ms",
                String::from_utf8_lossy(digits)
            )));
        }
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar_is_exactly_digits_within_ascii_spaces() {
        for (text, ms) in [
            (&b"0"[..], 0),
            (b"007", 7),
            (b" \t\r\n42\n", 42),
            (b"86400000", MAX_SLEEP_MS),
            (b"0000000000000086400000", MAX_SLEEP_MS),
        ] {
            assert_eq!(parse_millis(text), Ok(ms), "{text:?}");
        }
        for text in [
            &b"+5"[..],
            b"-0",
            b"5 5",
            b"1_000",
            b"0x10",
            b"5ms",
            b" ",
            b"\x0c5",
            b"5\x0b",
            "\u{a0}5".as_bytes(),
            "5\u{2003}".as_bytes(),
            "\u{3000}5".as_bytes(),
            "\u{661}".as_bytes(), // ARABIC-INDIC DIGIT ONE
            b"86400001",
            b"18446744073709551616",
            b"\x005",
        ] {
            let e = parse_millis(text).unwrap_err();
            assert_eq!(e.status(), crate::status::Status::PORTWAY_INVALID_ARGUMENT);
        }
        let long = parse_millis(&[b'x'; 1000]).unwrap_err().to_string();
        assert!(long.len() < 200, "{long}");
    }

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
