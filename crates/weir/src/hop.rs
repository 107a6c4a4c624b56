//! Headers that belong to one hop and must not travel on to the service.

use http::header::{self, HeaderValue};
use http::{HeaderMap, HeaderName};

/// Headers of one hop in either direction: the hop-by-hop headers of RFC 9110 §7.6.1 and the
/// framing (`content-length`: bodies are re-framed, and a gRPC-Web or WebTransport body is a
/// different length).
const HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::TE,
    header::TRAILER,
    header::CONTENT_LENGTH,
];

/// What a client must not pass on besides [`HOP`]: the statuses only servers send, and weir's
/// own per-hop `weir-heartbeat` (docs/protocol/heartbeat.md; read before stripping).
const CLIENT_RESERVED: [HeaderName; 4] = [
    crate::names::GRPC_STATUS,
    crate::names::GRPC_MESSAGE,
    crate::names::GRPC_STATUS_DETAILS_BIN,
    crate::names::WEIR_HEARTBEAT,
];

/// Removes hop-by-hop and reserved headers, including every header that `Connection` names
/// (RFC 9110 §7.6.1), and sets `te: trailers` as gRPC requires.
pub(crate) fn strip_request(headers: &mut HeaderMap) {
    // One pass over the (few) headers present rather than a lookup per stripped name.
    let mut doomed: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        if HOP.contains(name) || CLIENT_RESERVED.contains(name) {
            doomed.push(name.clone());
        }
    }
    if doomed.contains(&header::CONNECTION) {
        remove_named_by_connection(headers);
    }
    for name in &doomed {
        headers.remove(name);
    }
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
}

/// Removes hop-by-hop and framing headers from a service's response head, including every
/// header that `Connection` names.
pub(crate) fn strip_response(headers: &mut HeaderMap) {
    let mut doomed: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        if HOP.contains(name) {
            doomed.push(name.clone());
        }
    }
    if doomed.is_empty() {
        return;
    }
    if doomed.contains(&header::CONNECTION) {
        remove_named_by_connection(headers);
    }
    for name in &doomed {
        headers.remove(name);
    }
}

/// Removes the headers that `Connection` names.
fn remove_named_by_connection(headers: &mut HeaderMap) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_reserved() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "close, X-Secret"),
            ("x-secret", "1"),
            ("te", "gzip"),
            ("host", "evil.example"),
            ("grpc-status", "0"),
            ("x-keep", "yes"),
            ("grpc-timeout", "1S"),
        ] {
            h.insert(
                header::HeaderName::from_static(k),
                HeaderValue::from_static(v),
            );
        }
        strip_request(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["grpc-timeout", "host", "te", "x-keep"]);
        assert_eq!(h["te"], "trailers");
    }
}
