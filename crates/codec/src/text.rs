//! `grpc-web-text`: gRPC-Web with base64-encoded bodies.
//!
//! Browsers that cannot read binary streams send and receive base64. The body is not one
//! base64 document: a client may encode each message separately and concatenate the results,
//! so padding (`=`) can appear at the end of any 4-character group, not only at the very end
//! ([gRPC-Web protocol][web]). [`TextDecoder`] accepts exactly that, for any chunking of the
//! input. [`encode`] produces padded base64 for one flushed unit of a response; concatenating
//! such units is again valid `grpc-web-text`.
//!
//! [web]: https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-WEB.md

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::{Bytes, BytesMut};

/// Encodes one unit (a frame or a group of frames flushed together) as padded base64.
pub fn encode(data: &[u8]) -> Bytes {
    Bytes::from(STANDARD.encode(data))
}

/// The input was not valid `grpc-web-text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextError {
    offset: u64,
    reason: &'static str,
}

impl TextError {
    /// Offset in the base64 input at which the invalid group starts.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid base64 at offset {}: {}",
            self.offset, self.reason
        )
    }
}

impl std::error::Error for TextError {}

/// Streaming base64 decoder for `grpc-web-text` request bodies.
#[derive(Debug, Default)]
pub struct TextDecoder {
    /// Up to three characters of an incomplete group.
    pending: Vec<u8>,
    /// Base64 characters consumed so far (for error offsets).
    consumed: u64,
}

impl TextDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes as much of `input` as forms complete 4-character groups; keeps the rest.
    pub fn decode(&mut self, input: &[u8]) -> Result<Bytes, TextError> {
        let mut out = BytesMut::new();
        self.decode_into(input, &mut out)?;
        Ok(out.freeze())
    }

    /// Like [`decode`](Self::decode), appending to `out`. On an error `out` holds everything
    /// the groups before the invalid one decode to, so a receiver can act on the valid prefix
    /// of a body the same way however the body was chunked.
    pub fn decode_into(&mut self, input: &[u8], out: &mut BytesMut) -> Result<(), TextError> {
        out.reserve((self.pending.len() + input.len()) / 4 * 3);
        let mut rest = input;
        if !self.pending.is_empty() {
            let need = 4 - self.pending.len();
            let take = need.min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() < 4 {
                return Ok(());
            }
            let group = std::mem::take(&mut self.pending);
            self.decode_groups(&group, out)?;
        }
        let whole = rest.len() / 4 * 4;
        self.decode_groups(&rest[..whole], out)?;
        self.pending.extend_from_slice(&rest[whole..]);
        Ok(())
    }

    /// Checks that the body ended on a group boundary.
    pub fn finish(&self) -> Result<(), TextError> {
        if self.pending.is_empty() {
            Ok(())
        } else {
            Err(TextError {
                offset: self.consumed,
                reason: "body ends inside a 4-character group",
            })
        }
    }

    /// Decodes whole groups, splitting after every group that carries padding, since a
    /// standard decoder accepts padding only at the very end of its input.
    fn decode_groups(&mut self, groups: &[u8], out: &mut BytesMut) -> Result<(), TextError> {
        let mut start = 0;
        while start < groups.len() {
            let end = groups[start..]
                .chunks_exact(4)
                .position(|g| g[3] == b'=')
                .map_or(groups.len(), |i| start + (i + 1) * 4);
            if decode_segment(&groups[start..end], out).is_err() {
                // Find the invalid group, keeping what the ones before it decode to. Groups
                // decode independently, so this gives the same bytes as decoding them together.
                for (i, group) in groups[start..end].chunks_exact(4).enumerate() {
                    if decode_segment(group, out).is_err() {
                        return Err(TextError {
                            offset: self.consumed + (start + i * 4) as u64,
                            reason: "not standard base64",
                        });
                    }
                }
            }
            start = end;
        }
        self.consumed += groups.len() as u64;
        Ok(())
    }
}

/// Decodes whole groups with padding at most in the last one, appending to `out`; on an error
/// `out` is unchanged.
fn decode_segment(segment: &[u8], out: &mut BytesMut) -> Result<(), ()> {
    let at = out.len();
    out.resize(at + segment.len() / 4 * 3, 0);
    match STANDARD.decode_slice(segment, &mut out[at..]) {
        Ok(n) => {
            out.truncate(at + n);
            Ok(())
        }
        Err(_) => {
            out.truncate(at);
            Err(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_chunks(chunks: &[&[u8]]) -> Result<Vec<u8>, TextError> {
        let mut d = TextDecoder::new();
        let mut out = Vec::new();
        for c in chunks {
            out.extend_from_slice(&d.decode(c)?);
        }
        d.finish()?;
        Ok(out)
    }

    #[test]
    fn padding_at_any_group_boundary() {
        // "a" + "bc" + "def", each encoded separately and concatenated.
        let body = b"YQ==YmM=ZGVm";
        assert_eq!(decode_chunks(&[body]).unwrap(), b"abcdef");
        assert_eq!(
            decode_chunks(&body.chunks(1).collect::<Vec<_>>()).unwrap(),
            b"abcdef"
        );
    }

    #[test]
    fn rejects_invalid_input() {
        assert!(decode_chunks(&[b"YQ=="[..].as_ref(), b"Y!=="]).is_err());
        assert!(decode_chunks(&[b"Y=Q="]).is_err());
        assert!(decode_chunks(&[b"YQ"]).is_err(), "unfinished group");
        let err = decode_chunks(&[b"AAAAAAAA", b"AA*A"]).unwrap_err();
        assert_eq!(err.offset(), 8);
        // The offset is the invalid group's, however the input is chunked.
        assert_eq!(decode_chunks(&[b"AAAAAAAAAA*A"]).unwrap_err().offset(), 8);
        assert_eq!(
            decode_chunks(&[b"AAAAAA", b"AAAA*A"]).unwrap_err().offset(),
            8
        );
    }

    #[test]
    fn keeps_the_valid_prefix() {
        let mut out = BytesMut::new();
        let err = TextDecoder::new()
            .decode_into(b"YWJjZGVmYQ==Z*==", &mut out)
            .unwrap_err();
        assert_eq!(err.offset(), 12);
        assert_eq!(&out[..], b"abcdefa");
    }

    #[test]
    fn encode_is_padded() {
        assert_eq!(&encode(b"a")[..], b"YQ==");
    }

    proptest! {
        #[test]
        fn concatenated_units_any_split(
            units in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..50), 0..6),
            cuts in proptest::collection::vec(any::<usize>(), 0..10),
        ) {
            let mut body = Vec::new();
            let mut plain = Vec::new();
            for u in &units {
                body.extend_from_slice(&encode(u));
                plain.extend_from_slice(u);
            }
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
            points.push(0);
            points.push(body.len());
            points.sort_unstable();
            let chunks: Vec<&[u8]> = points.windows(2).map(|w| &body[w[0]..w[1]]).collect();
            prop_assert_eq!(decode_chunks(&chunks).unwrap(), plain);
        }
    }
}
