//! Metadata: the custom headers and trailers of a call.
//!
//! Keys ending in `-bin` carry binary values, base64-encoded; receivers must accept padded
//! and unpadded base64, senders should omit the padding. All other values are printable ASCII
//! ([gRPC over HTTP/2, "Custom-Metadata"][spec]).
//!
//! [spec]: https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD_NO_PAD};
use base64::engine::{DecodePaddingMode, general_purpose};
use http::HeaderValue;
use http::header::HeaderName;

/// Accepts standard base64 with or without padding.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Whether a metadata key names a binary value.
pub fn is_binary(name: &HeaderName) -> bool {
    name.as_str().ends_with("-bin")
}

/// A metadata value that breaks the rules for its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataError {
    key: String,
    reason: &'static str,
}

impl MetadataError {
    /// The offending key.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl fmt::Display for MetadataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid metadata value for {:?}: {}",
            self.key, self.reason
        )
    }
}

impl std::error::Error for MetadataError {}

/// Decodes the value of a `-bin` key, padded or not.
pub fn decode_binary(name: &HeaderName, value: &HeaderValue) -> Result<Vec<u8>, MetadataError> {
    // A comma-separated list is how HTTP folds repeated headers; each element is base64.
    let mut out = Vec::new();
    for part in value.as_bytes().split(|&b| b == b',') {
        let part = part.trim_ascii();
        LENIENT
            .decode_vec(part, &mut out)
            .map_err(|_| MetadataError {
                key: name.as_str().to_owned(),
                reason: "not base64",
            })?;
    }
    Ok(out)
}

/// Encodes a binary value for a `-bin` key (unpadded, as the specification recommends).
pub fn encode_binary(value: &[u8]) -> HeaderValue {
    let text = STANDARD_NO_PAD.encode(value);
    // Base64 output is always a valid header value.
    HeaderValue::from_maybe_shared(bytes::Bytes::from(text))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Encodes a binary value with padding, for peers that insist on it.
pub fn encode_binary_padded(value: &[u8]) -> HeaderValue {
    let text = general_purpose::STANDARD.encode(value);
    HeaderValue::from_maybe_shared(bytes::Bytes::from(text))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Checks a value against the rules of its key: base64 for `-bin` keys, printable ASCII
/// (0x20–0x7E) otherwise.
pub fn validate(name: &HeaderName, value: &HeaderValue) -> Result<(), MetadataError> {
    if is_binary(name) {
        return decode_binary(name, value).map(drop);
    }
    if value.as_bytes().iter().all(|b| (0x20..=0x7e).contains(b)) {
        Ok(())
    } else {
        Err(MetadataError {
            key: name.as_str().to_owned(),
            reason: "ASCII value with bytes outside 0x20-0x7E",
        })
    }
}

/// Whether a header is reserved to the protocol and must not be taken from a client's
/// metadata: HTTP/1.1 hop-by-hop headers ([RFC 9110 §7.6.1]) and the `grpc-` statuses that
/// only a server may send.
///
/// [RFC 9110 §7.6.1]: https://www.rfc-editor.org/rfc/rfc9110#section-7.6.1
pub fn is_reserved_request_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "upgrade"
            | "te"
            | "trailer"
            | "grpc-status"
            | "grpc-message"
            | "grpc-status-details-bin"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &'static str) -> HeaderName {
        HeaderName::from_static(s)
    }

    #[test]
    fn binary_values_padded_or_not() {
        let key = name("x-grpc-test-echo-trailing-bin");
        assert_eq!(
            decode_binary(&key, &HeaderValue::from_static("q6ur")).unwrap(),
            [0xab; 3]
        );
        assert_eq!(
            decode_binary(&key, &HeaderValue::from_static("AQ")).unwrap(),
            [1]
        );
        assert_eq!(
            decode_binary(&key, &HeaderValue::from_static("AQ==")).unwrap(),
            [1]
        );
        assert_eq!(
            decode_binary(&key, &HeaderValue::from_static("AQ, Ag==")).unwrap(),
            [1, 2]
        );
        assert!(decode_binary(&key, &HeaderValue::from_static("A")).is_err());
        assert!(decode_binary(&key, &HeaderValue::from_static("!!")).is_err());
        assert_eq!(encode_binary(&[1]), "AQ");
        assert_eq!(encode_binary_padded(&[1]), "AQ==");
    }

    #[test]
    fn ascii_values() {
        assert!(validate(&name("x-a"), &HeaderValue::from_static("plain value")).is_ok());
        let tab = HeaderValue::from_bytes(b"a\tb").unwrap();
        assert!(validate(&name("x-a"), &tab).is_err());
        let high = HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap();
        assert!(validate(&name("x-a"), &high).is_err());
        assert!(validate(&name("x-a-bin"), &HeaderValue::from_static("q6ur")).is_ok());
    }

    #[test]
    fn reserved() {
        for n in ["connection", "te", "grpc-status", "transfer-encoding"] {
            assert!(is_reserved_request_header(&HeaderName::from_static(n)));
        }
        assert!(!is_reserved_request_header(&name("grpc-timeout")));
        assert!(!is_reserved_request_header(&name("authorization")));
    }
}
