//! Decoding a compressed response body (`Content-Encoding` gzip, br, zstd or deflate) as its
//! pieces arrive, with `max_body_bytes` applied to the decoded size: a small body that
//! inflates past the limit (a "zip bomb") stops decoding there and fails with
//! `PORTWAY_BODY_TOO_LARGE`.

use std::io::{self, Write};

use http::HeaderMap;
use http::header::CONTENT_ENCODING;

/// What portway sends as `Accept-Encoding` when the request has none and `decompress` is on.
pub(crate) const ACCEPT: &str = "gzip, br, zstd, deflate";

/// The decoded output, refusing to grow past the limit.
struct Limited {
    out: Vec<u8>,
    limit: u64,
    over: bool,
}

impl Write for Limited {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if (self.out.len() + buf.len()) as u64 > self.limit {
            self.over = true;
            return Err(io::Error::other("over max_body_bytes"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One streaming decoder.
enum Codec {
    Gzip(flate2::write::GzDecoder<Limited>),
    Deflate(flate2::write::ZlibDecoder<Limited>),
    Brotli(Box<brotli_decompressor::DecompressorWriter<Limited>>),
    Zstd(zstd::stream::write::Decoder<'static, Limited>),
}

/// Why decoding stopped.
#[derive(Debug)]
pub(crate) enum DecodeError {
    /// The decoded body would be longer than the limit.
    TooLarge,
    /// The body is not valid in its encoding.
    Corrupt(String),
}

/// A decoder for one response body.
pub(crate) struct Decoder {
    codec: Codec,
    /// The coding's name, for messages.
    pub name: &'static str,
}

impl Decoder {
    /// A decoder for the response's `Content-Encoding`, or None when the body is to be kept
    /// as it is (no encoding, identity, an unknown or stacked encoding).
    pub fn for_headers(headers: &HeaderMap, limit: u64, capacity: usize) -> Option<Decoder> {
        let mut values = headers.get_all(CONTENT_ENCODING).iter();
        let value = values.next()?;
        if values.next().is_some() {
            return None;
        }
        let coding = value.to_str().ok()?.trim().to_ascii_lowercase();
        let sink = Limited {
            out: Vec::with_capacity(capacity),
            limit,
            over: false,
        };
        let (codec, name) = match coding.as_str() {
            "gzip" | "x-gzip" => (Codec::Gzip(flate2::write::GzDecoder::new(sink)), "gzip"),
            "deflate" => (
                Codec::Deflate(flate2::write::ZlibDecoder::new(sink)),
                "deflate",
            ),
            "br" => (
                Codec::Brotli(Box::new(brotli_decompressor::DecompressorWriter::new(
                    sink,
                    16 << 10,
                ))),
                "br",
            ),
            "zstd" => (
                Codec::Zstd(zstd::stream::write::Decoder::new(sink).ok()?),
                "zstd",
            ),
            _ => return None,
        };
        Some(Decoder { codec, name })
    }

    /// Decodes the next piece of the body.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), DecodeError> {
        let result = match &mut self.codec {
            Codec::Gzip(d) => d.write_all(chunk),
            Codec::Deflate(d) => d.write_all(chunk),
            Codec::Brotli(d) => d.write_all(chunk),
            Codec::Zstd(d) => d.write_all(chunk),
        };
        result.map_err(|e| self.error(e))
    }

    /// Ends the body: checks that the encoded stream is complete and returns the decoded bytes.
    pub fn finish(mut self) -> Result<Vec<u8>, DecodeError> {
        let ended = match &mut self.codec {
            Codec::Gzip(d) => d.try_finish(),
            Codec::Deflate(d) => d.try_finish(),
            Codec::Brotli(d) => d.close(),
            // `do_finish`, not `flush`: only it says whether the data ended on a complete
            // frame (a cut zstd body otherwise decodes to a silently shorter one).
            Codec::Zstd(d) => d.do_finish(),
        };
        ended.map_err(|e| self.error(e))?;
        Ok(match self.codec {
            Codec::Gzip(d) => {
                d.finish()
                    .map_err(|e| DecodeError::Corrupt(e.to_string()))?
                    .out
            }
            Codec::Deflate(d) => {
                d.finish()
                    .map_err(|e| DecodeError::Corrupt(e.to_string()))?
                    .out
            }
            Codec::Brotli(d) => match d.into_inner() {
                Ok(sink) | Err(sink) => sink.out,
            },
            Codec::Zstd(d) => d.into_inner().out,
        })
    }

    fn sink(&self) -> &Limited {
        match &self.codec {
            Codec::Gzip(d) => d.get_ref(),
            Codec::Deflate(d) => d.get_ref(),
            Codec::Brotli(d) => d.get_ref(),
            Codec::Zstd(d) => d.get_ref(),
        }
    }

    fn error(&self, e: io::Error) -> DecodeError {
        if self.sink().over {
            DecodeError::TooLarge
        } else {
            DecodeError::Corrupt(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(coding: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_ENCODING, coding.parse().unwrap());
        h
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn decodes_in_pieces_and_stops_at_the_limit() {
        let plain = b"abc".repeat(10_000);
        let packed = gzip(&plain);
        let mut d = Decoder::for_headers(&headers("gzip"), 1 << 20, 0).unwrap();
        for piece in packed.chunks(7) {
            d.write(piece).unwrap();
        }
        assert_eq!(d.finish().unwrap(), plain);

        let bomb = gzip(&vec![0u8; 10 << 20]);
        assert!(bomb.len() < 64 << 10);
        let mut d = Decoder::for_headers(&headers("gzip"), 1 << 20, 0).unwrap();
        let r = bomb.chunks(4096).try_for_each(|p| d.write(p));
        assert!(matches!(r, Err(DecodeError::TooLarge)), "{r:?}");
        assert!(d.sink().out.len() <= 1 << 20);
    }

    #[test]
    fn corrupt_and_cut_bodies_are_errors_and_unknown_codings_are_kept() {
        let mut d = Decoder::for_headers(&headers("gzip"), 1 << 20, 0).unwrap();
        assert!(matches!(
            d.write(b"not gzip at all"),
            Err(DecodeError::Corrupt(_))
        ));
        let packed = gzip(b"hello hello hello");
        let mut d = Decoder::for_headers(&headers("gzip"), 1 << 20, 0).unwrap();
        d.write(&packed[..packed.len() - 4]).unwrap();
        assert!(matches!(d.finish(), Err(DecodeError::Corrupt(_))));
        assert!(Decoder::for_headers(&headers("identity"), 1, 0).is_none());
        assert!(Decoder::for_headers(&headers("gzip, br"), 1, 0).is_none());
        assert!(Decoder::for_headers(&HeaderMap::new(), 1, 0).is_none());
    }

    fn encode(coding: &str, data: &[u8]) -> Vec<u8> {
        match coding {
            "gzip" => gzip(data),
            "deflate" => {
                let mut e =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            "br" => {
                let mut out = Vec::new();
                let mut e = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                e.write_all(data).unwrap();
                drop(e);
                out
            }
            "zstd" => zstd::stream::encode_all(data, 3).unwrap(),
            _ => unreachable!(),
        }
    }

    /// A body cut anywhere (the connection closed early, a proxy truncated it) is an error
    /// in every coding, never a silently shorter body; the whole body decodes, in pieces too.
    #[test]
    fn every_coding_refuses_a_cut_stream() {
        let plain: Vec<u8> = (0..40_000u32)
            .flat_map(|i| (i * 7919 % 251).to_le_bytes())
            .collect();
        for coding in ["gzip", "deflate", "br", "zstd"] {
            let packed = encode(coding, &plain);
            let mut d = Decoder::for_headers(&headers(coding), 1 << 20, 0).unwrap();
            packed.chunks(1000).for_each(|p| d.write(p).unwrap());
            assert_eq!(d.finish().unwrap(), plain, "{coding}: whole body");
            let cuts = [
                0,
                1,
                2,
                packed.len() / 2,
                packed.len() - 2,
                packed.len() - 1,
            ];
            for cut in cuts {
                let mut d = Decoder::for_headers(&headers(coding), 1 << 20, 0).unwrap();
                let r = d.write(&packed[..cut]).and_then(|()| d.finish());
                assert!(
                    matches!(r, Err(DecodeError::Corrupt(_))),
                    "{coding} cut at {cut} of {}: {:?}",
                    packed.len(),
                    r.map(|v| v.len())
                );
            }
        }
    }
}
