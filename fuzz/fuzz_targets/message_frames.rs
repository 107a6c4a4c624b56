//! The call edge's frame check (`crates/weir/src/edge/{request,response}.rs`): a decoder of
//! message frames (`FrameDecoder::messages`) drained run by run with `decode_run`, as the edge
//! forwards request and response bodies. For any bytes cut any way and any limit: no panic;
//! every forwarded frame is a message (flags 0 or 1) within the limit; the forwarded bytes
//! and the error (or the verdict at the end of the body) are those of decoding frame by frame
//! with `decode`, whatever the cuts; and a stream of messages passes exactly as the plain
//! decoder of any frames reads it.
#![no_main]

mod chunks;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weir_codec::frame::{FrameDecoder, FrameError, HEADER_LEN, check_message_flags};

/// The bytes forwarded, then the error that stopped the body or the verdict at its end.
type Outcome = (Vec<u8>, Result<(), FrameError>);

fn runs(limit: usize, chunks: &[&[u8]]) -> Outcome {
    let mut decoder = FrameDecoder::messages(limit);
    let mut out = Vec::new();
    for chunk in chunks {
        decoder.push(Bytes::copy_from_slice(chunk));
        loop {
            match decoder.decode_run() {
                Ok(Some(run)) => {
                    assert!(!run.is_empty());
                    check_run(&run, limit);
                    out.extend_from_slice(&run);
                }
                Ok(None) => break,
                Err(e) => return (out, Err(e)),
            }
        }
    }
    (out, decoder.finish())
}

/// A run is whole message frames within the limit.
fn check_run(mut run: &[u8], limit: usize) {
    while !run.is_empty() {
        assert!(run.len() >= HEADER_LEN);
        assert!(check_message_flags(run[0]).is_ok());
        let len = u32::from_be_bytes([run[1], run[2], run[3], run[4]]) as usize;
        assert!(len <= limit);
        run = &run[HEADER_LEN + len..];
    }
}

fn frames(mut decoder: FrameDecoder, chunks: &[&[u8]]) -> Outcome {
    let mut out = Vec::new();
    for chunk in chunks {
        decoder.push(Bytes::copy_from_slice(chunk));
        loop {
            match decoder.decode() {
                Ok(Some(frame)) => out.extend_from_slice(&frame.encode()),
                Ok(None) => break,
                Err(e) => return (out, Err(e)),
            }
        }
    }
    (out, decoder.finish())
}

fuzz_target!(|input: (u8, u8, u16, &[u8])| {
    let (limit, step, split, data) = input;
    // Small limits, so that frames over them are common.
    let limit = usize::from(limit) * 4;
    let expected = frames(FrameDecoder::messages(limit), &[data]);
    for chunks in chunks::chunkings(step, split, data) {
        assert_eq!(runs(limit, &chunks), expected);
        assert_eq!(frames(FrameDecoder::messages(limit), &chunks), expected);
    }
    // The plain decoder reads the same stream; it differs only where a frame is not a message.
    let any = frames(FrameDecoder::new(limit), &[data]);
    if expected.1.is_ok() || any.1.is_ok() {
        assert!(expected == any || matches!(expected.1, Err(FrameError::Flags(_))));
    }
});
