//! The gRPC-Web response, as a client reads it and a server writes it.
//!
//! A gRPC-Web response is an HTTP response whose head says whether a body follows, and whose
//! body is a sequence of frames ([`crate::frame`]) ending with the trailer block
//! ([`crate::trailers`]), in binary or as `grpc-web-text` base64 ([`crate::text`])
//! ([gRPC-Web protocol][web]). weir adds one frame type, the heartbeat (flags `0x40`, no
//! payload, `docs/protocol/heartbeat.md`).
//!
//! - [`ResponseHead::classify`] reads the head: a body follows, the call already ended
//!   ("trailers-only"), or the answer is not gRPC-Web at all.
//! - [`ResponseDecoder`] reads the body: bytes in, [`ResponseEvent`]s out, and every violation
//!   of the protocol as a [`ResponseError`] that [`ResponseError::to_status`] turns into the
//!   status every weir client reports for it.
//! - [`ResponseEncoder`] writes the body: frames, heartbeats and the trailer block, in either
//!   [`Mode`].
//!
//! ```
//! use bytes::Bytes;
//! use http::{HeaderMap, HeaderValue};
//! use weir_codec::frame::encode_message;
//! use weir_codec::grpc_web::{Mode, ResponseDecoder, ResponseEncoder, ResponseEvent};
//!
//! // The server side: a message, a heartbeat while idle, the trailer block.
//! let encoder = ResponseEncoder::new(Mode::Text);
//! let mut trailers = HeaderMap::new();
//! trailers.insert("grpc-status", HeaderValue::from_static("0"));
//! let mut body = Vec::new();
//! body.extend_from_slice(&encoder.frames(encode_message(b"hi")));
//! body.extend_from_slice(&encoder.heartbeat());
//! body.extend_from_slice(&encoder.trailers(&trailers));
//!
//! // The client side, fed in 3-byte chunks.
//! let mut decoder = ResponseDecoder::new(Mode::Text, 1024);
//! let mut events = Vec::new();
//! for chunk in body.chunks(3) {
//!     decoder.push(Bytes::copy_from_slice(chunk));
//!     while let Some(event) = decoder.decode()? {
//!         events.push(event);
//!     }
//! }
//! decoder.finish()?;
//! assert!(matches!(&events[0], ResponseEvent::Message(m) if m.payload() == &b"hi"[..]));
//! assert_eq!(events[1], ResponseEvent::Heartbeat);
//! assert!(matches!(&events[2], ResponseEvent::Trailers(t) if t["grpc-status"] == "0"));
//! # Ok::<(), weir_codec::grpc_web::ResponseError>(())
//! ```
//!
//! [web]: https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-WEB.md

use std::fmt;

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_TYPE;
use http::{HeaderMap, StatusCode};

use crate::content_type::{ContentType, Protocol};
use crate::frame::{
    FLAG_COMPRESSED, FLAG_HEARTBEAT, FLAG_TRAILERS, Frame, FrameDecoder, FrameError, HEADER_LEN,
};
use crate::text::{self, TextDecoder, TextError};
use crate::trailers::{self, TrailerError};
use crate::{Code, Status};

/// The heartbeat frame: flags `0x40`, no payload.
pub const HEARTBEAT_FRAME: [u8; HEADER_LEN] = [FLAG_HEARTBEAT, 0, 0, 0, 0];

/// The heartbeat frame as `grpc-web-text` sends it: one padded base64 unit.
pub const HEARTBEAT_TEXT: &[u8] = b"QAAAAAA=";

/// How a gRPC-Web body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// `application/grpc-web`: frames as they are.
    #[default]
    Binary,
    /// `application/grpc-web-text`: frames in base64.
    Text,
}

impl Mode {
    /// The mode of a gRPC-Web content type (`Binary` for native gRPC too).
    pub fn of(content_type: &ContentType) -> Mode {
        if content_type.is_text() {
            Mode::Text
        } else {
            Mode::Binary
        }
    }
}

/// What a gRPC-Web response head says about the call (see [`ResponseHead::classify`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseHead {
    /// A gRPC-Web response: the body follows, encoded in this mode; feed it to a
    /// [`ResponseDecoder`].
    Body(Mode),
    /// "Trailers-only": the call ended with the status in the headers, `OK` or not. The body
    /// carries nothing of the call. The status's metadata is the rest of the headers.
    TrailersOnly(Status),
    /// Not a gRPC-Web response: the call failed with this status, made by the client. When the
    /// HTTP status was 200, its metadata is the response's headers, so a client can tell
    /// what answered (a native gRPC server's `content-type: application/grpc`, say).
    Failed(Status),
}

impl ResponseHead {
    /// Reads a response head as weir's clients do.
    ///
    /// | head | outcome |
    /// |---|---|
    /// | HTTP status other than 200, `grpc-status` other than 0 in the headers | [`TrailersOnly`](Self::TrailersOnly) with that status |
    /// | HTTP status other than 200 otherwise | [`Failed`](Self::Failed), the code from [`Code::from_http_status`] |
    /// | 200, `grpc-status` in the headers (with any content type, or none) | [`TrailersOnly`](Self::TrailersOnly) |
    /// | 200, `application/grpc-web[-text][+codec]` | [`Body`](Self::Body) |
    /// | 200, any other content type | [`Failed`](Self::Failed) with `UNKNOWN` |
    ///
    /// ```
    /// use http::{HeaderMap, HeaderValue, StatusCode};
    /// use weir_codec::Code;
    /// use weir_codec::grpc_web::{Mode, ResponseHead};
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert("content-type", HeaderValue::from_static("application/grpc-web-text+proto"));
    /// assert_eq!(ResponseHead::classify(StatusCode::OK, &headers), ResponseHead::Body(Mode::Text));
    ///
    /// let ResponseHead::Failed(status) = ResponseHead::classify(StatusCode::NOT_FOUND, &headers) else {
    ///     unreachable!()
    /// };
    /// assert_eq!(status.code(), Code::Unimplemented);
    /// ```
    pub fn classify(status: StatusCode, headers: &HeaderMap) -> ResponseHead {
        let in_headers = Status::from_headers(headers);
        if status != StatusCode::OK {
            // A status in the headers wins: some servers answer trailers-only with an HTTP
            // error status.
            if let Some(status) = in_headers
                && !status.is_ok()
            {
                return ResponseHead::TrailersOnly(status);
            }
            return ResponseHead::Failed(Status::new(
                Code::from_http_status(status.as_u16()),
                format!("server answered HTTP {status} instead of gRPC-Web"),
            ));
        }
        if let Some(status) = in_headers {
            // Trailers-only answers need not repeat the content type.
            return ResponseHead::TrailersOnly(status);
        }
        let message = match headers.get(CONTENT_TYPE) {
            None => "server answered without a content type, not with gRPC-Web".to_owned(),
            Some(value) => {
                let shown = String::from_utf8_lossy(value.as_bytes());
                match ContentType::from_header(value) {
                    Some(ct) if ct.protocol() != Protocol::Grpc => {
                        return ResponseHead::Body(Mode::of(&ct));
                    }
                    Some(_) => format!(
                        "server answered with native gRPC ({shown}), not gRPC-Web: it is a gRPC \
                         server, which browsers and gRPC-Web clients reach through a gRPC-Web \
                         gateway"
                    ),
                    None => format!("server answered with content type {shown}, not gRPC-Web"),
                }
            }
        };
        ResponseHead::Failed(Status::new(Code::Unknown, message).with_metadata(headers.clone()))
    }
}

/// The status a trailer block ends a call with: its `grpc-status` (see
/// [`Status::from_headers`]), or `INTERNAL` when it has none.
pub fn trailer_status(block: &HeaderMap) -> Status {
    Status::from_headers(block)
        .unwrap_or_else(|| Status::new(Code::Internal, "trailer block without grpc-status"))
}

/// One thing a gRPC-Web response body carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseEvent {
    /// A message frame (flags `0x00`, or `0x01` when compressed:
    /// [`Frame::is_compressed`]).
    Message(Frame),
    /// A heartbeat frame (`0x40`, empty). It is not a message: clients skip it, or use it to
    /// tell an idle stream from a dead one.
    Heartbeat,
    /// The trailer block (`0x80`), decoded; nothing may follow it. It came from the body, or
    /// from HTTP trailers when the body had none ([`ResponseDecoder::push_trailers`]).
    Trailers(HeaderMap),
}

/// Why a gRPC-Web response body is broken. Every kind has one status, from
/// [`to_status`](Self::to_status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseError {
    /// A frame announced a payload over the decoder's limit (`RESOURCE_EXHAUSTED`). Checked on
    /// the frame header, before the payload is buffered.
    TooLarge {
        /// The announced payload length.
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A frame with flags gRPC-Web reserves: anything but `0x00`, `0x01`, `0x40` and `0x80`
    /// (`INTERNAL`).
    ReservedFlags {
        /// The flags byte.
        flags: u8,
    },
    /// A heartbeat frame with a payload (`INTERNAL`).
    HeartbeatPayload {
        /// The payload length.
        len: usize,
    },
    /// A trailer block that does not parse (`INTERNAL`).
    Trailers(TrailerError),
    /// Bytes after the trailer block (`INTERNAL`).
    AfterTrailers,
    /// A `grpc-web-text` body that is not base64, or ends inside a 4-character group
    /// (`INTERNAL`).
    Text(TextError),
    /// The body ended inside a frame (`INTERNAL`).
    Truncated {
        /// Bytes of the incomplete frame that were received.
        received: usize,
        /// Bytes the frame needed (header and payload), when its header was complete.
        expected: Option<usize>,
    },
    /// The body ended without a trailer block, so without a status (`INTERNAL`): never
    /// success.
    MissingTrailers,
}

impl ResponseError {
    /// The status code of this error: `RESOURCE_EXHAUSTED` for a message over the limit,
    /// `INTERNAL` for every protocol violation.
    pub fn code(&self) -> Code {
        match self {
            ResponseError::TooLarge { .. } => Code::ResourceExhausted,
            _ => Code::Internal,
        }
    }

    /// The status a call that met this error ends with: [`code`](Self::code) and this error's
    /// message.
    pub fn to_status(&self) -> Status {
        Status::new(self.code(), self.to_string())
    }
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::TooLarge { len, limit } => write!(
                f,
                "response message of {len} bytes exceeds the {limit}-byte limit (max_message_size)"
            ),
            ResponseError::ReservedFlags { flags } => write!(
                f,
                "protocol error: response frame with reserved flags {flags:#04x} (gRPC-Web allows 0x00, 0x01, 0x80 and weir's heartbeat 0x40)"
            ),
            ResponseError::HeartbeatPayload { len } => write!(
                f,
                "protocol error: heartbeat frame (0x40) with a {len}-byte payload; heartbeats are empty"
            ),
            ResponseError::Trailers(e) => write!(f, "protocol error: response {e}"),
            ResponseError::AfterTrailers => {
                f.write_str("response body went on after the trailer frame")
            }
            ResponseError::Text(e) => write!(f, "grpc-web-text response: {e}"),
            ResponseError::Truncated { received, expected } => {
                let e = FrameError::Truncated {
                    received: *received,
                    expected: *expected,
                };
                write!(f, "response: {e}")
            }
            ResponseError::MissingTrailers => {
                f.write_str("response ended without a status (no trailer frame with grpc-status)")
            }
        }
    }
}

impl std::error::Error for ResponseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ResponseError::Trailers(e) => Some(e),
            ResponseError::Text(e) => Some(e),
            _ => None,
        }
    }
}

/// Incremental decoder of a gRPC-Web response body, in either [`Mode`].
///
/// Feed it the body as it arrives with [`push`](Self::push), take the events with
/// [`decode`](Self::decode) until it returns `Ok(None)`, and call [`finish`](Self::finish)
/// when the body ends. The events and the error, if any, are the same however the body is
/// chunked. Every frame header is checked as soon as it is complete, before its payload is
/// buffered: flags first, then the length against the limit.
///
/// Errors are final: once [`decode`](Self::decode) or [`finish`](Self::finish) returned one,
/// both return it again, and pushed bytes are ignored.
#[derive(Debug)]
pub struct ResponseDecoder {
    mode: Mode,
    text: TextDecoder,
    frames: FrameDecoder,
    /// An invalid `grpc-web-text` group, reported once the frames before it are out.
    deferred: Option<ResponseError>,
    /// HTTP trailers that ended the body, for when it carried no trailer block (boxed: rare,
    /// and a `HeaderMap` would double the decoder's size).
    http_trailers: Option<Box<HeaderMap>>,
    /// A trailer block was yielded.
    trailers_seen: bool,
    failed: Option<ResponseError>,
}

impl ResponseDecoder {
    /// A decoder for a body in `mode` that refuses frames longer than `max_message_size`
    /// bytes.
    pub fn new(mode: Mode, max_message_size: usize) -> Self {
        ResponseDecoder {
            mode,
            text: TextDecoder::new(),
            frames: FrameDecoder::new(max_message_size),
            deferred: None,
            http_trailers: None,
            trailers_seen: false,
            failed: None,
        }
    }

    /// The body's mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The configured payload limit.
    pub fn max_message_size(&self) -> usize {
        self.frames.max_message_size()
    }

    /// Whether the trailer block was yielded: the response is complete, and only the end of
    /// the body may follow.
    pub fn has_trailers(&self) -> bool {
        self.trailers_seen
    }

    /// Appends received body bytes.
    pub fn push(&mut self, chunk: Bytes) {
        if self.failed.is_some() || self.deferred.is_some() || chunk.is_empty() {
            return;
        }
        match self.mode {
            Mode::Binary => self.frames.push(chunk),
            Mode::Text => {
                let mut out = BytesMut::new();
                if let Err(e) = self.text.decode_into(&chunk, &mut out) {
                    self.deferred = Some(ResponseError::Text(e));
                }
                self.frames.push(out.freeze());
            }
        }
    }

    /// HTTP trailers arrived: the body is over. gRPC-Web puts the status in the body, but
    /// some servers and proxies send it as HTTP trailers; when the body carried no trailer
    /// block, [`decode`](Self::decode) yields these as [`ResponseEvent::Trailers`] once the
    /// frames before them are out (and the body ended on a frame boundary). When it did, they
    /// are ignored. Call [`finish`](Self::finish) afterwards as for any end of body.
    pub fn push_trailers(&mut self, trailers: HeaderMap) {
        if !self.trailers_seen && self.http_trailers.is_none() {
            self.http_trailers = Some(Box::new(trailers));
        }
    }

    /// The next event, `Ok(None)` when more bytes are needed (or the body is done).
    pub fn decode(&mut self) -> Result<Option<ResponseEvent>, ResponseError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let event = self.next_event();
        if let Err(e) = &event {
            self.failed = Some(e.clone());
        }
        event
    }

    fn next_event(&mut self) -> Result<Option<ResponseEvent>, ResponseError> {
        if self.trailers_seen {
            if !self.frames.is_at_boundary() {
                return Err(ResponseError::AfterTrailers);
            }
            return self.deferred.take().map_or(Ok(None), Err);
        }
        if let Some((flags, len)) = self.frames.peek_header() {
            match flags {
                0 | FLAG_COMPRESSED | FLAG_TRAILERS => {}
                FLAG_HEARTBEAT if len == 0 => {}
                FLAG_HEARTBEAT => return Err(ResponseError::HeartbeatPayload { len }),
                flags => return Err(ResponseError::ReservedFlags { flags }),
            }
        }
        match self.frames.decode() {
            Ok(Some(frame)) => match frame.flags() {
                FLAG_HEARTBEAT => Ok(Some(ResponseEvent::Heartbeat)),
                FLAG_TRAILERS => {
                    let block =
                        trailers::decode(frame.payload()).map_err(ResponseError::Trailers)?;
                    self.trailers_seen = true;
                    Ok(Some(ResponseEvent::Trailers(block)))
                }
                _ => Ok(Some(ResponseEvent::Message(frame))),
            },
            Ok(None) => {
                if let Some(e) = self.deferred.take() {
                    return Err(e);
                }
                if self.frames.is_at_boundary()
                    && let Some(block) = self.http_trailers.take()
                {
                    self.trailers_seen = true;
                    return Ok(Some(ResponseEvent::Trailers(*block)));
                }
                Ok(None)
            }
            Err(FrameError::TooLarge { len, limit }) => Err(ResponseError::TooLarge { len, limit }),
            Err(FrameError::Truncated { received, expected }) => {
                Err(ResponseError::Truncated { received, expected })
            }
            // This decoder's frames are not message-only; flags were judged above.
            Err(FrameError::Flags(e)) => Err(ResponseError::ReservedFlags { flags: e.flags() }),
        }
    }

    /// The body ended: checks that it ended complete, after its trailer block. Call it once
    /// [`decode`](Self::decode) returned `Ok(None)`.
    pub fn finish(&mut self) -> Result<(), ResponseError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let end = self.check_end();
        if let Err(e) = &end {
            self.failed = Some(e.clone());
        }
        end
    }

    fn check_end(&mut self) -> Result<(), ResponseError> {
        if let Some(e) = self.deferred.take() {
            return Err(e);
        }
        if self.trailers_seen && !self.frames.is_at_boundary() {
            return Err(ResponseError::AfterTrailers);
        }
        self.text.finish().map_err(ResponseError::Text)?;
        self.frames.finish().map_err(|e| match e {
            FrameError::Truncated { received, expected } => {
                ResponseError::Truncated { received, expected }
            }
            FrameError::TooLarge { len, limit } => ResponseError::TooLarge { len, limit },
            FrameError::Flags(e) => ResponseError::ReservedFlags { flags: e.flags() },
        })?;
        if !self.trailers_seen {
            return Err(ResponseError::MissingTrailers);
        }
        Ok(())
    }
}

/// Writes a gRPC-Web response body in either [`Mode`].
///
/// Each method returns one unit of the body, to be sent as it is: in binary mode the frames
/// themselves, in text mode their padded base64 (concatenated units are valid
/// `grpc-web-text`). The encoder keeps no state; what goes when (no frame after the trailer
/// block, heartbeats only between frames) is the caller's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ResponseEncoder {
    mode: Mode,
}

impl ResponseEncoder {
    /// An encoder for a body in `mode`.
    pub fn new(mode: Mode) -> Self {
        ResponseEncoder { mode }
    }

    /// The body's mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// A run of complete frames (header and payload each, as [`FrameDecoder::decode_run`]
    /// returns them): passed through in binary mode, without a copy.
    pub fn frames(&self, frames: Bytes) -> Bytes {
        match self.mode {
            Mode::Binary => frames,
            Mode::Text => text::encode(&frames),
        }
    }

    /// An uncompressed message frame with this payload.
    pub fn message(&self, payload: &[u8]) -> Bytes {
        self.frames(crate::frame::encode_message(payload))
    }

    /// A heartbeat frame.
    pub fn heartbeat(&self) -> Bytes {
        match self.mode {
            Mode::Binary => Bytes::from_static(&HEARTBEAT_FRAME),
            Mode::Text => Bytes::from_static(HEARTBEAT_TEXT),
        }
    }

    /// The trailer frame carrying `trailers`.
    pub fn trailers(&self, trailers: &HeaderMap) -> Bytes {
        self.frames(trailers::encode_frame(trailers))
    }

    /// The end of a body as one unit: `frames` (complete frames, possibly none) followed by
    /// the trailer frame.
    pub fn end(&self, frames: &[u8], trailers: &HeaderMap) -> Bytes {
        if frames.is_empty() {
            return self.trailers(trailers);
        }
        let block = trailers::encode_frame(trailers);
        let mut out = BytesMut::with_capacity(frames.len() + block.len());
        out.extend_from_slice(frames);
        out.extend_from_slice(&block);
        self.frames(out.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::encode_message;
    use http::HeaderValue;
    use proptest::prelude::*;

    /// Feeds `chunks` and ends the body: the events, and the error that stopped them.
    fn run(
        mode: Mode,
        limit: usize,
        chunks: &[&[u8]],
    ) -> (Vec<ResponseEvent>, Result<(), ResponseError>) {
        let mut decoder = ResponseDecoder::new(mode, limit);
        let mut events = Vec::new();
        for chunk in chunks {
            decoder.push(Bytes::copy_from_slice(chunk));
            loop {
                match decoder.decode() {
                    Ok(Some(event)) => events.push(event),
                    Ok(None) => break,
                    Err(e) => return (events, Err(e)),
                }
            }
        }
        (events, decoder.finish())
    }

    fn ok_trailers() -> HeaderMap {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_static("0"));
        t
    }

    fn frame(flags: u8, payload: &[u8]) -> Bytes {
        Frame::new(flags, Bytes::copy_from_slice(payload)).encode()
    }

    fn body(parts: &[Bytes]) -> Vec<u8> {
        parts.iter().flat_map(|p| p.iter().copied()).collect()
    }

    #[test]
    fn messages_heartbeats_and_trailers() {
        let wire = body(&[
            encode_message(b"one"),
            Bytes::from_static(&HEARTBEAT_FRAME),
            frame(FLAG_COMPRESSED, b"two"),
            trailers::encode_frame(&ok_trailers()),
        ]);
        for mode in [Mode::Binary, Mode::Text] {
            let input = match mode {
                Mode::Binary => wire.clone(),
                Mode::Text => text::encode(&wire).to_vec(),
            };
            let (events, end) = run(mode, 100, &input.chunks(1).collect::<Vec<_>>());
            assert_eq!(end, Ok(()));
            assert_eq!(events.len(), 4);
            let ResponseEvent::Message(one) = &events[0] else {
                panic!("{events:?}")
            };
            assert_eq!(one.payload(), &b"one"[..]);
            assert!(!one.is_compressed());
            assert_eq!(events[1], ResponseEvent::Heartbeat);
            let ResponseEvent::Message(two) = &events[2] else {
                panic!("{events:?}")
            };
            assert!(two.is_compressed());
            assert_eq!(events[3], ResponseEvent::Trailers(ok_trailers()));
        }
    }

    #[test]
    fn violations_and_their_statuses() {
        let trailer = trailers::encode_frame(&ok_trailers());
        type Case = (Vec<u8>, ResponseError, Code);
        let cases: Vec<Case> = vec![
            (
                body(&[frame(0x02, b"x")]),
                ResponseError::ReservedFlags { flags: 0x02 },
                Code::Internal,
            ),
            (
                body(&[frame(0x41, b"")]),
                ResponseError::ReservedFlags { flags: 0x41 },
                Code::Internal,
            ),
            (
                body(&[frame(0x81, b"")]),
                ResponseError::ReservedFlags { flags: 0x81 },
                Code::Internal,
            ),
            (
                body(&[frame(0xc0, b"")]),
                ResponseError::ReservedFlags { flags: 0xc0 },
                Code::Internal,
            ),
            (
                body(&[frame(0x40, b"xy")]),
                ResponseError::HeartbeatPayload { len: 2 },
                Code::Internal,
            ),
            (
                body(&[encode_message(&[7; 33])]),
                ResponseError::TooLarge { len: 33, limit: 32 },
                Code::ResourceExhausted,
            ),
            (
                body(&[trailer.clone(), encode_message(b"")]),
                ResponseError::AfterTrailers,
                Code::Internal,
            ),
            (
                body(&[trailer.clone(), Bytes::from_static(&HEARTBEAT_FRAME)]),
                ResponseError::AfterTrailers,
                Code::Internal,
            ),
            (
                body(&[trailer.clone(), Bytes::from_static(&[0])]),
                ResponseError::AfterTrailers,
                Code::Internal,
            ),
            (
                body(&[encode_message(b"ab")]),
                ResponseError::MissingTrailers,
                Code::Internal,
            ),
            (
                vec![0, 0, 0],
                ResponseError::Truncated {
                    received: 3,
                    expected: None,
                },
                Code::Internal,
            ),
            (
                vec![0, 0, 0, 0, 3, 1],
                ResponseError::Truncated {
                    received: 6,
                    expected: Some(8),
                },
                Code::Internal,
            ),
        ];
        for (input, error, code) in cases {
            let (_, end) = run(Mode::Binary, 32, &[&input]);
            assert_eq!(end, Err(error.clone()), "{input:?}");
            assert_eq!(error.to_status().code(), code);
            assert_eq!(error.to_status().message(), error.to_string());
        }
        // The flags are refused on the header, before any of the payload arrives.
        let mut decoder = ResponseDecoder::new(Mode::Binary, 1 << 20);
        decoder.push(Bytes::from_static(&[0x02, 0, 0x10, 0, 0]));
        assert_eq!(
            decoder.decode(),
            Err(ResponseError::ReservedFlags { flags: 0x02 })
        );
        // And the error stays.
        decoder.push(encode_message(b""));
        assert!(decoder.decode().is_err());
        assert!(decoder.finish().is_err());

        let (_, end) = run(Mode::Binary, 32, &[b"\x80\0\0\0\x05 oops"]);
        assert!(matches!(end, Err(ResponseError::Trailers(_))), "{end:?}");
    }

    #[test]
    fn messages() {
        assert_eq!(
            ResponseError::TooLarge { len: 9, limit: 4 }.to_string(),
            "response message of 9 bytes exceeds the 4-byte limit (max_message_size)"
        );
        assert!(
            ResponseError::MissingTrailers
                .to_string()
                .contains("without a status")
        );
        assert_eq!(
            ResponseError::Truncated {
                received: 7,
                expected: Some(10)
            }
            .to_string(),
            "response: stream ended inside a frame: 7 of 10 bytes received"
        );
    }

    #[test]
    fn text_errors_come_after_the_frames_before_them() {
        let mut input = text::encode(&encode_message(b"ok")).to_vec();
        input.extend_from_slice(b"!!!!");
        for at in 0..=input.len() {
            let (events, end) = run(Mode::Text, 100, &[&input[..at], &input[at..]]);
            assert_eq!(events.len(), 1, "split at {at}");
            let Err(ResponseError::Text(e)) = end else {
                panic!("{end:?}")
            };
            assert_eq!(e.offset(), 12);
        }
        // A body that ends inside a base64 group.
        let (_, end) = run(Mode::Text, 100, &[b"QAAAAAA=QQ"]);
        assert!(matches!(end, Err(ResponseError::Text(_))), "{end:?}");
    }

    #[test]
    fn http_trailers_when_the_body_has_none() {
        let mut decoder = ResponseDecoder::new(Mode::Binary, 100);
        decoder.push(encode_message(b"m"));
        decoder.push_trailers(ok_trailers());
        assert!(matches!(
            decoder.decode(),
            Ok(Some(ResponseEvent::Message(_)))
        ));
        assert_eq!(
            decoder.decode(),
            Ok(Some(ResponseEvent::Trailers(ok_trailers())))
        );
        assert_eq!(decoder.decode(), Ok(None));
        assert_eq!(decoder.finish(), Ok(()));

        // The body's block wins.
        let mut decoder = ResponseDecoder::new(Mode::Binary, 100);
        decoder.push(trailers::encode_frame(&ok_trailers()));
        assert!(matches!(
            decoder.decode(),
            Ok(Some(ResponseEvent::Trailers(_)))
        ));
        decoder.push_trailers(HeaderMap::new());
        assert_eq!(decoder.decode(), Ok(None));
        assert_eq!(decoder.finish(), Ok(()));

        // Trailers after half a frame: truncated.
        let mut decoder = ResponseDecoder::new(Mode::Binary, 100);
        decoder.push(Bytes::from_static(&[0, 0]));
        decoder.push_trailers(ok_trailers());
        assert_eq!(decoder.decode(), Ok(None));
        assert!(matches!(
            decoder.finish(),
            Err(ResponseError::Truncated { .. })
        ));
    }

    #[test]
    fn trailer_statuses() {
        assert!(trailer_status(&ok_trailers()).is_ok());
        let missing = trailer_status(&HeaderMap::new());
        assert_eq!(missing.code(), Code::Internal);
        assert_eq!(missing.message(), "trailer block without grpc-status");
    }

    #[test]
    fn heads() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.append(*k, HeaderValue::from_static(v));
            }
            h
        };
        let classify = |status: u16, pairs: &[(&'static str, &'static str)]| {
            ResponseHead::classify(StatusCode::from_u16(status).unwrap(), &headers(pairs))
        };
        let web = ("content-type", "application/grpc-web+proto");
        assert_eq!(classify(200, &[web]), ResponseHead::Body(Mode::Binary));
        assert_eq!(
            classify(200, &[("content-type", "application/grpc-web-text")]),
            ResponseHead::Body(Mode::Text)
        );
        let failed = |head: ResponseHead| match head {
            ResponseHead::Failed(status) => (status.code(), status.message().to_owned()),
            other => panic!("{other:?}"),
        };
        let only = |head: ResponseHead| match head {
            ResponseHead::TrailersOnly(status) => status,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            failed(classify(404, &[web])),
            (
                Code::Unimplemented,
                "server answered HTTP 404 Not Found instead of gRPC-Web".to_owned()
            )
        );
        assert_eq!(failed(classify(503, &[])).0, Code::Unavailable);
        assert_eq!(failed(classify(500, &[])).0, Code::Unknown);
        // HTTP error with a status in the headers: the status wins, unless it says OK.
        assert_eq!(
            only(classify(500, &[("grpc-status", "7")])).code(),
            Code::PermissionDenied
        );
        assert_eq!(
            failed(classify(500, &[("grpc-status", "0")])).0,
            Code::Unknown
        );
        // Not gRPC-Web.
        let (code, message) = failed(classify(200, &[("content-type", "text/html")]));
        assert_eq!(code, Code::Unknown);
        assert_eq!(
            message,
            "server answered with content type text/html, not gRPC-Web"
        );
        assert_eq!(failed(classify(200, &[])).0, Code::Unknown);
        let (code, message) = failed(classify(200, &[("content-type", "application/grpc")]));
        assert_eq!(code, Code::Unknown);
        assert!(
            message
                .starts_with("server answered with native gRPC (application/grpc), not gRPC-Web"),
            "{message}"
        );
        assert!(!message.contains("Some("), "{message}");
        // The headers come with the status, to tell what answered.
        let ResponseHead::Failed(status) =
            classify(200, &[("content-type", "application/grpc+proto")])
        else {
            panic!("not failed")
        };
        assert_eq!(
            status.metadata().get("content-type").unwrap(),
            "application/grpc+proto"
        );
        // Trailers-only, with or without a content type.
        let status = only(classify(
            200,
            &[
                ("grpc-status", "5"),
                ("grpc-message", "not%20here"),
                ("x-a", "1"),
            ],
        ));
        assert_eq!(
            (status.code(), status.message()),
            (Code::NotFound, "not here")
        );
        assert_eq!(status.metadata()["x-a"], "1");
        assert!(only(classify(200, &[web, ("grpc-status", "0")])).is_ok());
    }

    #[test]
    fn encoder() {
        let binary = ResponseEncoder::new(Mode::Binary);
        let text = ResponseEncoder::new(Mode::Text);
        assert_eq!(&binary.heartbeat()[..], &HEARTBEAT_FRAME);
        assert_eq!(text.heartbeat(), text::encode(&HEARTBEAT_FRAME));
        let run = encode_message(b"abc");
        assert_eq!(binary.frames(run.clone()).as_ptr(), run.as_ptr());
        assert_eq!(text.frames(run.clone()), text::encode(&run));
        assert_eq!(binary.message(b"abc"), run);
        let trailer = trailers::encode_frame(&ok_trailers());
        assert_eq!(binary.trailers(&ok_trailers()), trailer);
        assert_eq!(binary.end(&[], &ok_trailers()), trailer);
        assert_eq!(
            &binary.end(&run, &ok_trailers())[..],
            &body(&[run.clone(), trailer.clone()])[..]
        );
        assert_eq!(
            text.end(&run, &ok_trailers()),
            text::encode(&body(&[run, trailer]))
        );
    }

    /// One unit a server writes.
    #[derive(Debug, Clone)]
    enum Unit {
        Message(bool, Vec<u8>),
        Heartbeat,
    }

    fn unit() -> impl Strategy<Value = Unit> {
        prop_oneof![
            (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..60))
                .prop_map(|(c, p)| Unit::Message(c, p)),
            Just(Unit::Heartbeat),
        ]
    }

    fn split<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        points.push(0);
        points.push(input.len());
        points.sort_unstable();
        points.windows(2).map(|w| &input[w[0]..w[1]]).collect()
    }

    proptest! {
        #[test]
        fn encode_then_decode(
            units in proptest::collection::vec(unit(), 0..8),
            text_mode in any::<bool>(),
            status in 0u8..17,
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let mode = if text_mode { Mode::Text } else { Mode::Binary };
            let encoder = ResponseEncoder::new(mode);
            let mut wire = Vec::new();
            let mut want = Vec::new();
            for unit in &units {
                match unit {
                    Unit::Message(compressed, payload) => {
                        let f = Frame::new(u8::from(*compressed), Bytes::copy_from_slice(payload));
                        wire.extend_from_slice(&encoder.frames(f.encode()));
                        want.push(ResponseEvent::Message(f));
                    }
                    Unit::Heartbeat => {
                        wire.extend_from_slice(&encoder.heartbeat());
                        want.push(ResponseEvent::Heartbeat);
                    }
                }
            }
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from(u16::from(status)));
            wire.extend_from_slice(&encoder.trailers(&trailers));
            want.push(ResponseEvent::Trailers(trailers));
            let (events, end) = run(mode, 64, &split(&wire, &cuts));
            prop_assert_eq!(end, Ok(()));
            prop_assert_eq!(events, want);
        }

        #[test]
        fn any_split_gives_the_same_events(
            input in proptest::collection::vec(any::<u8>(), 0..200),
            text_mode in any::<bool>(),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let mode = if text_mode { Mode::Text } else { Mode::Binary };
            let whole = run(mode, 32, &[&input]);
            prop_assert_eq!(run(mode, 32, &split(&input, &cuts)), whole);
        }

        #[test]
        fn any_split_of_a_valid_body_with_garbage(
            units in proptest::collection::vec(unit(), 0..5),
            garbage in proptest::collection::vec(any::<u8>(), 0..12),
            text_mode in any::<bool>(),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            // Mostly valid input reaches deeper states than random bytes.
            let mode = if text_mode { Mode::Text } else { Mode::Binary };
            let encoder = ResponseEncoder::new(mode);
            let mut wire = Vec::new();
            for unit in &units {
                match unit {
                    Unit::Message(_, payload) => wire.extend_from_slice(&encoder.message(payload)),
                    Unit::Heartbeat => wire.extend_from_slice(&encoder.heartbeat()),
                }
            }
            wire.extend_from_slice(&encoder.trailers(&ok_trailers()));
            wire.extend_from_slice(&garbage);
            let whole = run(mode, 32, &[&wire]);
            prop_assert_eq!(run(mode, 32, &split(&wire, &cuts)), whole);
        }
    }
}
