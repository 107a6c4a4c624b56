//! gRPC length-prefixed frames.
//!
//! Every message of gRPC, gRPC-Web (binary) and weir's WebTransport mapping travels as one
//! frame: a flags byte, a 4-byte big-endian length, then that many bytes of payload
//! ([gRPC over HTTP/2, "Length-Prefixed-Message"][spec]). gRPC-Web adds one flag: bit 7 (`0x80`)
//! marks the trailer block at the end of a response body ([gRPC-Web protocol][web]).
//!
//! [`FrameDecoder`] is incremental: feed it the body in whatever chunks the transport delivers,
//! and it yields whole frames. The length is checked against the configured maximum as soon as
//! the 5-byte header is complete, *before* any of the payload is buffered, so a peer cannot make
//! the decoder allocate more than the limit.
//!
//! [spec]: https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md
//! [web]: https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-WEB.md

use std::collections::VecDeque;
use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

/// Length of the frame header: one flags byte and a 4-byte big-endian length.
pub const HEADER_LEN: usize = 5;

/// Flag bit 0: the payload is compressed with the call's `grpc-encoding`.
pub const FLAG_COMPRESSED: u8 = 0x01;
/// Flag bit 7: the frame carries the gRPC-Web trailer block, not a message.
pub const FLAG_TRAILERS: u8 = 0x80;
/// Flag bit 6: weir's heartbeat frame, with no payload, only in response bodies of calls that
/// asked for heartbeats (`docs/protocol/heartbeat.md`).
pub const FLAG_HEARTBEAT: u8 = 0x40;

/// A frame whose flags byte is not allowed where it travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagError {
    flags: u8,
}

impl FlagError {
    /// The offending flags byte.
    pub fn flags(&self) -> u8 {
        self.flags
    }
}

impl fmt::Display for FlagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.flags {
            FLAG_TRAILERS => f.write_str(
                "trailer frame (flags 0x80) where only messages may travel: only servers end calls with trailers",
            ),
            flags => write!(
                f,
                "frame with reserved flags {flags:#04x}: a message frame's flags are 0x00 or 0x01 (compressed)"
            ),
        }
    }
}

impl std::error::Error for FlagError {}

/// Checks the flags of a frame that must carry a message: every frame of a request, in every
/// protocol weir speaks, and every frame of a native gRPC response body. Only bit 0
/// (compressed) may be set; the gRPC specification reserves the others, and a peer that
/// ignores them could read a trailer block or heartbeat as a message.
pub fn check_message_flags(flags: u8) -> Result<(), FlagError> {
    if flags & !FLAG_COMPRESSED == 0 {
        Ok(())
    } else {
        Err(FlagError { flags })
    }
}

/// What a frame carries, from its flags byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A message (possibly compressed; see [`Frame::is_compressed`]).
    Message,
    /// The gRPC-Web trailer block (`0x80`).
    Trailers,
}

/// One decoded frame: its flags byte and its payload, and the bytes it arrived as.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    flags: u8,
    payload: Bytes,
    /// Header and payload as on the wire, kept so that splicing a frame costs no copy.
    wire: Bytes,
}

impl Frame {
    /// A frame with the given flags byte and payload.
    pub fn new(flags: u8, payload: Bytes) -> Self {
        let mut out = BytesMut::with_capacity(HEADER_LEN + payload.len());
        encode_header(flags, payload.len(), &mut out);
        out.extend_from_slice(&payload);
        let wire = out.freeze();
        Frame {
            flags,
            payload: wire.slice(HEADER_LEN..),
            wire,
        }
    }

    /// A frame from its wire bytes; the caller checked that they hold exactly one frame.
    fn from_wire(wire: Bytes) -> Self {
        Frame {
            flags: wire[0],
            payload: wire.slice(HEADER_LEN..),
            wire,
        }
    }

    /// The raw flags byte.
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether this frame is a message or the trailer block.
    pub fn kind(&self) -> FrameKind {
        if self.flags & FLAG_TRAILERS != 0 {
            FrameKind::Trailers
        } else {
            FrameKind::Message
        }
    }

    /// Whether the compressed bit is set.
    pub fn is_compressed(&self) -> bool {
        self.flags & FLAG_COMPRESSED != 0
    }

    /// The payload, without the 5-byte header.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Takes the payload out of the frame.
    pub fn into_payload(self) -> Bytes {
        self.payload
    }

    /// The frame as it goes on the wire: header followed by payload (no copy).
    pub fn encode(&self) -> Bytes {
        self.wire.clone()
    }

    /// Takes the wire bytes out of the frame.
    pub fn into_wire(self) -> Bytes {
        self.wire
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("flags", &format_args!("{:#04x}", self.flags))
            .field("len", &self.payload.len())
            .finish()
    }
}

/// Writes a frame header for a payload of `len` bytes.
///
/// # Panics
/// If `len` does not fit in 32 bits; gRPC cannot express such a frame, and every limit in weir
/// is far below it.
pub fn encode_header(flags: u8, len: usize, dst: &mut BytesMut) {
    let len = u32::try_from(len).unwrap_or_else(|_| panic!("frame of {len} bytes exceeds 4 GiB"));
    dst.reserve(HEADER_LEN);
    dst.put_u8(flags);
    dst.put_u32(len);
}

/// Encodes an uncompressed message frame.
pub fn encode_message(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER_LEN + payload.len());
    encode_header(0, payload.len(), &mut out);
    out.extend_from_slice(payload);
    out.freeze()
}

/// Why a byte stream is not a valid sequence of frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// A frame announced a payload larger than the decoder's limit.
    TooLarge {
        /// The announced payload length.
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A frame's flags are not allowed where it travels (see [`check_message_flags`]); only a
    /// decoder made with [`FrameDecoder::messages`] reports this.
    Flags(FlagError),
    /// The stream ended inside a frame.
    Truncated {
        /// Bytes of the incomplete frame that were received.
        received: usize,
        /// Bytes the frame needed (header and payload), when the header was complete.
        expected: Option<usize>,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { len, limit } => write!(
                f,
                "message of {len} bytes exceeds the {limit}-byte limit (max_message_size)"
            ),
            FrameError::Flags(e) => e.fmt(f),
            FrameError::Truncated {
                received,
                expected: Some(expected),
            } => write!(
                f,
                "stream ended inside a frame: {received} of {expected} bytes received"
            ),
            FrameError::Truncated {
                received,
                expected: None,
            } => write!(
                f,
                "stream ended inside a frame header: {received} of {HEADER_LEN} bytes received"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// Incremental decoder of length-prefixed frames.
///
/// Chunks are kept as they arrive ([`Bytes`] are reference counted), so a frame that lies
/// within one chunk is handed out as a slice of it without copying; only a frame that spans
/// chunks is gathered into a new buffer.
#[derive(Debug)]
pub struct FrameDecoder {
    chunks: VecDeque<Bytes>,
    buffered: usize,
    max_message_size: usize,
    /// Payload length of the frame whose header has been checked, while its bytes arrive.
    header: Option<usize>,
    /// Whether every frame must be a message ([`check_message_flags`]).
    messages_only: bool,
}

impl FrameDecoder {
    /// A decoder that refuses payloads longer than `max_message_size` bytes.
    pub fn new(max_message_size: usize) -> Self {
        FrameDecoder {
            chunks: VecDeque::new(),
            buffered: 0,
            max_message_size,
            header: None,
            messages_only: false,
        }
    }

    /// A decoder of frames that must all carry messages — every request body, and native gRPC
    /// response bodies: a frame with any flag but bit 0 (compressed) is
    /// [`FrameError::Flags`], reported as soon as its 5-byte header arrives.
    pub fn messages(max_message_size: usize) -> Self {
        FrameDecoder {
            messages_only: true,
            ..FrameDecoder::new(max_message_size)
        }
    }

    /// The configured payload limit.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// Appends received bytes.
    pub fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.buffered += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    /// Bytes received but not yet returned as part of a frame.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Whether the decoder sits exactly on a frame boundary.
    pub fn is_at_boundary(&self) -> bool {
        self.buffered() == 0
    }

    /// Returns the next complete frame, `Ok(None)` if more bytes are needed.
    ///
    /// After an error the decoder's state is unspecified; the stream must be abandoned.
    pub fn decode(&mut self) -> Result<Option<Frame>, FrameError> {
        let len = match self.header {
            Some(len) => len,
            None => {
                if self.buffered < HEADER_LEN {
                    return Ok(None);
                }
                let mut head = [0u8; HEADER_LEN];
                self.peek(&mut head);
                let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
                if self.messages_only {
                    check_message_flags(head[0]).map_err(FrameError::Flags)?;
                }
                if len > self.max_message_size {
                    return Err(FrameError::TooLarge {
                        len,
                        limit: self.max_message_size,
                    });
                }
                self.header = Some(len);
                len
            }
        };
        if self.buffered < HEADER_LEN + len {
            return Ok(None);
        }
        self.header = None;
        Ok(Some(Frame::from_wire(self.take(HEADER_LEN + len))))
    }

    /// Returns the next run of complete frames as their wire bytes, `Ok(None)` if more bytes
    /// are needed: for forwarding frames without looking at each one.
    ///
    /// A run is either every complete frame at the start of the oldest buffered chunk, handed
    /// out as one slice of that chunk without copying, or, when the next frame spans chunks,
    /// that one frame gathered into a new buffer. Calling this until it returns `Ok(None)`
    /// yields the same bytes, in order, as [`decode`](Self::decode) would frame by frame, and
    /// checks every frame against the limit the same way.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use weir_codec::frame::{FrameDecoder, encode_message};
    ///
    /// let mut wire = encode_message(b"one").to_vec();
    /// wire.extend_from_slice(&encode_message(b"two"));
    /// let wire = Bytes::from(wire);
    /// let mut decoder = FrameDecoder::new(1024);
    /// decoder.push(wire.slice(..12)); // "one" and the first four bytes of "two"
    /// assert_eq!(decoder.decode_run().unwrap(), Some(wire.slice(..8)));
    /// assert_eq!(decoder.decode_run().unwrap(), None);
    /// decoder.push(wire.slice(12..));
    /// assert_eq!(decoder.decode_run().unwrap(), Some(wire.slice(8..)));
    /// ```
    ///
    /// # Errors
    /// When the next frame announces a payload beyond the limit.
    pub fn decode_run(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.header.is_none()
            && let Some(front) = self.chunks.front()
        {
            let mut end = 0;
            while let Some(head) = front.get(end..end + HEADER_LEN) {
                let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
                if len > self.max_message_size
                    || front.len() - end - HEADER_LEN < len
                    || (self.messages_only && check_message_flags(head[0]).is_err())
                {
                    // decode() below reports a bad frame once the run before it is out.
                    break;
                }
                end += HEADER_LEN + len;
            }
            if end > 0 {
                return Ok(Some(self.take(end)));
            }
        }
        Ok(self.decode()?.map(Frame::into_wire))
    }

    /// The flags and payload length of the next frame, as soon as its 5-byte header has
    /// arrived (before its payload): lets a receiver refuse a frame it does not want without
    /// buffering it. Does not check the length against the limit.
    pub fn peek_header(&self) -> Option<(u8, usize)> {
        if self.buffered < HEADER_LEN {
            return None;
        }
        let mut head = [0u8; HEADER_LEN];
        self.peek(&mut head);
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        Some((head[0], len))
    }

    /// Takes every buffered byte out, whole frames or not, leaving the decoder empty: for a
    /// receiver that hands the rest of a stream to another decoder (a WebTransport request
    /// body after its header block).
    pub fn take_buffered(&mut self) -> Bytes {
        self.header = None;
        let n = self.buffered;
        self.take(n)
    }

    /// Checks that the stream ended on a frame boundary.
    pub fn finish(&self) -> Result<(), FrameError> {
        match self.header {
            Some(len) => Err(FrameError::Truncated {
                received: self.buffered,
                expected: Some(HEADER_LEN + len),
            }),
            None if self.buffered > 0 => Err(FrameError::Truncated {
                received: self.buffered,
                expected: None,
            }),
            None => Ok(()),
        }
    }

    /// Copies the first `dst.len()` buffered bytes without consuming them.
    fn peek(&self, dst: &mut [u8]) {
        let mut filled = 0;
        for chunk in &self.chunks {
            let n = chunk.len().min(dst.len() - filled);
            dst[filled..filled + n].copy_from_slice(&chunk[..n]);
            filled += n;
            if filled == dst.len() {
                break;
            }
        }
    }

    /// Removes `n` buffered bytes (the caller checked that they are there).
    fn take(&mut self, n: usize) -> Bytes {
        self.buffered -= n;
        if n == 0 {
            return Bytes::new();
        }
        if let Some(front) = self.chunks.front_mut() {
            if front.len() > n {
                return front.split_to(n);
            }
            if front.len() == n {
                return self.chunks.pop_front().unwrap_or_default();
            }
        }
        let mut out = BytesMut::with_capacity(n);
        while out.len() < n {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            let want = n - out.len();
            if front.len() > want {
                out.extend_from_slice(&front.split_to(want));
            } else {
                out.extend_from_slice(front);
                self.chunks.pop_front();
            }
        }
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_only_decoder() {
        let mut wire = encode_message(b"ok").to_vec();
        wire.extend_from_slice(&[0x02, 0, 0, 0, 1, 7]);
        let mut decoder = FrameDecoder::messages(16);
        decoder.push(Bytes::from(wire));
        assert_eq!(decoder.decode_run().unwrap().map(|b| b.len()), Some(7));
        match decoder.decode_run() {
            Err(FrameError::Flags(e)) => assert_eq!(e.flags(), 0x02),
            other => panic!("{other:?}"),
        }
        let mut plain = FrameDecoder::new(16);
        plain.push(Bytes::from_static(&[0x02, 0, 0, 0, 0]));
        assert!(plain.decode().unwrap().is_some());
    }

    #[test]
    fn message_flags() {
        assert_eq!(check_message_flags(0x00), Ok(()));
        assert_eq!(check_message_flags(0x01), Ok(()));
        for flags in [0x02, 0x40, 0x80, 0x81, 0xff] {
            assert_eq!(
                check_message_flags(flags).map_err(|e| e.flags()),
                Err(flags)
            );
        }
        assert!(
            check_message_flags(0x80)
                .unwrap_err()
                .to_string()
                .contains("trailer frame")
        );
    }
    use proptest::prelude::*;

    #[test]
    fn peek_header_before_the_payload() {
        let mut decoder = FrameDecoder::new(16);
        decoder.push(Bytes::from_static(&[0x80, 0, 0]));
        assert_eq!(decoder.peek_header(), None);
        decoder.push(Bytes::from_static(&[1, 0, 7]));
        assert_eq!(decoder.peek_header(), Some((0x80, 256)));
        assert_eq!(decoder.buffered(), 6);
    }

    fn decode_all(decoder: &mut FrameDecoder, chunks: &[&[u8]]) -> Result<Vec<Frame>, FrameError> {
        let mut frames = Vec::new();
        for chunk in chunks {
            decoder.push(Bytes::copy_from_slice(chunk));
            while let Some(frame) = decoder.decode()? {
                frames.push(frame);
            }
        }
        decoder.finish()?;
        Ok(frames)
    }

    #[test]
    fn one_byte_at_a_time() {
        let mut wire = encode_message(b"abc").to_vec();
        wire.extend_from_slice(&encode_message(b""));
        wire.extend_from_slice(
            &Frame::new(FLAG_TRAILERS, Bytes::from_static(b"x: y\r\n")).encode(),
        );
        let chunks: Vec<&[u8]> = wire.chunks(1).collect();
        let frames = decode_all(&mut FrameDecoder::new(100), &chunks).unwrap();
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].payload(), &b"abc"[..]);
        assert_eq!(frames[0].kind(), FrameKind::Message);
        assert_eq!(frames[1].payload().len(), 0);
        assert_eq!(frames[2].kind(), FrameKind::Trailers);
    }

    #[test]
    fn compressed_flag() {
        let wire = Frame::new(FLAG_COMPRESSED, Bytes::from_static(b"z")).encode();
        let frames = decode_all(&mut FrameDecoder::new(10), &[&wire]).unwrap();
        assert!(frames[0].is_compressed());
        assert_eq!(frames[0].kind(), FrameKind::Message);
    }

    #[test]
    fn limit_checked_before_payload_arrives() {
        let mut decoder = FrameDecoder::new(4);
        // Only the header: the limit must trip without waiting for the payload.
        decoder.push(Bytes::from_static(&[0, 0, 0, 0, 5]));
        assert_eq!(
            decoder.decode(),
            Err(FrameError::TooLarge { len: 5, limit: 4 })
        );
        // A limit-sized message is fine.
        let mut decoder = FrameDecoder::new(4);
        assert!(decode_all(&mut decoder, &[&encode_message(b"1234")]).is_ok());
    }

    #[test]
    fn huge_announced_length_does_not_allocate() {
        let mut decoder = FrameDecoder::new(4 * 1024 * 1024);
        decoder.push(Bytes::from_static(&[0, 0xff, 0xff, 0xff, 0xff]));
        assert!(matches!(decoder.decode(), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn truncation_is_reported() {
        let wire = encode_message(b"hello");
        let mut decoder = FrameDecoder::new(100);
        decoder.push(wire.slice(..3));
        assert_eq!(decoder.decode(), Ok(None));
        assert_eq!(
            decoder.finish(),
            Err(FrameError::Truncated {
                received: 3,
                expected: None
            })
        );
        decoder.push(wire.slice(3..7));
        assert_eq!(decoder.decode(), Ok(None));
        assert_eq!(
            decoder.finish(),
            Err(FrameError::Truncated {
                received: 7,
                expected: Some(10)
            })
        );
    }

    #[test]
    fn frame_within_one_chunk_is_not_copied() {
        let wire = encode_message(b"zero-copy");
        let mut decoder = FrameDecoder::new(100);
        decoder.push(wire.clone());
        let frame = decoder.decode().unwrap().unwrap();
        assert_eq!(frame.payload().as_ptr(), wire[HEADER_LEN..].as_ptr());
        assert_eq!(frame.encode().as_ptr(), wire.as_ptr());
    }

    #[test]
    fn run_stops_before_an_oversize_frame() {
        let mut wire = encode_message(b"ok").to_vec();
        wire.extend_from_slice(&encode_message(b"too long"));
        let mut decoder = FrameDecoder::new(4);
        decoder.push(Bytes::from(wire));
        assert_eq!(decoder.decode_run().unwrap(), Some(encode_message(b"ok")));
        assert_eq!(
            decoder.decode_run(),
            Err(FrameError::TooLarge { len: 8, limit: 4 })
        );
    }

    #[test]
    fn run_within_one_chunk_is_not_copied() {
        let mut wire = encode_message(b"a").to_vec();
        wire.extend_from_slice(&encode_message(b""));
        wire.extend_from_slice(&encode_message(b"bc")[..3]);
        let wire = Bytes::from(wire);
        let mut decoder = FrameDecoder::new(100);
        decoder.push(wire.clone());
        let run = decoder.decode_run().unwrap().unwrap();
        assert_eq!(run.len(), 11);
        assert_eq!(run.as_ptr(), wire.as_ptr());
        assert_eq!(decoder.buffered(), 3);
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_frames(
            messages in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..300)), 0..8),
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
        ) {
            let mut wire = Vec::new();
            for (flags, payload) in &messages {
                wire.extend_from_slice(&Frame::new(*flags, Bytes::copy_from_slice(payload)).encode());
            }
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
            points.push(0);
            points.push(wire.len());
            points.sort_unstable();
            let chunks: Vec<&[u8]> = points.windows(2).map(|w| &wire[w[0]..w[1]]).collect();
            let frames = decode_all(&mut FrameDecoder::new(1000), &chunks).unwrap();
            prop_assert_eq!(frames.len(), messages.len());
            for (frame, (flags, payload)) in frames.iter().zip(&messages) {
                prop_assert_eq!(frame.flags(), *flags);
                prop_assert_eq!(&frame.payload()[..], &payload[..]);
            }
        }

        #[test]
        fn runs_give_the_same_bytes_as_frames(
            sizes in proptest::collection::vec(0usize..40, 0..10),
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
        ) {
            let mut wire = Vec::new();
            for (i, size) in sizes.iter().enumerate() {
                wire.extend_from_slice(&encode_message(&vec![i as u8; *size]));
            }
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
            points.push(0);
            points.push(wire.len());
            points.sort_unstable();
            let mut decoder = FrameDecoder::new(64);
            let mut out = Vec::new();
            for w in points.windows(2) {
                decoder.push(Bytes::copy_from_slice(&wire[w[0]..w[1]]));
                while let Some(run) = decoder.decode_run().unwrap() {
                    prop_assert!(!run.is_empty());
                    out.extend_from_slice(&run);
                }
            }
            prop_assert!(decoder.finish().is_ok());
            prop_assert_eq!(out, wire);
        }
    }
}
