//! Request headers on their way upstream.

use std::time::Duration;

use http::HeaderMap;
use http::header::{self, HeaderValue};
use weir_codec::{Code, timeout};

use crate::Status;

/// Headers a client must not pass to the upstream: hop-by-hop headers (RFC 9110 §7.6.1),
/// `host` (the upstream's authority replaces it), what only servers send, and
/// `weir-heartbeat`, which asks the gateway itself for heartbeats.
const STRIPPED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "host",
    "content-length",
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    "weir-heartbeat",
];

/// Removes hop-by-hop and reserved headers (including any named by `Connection`), and sets
/// `te: trailers` as gRPC requires.
pub(super) fn sanitize_request(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    for name in named {
        headers.remove(name.as_str());
    }
    for name in STRIPPED {
        headers.remove(*name);
    }
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
}

/// The call's timeout: `grpc-timeout` capped by `max`, or `max` when the client sent none.
pub(super) fn deadline(
    headers: &HeaderMap,
    max: Option<Duration>,
) -> Result<Option<Duration>, Status> {
    let asked = headers
        .get("grpc-timeout")
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
        headers.insert("grpc-timeout", value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_reserved() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "close, x-secret"),
            ("x-secret", "1"),
            ("te", "gzip"),
            ("host", "evil.example"),
            ("grpc-status", "0"),
            ("x-keep", "yes"),
            ("grpc-timeout", "1S"),
            ("weir-heartbeat", "1S"),
        ] {
            h.insert(
                header::HeaderName::from_static(k),
                HeaderValue::from_static(v),
            );
        }
        sanitize_request(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["grpc-timeout", "te", "x-keep"]);
        assert_eq!(h["te"], "trailers");
    }

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
