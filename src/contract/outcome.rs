//! What a finished request produced: status, code, bytes and metadata, stored in the form the
//! C boundary hands out without copying (NUL-terminated bytes, a ready `portway_meta` array).

use std::alloc::{self, Layout};
use std::ffi::{CString, c_char};
use std::ptr::NonNull;

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
/// One allocation holds everything: a small header, the `portway_meta` array, then every key
/// and value NUL-terminated (`key\0value\0key\0value\0…`), which the array points into. A
/// response with a dozen headers costs one allocation (and one free, usually on the host
/// thread: a free on another thread than the allocating one takes the allocator's arena lock,
/// so fewer of them matter on the hot path).
///
/// Empty metadata (most completions) is one null pointer: a request in flight carries no
/// space for pairs it does not have.
#[derive(Default)]
pub struct Meta(Option<NonNull<MetaHeader>>);

/// The start of a metadata allocation; the view and the text follow it.
#[repr(C)]
struct MetaHeader {
    /// Number of pairs (entries of the view).
    count: usize,
    /// Bytes of text after the view.
    text_len: usize,
}

// SAFETY: the allocation is owned by `Meta` alone and never mutated after building; the view
// only points into it.
unsafe impl Send for Meta {}
// SAFETY: as above; shared access is read-only.
unsafe impl Sync for Meta {}

impl Meta {
    /// Builds the metadata and its C view.
    pub fn new(pairs: Vec<(CString, CString)>) -> Self {
        Self::from_byte_pairs(|| pairs.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())))
    }

    /// The layout of an allocation for `count` pairs and `text_len` bytes of text.
    fn layout(count: usize, text_len: usize) -> Layout {
        let bytes = size_of::<MetaHeader>() + count * size_of::<portway_meta>() + text_len;
        // Sizes come from strings that already exist in memory, so they cannot overflow.
        Layout::from_size_align(
            bytes,
            align_of::<MetaHeader>().max(align_of::<portway_meta>()),
        )
        .expect("metadata size overflows")
    }

    /// Builds the metadata from byte pairs; NUL bytes inside a key or value are dropped (C
    /// strings cannot hold them). `pairs` is called twice: once to size the allocation, once
    /// to fill it.
    pub fn from_byte_pairs<'a, I>(pairs: impl Fn() -> I) -> Self
    where
        I: Iterator<Item = (&'a [u8], &'a [u8])>,
    {
        let (count, text_len) = pairs().fold((0, 0), |(n, len), (k, v)| {
            let kept = |s: &[u8]| {
                if s.contains(&0) {
                    s.iter().filter(|&&b| b != 0).count()
                } else {
                    s.len()
                }
            };
            (n + 1, len + kept(k) + kept(v) + 2)
        });
        if count == 0 {
            return Meta::default();
        }
        let layout = Self::layout(count, text_len);
        // SAFETY: the layout has a nonzero size (the header).
        let base = unsafe { alloc::alloc(layout) };
        let Some(header) = NonNull::new(base.cast::<MetaHeader>()) else {
            alloc::handle_alloc_error(layout);
        };
        // SAFETY: `base` is a fresh allocation of `layout`: the header, `count` view entries,
        // then `text_len` bytes, each region aligned for its type (the header's size is a
        // multiple of the view's alignment). The second pass yields the same pairs as the
        // first (the caller's iterator is over borrowed, unchanging data), so exactly
        // `text_len` bytes and `count` entries are written; the loop stops at `count`
        // whatever the iterator does.
        unsafe {
            header.as_ptr().write(MetaHeader { count, text_len });
            let view = base.add(size_of::<MetaHeader>()).cast::<portway_meta>();
            let text = view.add(count).cast::<u8>();
            let mut at = 0;
            let mut put = |s: &[u8]| {
                let start = text.add(at);
                if at + s.len() < text_len && !s.contains(&0) {
                    // The usual case: no NUL to drop, one copy (room for the NUL checked).
                    std::ptr::copy_nonoverlapping(s.as_ptr(), start, s.len());
                    at += s.len();
                } else {
                    for &b in s.iter().filter(|&&b| b != 0) {
                        if at < text_len {
                            text.add(at).write(b);
                            at += 1;
                        }
                    }
                }
                if at < text_len {
                    text.add(at).write(0);
                    at += 1;
                }
                start.cast::<c_char>()
            };
            let mut written = 0;
            for (k, v) in pairs().take(count) {
                let key = put(k);
                let value = put(v);
                view.add(written).write(portway_meta { key, value });
                written += 1;
            }
            // Never reached with a well-behaved iterator; keeps the view and text initialised
            // (empty strings) if a second pass came out shorter than the first.
            let last = text.add(text_len - 1).cast::<c_char>();
            while written < count {
                view.add(written).write(portway_meta {
                    key: last,
                    value: last,
                });
                written += 1;
            }
            while at < text_len {
                text.add(at).write(0);
                at += 1;
            }
        }
        Meta(Some(header))
    }

    /// The view and the text, or `None` when empty.
    fn parts(&self) -> Option<(&[portway_meta], &[u8])> {
        let header = self.0?;
        // SAFETY: `header` points at an allocation built by `from_byte_pairs`, alive and
        // unchanged while `self` is: its header, then `count` view entries, then `text_len`
        // initialised bytes.
        unsafe {
            let MetaHeader { count, text_len } = header.as_ptr().read();
            let view = header.as_ptr().cast::<u8>().add(size_of::<MetaHeader>());
            let view = view.cast::<portway_meta>();
            let text = view.add(count).cast::<u8>();
            Some((
                std::slice::from_raw_parts(view, count),
                std::slice::from_raw_parts(text, text_len),
            ))
        }
    }

    /// The pairs as Rust strings; a key or value that is not valid UTF-8 reads as "" (the C
    /// view has its bytes).
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        let (text, n): (&[u8], usize) = match self.parts() {
            Some((view, text)) => (text, view.len()),
            None => (&[], 0),
        };
        let mut parts = text
            .split(|&b| b == 0)
            .map(|s| std::str::from_utf8(s).unwrap_or(""));
        std::iter::from_fn(move || Some((parts.next()?, parts.next()?))).take(n)
    }

    /// `key: value` followed by the same pairs (NUL bytes dropped, as in
    /// [`Meta::from_byte_pairs`]); bytes are kept as they are, UTF-8 or not. First, so that a
    /// handler's own last pair (`http`'s `:http-version`) stays last.
    pub fn with_first_pair(&self, key: &[u8], value: &[u8]) -> Meta {
        Meta::from_byte_pairs(|| std::iter::once((key, value)).chain(self.byte_pairs()))
    }

    /// The pairs as bytes, exactly as C sees them (without the NULs).
    pub fn byte_pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let (text, n): (&[u8], usize) = match self.parts() {
            Some((view, text)) => (text, view.len()),
            None => (&[], 0),
        };
        let mut parts = text.split(|&b| b == 0);
        std::iter::from_fn(move || Some((parts.next()?, parts.next()?))).take(n)
    }

    /// The C view: a pointer (NULL when empty) and a count.
    pub fn c_view(&self) -> (*const portway_meta, usize) {
        match self.parts() {
            Some((view, _)) => (view.as_ptr(), view.len()),
            None => (std::ptr::null(), 0),
        }
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.parts().map_or(0, |(view, _)| view.len())
    }

    /// True when there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

impl Drop for Meta {
    fn drop(&mut self) {
        if let Some(header) = self.0.take() {
            // SAFETY: built by `from_byte_pairs` with this layout, freed once (taken).
            unsafe {
                let MetaHeader { count, text_len } = header.as_ptr().read();
                alloc::dealloc(header.as_ptr().cast(), Self::layout(count, text_len));
            }
        }
    }
}

impl std::fmt::Debug for Meta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.pairs()).finish()
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
    fn with_first_pair_prepends_and_keeps_bytes() {
        let m = Meta::from_byte_pairs(|| [(&b"a"[..], &b"\xff"[..]), (b"", b"")].into_iter());
        let m = m.with_first_pair(b"k", b"v");
        let (ptr, n) = m.c_view();
        assert_eq!(n, 3);
        // SAFETY: `ptr` points at `n` pairs of NUL-terminated strings owned by `m`.
        let view = unsafe { std::slice::from_raw_parts(ptr, n) };
        let c = |p: *const std::ffi::c_char| unsafe { std::ffi::CStr::from_ptr(p) }.to_bytes();
        assert_eq!(c(view[1].value), b"\xff");
        assert_eq!((c(view[0].key), c(view[0].value)), (&b"k"[..], &b"v"[..]));
        let one = Meta::default().with_first_pair(b"x", b"y");
        assert_eq!(one.pairs().collect::<Vec<_>>(), [("x", "y")]);
    }

    #[test]
    fn meta_of_a_dozen_headers_is_one_allocation() {
        let names: Vec<String> = (0..12).map(|i| format!("x-header-{i}")).collect();
        let (m, n) = crate::alloc_count::allocations(|| {
            Meta::from_byte_pairs(|| names.iter().map(|k| (k.as_bytes(), &b"value"[..])))
        });
        assert_eq!(n, 1, "allocations for 12 pairs");
        assert_eq!(m.len(), 12);
        assert!(!m.is_empty());
        let pairs: Vec<_> = m.pairs().collect();
        assert_eq!(pairs[11], ("x-header-11", "value"));
        let (ptr, len) = m.c_view();
        // SAFETY: `ptr` points at `len` pairs of NUL-terminated strings owned by `m`.
        let last = unsafe { *ptr.add(len - 1) };
        let value = unsafe { std::ffi::CStr::from_ptr(last.value) };
        assert_eq!(value.to_bytes(), b"value");
        assert_eq!(
            format!("{:?}", Meta::new(vec![(c"k".into(), c"v".into())])),
            r#"[("k", "v")]"#
        );
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
