//! weir's gRPC over WebTransport mapping (`docs/protocol/webtransport.md`): stream error
//! codes, header blocks ([`head`]), the end of a version-2 request ([`request`]) and the
//! discovery document ([`discovery`]).
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
pub mod request;

pub use discovery::{CertificateHash, DISCOVERY_PATH, Discovery, DiscoveryError, VERSION};
pub use head::{HeadError, RequestHead, check_path, decode_block, encode_block};
pub use request::{END_OF_REQUEST, EndOfRequest};

/// A version of the mapping (§8), named by the session request's query parameter `v`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// The client ends a request by finishing its send side.
    V1,
    /// The client ends a request with [`END_OF_REQUEST`] and keeps its send side open until
    /// the call ended, so that it can reset it to cancel the call.
    V2,
}

impl Version {
    /// The newest version.
    pub const LATEST: Version = Version::V2;

    /// The version a session request's query string asks for (`v=1`, `v=2`); `None` for a
    /// missing or unknown one.
    pub fn from_query(query: &str) -> Option<Version> {
        match query.split('&').find_map(|pair| pair.strip_prefix("v="))? {
            "1" => Some(Version::V1),
            "2" => Some(Version::V2),
            _ => None,
        }
    }

    /// The value of the query parameter `v`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "1",
            Version::V2 => "2",
        }
    }
}

/// HTTP/3 error codes the mapping uses besides its own stream codes (§2.1, §2.4).
pub mod http3 {
    /// `H3_NO_ERROR`: a connection closed without an error.
    pub const NO_ERROR: u64 = 0x100;
    /// `H3_STREAM_CREATION_ERROR`: a unidirectional stream of a type the receiver refuses.
    pub const STREAM_CREATION_ERROR: u64 = 0x103;
    /// `H3_CLOSED_CRITICAL_STREAM`: a control stream ended.
    pub const CLOSED_CRITICAL_STREAM: u64 = 0x104;
    /// `H3_FRAME_UNEXPECTED`.
    pub const FRAME_UNEXPECTED: u64 = 0x105;
    /// `H3_SETTINGS_ERROR`: SETTINGS without what WebTransport needs.
    pub const SETTINGS_ERROR: u64 = 0x109;
    /// `H3_REQUEST_REJECTED`: a request stream beyond the connection's one session.
    pub const REQUEST_REJECTED: u64 = 0x10b;
    /// `H3_MESSAGE_ERROR`: a malformed session request.
    pub const MESSAGE_ERROR: u64 = 0x10e;
    /// `WT_SESSION_GONE`: the stream's session ended.
    pub const SESSION_GONE: u64 = 0x170d_7b68;
}

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

/// The status a client gives a call whose response side the server reset, from the HTTP/3
/// code of the RESET_STREAM or STOP_SENDING (§5.1). `WT_SESSION_GONE` is `UNAVAILABLE`; a
/// code outside the WebTransport range (a bare `0` from a peer that skipped the mapping)
/// carries no application code and, like the codes the mapping does not define, is
/// `UNKNOWN`.
pub fn status_for_stream_code(code: u64) -> Code {
    if code == http3::SESSION_GONE {
        return Code::Unavailable;
    }
    status_for_app_code(from_http3(code))
}

/// The status a client gives a call for a WebTransport application code as a browser reports
/// it (`streamErrorCode`, `None` when the stream carried no application code), §5.1.
pub fn status_for_app_code(code: Option<u32>) -> Code {
    match code {
        Some(codes::CANCEL) => Code::Cancelled,
        Some(codes::PROTOCOL_ERROR) => Code::Internal,
        Some(codes::REFUSED) => Code::Unavailable,
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
        assert_eq!(status_for_stream_code(0), Code::Unknown);
        assert_eq!(
            status_for_stream_code(http3::SESSION_GONE),
            Code::Unavailable
        );
        assert_eq!(
            status_for_stream_code(to_http3(codes::REFUSED)),
            Code::Unavailable
        );
        assert_eq!(status_for_stream_code(to_http3(7)), Code::Unknown);
    }

    #[test]
    fn versions() {
        assert_eq!(Version::from_query("v=2"), Some(Version::V2));
        assert_eq!(Version::from_query("x=1&v=1"), Some(Version::V1));
        assert_eq!(Version::from_query("v=3"), None);
        assert_eq!(Version::from_query(""), None);
        assert_eq!(Version::LATEST.as_str(), "2");
    }

    proptest! {
        #[test]
        fn round_trip(code in any::<u32>()) {
            prop_assert_eq!(from_http3(to_http3(code)), Some(code));
        }
    }
}
