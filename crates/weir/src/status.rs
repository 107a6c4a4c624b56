//! gRPC statuses as weir produces them, and the one place where internal failures become
//! status codes. The [`Status`] type itself is the codec's, shared with weir's clients.

use http::HeaderMap;
use weir_codec::Code;
use weir_codec::frame::FrameError;

use crate::body::BoxError;

pub use weir_codec::Status;

/// What weir needs of a [`Status`] at a call's edge, beyond the codec's type.
pub(crate) trait StatusExt: Sized {
    /// Whether a response head is a gRPC answer: HTTP 200 with a gRPC content type. Anything
    /// else (a proxy's error page, a misrouted request) must be mapped to a status.
    fn is_grpc_response(status: http::StatusCode, headers: &HeaderMap) -> bool {
        status == http::StatusCode::OK
            && headers
                .get(http::header::CONTENT_TYPE)
                .and_then(weir_codec::content_type::ContentType::from_header)
                .is_some()
    }

    /// The status as a native gRPC "Trailers-Only" response: HTTP 200 with the status in the
    /// headers and no body.
    #[cfg(feature = "proxy")]
    fn into_response(self) -> http::Response<crate::body::BoxBody>;

    /// A request frame broke the limits or the framing.
    fn from_request_frame_error(err: &FrameError) -> Self;

    /// A response frame from the service broke the limits or the framing.
    fn from_response_frame_error(err: &FrameError) -> Self;

    /// The service's response body failed.
    fn from_response_body_error(err: &BoxError) -> Self;
}

impl StatusExt for Status {
    #[cfg(feature = "proxy")]
    fn into_response(self) -> http::Response<crate::body::BoxBody> {
        let mut response = http::Response::new(crate::body::BoxBody::empty());
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        self.write_headers(headers);
        response
    }

    fn from_request_frame_error(err: &FrameError) -> Self {
        match err {
            FrameError::TooLarge { .. } => {
                Status::new(Code::ResourceExhausted, format!("request {err}"))
            }
            FrameError::Flags(_) => Status::new(Code::Internal, format!("request {err}")),
            FrameError::Truncated { .. } => {
                Status::new(Code::Internal, format!("request body truncated: {err}"))
            }
        }
    }

    fn from_response_frame_error(err: &FrameError) -> Self {
        match err {
            FrameError::TooLarge { .. } => {
                Status::new(Code::ResourceExhausted, format!("response {err}"))
            }
            FrameError::Flags(_) => Status::new(Code::Internal, format!("response {err}")),
            FrameError::Truncated { .. } => {
                Status::new(Code::Internal, format!("response body truncated: {err}"))
            }
        }
    }

    /// The service's response body failed. An HTTP/2 reset carries a reason that maps to a
    /// code ([gRPC over HTTP/2, "Errors"][spec]); anything else means the service is gone.
    ///
    /// [spec]: https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md
    fn from_response_body_error(err: &BoxError) -> Self {
        if let Some(status) = find::<Status>(err.as_ref()) {
            return status.clone();
        }
        if let Some(code) = Code::from_h2_error(err.as_ref()) {
            return Status::new(code, format!("the service's stream failed: {err}"));
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

#[cfg(test)]
mod tests {
    use super::*;

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
