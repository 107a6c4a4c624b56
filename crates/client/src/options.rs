//! Per-call options: metadata and deadline.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use weir_codec::metadata;

/// Metadata and deadline of one call.
///
/// Setters never fail; an invalid key or value is remembered and reported as an `INTERNAL`
/// status when the call is made, as [`http::request::Builder`] does.
///
/// ```
/// use std::time::Duration;
/// let options = weir_client::CallOptions::new()
///     .metadata("x-user", "ada")
///     .binary_metadata("x-trace-bin", &[0xab, 0xcd])
///     .timeout(Duration::from_secs(2));
/// assert!(options.error().is_none());
/// ```
#[derive(Clone, Debug, Default)]
pub struct CallOptions {
    pub(crate) metadata: HeaderMap,
    pub(crate) timeout: Option<Duration>,
    error: Option<String>,
}

impl CallOptions {
    /// No metadata, no deadline (beyond the client's default, if any).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds ASCII metadata. The key must not end in `-bin` (use
    /// [`binary_metadata`](Self::binary_metadata)) nor be a header the protocol reserves.
    pub fn metadata(mut self, key: &str, value: &str) -> Self {
        match (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => {
                if metadata::is_binary(&name) {
                    self.fail(format!(
                        "metadata key {key:?} ends in -bin: the value must be binary"
                    ));
                } else if value.as_bytes().iter().any(|b| !(0x20..0x7f).contains(b)) {
                    self.fail(format!("metadata {key:?}: value is not printable ASCII"));
                } else {
                    self.insert(name, value);
                }
            }
            (Err(_), _) => self.fail(format!("invalid metadata key {key:?}")),
            (_, Err(_)) => self.fail(format!("metadata {key:?}: invalid value")),
        }
        self
    }

    /// Adds binary metadata (sent base64-encoded); the key must end in `-bin`.
    pub fn binary_metadata(mut self, key: &str, value: &[u8]) -> Self {
        match HeaderName::from_bytes(key.as_bytes()) {
            Ok(name) if metadata::is_binary(&name) => {
                self.insert(name, metadata::encode_binary(value));
            }
            Ok(_) => self.fail(format!("binary metadata key {key:?} must end in -bin")),
            Err(_) => self.fail(format!("invalid metadata key {key:?}")),
        }
        self
    }

    /// Sets the call's deadline, relative to when the call starts. It is sent as
    /// `grpc-timeout` and enforced locally: when it passes, the call is abandoned and ends
    /// with `DEADLINE_EXCEEDED`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The first invalid setting, if any.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// The metadata set so far, as it goes on the wire (binary values in base64), for a
    /// caller that sends it over another transport, e.g. gRPC over WebTransport.
    ///
    /// ```
    /// let options = weir_client::CallOptions::new()
    ///     .metadata("x-user", "ada")
    ///     .binary_metadata("x-trace-bin", &[0xab, 0xcd]);
    /// assert_eq!(options.metadata_map()["x-user"], "ada");
    /// assert_eq!(options.metadata_map()["x-trace-bin"], "q80");
    /// ```
    pub fn metadata_map(&self) -> &HeaderMap {
        &self.metadata
    }

    /// The deadline set with [`timeout`](Self::timeout), if any.
    pub fn deadline(&self) -> Option<Duration> {
        self.timeout
    }

    fn insert(&mut self, name: HeaderName, value: HeaderValue) {
        if metadata::is_reserved_request_header(&name) || CLIENT_SET.contains(&name.as_str()) {
            self.fail(format!("metadata key {name:?} is reserved by the protocol"));
        } else {
            self.metadata.append(name, value);
        }
    }

    fn fail(&mut self, message: String) {
        self.error.get_or_insert(message);
    }
}

/// Headers the client sets itself.
const CLIENT_SET: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "accept",
    "grpc-timeout",
    "grpc-encoding",
    "grpc-accept-encoding",
    "x-grpc-web",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_settings_are_remembered() {
        assert!(CallOptions::new().metadata("x-a", "b").error().is_none());
        assert!(
            CallOptions::new()
                .metadata("x-a-bin", "b")
                .error()
                .is_some()
        );
        assert!(
            CallOptions::new()
                .metadata("bad key", "b")
                .error()
                .is_some()
        );
        assert!(CallOptions::new().metadata("x-a", "é").error().is_some());
        assert!(
            CallOptions::new()
                .binary_metadata("x-a", b"b")
                .error()
                .is_some()
        );
        assert!(
            CallOptions::new()
                .metadata("content-type", "x")
                .error()
                .is_some()
        );
        assert!(
            CallOptions::new()
                .metadata("grpc-timeout", "1S")
                .error()
                .is_some()
        );
        let ok = CallOptions::new().binary_metadata("x-a-bin", &[0xff, 0]);
        assert_eq!(ok.metadata["x-a-bin"], "/wA");
    }
}
