//! Where a version-2 request ends (`docs/protocol/webtransport.md` §3.4).
//!
//! A version-2 client does not finish its send side after the request: it writes the
//! *end-of-request frame*, an empty header block (`80 00 00 00 00`), and keeps the side open
//! so that it can still reset it to cancel the call. [`EndOfRequest`] follows the frames of a
//! request stream after its header block and finds that frame without buffering or copying
//! message payloads: only an incomplete 5-byte frame prefix at the end of a chunk is held back.

use crate::frame::{FLAG_TRAILERS, HEADER_LEN};

/// The end-of-request frame: an empty header block.
pub const END_OF_REQUEST: [u8; HEADER_LEN] = [FLAG_TRAILERS, 0, 0, 0, 0];

/// What [`EndOfRequest::scan`] found in a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// `chunk[..settled]` is request body. The rest, shorter than a frame prefix, may start
    /// the end-of-request frame: pass it in again in front of the next chunk.
    Body {
        /// Bytes that are request body for certain.
        settled: usize,
    },
    /// The end-of-request frame starts at `chunk[body]`: what comes before it is request
    /// body, and `after` bytes follow it (a client must send none).
    End {
        /// Bytes of request body before the end-of-request frame.
        body: usize,
        /// Bytes after the end-of-request frame.
        after: usize,
    },
}

/// Follows the frames of a request stream, after the request header block, to find the
/// end-of-request frame.
///
/// ```
/// use weir_codec::webtransport::request::{EndOfRequest, Scan};
///
/// let mut scanner = EndOfRequest::default();
/// // A message of 2 bytes, then the first 3 bytes of the end-of-request frame.
/// let chunk = [0, 0, 0, 0, 2, b'h', b'i', 0x80, 0, 0];
/// assert_eq!(scanner.scan(&chunk), Scan::Body { settled: 7 });
/// // The held-back bytes come again, in front of the next chunk.
/// assert_eq!(scanner.scan(&[0x80, 0, 0, 0, 0]), Scan::End { body: 0, after: 0 });
/// ```
#[derive(Debug, Clone, Default)]
pub struct EndOfRequest {
    /// Payload bytes of the current frame not yet seen.
    remaining: u64,
}

impl EndOfRequest {
    /// Scans the next bytes of the stream. `chunk` starts where the previous scan's settled
    /// bytes ended.
    pub fn scan(&mut self, chunk: &[u8]) -> Scan {
        let mut at = 0;
        loop {
            let left = chunk.len() - at;
            let skip = usize::try_from(self.remaining).map_or(left, |r| r.min(left));
            at += skip;
            self.remaining -= skip as u64;
            if self.remaining > 0 || chunk.len() - at < HEADER_LEN {
                return Scan::Body { settled: at };
            }
            let prefix = &chunk[at..at + HEADER_LEN];
            if prefix == END_OF_REQUEST {
                return Scan::End {
                    body: at,
                    after: chunk.len() - at - HEADER_LEN,
                };
            }
            self.remaining = u64::from(u32::from_be_bytes([
                prefix[1], prefix[2], prefix[3], prefix[4],
            ]));
            at += HEADER_LEN;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn message(len: usize) -> Vec<u8> {
        let mut frame = vec![0];
        frame.extend_from_slice(&u32::try_from(len).unwrap().to_be_bytes());
        frame.extend(std::iter::repeat_n(7u8, len));
        frame
    }

    /// Feeds `chunks` as a client's stream would arrive; returns the body bytes and whether
    /// (and with how many bytes after it) the end-of-request frame was found.
    fn feed(chunks: &[&[u8]]) -> (Vec<u8>, Option<usize>) {
        let mut scanner = EndOfRequest::default();
        let mut held = Vec::new();
        let mut body = Vec::new();
        for chunk in chunks {
            held.extend_from_slice(chunk);
            match scanner.scan(&held) {
                Scan::Body { settled } => {
                    body.extend_from_slice(&held[..settled]);
                    held.drain(..settled);
                }
                Scan::End { body: len, after } => {
                    body.extend_from_slice(&held[..len]);
                    return (body, Some(after));
                }
            }
        }
        body.extend_from_slice(&held);
        (body, None)
    }

    #[test]
    fn finds_the_end_behind_messages() {
        let mut stream = message(3);
        stream.extend(message(0));
        let body_len = stream.len();
        stream.extend_from_slice(&END_OF_REQUEST);
        assert_eq!(feed(&[&stream]), (stream[..body_len].to_vec(), Some(0)));
    }

    #[test]
    fn an_empty_header_block_inside_a_payload_is_not_the_end() {
        let mut payload = message(10);
        payload[5..10].copy_from_slice(&END_OF_REQUEST);
        let (body, end) = feed(&[&payload]);
        assert_eq!((body, end), (payload.clone(), None));
    }

    #[test]
    fn reports_bytes_after_the_end() {
        let mut stream = END_OF_REQUEST.to_vec();
        stream.extend(message(1));
        assert_eq!(feed(&[&stream]), (Vec::new(), Some(6)));
    }

    #[test]
    fn other_header_blocks_are_body_for_the_edge_to_refuse() {
        let block = [0x80, 0, 0, 0, 1, b'x'];
        assert_eq!(feed(&[&block]), (block.to_vec(), None));
    }

    proptest! {
        /// However the stream is cut into chunks, the body is the messages and the end is
        /// found.
        #[test]
        fn any_split(lens in proptest::collection::vec(0usize..40, 0..5), cuts in proptest::collection::vec(1usize..9, 0..40)) {
            let mut stream = Vec::new();
            for len in &lens {
                stream.extend(message(*len));
            }
            let body_len = stream.len();
            stream.extend_from_slice(&END_OF_REQUEST);
            let mut chunks = Vec::new();
            let mut at = 0;
            for cut in cuts {
                if at >= stream.len() { break; }
                let end = (at + cut).min(stream.len());
                chunks.push(&stream[at..end]);
                at = end;
            }
            if at < stream.len() { chunks.push(&stream[at..]); }
            let (body, end) = feed(&chunks);
            prop_assert_eq!(body, stream[..body_len].to_vec());
            prop_assert_eq!(end, Some(0));
        }
    }
}
