//! What a finished request produced: status, code, bytes and metadata, stored in the form the
//! C boundary hands out without copying (NUL-terminated bytes, a ready `portway_meta` array).

use std::ffi::{CString, c_char};

use crate::status::Status;

/// One metadata pair as C sees it; both strings are NUL-terminated and owned by the completion.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
#[allow(non_camel_case_types)]
pub struct portway_meta {
    /// The key, e.g. a header name.
    pub key: *const c_char,
    /// The value.
    pub value: *const c_char,
}

/// Bytes followed by one NUL that is not part of the contents, so C can print them directly.
#[derive(Debug, Default)]
pub struct Body {
    with_nul: Vec<u8>,
}

impl Body {
    /// Copies `bytes` (no allocation when empty).
    pub fn copy_from(bytes: &[u8]) -> Self {
        if bytes.is_empty() {
            return Body::default();
        }
        let mut with_nul = Vec::with_capacity(bytes.len() + 1);
        with_nul.extend_from_slice(bytes);
        with_nul.push(0);
        Body { with_nul }
    }

    /// Takes ownership of `bytes` (at most one reallocation, for the NUL; none when empty).
    pub fn from_vec(mut bytes: Vec<u8>) -> Self {
        if bytes.is_empty() {
            return Body::default();
        }
        bytes.push(0);
        Body { with_nul: bytes }
    }

    /// The contents, without the NUL.
    pub fn as_slice(&self) -> &[u8] {
        self.with_nul.split_last().map_or(&[], |(_, rest)| rest)
    }

    /// Length of the contents.
    pub fn len(&self) -> usize {
        self.with_nul.len().saturating_sub(1)
    }

    /// True when there are no contents.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pointer to the contents; always valid and NUL-terminated, even when empty.
    pub fn as_ptr(&self) -> *const u8 {
        if self.with_nul.is_empty() {
            c"".as_ptr().cast()
        } else {
            self.with_nul.as_ptr()
        }
    }

    /// The contents as an owned vector (drops the NUL without reallocating).
    pub fn into_vec(mut self) -> Vec<u8> {
        self.with_nul.pop();
        self.with_nul
    }
}

/// Ordered key/value pairs with a C view built once.
///
/// All keys and values live NUL-terminated in one buffer (`key\0value\0key\0value\0…`), so
/// a response with a dozen headers costs two allocations, not two dozen.
///
/// Empty metadata (most completions) is one null pointer: a request in flight carries no
/// space for pairs it does not have.
#[derive(Debug, Default)]
pub struct Meta(Option<Box<MetaPairs>>);

#[derive(Debug)]
struct MetaPairs {
    text: Vec<u8>,
    view: Vec<portway_meta>,
}

// SAFETY: `view` only points into `text`, which `Meta` owns (boxed) and never mutates after
// building.
unsafe impl Send for Meta {}
// SAFETY: as above; shared access is read-only.
unsafe impl Sync for Meta {}

impl Meta {
    /// Builds the metadata and its C view.
    pub fn new(pairs: Vec<(CString, CString)>) -> Self {
        Self::from_byte_pairs(|| pairs.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())))
    }

    /// Builds the metadata from byte pairs; NUL bytes inside a key or value are dropped (C
    /// strings cannot hold them). `pairs` is called twice: once to size the buffer, once to
    /// fill it.
    pub fn from_byte_pairs<'a, I>(pairs: impl Fn() -> I) -> Self
    where
        I: Iterator<Item = (&'a [u8], &'a [u8])>,
    {
        let (count, bytes) = pairs().fold((0, 0), |(n, len), (k, v)| {
            (n + 1, len + k.len() + v.len() + 2)
        });
        if count == 0 {
            return Meta::default();
        }
        let mut text = Vec::with_capacity(bytes);
        let mut starts = Vec::with_capacity(count);
        for (k, v) in pairs() {
            let key_at = text.len();
            text.extend(k.iter().filter(|&&b| b != 0));
            text.push(0);
            let value_at = text.len();
            text.extend(v.iter().filter(|&&b| b != 0));
            text.push(0);
            starts.push((key_at, value_at));
        }
        // `text` is complete: pointers into it stay valid as long as it is not touched.
        let base = text.as_ptr();
        let view = starts
            .into_iter()
            .map(|(k, v)| portway_meta {
                // SAFETY: both offsets are inside `text`, which is not resized from here on.
                key: unsafe { base.add(k) }.cast(),
                value: unsafe { base.add(v) }.cast(),
            })
            .collect();
        Meta(Some(Box::new(MetaPairs { text, view })))
    }

    /// The pairs as Rust strings; a key or value that is not valid UTF-8 reads as "" (the C
    /// view has its bytes).
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        let (text, n): (&[u8], usize) = match &self.0 {
            Some(p) => (&p.text, p.view.len()),
            None => (&[], 0),
        };
        let mut parts = text
            .split(|&b| b == 0)
            .map(|s| std::str::from_utf8(s).unwrap_or(""));
        std::iter::from_fn(move || Some((parts.next()?, parts.next()?))).take(n)
    }

    /// The pairs as bytes, exactly as C sees them (without the NULs).
    pub fn byte_pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let (text, n): (&[u8], usize) = match &self.0 {
            Some(p) => (&p.text, p.view.len()),
            None => (&[], 0),
        };
        let mut parts = text.split(|&b| b == 0);
        std::iter::from_fn(move || Some((parts.next()?, parts.next()?))).take(n)
    }

    /// The C view: a pointer (NULL when empty) and a count.
    pub fn c_view(&self) -> (*const portway_meta, usize) {
        match &self.0 {
            Some(p) => (p.view.as_ptr(), p.view.len()),
            None => (std::ptr::null(), 0),
        }
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |p| p.view.len())
    }

    /// True when there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The result of a request or of one pipeline stage.
#[derive(Debug)]
pub struct Outcome {
    /// `PORTWAY_OK` or the failure status.
    pub status: Status,
    /// Handler-defined code (the HTTP status for "http").
    pub code: u32,
    /// Response bytes, or the error message when `status` is not OK.
    pub data: Body,
    /// Handler-defined pairs.
    pub meta: Meta,
}

impl Outcome {
    /// A successful outcome carrying `data`.
    pub fn ok(data: Vec<u8>) -> Self {
        Outcome {
            status: Status::PORTWAY_OK,
            code: 0,
            data: Body::from_vec(data),
            meta: Meta::default(),
        }
    }

    /// A failed outcome whose data is `message`.
    pub fn failed(status: Status, message: impl Into<String>) -> Self {
        Outcome {
            status,
            code: 0,
            data: Body::from_vec(message.into().into_bytes()),
            meta: Meta::default(),
        }
    }

    /// Sets the handler code.
    pub fn with_code(mut self, code: u32) -> Self {
        self.code = code;
        self
    }

    /// Sets the metadata.
    pub fn with_meta(mut self, meta: Meta) -> Self {
        self.meta = meta;
        self
    }

    /// True when the status is `PORTWAY_OK`.
    pub fn is_ok(&self) -> bool {
        self.status == Status::PORTWAY_OK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_keeps_order_drops_nul_bytes_and_its_c_view_matches() {
        let m = Meta::from_byte_pairs(|| {
            [(&b"a"[..], &b"1"[..]), (b"b\0c", b""), (b"", b"x\0")].into_iter()
        });
        let pairs: Vec<_> = m.pairs().collect();
        assert_eq!(pairs, [("a", "1"), ("bc", ""), ("", "x")]);
        let (ptr, n) = m.c_view();
        assert_eq!(n, 3);
        // SAFETY: `ptr` points at `n` pairs of NUL-terminated strings owned by `m`.
        let view = unsafe { std::slice::from_raw_parts(ptr, n) };
        let c = |p: *const std::ffi::c_char| unsafe { std::ffi::CStr::from_ptr(p) }.to_bytes();
        assert_eq!((c(view[1].key), c(view[1].value)), (&b"bc"[..], &b""[..]));
        assert_eq!((c(view[2].key), c(view[2].value)), (&b""[..], &b"x"[..]));
        assert_eq!(
            Meta::from_byte_pairs(std::iter::empty).c_view().0,
            std::ptr::null()
        );
        let from_c = Meta::new(vec![(c"k".into(), c"v".into())]);
        assert_eq!(from_c.pairs().collect::<Vec<_>>(), [("k", "v")]);
    }

    #[test]
    fn body_is_nul_terminated_and_round_trips() {
        let b = Body::copy_from(b"abc");
        assert_eq!(b.as_slice(), b"abc");
        assert_eq!(unsafe { *b.as_ptr().add(3) }, 0);
        assert_eq!(b.into_vec(), b"abc".to_vec());
        let empty = Body::default();
        assert_eq!(empty.len(), 0);
        assert_eq!(unsafe { *empty.as_ptr() }, 0);
    }

    #[test]
    fn meta_view_points_at_pairs() {
        let m = Meta::new(vec![(
            CString::new("k").unwrap(),
            CString::new("v").unwrap(),
        )]);
        let (ptr, n) = m.c_view();
        assert_eq!(n, 1);
        let pair = unsafe { *ptr };
        assert_eq!(
            unsafe { std::ffi::CStr::from_ptr(pair.key) }.to_str(),
            Ok("k")
        );
        assert_eq!(m.pairs().collect::<Vec<_>>(), vec![("k", "v")]);
        assert_eq!(Meta::default().c_view().0, std::ptr::null());
    }
}
