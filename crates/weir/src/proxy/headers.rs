//! Request headers on their way upstream.

use std::time::Duration;

use http::HeaderMap;
use http::header::HeaderValue;
use weir_codec::{Code, timeout};

use crate::Status;

/// The call's timeout: `grpc-timeout` capped by `max`, or `max` when the client sent none.
pub(super) fn deadline(
    headers: &HeaderMap,
    max: Option<Duration>,
) -> Result<Option<Duration>, Status> {
    let asked = headers
        .get(&crate::names::GRPC_TIMEOUT)
        .map(|value| timeout::parse(value.as_bytes()))
        .transpose()
        .map_err(|e| Status::new(Code::Internal, e.to_string()))?;
    Ok(match (asked, max) {
        (Some(asked), Some(max)) => Some(asked.min(max)),
        (asked, max) => asked.or(max),
    })
}

/// Forwards the time left.
pub(super) fn set_timeout(headers: &mut HeaderMap, left: Duration) {
    if let Ok(value) = HeaderValue::try_from(timeout::format(left)) {
        headers.insert(crate::names::GRPC_TIMEOUT, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_are_capped() {
        let mut h = HeaderMap::new();
        assert_eq!(deadline(&h, None), Ok(None));
        assert_eq!(
            deadline(&h, Some(Duration::from_secs(5))),
            Ok(Some(Duration::from_secs(5)))
        );
        h.insert("grpc-timeout", HeaderValue::from_static("10S"));
        assert_eq!(
            deadline(&h, Some(Duration::from_secs(5))),
            Ok(Some(Duration::from_secs(5)))
        );
        assert_eq!(deadline(&h, None), Ok(Some(Duration::from_secs(10))));
        h.insert("grpc-timeout", HeaderValue::from_static("10x"));
        assert_eq!(deadline(&h, None).unwrap_err().code(), Code::Internal);
    }
}
