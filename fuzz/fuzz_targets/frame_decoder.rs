//! Any bytes, split anywhere: the decoder never panics, never yields a frame over the limit,
//! and yields the same frames whatever the split.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weir_codec::frame::FrameDecoder;

const LIMIT: usize = 1 << 16;

fn decode(chunks: &[&[u8]]) -> (Vec<(u8, Vec<u8>)>, bool) {
    let mut decoder = FrameDecoder::new(LIMIT);
    let mut frames = Vec::new();
    for chunk in chunks {
        decoder.push(Bytes::copy_from_slice(chunk));
        loop {
            match decoder.decode() {
                Ok(Some(frame)) => {
                    assert!(frame.payload().len() <= LIMIT);
                    frames.push((frame.flags(), frame.payload().to_vec()));
                }
                Ok(None) => break,
                Err(_) => return (frames, false),
            }
        }
    }
    (frames, decoder.finish().is_ok())
}

fuzz_target!(|input: (u16, &[u8])| {
    let (split, data) = input;
    let at = usize::from(split) % (data.len() + 1);
    let whole = decode(&[data]);
    let halves = decode(&[&data[..at], &data[at..]]);
    assert_eq!(whole, halves);
});
