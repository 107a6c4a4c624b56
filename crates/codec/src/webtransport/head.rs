//! Header blocks of weir's WebTransport mapping (`docs/protocol/webtransport.md` §3.2–3.5).
//!
//! Browser WebTransport cannot send or read per-stream headers, so a call's headers and
//! trailers travel on the stream as header-block frames: flags `0x80`, then an HTTP/1-style
//! block of `name: value` lines, the same format as the gRPC-Web trailer block
//! ([`crate::trailers`]). The request's block also carries the method as the pseudo-header
//! `:path`, which [`http::HeaderMap`] cannot hold; [`RequestHead`] keeps it beside the map.
//!
//! This module checks syntax only. Policy (the content type, metadata validity, the timeout,
//! the size limit) is the receiver's.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderMap;

use crate::frame::{FLAG_TRAILERS, HEADER_LEN, encode_header};
use crate::trailers::{self, TrailerError};
use crate::{Code, Status};

/// The pseudo-header that names the method.
const PATH: &[u8] = b":path";

/// The first frame of a call: the method and the request metadata.
///
/// ```
/// use http::{HeaderMap, HeaderValue};
/// use weir_codec::webtransport::RequestHead;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("content-type", HeaderValue::from_static("application/grpc+proto"));
/// let head = RequestHead::new("/grpc.testing.TestService/UnaryCall", headers)?;
/// let frame = head.encode();
/// assert_eq!(frame[0], 0x80);
/// assert_eq!(RequestHead::decode(&frame[5..])?, head);
/// # Ok::<(), weir_codec::webtransport::HeadError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    path: String,
    headers: HeaderMap,
}

impl RequestHead {
    /// A request head for `path` (`/package.Service/Method`, checked with
    /// [`check_path`]) with these headers.
    pub fn new(path: impl Into<String>, headers: HeaderMap) -> Result<Self, HeadError> {
        let path = path.into();
        check_path(&path)?;
        Ok(RequestHead { path, headers })
    }

    /// The method's path, `/package.Service/Method`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The headers (request metadata, `content-type`, `grpc-timeout`, ...).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The headers, to change.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.headers
    }

    /// The path and the headers.
    pub fn into_parts(self) -> (String, HeaderMap) {
        (self.path, self.headers)
    }

    /// The whole header-block frame as the client writes it: flags `0x80`, length, then
    /// `:path` and the headers, one CRLF-ended line each.
    pub fn encode(&self) -> Bytes {
        let block = trailers::encode(&self.headers);
        let len = PATH.len() + 2 + self.path.len() + 2 + block.len();
        let mut out = BytesMut::with_capacity(HEADER_LEN + len);
        encode_header(FLAG_TRAILERS, len, &mut out);
        out.put_slice(PATH);
        out.put_slice(b": ");
        out.put_slice(self.path.as_bytes());
        out.put_slice(b"\r\n");
        out.put_slice(&block);
        out.freeze()
    }

    /// Decodes the payload of a request header-block frame (without the 5-byte frame header).
    ///
    /// Accepts `name:value` without the space and lines ended by a bare LF (§3.2); names
    /// must be lowercase, and the block must hold exactly one `:path`, well-formed, and no
    /// other pseudo-header (§3.3).
    pub fn decode(block: &[u8]) -> Result<RequestHead, HeadError> {
        let mut path = None;
        // The block without its `:path` line, which becomes an empty line (skipped by the
        // parser) so that line numbers in errors stay those of the block.
        let mut rest = Vec::with_capacity(block.len());
        for (index, line) in block.split_inclusive(|&b| b == b'\n').enumerate() {
            let trimmed = line.trim_ascii_start();
            let name_end = trimmed
                .get(1..)
                .and_then(|after| after.iter().position(|&b| b == b':'))
                .map_or(trimmed.len(), |i| i + 1);
            if trimmed[..name_end].iter().any(u8::is_ascii_uppercase) {
                return Err(HeadError::UppercaseName {
                    line: index + 1,
                    name: String::from_utf8_lossy(trimmed[..name_end].trim_ascii_end())
                        .into_owned(),
                });
            }
            if trimmed.first() != Some(&b':') {
                rest.extend_from_slice(line);
                continue;
            }
            let colon = trimmed[1..]
                .iter()
                .position(|&b| b == b':')
                .map_or(trimmed.len(), |i| i + 1);
            let name = trimmed[..colon].trim_ascii_end();
            if name != PATH {
                return Err(HeadError::PseudoHeader(
                    String::from_utf8_lossy(name).into_owned(),
                ));
            }
            let value = trimmed.get(colon + 1..).unwrap_or_default().trim_ascii();
            if path.is_some() {
                return Err(HeadError::DuplicatePath);
            }
            path = Some(String::from_utf8_lossy(value).into_owned());
            rest.push(b'\n');
        }
        let path = path.ok_or(HeadError::NoPath)?;
        check_path(&path)?;
        let headers = trailers::decode(&rest).map_err(HeadError::Block)?;
        Ok(RequestHead { path, headers })
    }
}

/// Checks that `path` is a gRPC method path: `/`, a non-empty service name, `/`, a non-empty
/// method name without `/`, and a valid URI path.
pub fn check_path(path: &str) -> Result<(), HeadError> {
    let shaped = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .is_some_and(|(service, method)| {
            !service.is_empty() && !method.is_empty() && !method.contains('/')
        });
    if !shaped {
        return Err(HeadError::NotMethodPath(path.to_owned()));
    }
    if http::uri::PathAndQuery::try_from(path).is_err() {
        return Err(HeadError::InvalidPath(path.to_owned()));
    }
    Ok(())
}

/// Decodes the payload of a response header block or trailer block (§3.2, §3.5): a block
/// with a name that is not lowercase, or a pseudo-header, is malformed; a client fails the
/// call with `INTERNAL` ([`HeadError::to_status`]).
pub fn decode_block(block: &[u8]) -> Result<HeaderMap, HeadError> {
    for (index, line) in block.split(|&b| b == b'\n').enumerate() {
        let trimmed = line.trim_ascii_start();
        let name = trimmed.split(|&b| b == b':').next().unwrap_or_default();
        if trimmed.first() == Some(&b':') {
            let name = trimmed[1..]
                .split(|&b| b == b':')
                .next()
                .unwrap_or_default();
            return Err(HeadError::PseudoHeader(format!(
                ":{}",
                String::from_utf8_lossy(name.trim_ascii_end())
            )));
        }
        if name.iter().any(u8::is_ascii_uppercase) {
            return Err(HeadError::UppercaseName {
                line: index + 1,
                name: String::from_utf8_lossy(name.trim_ascii_end()).into_owned(),
            });
        }
    }
    trailers::decode(block).map_err(HeadError::Block)
}

/// A response header block or trailer block as a whole frame: flags `0x80`, length, then the
/// headers (§3.5). The same bytes as a gRPC-Web trailer frame.
pub fn encode_block(headers: &HeaderMap) -> Bytes {
    trailers::encode_frame(headers)
}

/// Why a request header block is not well-formed. Each is `INTERNAL` ([`to_status`](Self::to_status)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// The block has no `:path`.
    NoPath,
    /// The block has more than one `:path`.
    DuplicatePath,
    /// The block has a pseudo-header other than `:path` (reserved, §3.3; a response block has
    /// none).
    PseudoHeader(String),
    /// A name has an uppercase letter (names must be lowercase, §3.2).
    UppercaseName {
        /// The line of the block, from 1.
        line: usize,
        /// The name as sent.
        name: String,
    },
    /// `:path` is not `/package.Service/Method`.
    NotMethodPath(String),
    /// `:path` has the shape of a method but is not a valid URI path.
    InvalidPath(String),
    /// The block does not parse.
    Block(TrailerError),
}

impl HeadError {
    /// The status a call with this request head ends with: `INTERNAL` and this error's
    /// message.
    pub fn to_status(&self) -> Status {
        Status::new(Code::Internal, self.to_string())
    }
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::NoPath => f.write_str("request header block has no :path"),
            HeadError::DuplicatePath => f.write_str("request header block has more than one :path"),
            HeadError::PseudoHeader(name) => {
                write!(f, "header block has the reserved pseudo-header {name:?}")
            }
            HeadError::NotMethodPath(path) => {
                write!(f, ":path {path:?} is not /package.Service/Method")
            }
            HeadError::InvalidPath(path) => write!(f, ":path {path:?} is not a valid path"),
            HeadError::UppercaseName { line, name } => write!(
                f,
                "header block, line {line}: the name {name:?} is not lowercase"
            ),
            HeadError::Block(e) => {
                write!(f, "header block, line {}: {}", e.line(), e.reason())
            }
        }
    }
}

impl std::error::Error for HeadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HeadError::Block(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};
    use proptest::prelude::*;

    #[test]
    fn decodes_what_clients_send() {
        let block = b":path: /grpc.testing.TestService/UnaryCall\r\ncontent-type: application/grpc+proto\r\ngrpc-timeout: 1S\r\nx-a: b\r\nx-a: c\r\n";
        let head = RequestHead::decode(block).unwrap();
        assert_eq!(head.path(), "/grpc.testing.TestService/UnaryCall");
        assert_eq!(head.headers()["content-type"], "application/grpc+proto");
        assert_eq!(head.headers().get_all("x-a").iter().count(), 2);
        assert_eq!(head.headers().len(), 4);
        // Tolerated: no space, bare LF, :path not first, no final line break.
        let head = RequestHead::decode(b"x-b:1\n  :path:/a.B/C  \nx-c: 2").unwrap();
        assert_eq!(head.path(), "/a.B/C");
        assert_eq!(head.headers()["x-b"], "1");
        assert_eq!(head.headers()["x-c"], "2");
        // The TypeScript client's encoding.
        let head = RequestHead::decode(b":path: /p.S/M\r\n").unwrap();
        assert!(head.headers().is_empty());
    }

    #[test]
    fn rejects_malformed_blocks() {
        type Case = (&'static [u8], &'static str);
        let cases: &[Case] = &[
            (b"", "request header block has no :path"),
            (
                b"content-type: application/grpc\r\n",
                "request header block has no :path",
            ),
            (
                b":path: /nope\r\ncontent-type: application/grpc\r\n",
                ":path \"/nope\" is not /package.Service/Method",
            ),
            (
                b":path: a.B/C\r\n",
                ":path \"a.B/C\" is not /package.Service/Method",
            ),
            (
                b":path: //C\r\n",
                ":path \"//C\" is not /package.Service/Method",
            ),
            (
                b":path: /a.B/\r\n",
                ":path \"/a.B/\" is not /package.Service/Method",
            ),
            (
                b":path: /a.B/C/D\r\n",
                ":path \"/a.B/C/D\" is not /package.Service/Method",
            ),
            (b":path\r\n", ":path \"\" is not /package.Service/Method"),
            (b":path: /a B/C\r\n", ":path \"/a B/C\" is not a valid path"),
            (
                b":path: /a.B/C\r\n:path: /a.B/D\r\n",
                "request header block has more than one :path",
            ),
            (
                b":path: /a.B/C\r\n:authority: x\r\n",
                "header block has the reserved pseudo-header \":authority\"",
            ),
            (
                b":path: /a.B/C\r\ngarbage\r\n",
                "header block, line 2: no ':' separator",
            ),
            (
                b":path: /a.B/C\r\nx: \x01\r\n",
                "header block, line 2: invalid value",
            ),
            (
                b":path: /a.B/C\r\nContent-Type: application/grpc\r\n",
                "header block, line 2: the name \"Content-Type\" is not lowercase",
            ),
            (
                b":PATH: /a.B/C\r\n",
                "header block, line 1: the name \":PATH\" is not lowercase",
            ),
            (
                b":path: /a.B/C\r\n:method: POST\r\n",
                "header block has the reserved pseudo-header \":method\"",
            ),
        ];
        for (block, message) in cases {
            let err = RequestHead::decode(block).unwrap_err();
            assert_eq!(
                err.to_string(),
                *message,
                "{}",
                String::from_utf8_lossy(block)
            );
            assert_eq!(err.to_status().code(), Code::Internal);
        }
        assert!(RequestHead::new("/nope", HeaderMap::new()).is_err());
        assert!(RequestHead::new("/a.B/C\r\nx: y", HeaderMap::new()).is_err());
    }

    #[test]
    fn response_blocks() {
        let block = decode_block(b"grpc-status: 0\r\nx-a:1\n").unwrap();
        assert_eq!(block["grpc-status"], "0");
        assert_eq!(block["x-a"], "1");
        assert_eq!(
            decode_block(b"grpc-status: 0\r\nGrpc-Message: x\r\n")
                .unwrap_err()
                .to_string(),
            "header block, line 2: the name \"Grpc-Message\" is not lowercase"
        );
        assert!(decode_block(b":status: 200\r\n").is_err());
        assert!(decode_block(b"garbage\r\n").is_err());
    }

    #[test]
    fn encodes_as_the_clients_did() {
        let mut headers = HeaderMap::new();
        headers.insert("x-a", HeaderValue::from_static("1"));
        let frame = RequestHead::new("/a.B/C", headers).unwrap().encode();
        assert_eq!(&frame[..5], &[0x80, 0, 0, 0, 23]);
        assert_eq!(&frame[5..], b":path: /a.B/C\r\nx-a: 1\r\n");
        assert_eq!(
            encode_block(&HeaderMap::new()),
            Bytes::from_static(&[0x80, 0, 0, 0, 0])
        );
    }

    proptest! {
        #[test]
        fn round_trip(
            service in "[a-zA-Z][a-zA-Z0-9_.]{0,20}",
            method in "[a-zA-Z][a-zA-Z0-9_]{0,20}",
            entries in proptest::collection::vec(("[a-z][a-z0-9-]{0,12}", "[!-~]([ -~]{0,20}[!-~])?"), 0..6),
        ) {
            let mut headers = HeaderMap::new();
            for (k, v) in &entries {
                headers.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
            }
            let head = RequestHead::new(format!("/{service}/{method}"), headers).unwrap();
            let frame = head.encode();
            prop_assert_eq!(frame.len() - HEADER_LEN, u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize);
            prop_assert_eq!(RequestHead::decode(&frame[HEADER_LEN..]).unwrap(), head);
        }

        #[test]
        fn never_panics(block in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(head) = RequestHead::decode(&block) {
                let frame = head.encode();
                prop_assert_eq!(RequestHead::decode(&frame[HEADER_LEN..]).unwrap(), head);
            }
        }
    }
}
