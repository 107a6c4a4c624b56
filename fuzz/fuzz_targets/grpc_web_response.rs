//! A gRPC-Web response body of any bytes, binary or text, split anywhere: the decoder never
//! panics, never yields a message over the limit, yields the same events and the same error
//! whatever the split, and a body it accepts whole re-encodes to one it decodes the same.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weir_codec::grpc_web::{Mode, ResponseDecoder, ResponseEncoder, ResponseError, ResponseEvent};

const LIMIT: usize = 1 << 16;

type Outcome = (Vec<ResponseEvent>, Result<(), ResponseError>);

fn decode(mode: Mode, limit: usize, chunks: &[&[u8]]) -> Outcome {
    let mut decoder = ResponseDecoder::new(mode, limit);
    let mut events = Vec::new();
    for chunk in chunks {
        decoder.push(Bytes::copy_from_slice(chunk));
        loop {
            match decoder.decode() {
                Ok(Some(event)) => {
                    if let ResponseEvent::Message(frame) = &event {
                        assert!(frame.payload().len() <= limit);
                    }
                    events.push(event);
                }
                Ok(None) => break,
                Err(e) => return (events, Err(e)),
            }
        }
    }
    (events, decoder.finish())
}

fuzz_target!(|input: (bool, u16, &[u8])| {
    let (text, split, data) = input;
    let mode = if text { Mode::Text } else { Mode::Binary };
    let at = usize::from(split) % (data.len() + 1);
    let whole = decode(mode, LIMIT, &[data]);
    let halves = decode(mode, LIMIT, &[&data[..at], &data[at..]]);
    assert_eq!(whole, halves);
    let _ = whole.1.as_ref().map_err(ResponseError::to_status);

    if whole.1.is_ok() {
        let encoder = ResponseEncoder::new(mode);
        let mut body = Vec::new();
        for event in &whole.0 {
            match event {
                ResponseEvent::Message(frame) => {
                    body.extend_from_slice(&encoder.frames(frame.encode()))
                }
                ResponseEvent::Heartbeat => body.extend_from_slice(&encoder.heartbeat()),
                ResponseEvent::Trailers(block) => body.extend_from_slice(&encoder.trailers(block)),
            }
        }
        // A re-encoded trailer block can be longer than the original (`a:b\n` becomes
        // `a: b\r\n`), but never twice as long.
        assert_eq!(decode(mode, 2 * LIMIT, &[&body]), whole);
    }
});
