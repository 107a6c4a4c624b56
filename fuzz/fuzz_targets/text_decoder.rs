//! grpc-web-text decoding never panics and does not depend on how the input is chunked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_codec::text::TextDecoder;

fn decode(chunks: &[&[u8]]) -> Option<Vec<u8>> {
    let mut decoder = TextDecoder::new();
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend_from_slice(&decoder.decode(chunk).ok()?);
    }
    decoder.finish().ok()?;
    Some(out)
}

fuzz_target!(|input: (u16, &[u8])| {
    let (split, data) = input;
    let at = usize::from(split) % (data.len() + 1);
    assert_eq!(decode(&[data]), decode(&[&data[..at], &data[at..]]));
});
