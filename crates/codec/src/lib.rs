//! Sans-IO wire formats for weir: every byte format weir speaks, with no I/O and no runtime.
//!
//! This crate is to weir what `quinn-proto` is to `quinn`: bytes in, events out. Each wire
//! concept lives in its own module, so "where are trailers parsed?" is answered by the file
//! list:
//!
//! | module | wire concept |
//! |---|---|
//! | [`frame`] | gRPC length-prefixed messages (5-byte header), shared by gRPC, gRPC-Web and WebTransport |
//! | [`trailers`] | the gRPC-Web trailer block carried in a `0x80` frame |
//! | [`text`] | `grpc-web-text`: streaming base64 in both directions |
//! | [`grpc_web`] | the gRPC-Web response: head rules, the body decoder (messages, heartbeats, trailer block) and encoder |
//! | [`content_type`] | `application/grpc`, `application/grpc-web`, `application/grpc-web-text` and their suffixes |
//! | [`metadata`] | metadata keys and values: ASCII and base64 `-bin` values, reserved names |
//! | [`timeout`] | `grpc-timeout` parsing and formatting |
//! | [`status`] | [`Status`] and its codes, HTTP-status and HTTP/2-reset mapping, `grpc-message` percent-encoding |
//! | [`webtransport`] | weir's WebTransport mapping: stream error codes in HTTP/3's reserved range, request and response header blocks ([`webtransport::head`]), the discovery document ([`webtransport::discovery`], serde with the `serde` feature) |
//!
//! # Example: decode a gRPC-Web response body delivered in arbitrary chunks
//!
//! ```
//! use bytes::Bytes;
//! use weir_codec::frame::{encode_message, FrameDecoder, FrameKind};
//! use weir_codec::trailers;
//!
//! let mut body = Vec::new();
//! body.extend_from_slice(&encode_message(b"hello"));
//! let mut t = http::HeaderMap::new();
//! t.insert("grpc-status", http::HeaderValue::from_static("0"));
//! body.extend_from_slice(&trailers::encode_frame(&t));
//!
//! let mut decoder = FrameDecoder::new(4 * 1024 * 1024);
//! let mut seen = Vec::new();
//! for chunk in body.chunks(3) {
//!     decoder.push(Bytes::copy_from_slice(chunk));
//!     while let Some(frame) = decoder.decode()? {
//!         seen.push(frame);
//!     }
//! }
//! decoder.finish()?;
//! assert_eq!(seen[0].payload(), &b"hello"[..]);
//! assert_eq!(seen[1].kind(), FrameKind::Trailers);
//! let parsed = trailers::decode(seen[1].payload())?;
//! assert_eq!(parsed["grpc-status"], "0");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

pub mod content_type;
pub mod frame;
pub mod grpc_web;
pub mod metadata;
pub mod status;
pub mod text;
pub mod timeout;
pub mod trailers;
pub mod webtransport;

pub use status::{Code, Status};
