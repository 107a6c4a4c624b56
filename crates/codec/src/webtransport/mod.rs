//! weir's gRPC over WebTransport mapping (`docs/protocol/webtransport.md`): stream error
//! codes, header blocks ([`head`]) and the discovery document ([`discovery`]).
//!
//! # Stream error codes
//!
//! WebTransport applications use 32-bit stream error codes, but RESET_STREAM and
//! STOP_SENDING frames of an HTTP/3 connection carry HTTP/3 error codes. WebTransport over
//! HTTP/3 reserves a range of those for application codes and maps between the two
//! ([draft-ietf-webtrans-http3, "Resetting Data Streams"][draft]); browsers apply the mapping
//! in both directions, so a server must too.
//!
//! [draft]: https://datatracker.ietf.org/doc/draft-ietf-webtrans-http3/

use crate::Code;

pub mod discovery;
pub mod head;

pub use discovery::{CertificateHash, DISCOVERY_PATH, Discovery, DiscoveryError, VERSION};
pub use head::{HeadError, RequestHead, check_path, encode_block};

/// Stream error codes of weir's mapping (`docs/protocol/webtransport.md` §5), as WebTransport
/// application codes; on the wire they travel through [`to_http3`].
pub mod codes {
    /// The call is abandoned.
    pub const CANCEL: u32 = 0x0;
    /// The peer broke the specification.
    pub const PROTOCOL_ERROR: u32 = 0x1;
    /// The server did not start the call; the client may retry.
    pub const REFUSED: u32 = 0x2;
}

/// The status a stream reset or STOP_SENDING code stands for (§5). The code is read as HTTP/3
/// carries WebTransport codes; a bare small code (a peer that skipped the mapping) is read as
/// the application code itself. Codes the mapping does not define are `UNKNOWN`.
pub fn status_for_stream_code(code: u64) -> Code {
    let code = from_http3(code).map(u64::from).unwrap_or(code);
    match u32::try_from(code) {
        Ok(codes::CANCEL) => Code::Cancelled,
        Ok(codes::PROTOCOL_ERROR) => Code::Internal,
        Ok(codes::REFUSED) => Code::Unavailable,
        _ => Code::Unknown,
    }
}

/// The HTTP/3 error code of WebTransport application code 0.
pub const FIRST_HTTP3_CODE: u64 = 0x52e4_a40f_a8db;
/// The HTTP/3 error code of WebTransport application code `u32::MAX`.
pub const LAST_HTTP3_CODE: u64 = 0x52e5_ac98_3162;

/// The HTTP/3 error code that carries WebTransport application error code `code`.
pub fn to_http3(code: u32) -> u64 {
    let code = u64::from(code);
    FIRST_HTTP3_CODE + code + code / 0x1e
}

/// The WebTransport application error code an HTTP/3 error code carries; `None` outside the
/// reserved range and for the codes the range skips (every 0x1f-th, kept for HTTP/3 greasing).
pub fn from_http3(code: u64) -> Option<u32> {
    if !(FIRST_HTTP3_CODE..=LAST_HTTP3_CODE).contains(&code) || (code - 0x21).is_multiple_of(0x1f) {
        return None;
    }
    let shifted = code - FIRST_HTTP3_CODE;
    u32::try_from(shifted - shifted / 0x1f).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values() {
        assert_eq!(to_http3(0), 0x52e4_a40f_a8db);
        assert_eq!(to_http3(u32::MAX), LAST_HTTP3_CODE);
        assert_eq!(from_http3(0x52e4_a40f_a8db), Some(0));
        assert_eq!(from_http3(0), None);
        assert_eq!(from_http3(LAST_HTTP3_CODE + 1), None);
        assert_eq!(
            status_for_stream_code(to_http3(codes::CANCEL)),
            Code::Cancelled
        );
        assert_eq!(status_for_stream_code(0), Code::Cancelled);
        assert_eq!(
            status_for_stream_code(to_http3(codes::REFUSED)),
            Code::Unavailable
        );
        assert_eq!(status_for_stream_code(to_http3(7)), Code::Unknown);
    }

    proptest! {
        #[test]
        fn round_trip(code in any::<u32>()) {
            prop_assert_eq!(from_http3(to_http3(code)), Some(code));
        }
    }
}
