//! The request head: size, metadata, hop-by-hop headers and the deadline, checked once.

use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName};
use http::request::Parts;
use weir_codec::Code;
use weir_codec::content_type::{ContentType, Protocol};
use weir_codec::{metadata, timeout};

use super::EdgeConfig;
use crate::Status;

/// Per-field overhead of the HTTP/2 header list size (RFC 9113 §6.5.2).
const FIELD_OVERHEAD: usize = 32;

/// The header list size of a request head as HTTP/2 counts it (RFC 9113 §6.5.2): name, value
/// and 32 bytes for every field, `:path` included. The one definition of "header size" in
/// weir, for every front door.
pub(crate) fn header_list_size(path: &str, headers: &HeaderMap) -> usize {
    let fields: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + FIELD_OVERHEAD)
        .sum();
    fields + ":path".len() + path.len() + FIELD_OVERHEAD
}

/// HTTP headers that are not call metadata and may hold values gRPC metadata forbids.
fn is_http_only(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "cookie" | "user-agent" | "referer" | "accept-language"
    )
}

/// Checks a call's head and prepares it for the service: returns the call's timeout (asked
/// for, capped by `max_call`), or the status that refuses the call.
pub(super) fn admit(parts: &mut Parts, config: &EdgeConfig) -> Result<Option<Duration>, Status> {
    let path = parts.uri.path();
    let size = header_list_size(path, &parts.headers);
    if size > config.max_header_list_size {
        return Err(Status::new(
            Code::ResourceExhausted,
            format!(
                "request headers of {size} bytes exceed the {}-byte limit (max_header_list_size)",
                config.max_header_list_size
            ),
        ));
    }
    let grpc = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(ContentType::from_header)
        .is_some_and(|ct| ct.protocol() == Protocol::Grpc);
    if !grpc {
        return Err(Status::new(
            Code::Internal,
            "a gRPC call needs content-type application/grpc[+proto|+json]",
        ));
    }
    crate::hop::strip_request(&mut parts.headers);
    for (name, value) in &parts.headers {
        if is_http_only(name) {
            continue;
        }
        metadata::validate(name, value).map_err(|e| Status::new(Code::Internal, e.to_string()))?;
    }
    let asked = parse_timeout(&parts.headers)?;
    Ok(match (asked, config.max_call) {
        (Some(asked), Some(max)) => Some(asked.min(max)),
        (asked, max) => asked.or(max),
    })
}

/// The `grpc-timeout` a call asked for; a malformed one is `INTERNAL` (the gRPC specification
/// leaves no room for guessing what the client meant).
pub(crate) fn parse_timeout(headers: &HeaderMap) -> Result<Option<Duration>, Status> {
    headers
        .get(&crate::names::GRPC_TIMEOUT)
        .map(|value| timeout::parse(value.as_bytes()))
        .transpose()
        .map_err(|e| Status::new(Code::Internal, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn parts(headers: &[(&'static str, &'static str)]) -> Parts {
        let mut request = http::Request::post("/a.B/C").body(()).unwrap();
        request.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        for (name, value) in headers {
            request
                .headers_mut()
                .append(*name, HeaderValue::from_static(value));
        }
        request.into_parts().0
    }

    #[test]
    fn deadlines_are_capped() {
        let capped = EdgeConfig::default().max_call(Some(Duration::from_secs(5)));
        assert_eq!(admit(&mut parts(&[]), &EdgeConfig::default()), Ok(None));
        assert_eq!(
            admit(&mut parts(&[]), &capped),
            Ok(Some(Duration::from_secs(5)))
        );
        let ten = [("grpc-timeout", "10S")];
        assert_eq!(
            admit(&mut parts(&ten), &capped),
            Ok(Some(Duration::from_secs(5)))
        );
        assert_eq!(
            admit(&mut parts(&ten), &EdgeConfig::default()),
            Ok(Some(Duration::from_secs(10)))
        );
        let bad = [("grpc-timeout", "10x")];
        assert_eq!(
            admit(&mut parts(&bad), &capped).unwrap_err().code(),
            Code::Internal
        );
    }

    #[test]
    fn heads_are_checked() {
        let bin = [("x-a-bin", "!!")];
        assert_eq!(
            admit(&mut parts(&bin), &EdgeConfig::default())
                .unwrap_err()
                .code(),
            Code::Internal
        );
        let small = EdgeConfig::default().max_header_list_size(100);
        let big = [("x-a", "0123456789012345678901234567890123456789")];
        let err = admit(&mut parts(&big), &small).unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted);
        let mut head = parts(&[("connection", "x-secret"), ("x-secret", "1")]);
        admit(&mut head, &EdgeConfig::default()).unwrap();
        assert!(!head.headers.contains_key("x-secret"));
        assert_eq!(head.headers["te"], "trailers");
    }
}
