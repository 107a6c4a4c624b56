//! The gRPC-Web trailer block.
//!
//! gRPC-Web moves HTTP trailers into the response body: a frame with flag `0x80` whose payload
//! is an HTTP/1-style header block (`name: value` lines separated by CRLF). Trailer names are
//! lowercase on the wire ([gRPC-Web protocol][web]). Implementations in the wild differ in the
//! details, so decoding accepts `k:v` and `k: v`, any case, CRLF or bare LF, a missing final
//! line break and an empty block.
//!
//! [web]: https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-WEB.md

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::frame::{FLAG_TRAILERS, encode_header};

/// Encodes trailers as a header block (`name: value\r\n` per entry, names lowercase).
///
/// `http::HeaderName` is always lowercase and `HeaderValue` can hold no CR or LF, so the
/// output is always a well-formed block.
pub fn encode(trailers: &HeaderMap) -> Bytes {
    let mut out = BytesMut::new();
    encode_into(trailers, &mut out);
    out.freeze()
}

fn encode_into(trailers: &HeaderMap, out: &mut BytesMut) {
    for (name, value) in trailers {
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
}

/// Encodes trailers as a complete `0x80` frame, header included.
pub fn encode_frame(trailers: &HeaderMap) -> Bytes {
    let block = encode(trailers);
    let mut out = BytesMut::with_capacity(crate::frame::HEADER_LEN + block.len());
    encode_header(FLAG_TRAILERS, block.len(), &mut out);
    out.extend_from_slice(&block);
    out.freeze()
}

/// Why a trailer block could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailerError {
    line: usize,
    reason: &'static str,
}

impl fmt::Display for TrailerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid trailer block, line {}: {}",
            self.line, self.reason
        )
    }
}

impl TrailerError {
    /// The line of the block (from 1) that is malformed.
    pub fn line(&self) -> usize {
        self.line
    }

    /// What is wrong with it.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl std::error::Error for TrailerError {}

/// Decodes a trailer block tolerantly.
///
/// Names are lowercased; surrounding whitespace of names and values is trimmed; empty lines
/// are skipped. A line without a colon, an invalid name or a value with control characters is
/// an error.
pub fn decode(block: &[u8]) -> Result<HeaderMap, TrailerError> {
    let mut map = HeaderMap::new();
    for (index, raw) in block.split(|&b| b == b'\n').enumerate() {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let err = |reason| TrailerError {
            line: index + 1,
            reason,
        };
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| err("no ':' separator"))?;
        let name = line[..colon].trim_ascii().to_ascii_lowercase();
        let value = line[colon + 1..].trim_ascii();
        let name = HeaderName::from_bytes(&name).map_err(|_| err("invalid name"))?;
        let value = HeaderValue::from_bytes(value).map_err(|_| err("invalid value"))?;
        // `HeaderMap` has a fixed capacity; a block with more distinct names than it can hold
        // (tens of thousands) must be an error, not a panic.
        map.try_append(name, value)
            .map_err(|_| err("too many entries"))?;
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encodes_lowercase_crlf() {
        let mut t = HeaderMap::new();
        t.insert("Grpc-Status", HeaderValue::from_static("0"));
        t.append("x-a", HeaderValue::from_static("1"));
        t.append("x-a", HeaderValue::from_static("2"));
        assert_eq!(&encode(&t)[..], b"grpc-status: 0\r\nx-a: 1\r\nx-a: 2\r\n");
        let frame = encode_frame(&t);
        assert_eq!(frame[0], 0x80);
        assert_eq!(
            u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize,
            frame.len() - 5
        );
    }

    #[test]
    fn decodes_what_the_wild_sends() {
        type Case = (&'static [u8], &'static [(&'static str, &'static str)]);
        let cases: &[Case] = &[
            (b"", &[]),
            (b"\r\n", &[]),
            (b"grpc-status:0", &[("grpc-status", "0")]),
            (
                b"grpc-status: 0\r\ngrpc-message: ok\r\n",
                &[("grpc-status", "0"), ("grpc-message", "ok")],
            ),
            (
                b"Grpc-Status: 13\ngrpc-message:boom\n",
                &[("grpc-status", "13"), ("grpc-message", "boom")],
            ),
            (b"GRPC-STATUS :  5  \r\n\r\n", &[("grpc-status", "5")]),
            (b"x-time: 12:30:00\r\n", &[("x-time", "12:30:00")]),
        ];
        for (block, want) in cases {
            let got = decode(block).unwrap();
            assert_eq!(
                got.len(),
                want.len(),
                "{:?}",
                String::from_utf8_lossy(block)
            );
            for (k, v) in *want {
                assert_eq!(got[*k], *v);
            }
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode(b"no colon here").is_err());
        assert!(decode(b"bad name: 1").is_err());
        assert!(decode(b"x: a\x00b").is_err());
        assert_eq!(decode(b"ok: 1\r\nbroken").unwrap_err().line, 2);
        let huge: Vec<u8> = (0..40_000)
            .flat_map(|i| format!("k{i}:\n").into_bytes())
            .collect();
        assert!(
            decode(&huge).is_err(),
            "too many names is an error, not a panic"
        );
    }

    proptest! {
        #[test]
        fn round_trip(entries in proptest::collection::vec(("[a-z][a-z0-9-]{0,12}", "[!-~]([ -~]{0,20}[!-~])?"), 0..6)) {
            let mut t = HeaderMap::new();
            for (k, v) in &entries {
                t.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
            }
            prop_assert_eq!(decode(&encode(&t)).unwrap(), t);
        }
    }
}
