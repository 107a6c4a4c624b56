//! Metadata values as the call edge checks them (`weir_codec::metadata`), for any name and
//! value: no panic; a `-bin` value validates exactly when it decodes, and decodes as a plain
//! reading of the rule (comma-separated standard base64, padded or not, with at most the
//! canonical padding) does; what decodes re-encodes, padded or not, to the same bytes; any
//! other value validates exactly when it is printable ASCII.
//!
//! Input: the length of the name (one byte), the name, the value.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use http::{HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use weir_codec::metadata;

/// The rule, read plainly: each comma-separated part, trimmed, is unpadded base64 followed
/// by no more `=` than the canonical padding of its length.
fn reference(value: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for part in value.split(|&b| b == b',') {
        let part = part.trim_ascii();
        let data = part
            .strip_suffix(b"==")
            .or_else(|| part.strip_suffix(b"="))
            .unwrap_or(part);
        let padding = part.len() - data.len();
        if padding > (4 - data.len() % 4) % 4 {
            return None;
        }
        out.extend(STANDARD_NO_PAD.decode(data).ok()?);
    }
    Some(out)
}

fuzz_target!(|input: (u8, &[u8])| {
    let (name_len, data) = input;
    let at = usize::from(name_len).min(data.len());
    let (Ok(name), Ok(value)) = (
        HeaderName::from_bytes(&data[..at]),
        HeaderValue::from_bytes(&data[at..]),
    ) else {
        return;
    };
    let _ = metadata::is_reserved_request_header(&name);
    let valid = metadata::validate(&name, &value);
    if let Err(e) = &valid {
        assert_eq!(e.key(), name.as_str());
        let _ = e.to_string();
    }
    if metadata::is_binary(&name) {
        let decoded = metadata::decode_binary(&name, &value);
        assert_eq!(valid.is_ok(), decoded.is_ok());
        assert_eq!(decoded.as_ref().ok(), reference(value.as_bytes()).as_ref());
        if let Ok(bytes) = decoded {
            for encoded in [
                metadata::encode_binary(&bytes),
                metadata::encode_binary_padded(&bytes),
            ] {
                assert_eq!(
                    metadata::decode_binary(&name, &encoded).as_ref(),
                    Ok(&bytes)
                );
            }
        }
    } else {
        let printable = value.as_bytes().iter().all(|b| (0x20..=0x7e).contains(b));
        assert_eq!(valid.is_ok(), printable);
    }
});
