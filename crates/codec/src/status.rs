//! gRPC statuses: codes, the one [`Status`] type of weir's servers and clients, their
//! mapping from HTTP statuses and HTTP/2 reset reasons, and the `grpc-message` encoding.

use std::fmt;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

/// A gRPC status code ([status codes][codes]).
///
/// [codes]: https://github.com/grpc/grpc/blob/master/doc/statuscodes.md
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[allow(missing_docs)] // The names are the specification's.
pub enum Code {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl Code {
    const ALL: [Code; 17] = [
        Code::Ok,
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    /// The code for a numeric value; unknown values become [`Code::Unknown`], as the
    /// specification asks of receivers.
    pub fn from_i32(value: i32) -> Code {
        usize::try_from(value)
            .ok()
            .and_then(|i| Code::ALL.get(i).copied())
            .unwrap_or(Code::Unknown)
    }

    /// Parses a `grpc-status` header value; `None` if it is not a decimal integer.
    pub fn from_header(value: &[u8]) -> Option<Code> {
        let text = std::str::from_utf8(value).ok()?;
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(text.parse::<i32>().map_or(Code::Unknown, Code::from_i32))
    }

    /// The numeric value.
    pub fn as_i32(self) -> i32 {
        self as i32
    }

    /// The value as it appears in `grpc-status`.
    pub fn as_header_str(self) -> &'static str {
        const DIGITS: [&str; 17] = [
            "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15",
            "16",
        ];
        DIGITS[self as usize]
    }

    /// The specification's name, e.g. `RESOURCE_EXHAUSTED`.
    pub fn name(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }

    /// The gRPC status for a non-200 HTTP response that carried no `grpc-status`
    /// ([HTTP to gRPC status code mapping][map]).
    ///
    /// [map]: https://github.com/grpc/grpc/blob/master/doc/http-grpc-status-mapping.md
    pub fn from_http_status(status: u16) -> Code {
        match status {
            400 => Code::Internal,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::Unimplemented,
            429 | 502 | 503 | 504 => Code::Unavailable,
            _ => Code::Unknown,
        }
    }

    /// The gRPC status for an HTTP/2 stream that ended without one, by the reason of its
    /// `RST_STREAM` ([gRPC over HTTP/2, "Errors"][errors]). `NO_ERROR` is `INTERNAL` there
    /// too: a stream reset before its status is a broken call, whatever the reason says.
    ///
    /// A stream refused by a `GOAWAY` (one the peer never processed) is
    /// [`Code::Unavailable`] instead, whatever the reason: it is safe to retry.
    ///
    /// [errors]: https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md#errors
    pub fn from_h2_reset(reason: u32) -> Code {
        match reason {
            0x7 => Code::Unavailable,       // REFUSED_STREAM
            0x8 => Code::Cancelled,         // CANCEL
            0xb => Code::ResourceExhausted, // ENHANCE_YOUR_CALM
            0xc => Code::PermissionDenied,  // INADEQUATE_SECURITY
            _ => Code::Internal,
        }
    }

    /// The gRPC status for an HTTP/2 stream that failed with the [`h2::Error`] found in
    /// `error`'s source chain: its reset reason through [`Code::from_h2_reset`], or
    /// [`Code::Unavailable`] for a stream refused by a `GOAWAY`. `None` when the chain holds
    /// no HTTP/2 error with a reason (an I/O failure, a closed connection).
    #[cfg(feature = "h2")]
    pub fn from_h2_error(error: &(dyn std::error::Error + 'static)) -> Option<Code> {
        let mut source = Some(error);
        while let Some(e) = source {
            if let Some(h2) = e.downcast_ref::<h2::Error>() {
                let reason = h2.reason()?;
                return Some(if h2.is_go_away() {
                    Code::Unavailable
                } else {
                    Code::from_h2_reset(reason.into())
                });
            }
            source = e.source();
        }
        None
    }
}

/// Whether `error`'s source chain holds an HTTP/2 error that says the peer never processed
/// the stream: `REFUSED_STREAM`, or a graceful `GOAWAY` (`NO_ERROR`) from the peer whose last
/// stream ID is below it (RFC 9113 §8.7). Such a request may be sent again elsewhere.
#[cfg(feature = "h2")]
pub fn h2_unprocessed(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return match h2.reason() {
                Some(h2::Reason::REFUSED_STREAM) => true,
                Some(h2::Reason::NO_ERROR) => h2.is_go_away() && h2.is_remote(),
                _ => false,
            };
        }
        source = e.source();
    }
    false
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `grpc-status`.
pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// `grpc-message`.
pub const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
/// `grpc-status-details-bin`: a serialized `google.rpc.Status`, base64.
pub const GRPC_STATUS_DETAILS_BIN: HeaderName = HeaderName::from_static("grpc-status-details-bin");

/// A gRPC status: how a call ended, or why it could not be made. The one status type of
/// weir's servers, gateway and clients.
///
/// Besides the code and message it carries the status details (`grpc-status-details-bin`,
/// opaque bytes: a serialized `google.rpc.Status`) and the metadata that came with it (the
/// other trailers). Statuses made locally (a limit, a deadline, a transport failure) carry
/// neither.
///
/// ```
/// use weir_codec::{Code, Status};
///
/// let status = Status::new(Code::ResourceExhausted, "message of 5 bytes exceeds the 4-byte limit");
/// let trailers = status.to_headers();
/// assert_eq!(trailers["grpc-status"], "8");
/// let back = Status::from_headers(&trailers).unwrap();
/// assert_eq!(back.code(), Code::ResourceExhausted);
/// assert_eq!(back.message(), status.message());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Status(Box<Inner>);

#[derive(Clone, PartialEq, Eq)]
struct Inner {
    code: Code,
    message: String,
    details: Option<Bytes>,
    metadata: HeaderMap,
}

impl Status {
    /// A status with this code and message, without details or metadata.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Status(Box::new(Inner {
            code,
            message: message.into(),
            details: None,
            metadata: HeaderMap::new(),
        }))
    }

    /// The status with these details (a serialized `google.rpc.Status`).
    pub fn with_details(mut self, details: impl Into<Bytes>) -> Self {
        self.0.details = Some(details.into());
        self
    }

    /// The status with this metadata (trailers besides the status itself).
    pub fn with_metadata(mut self, metadata: HeaderMap) -> Self {
        self.0.metadata = metadata;
        self
    }

    /// The code.
    pub fn code(&self) -> Code {
        self.0.code
    }

    /// The message (`grpc-message`, percent-decoded); empty when absent.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The details (`grpc-status-details-bin`, base64-decoded), if any.
    pub fn details(&self) -> Option<&Bytes> {
        self.0.details.as_ref()
    }

    /// The metadata that came with the status, without `grpc-status`, `grpc-message` and
    /// `grpc-status-details-bin`.
    pub fn metadata(&self) -> &HeaderMap {
        &self.0.metadata
    }

    /// Whether the code is [`Code::Ok`].
    pub fn is_ok(&self) -> bool {
        self.0.code == Code::Ok
    }

    /// The status a header or trailer block announces; `None` when it has no `grpc-status`.
    ///
    /// A `grpc-status` that is not a decimal number is a protocol violation and reads as
    /// `INTERNAL`; details that are not base64 are dropped (a receiver must not fail on them).
    pub fn from_headers(block: &HeaderMap) -> Option<Status> {
        let value = block.get(&GRPC_STATUS)?;
        let Some(code) = Code::from_header(value.as_bytes()) else {
            return Some(Status::new(
                Code::Internal,
                format!(
                    "invalid grpc-status {:?} from the peer",
                    String::from_utf8_lossy(value.as_bytes())
                ),
            ));
        };
        let message = block
            .get(&GRPC_MESSAGE)
            .map(|v| decode_message(v.as_bytes()))
            .unwrap_or_default();
        let details = block.get(&GRPC_STATUS_DETAILS_BIN).and_then(|v| {
            crate::metadata::decode_binary(&GRPC_STATUS_DETAILS_BIN, v)
                .ok()
                .map(Bytes::from)
        });
        let mut metadata = HeaderMap::new();
        if block.len() > 1 + usize::from(block.contains_key(&GRPC_MESSAGE)) {
            metadata = block.clone();
            metadata.remove(&GRPC_STATUS);
            metadata.remove(&GRPC_MESSAGE);
            metadata.remove(&GRPC_STATUS_DETAILS_BIN);
        }
        Some(Status(Box::new(Inner {
            code,
            message,
            details,
            metadata,
        })))
    }

    /// Writes `grpc-status`, the percent-encoded `grpc-message` (when non-empty) and the
    /// details into `headers`, replacing any status there; other headers are kept. The
    /// status's own metadata is not written (see [`Status::to_headers`]).
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        headers.insert(
            GRPC_STATUS,
            HeaderValue::from_static(self.0.code.as_header_str()),
        );
        headers.remove(&GRPC_MESSAGE);
        headers.remove(&GRPC_STATUS_DETAILS_BIN);
        if !self.0.message.is_empty() {
            // Percent-encoding leaves only printable ASCII, always a valid header value.
            if let Ok(value) = HeaderValue::try_from(encode_message(&self.0.message)) {
                headers.insert(GRPC_MESSAGE, value);
            }
        }
        if let Some(details) = &self.0.details {
            headers.insert(
                GRPC_STATUS_DETAILS_BIN,
                crate::metadata::encode_binary(details),
            );
        }
    }

    /// The status as a trailer block: its metadata, then the status headers.
    pub fn to_headers(&self) -> HeaderMap {
        let mut headers = self.0.metadata.clone();
        self.write_headers(&mut headers);
        headers
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Status");
        s.field("code", &self.0.code)
            .field("message", &self.0.message);
        if let Some(details) = &self.0.details {
            s.field("details", &format_args!("{} bytes", details.len()));
        }
        if !self.0.metadata.is_empty() {
            s.field("metadata", &self.0.metadata);
        }
        s.finish()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.message.is_empty() {
            write!(f, "{}", self.0.code)
        } else {
            write!(f, "{}: {}", self.0.code, self.0.message)
        }
    }
}

impl std::error::Error for Status {}

/// Percent-encodes a status message for `grpc-message`.
///
/// Bytes outside printable ASCII (0x20–0x7E) and `%` itself are encoded as `%XX` of the UTF-8
/// bytes, as the gRPC specification requires, so any Unicode message survives a header.
pub fn encode_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Decodes a `grpc-message` value.
///
/// Per the specification a receiver must not fail on a bad encoding: `%` sequences that are
/// not two hex digits are kept as they are, and invalid UTF-8 is replaced.
pub fn decode_message(value: &[u8]) -> String {
    let mut bytes = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        if value[i] == b'%'
            && i + 2 < value.len()
            && let (Some(h), Some(l)) = (hex_val(value[i + 1]), hex_val(value[i + 2]))
        {
            bytes.push(h << 4 | l);
            i += 3;
            continue;
        }
        bytes.push(value[i]);
        i += 1;
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn codes() {
        assert_eq!(Code::from_i32(8), Code::ResourceExhausted);
        assert_eq!(Code::from_i32(17), Code::Unknown);
        assert_eq!(Code::from_i32(-1), Code::Unknown);
        assert_eq!(Code::from_header(b"14"), Some(Code::Unavailable));
        assert_eq!(Code::from_header(b"99"), Some(Code::Unknown));
        assert_eq!(Code::from_header(b"x"), None);
        assert_eq!(Code::from_header(b""), None);
        for code in Code::ALL {
            assert_eq!(
                Code::from_header(code.as_header_str().as_bytes()),
                Some(code)
            );
        }
    }

    #[test]
    fn http_mapping() {
        let table = [
            (400, Code::Internal),
            (401, Code::Unauthenticated),
            (403, Code::PermissionDenied),
            (404, Code::Unimplemented),
            (429, Code::Unavailable),
            (502, Code::Unavailable),
            (503, Code::Unavailable),
            (504, Code::Unavailable),
            (500, Code::Unknown),
            (418, Code::Unknown),
        ];
        for (http, code) in table {
            assert_eq!(Code::from_http_status(http), code, "{http}");
        }
    }

    #[test]
    fn h2_resets() {
        assert_eq!(Code::from_h2_reset(0x8), Code::Cancelled);
        assert_eq!(Code::from_h2_reset(0x7), Code::Unavailable);
        assert_eq!(Code::from_h2_reset(0xb), Code::ResourceExhausted);
        assert_eq!(Code::from_h2_reset(0xc), Code::PermissionDenied);
        assert_eq!(Code::from_h2_reset(0x0), Code::Internal);
        assert_eq!(Code::from_h2_reset(0x2), Code::Internal);
    }

    #[test]
    fn status_headers() {
        let headers = Status::new(Code::Unknown, "a\r\nb ☺").to_headers();
        assert_eq!(headers["grpc-status"], "2");
        assert_eq!(headers["grpc-message"], "a%0D%0Ab %E2%98%BA");
        assert!(
            !Status::new(Code::Ok, "")
                .to_headers()
                .contains_key("grpc-message")
        );

        let mut block = HeaderMap::new();
        assert!(Status::from_headers(&block).is_none());
        block.insert("grpc-status", HeaderValue::from_static("5"));
        block.insert("grpc-message", HeaderValue::from_static("not%20here"));
        block.insert("grpc-status-details-bin", HeaderValue::from_static("AQI"));
        block.insert("x-extra", HeaderValue::from_static("1"));
        let status = Status::from_headers(&block).unwrap();
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "not here");
        assert_eq!(status.details().map(|d| &d[..]), Some(&[1u8, 2][..]));
        assert_eq!(status.metadata().len(), 1);
        assert_eq!(status.to_string(), "NOT_FOUND: not here");
        let again = Status::from_headers(&status.to_headers()).unwrap();
        assert_eq!(again, status);
        block.insert("grpc-status", HeaderValue::from_static("x"));
        assert_eq!(Status::from_headers(&block).unwrap().code(), Code::Internal);
    }

    #[test]
    fn message_encoding() {
        let special = "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n";
        let encoded = encode_message(special);
        assert!(encoded.bytes().all(|b| (0x20..=0x7e).contains(&b)));
        assert_eq!(decode_message(encoded.as_bytes()), special);
        assert_eq!(encode_message("100% sure"), "100%25 sure");
        assert_eq!(decode_message(b"50%"), "50%");
        assert_eq!(decode_message(b"%zz%4"), "%zz%4");
        assert_eq!(decode_message(b"%41%62"), "Ab");
    }

    proptest! {
        #[test]
        fn message_round_trip(s in any::<String>()) {
            prop_assert_eq!(decode_message(encode_message(&s).as_bytes()), s);
        }
    }
}
