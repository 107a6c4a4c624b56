//! gRPC statuses as weir produces them, and the one place where internal failures become
//! status codes.

use std::fmt;

use http::{HeaderMap, HeaderValue};
use weir_codec::Code;
use weir_codec::frame::FrameError;
use weir_codec::status::encode_message;

use crate::body::BoxError;

/// A gRPC status: a code and a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    code: Code,
    message: String,
}

impl Status {
    /// A status with the given code and message.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Status {
            code,
            message: message.into(),
        }
    }

    /// The code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The message, unencoded.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Writes `grpc-status` and (when non-empty) the percent-encoded `grpc-message`.
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        headers.insert(
            crate::names::GRPC_STATUS,
            HeaderValue::from_static(self.code.as_header_str()),
        );
        headers.remove(&crate::names::GRPC_MESSAGE);
        headers.remove(&crate::names::GRPC_STATUS_DETAILS_BIN);
        if !self.message.is_empty() {
            // Percent-encoding leaves only printable ASCII, always a valid header value.
            if let Ok(value) = HeaderValue::try_from(encode_message(&self.message)) {
                headers.insert(crate::names::GRPC_MESSAGE, value);
            }
        }
    }

    /// The status in `grpc-status` and `grpc-message` of a header map, if there is one.
    pub fn from_headers(headers: &HeaderMap) -> Option<Status> {
        let code = Code::from_header(headers.get(&crate::names::GRPC_STATUS)?.as_bytes())?;
        let message = headers
            .get(&crate::names::GRPC_MESSAGE)
            .map(|m| weir_codec::status::decode_message(m.as_bytes()))
            .unwrap_or_default();
        Some(Status::new(code, message))
    }

    /// Whether a response head is a gRPC answer: HTTP 200 with a gRPC content type. Anything
    /// else (a proxy's error page, a misrouted request) must be mapped to a status.
    pub(crate) fn is_grpc_response(status: http::StatusCode, headers: &HeaderMap) -> bool {
        status == http::StatusCode::OK
            && headers
                .get(http::header::CONTENT_TYPE)
                .and_then(weir_codec::content_type::ContentType::from_header)
                .is_some()
    }

    /// Makes sure trailers carry a status: trailers without `grpc-status` would read as
    /// success to a client, so they get `INTERNAL`, keeping their metadata.
    pub(crate) fn ensure_in(trailers: &mut HeaderMap) {
        if !trailers.contains_key(&crate::names::GRPC_STATUS) {
            Status::new(
                Code::Internal,
                "the service ended its response with trailers but no grpc-status",
            )
            .write_headers(trailers);
        }
    }

    /// The status as a header map.
    pub fn to_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        self.write_headers(&mut headers);
        headers
    }

    /// The status as a native gRPC "Trailers-Only" response: HTTP 200 with the status in the
    /// headers and no body.
    pub fn into_response(self) -> http::Response<crate::body::BoxBody> {
        let mut response = http::Response::new(crate::body::BoxBody::empty());
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        self.write_headers(headers);
        response
    }

    /// A request frame broke the limits or the framing.
    pub(crate) fn from_request_frame_error(err: &FrameError) -> Self {
        match err {
            FrameError::TooLarge { .. } => {
                Status::new(Code::ResourceExhausted, format!("request {err}"))
            }
            FrameError::Truncated { .. } => {
                Status::new(Code::Internal, format!("request body truncated: {err}"))
            }
        }
    }

    /// A response frame from the service broke the limits or the framing.
    pub(crate) fn from_response_frame_error(err: &FrameError) -> Self {
        match err {
            FrameError::TooLarge { .. } => {
                Status::new(Code::ResourceExhausted, format!("response {err}"))
            }
            FrameError::Truncated { .. } => {
                Status::new(Code::Internal, format!("response body truncated: {err}"))
            }
        }
    }

    /// The service's response body failed. An HTTP/2 reset carries a reason that maps to a
    /// code ([gRPC over HTTP/2, "Errors"][spec]); anything else means the service is gone.
    ///
    /// [spec]: https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md
    pub(crate) fn from_response_body_error(err: &BoxError) -> Self {
        if let Some(status) = find::<Status>(err.as_ref()) {
            return status.clone();
        }
        if let Some(h2) = find::<h2::Error>(err.as_ref())
            && let Some(reason) = h2.reason()
        {
            let code = match reason {
                h2::Reason::CANCEL => Code::Cancelled,
                h2::Reason::REFUSED_STREAM => Code::Unavailable,
                h2::Reason::ENHANCE_YOUR_CALM => Code::ResourceExhausted,
                h2::Reason::INADEQUATE_SECURITY => Code::PermissionDenied,
                _ => Code::Internal,
            };
            return Status::new(code, format!("stream reset by the service: {reason}"));
        }
        Status::new(
            Code::Unavailable,
            format!("the service's response stream failed: {err}"),
        )
    }
}

fn find<'a, T: std::error::Error + 'static>(
    mut err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    loop {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        err = err.source()?;
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Status {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_encoded() {
        let headers = Status::new(Code::Unknown, "a\r\nb ☺").to_headers();
        assert_eq!(headers["grpc-status"], "2");
        assert_eq!(headers["grpc-message"], "a%0D%0Ab %E2%98%BA");
        assert!(
            !Status::new(Code::Ok, "")
                .to_headers()
                .contains_key("grpc-message")
        );
    }

    #[test]
    fn body_errors_map_to_codes() {
        let cancel: BoxError = Box::new(h2::Error::from(h2::Reason::CANCEL));
        assert_eq!(
            Status::from_response_body_error(&cancel).code(),
            Code::Cancelled
        );
        let refused: BoxError = Box::new(h2::Error::from(h2::Reason::REFUSED_STREAM));
        assert_eq!(
            Status::from_response_body_error(&refused).code(),
            Code::Unavailable
        );
        let io: BoxError = Box::new(std::io::Error::other("gone"));
        assert_eq!(
            Status::from_response_body_error(&io).code(),
            Code::Unavailable
        );
        let inner: BoxError = Box::new(Status::new(Code::DataLoss, "x"));
        assert_eq!(
            Status::from_response_body_error(&inner).code(),
            Code::DataLoss
        );
    }

    #[test]
    fn frame_errors_map_to_codes() {
        let big = FrameError::TooLarge { len: 5, limit: 4 };
        assert_eq!(
            Status::from_request_frame_error(&big).code(),
            Code::ResourceExhausted
        );
        assert_eq!(
            Status::from_request_frame_error(&big).message(),
            "request message of 5 bytes exceeds the 4-byte limit (max_message_size)"
        );
        let cut = FrameError::Truncated {
            received: 3,
            expected: None,
        };
        assert_eq!(
            Status::from_request_frame_error(&cut).code(),
            Code::Internal
        );
    }
}
