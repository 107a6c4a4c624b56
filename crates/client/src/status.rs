//! The outcome of a call: a gRPC status code, its message and the metadata that came with it.

use std::fmt;

use http::HeaderMap;
use weir_codec::Code;
use weir_codec::status::decode_message;

/// A gRPC status: how a call ended, or why it could not be made.
///
/// Statuses the server sent carry the trailing metadata of the call ([`Status::metadata`]);
/// statuses made by the client (transport failures, deadlines, protocol violations) carry none.
#[derive(Clone, Debug)]
pub struct Status(Box<Inner>);

#[derive(Clone, Debug)]
struct Inner {
    code: Code,
    message: String,
    metadata: HeaderMap,
}

impl Status {
    /// A status with this code and message, without metadata.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Status(Box::new(Inner {
            code,
            message: message.into(),
            metadata: HeaderMap::new(),
        }))
    }

    /// The status code.
    pub fn code(&self) -> Code {
        self.0.code
    }

    /// The status message (`grpc-message`, percent-decoded), empty when absent.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The trailing metadata that came with the status (without `grpc-status` and
    /// `grpc-message`).
    pub fn metadata(&self) -> &HeaderMap {
        &self.0.metadata
    }

    /// Whether the code is [`Code::Ok`].
    pub fn is_ok(&self) -> bool {
        self.0.code == Code::Ok
    }

    /// The status a header or trailer block announces, `None` when it has no `grpc-status`.
    ///
    /// A `grpc-status` that is not a number is a protocol violation (`INTERNAL`).
    pub(crate) fn from_block(block: &HeaderMap) -> Option<Status> {
        let value = block.get("grpc-status")?;
        let Some(code) = Code::from_header(value.as_bytes()) else {
            return Some(Status::new(
                Code::Internal,
                format!("invalid grpc-status {value:?} from the server"),
            ));
        };
        let message = block
            .get("grpc-message")
            .map(|v| decode_message(v.as_bytes()))
            .unwrap_or_default();
        let mut metadata = block.clone();
        metadata.remove("grpc-status");
        metadata.remove("grpc-message");
        Some(Status(Box::new(Inner {
            code,
            message,
            metadata,
        })))
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

/// The status for a failure of the HTTP exchange itself.
pub(crate) fn from_transport(error: &(dyn std::error::Error + 'static), context: &str) -> Status {
    if let Some(reason) = h2_reason(error) {
        let code = match reason {
            h2::Reason::CANCEL => Code::Cancelled,
            h2::Reason::REFUSED_STREAM => Code::Unavailable,
            h2::Reason::ENHANCE_YOUR_CALM => Code::ResourceExhausted,
            h2::Reason::INADEQUATE_SECURITY => Code::PermissionDenied,
            h2::Reason::NO_ERROR => Code::Unavailable,
            _ => Code::Internal,
        };
        return Status::new(code, format!("{context}: stream reset: {error}"));
    }
    Status::new(Code::Unavailable, format!("{context}: {error}"))
}

fn h2_reason(error: &(dyn std::error::Error + 'static)) -> Option<h2::Reason> {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return h2.reason();
        }
        source = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn block_to_status() {
        let mut block = HeaderMap::new();
        assert!(Status::from_block(&block).is_none());
        block.insert("grpc-status", HeaderValue::from_static("5"));
        block.insert("grpc-message", HeaderValue::from_static("not%20here"));
        block.insert("x-extra", HeaderValue::from_static("1"));
        let status = Status::from_block(&block).unwrap();
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "not here");
        assert_eq!(status.metadata().len(), 1);
        assert_eq!(status.to_string(), "NOT_FOUND: not here");
        block.insert("grpc-status", HeaderValue::from_static("x"));
        assert_eq!(Status::from_block(&block).unwrap().code(), Code::Internal);
    }
}
