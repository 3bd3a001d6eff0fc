//! Fuzz target bodies, hidden from the documentation: not part of the public API.
//!
//! Each function takes arbitrary bytes and panics when portway breaks a promise: a crash, a
//! refused input without a proper status and message, an accepted input that violates the
//! documented rules, a completion lost or seen twice, a slot leaked. The cargo-fuzz binaries
//! in `fuzz/fuzz_targets/` call them under libFuzzer (nightly), and `tests/fuzz_replay.rs`
//! runs them on stable over every file of the committed corpora in `fuzz/corpus/<target>/`,
//! so the two always test the same code. `docs/FUZZING.md` describes the targets.

mod api;

use crate::engine::{Body, Meta};
use crate::handlers::http::fuzz_hooks;
use crate::handlers::sleep;
use crate::status::Status;

pub use api::api_sequence;

/// A target's check function.
pub type Check = fn(&[u8]);

/// Every target, by the name of its cargo-fuzz binary and corpus directory.
pub const TARGETS: &[(&str, Check)] = &[
    ("http_request_head", http_request_head),
    ("http_response", http_response),
    ("meta", meta),
    ("sleep_payload", sleep_payload),
    ("api_sequence", api_sequence),
];

/// The http handler's payload parser and validator (`handlers/http/request.rs`), and the
/// HTTP/1 and HTTP/2 requests built from an accepted payload.
pub fn http_request_head(data: &[u8]) {
    fuzz_hooks::request_head(data);
}

/// The response side of the http handler: one HTTP/1 exchange with the handler's settings
/// against a peer that answers with arbitrary bytes (the head limit, the body limit), the
/// response's headers encoded as completion meta, its redirect and `Retry-After`. The first
/// byte picks `max_header_bytes`, `max_body_bytes` and the method.
pub fn http_response(data: &[u8]) {
    fuzz_hooks::response(data);
}

/// The completion meta encoding (`contract/outcome.rs`): arbitrary key/value byte strings
/// (fields split by 0xFE, NUL bytes included) and the NUL-terminated body.
pub fn meta(data: &[u8]) {
    let fields: Vec<&[u8]> = data.split(|&b| b == 0xFE).collect();
    let pairs: Vec<(&[u8], &[u8])> = fields.chunks_exact(2).map(|p| (p[0], p[1])).collect();
    let m = Meta::from_byte_pairs(|| pairs.iter().copied());
    let (view, n) = m.c_view();
    assert_eq!(n, pairs.len());
    assert_eq!(m.len(), pairs.len());
    assert_eq!(view.is_null(), pairs.is_empty());
    let strip = |s: &[u8]| -> Vec<u8> { s.iter().copied().filter(|&b| b != 0).collect() };
    for (i, (k, v)) in pairs.iter().enumerate() {
        // SAFETY: `view` holds `n` pairs of NUL-terminated strings owned by `m`.
        let pair = unsafe { *view.add(i) };
        let key = unsafe { std::ffi::CStr::from_ptr(pair.key) }.to_bytes();
        let value = unsafe { std::ffi::CStr::from_ptr(pair.value) }.to_bytes();
        assert_eq!((key, value), (&strip(k)[..], &strip(v)[..]), "pair {i}");
    }
    let rust: Vec<(&str, &str)> = m.pairs().collect();
    assert_eq!(rust.len(), pairs.len());
    for ((k, v), (rk, rv)) in pairs.iter().zip(&rust) {
        for (bytes, text) in [(k, rk), (v, rv)] {
            let expected = String::from_utf8(strip(bytes)).unwrap_or_default();
            assert_eq!(expected, *text, "not UTF-8 reads as \"\"");
        }
    }

    for body in [Body::copy_from(data), Body::from_vec(data.to_vec())] {
        assert_eq!(body.as_slice(), data);
        assert_eq!(body.len(), data.len());
        // SAFETY: `as_ptr` is valid for `len` bytes and the NUL after them.
        assert_eq!(unsafe { *body.as_ptr().add(body.len()) }, 0);
        assert_eq!(body.into_vec(), data);
    }
}

/// The `sleep` handler's payload parser (`handlers/sleep.rs`) against the grammar the header
/// documents, written out again here: digits within ASCII spaces, tabs, CR and LF, at most a
/// day.
pub fn sleep_payload(data: &[u8]) {
    let is_space = |b: &u8| sleep::SPACE.contains(b);
    let start = data.iter().take_while(|b| is_space(b)).count();
    let end = data.len()
        - data[start..]
            .iter()
            .rev()
            .take_while(|b| is_space(b))
            .count();
    let digits = &data[start..end];
    let significant = {
        let zeros = digits.iter().take_while(|&&b| b == b'0').count();
        &digits[zeros..]
    };
    let expected = (!digits.is_empty() && digits.iter().all(u8::is_ascii_digit))
        .then(|| {
            if significant.len() > 9 {
                return None;
            }
            let ms = significant
                .iter()
                .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
            (ms <= sleep::MAX_SLEEP_MS).then_some(ms)
        })
        .flatten();
    match sleep::parse_millis(data) {
        Ok(ms) => assert_eq!(Some(ms), expected, "{data:?} accepted"),
        Err(e) => {
            assert_eq!(expected, None, "{data:?} refused: {e}");
            assert_eq!(e.status(), Status::PORTWAY_INVALID_ARGUMENT);
            assert!(!e.to_string().is_empty());
        }
    }
}

/// Reads fuzz input as a stream of small decisions; once it runs out every read is 0, so
/// any input is a valid (possibly short) program.
pub(crate) struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub(crate) fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// A number below `n` (n > 0).
    pub(crate) fn below(&mut self, n: u8) -> u8 {
        self.byte() % n
    }

    pub(crate) fn u64(&mut self) -> u64 {
        let mut v = 0u64;
        for _ in 0..8 {
            v = (v << 8) | u64::from(self.byte());
        }
        v
    }

    /// Up to `n` bytes.
    pub(crate) fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }
}
