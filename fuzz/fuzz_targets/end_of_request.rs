//! The end-of-request scanner of version-2 WebTransport request streams, fed as the server
//! feeds it (the bytes it holds back come again in front of the next chunk), for any bytes
//! cut any way: it never panics, never holds back a whole frame prefix, and finds the
//! end-of-request frame where a plain walk over the frames of the whole stream finds it —
//! at a frame boundary, never inside a payload — with the same body before it and the same
//! number of bytes after it.
#![no_main]

mod chunks;

use libfuzzer_sys::fuzz_target;
use weir_codec::frame::HEADER_LEN;
use weir_codec::webtransport::END_OF_REQUEST;
use weir_codec::webtransport::request::{EndOfRequest, Scan};

/// The body before the end-of-request frame (the whole stream when there is none) and the
/// bytes after it.
type Outcome = (Vec<u8>, Option<usize>);

/// The reference: walk the frames of the whole stream.
fn walk(data: &[u8]) -> Outcome {
    let mut at = 0;
    while let Some(prefix) = data.get(at..at + HEADER_LEN) {
        if prefix == END_OF_REQUEST {
            return (data[..at].to_vec(), Some(data.len() - at - HEADER_LEN));
        }
        let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]);
        at = match usize::try_from(len)
            .ok()
            .and_then(|len| (at + HEADER_LEN).checked_add(len))
        {
            Some(next) => next,
            None => break,
        };
    }
    (data.to_vec(), None)
}

/// As `StreamBody` in `crates/weir/src/webtransport/call.rs` feeds the scanner.
fn scan(chunks: &[&[u8]]) -> Outcome {
    let mut scanner = EndOfRequest::default();
    let mut held: Vec<u8> = Vec::new();
    let mut body = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        held.extend_from_slice(chunk);
        match scanner.scan(&held) {
            Scan::Body { settled } => {
                assert!(settled <= held.len());
                body.extend_from_slice(&held[..settled]);
                held.drain(..settled);
                assert!(held.len() < HEADER_LEN, "held back {} bytes", held.len());
            }
            Scan::End { body: len, after } => {
                assert_eq!(len + HEADER_LEN + after, held.len());
                assert_eq!(held[len..len + HEADER_LEN], END_OF_REQUEST);
                body.extend_from_slice(&held[..len]);
                let later: usize = chunks[i + 1..].iter().map(|c| c.len()).sum();
                return (body, Some(after + later));
            }
        }
    }
    // At FIN the held-back bytes go to the edge, which finds the frame incomplete.
    body.extend_from_slice(&held);
    (body, None)
}

fuzz_target!(|input: (u8, u16, &[u8])| {
    let (step, split, data) = input;
    let expected = walk(data);
    for chunks in chunks::chunkings(step, split, data) {
        assert_eq!(scan(&chunks), expected);
    }
});
