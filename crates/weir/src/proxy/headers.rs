//! Request headers on their way upstream.

use std::time::Duration;

use http::HeaderMap;
use http::header::HeaderValue;
use weir_codec::timeout;

/// Forwards the time left.
pub(super) fn set_timeout(headers: &mut HeaderMap, left: Duration) {
    if let Ok(value) = HeaderValue::try_from(timeout::format(left)) {
        headers.insert(crate::names::GRPC_TIMEOUT, value);
    }
}
