//! The request body: one buffer, or messages framed as they come from a stream.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use futures_util::stream::BoxStream;
use http_body::{Body, Frame, SizeHint};
use weir_codec::frame::encode_header;

use crate::Mode;

/// A gRPC-Web request body.
pub struct RequestBody {
    kind: Kind,
}

enum Kind {
    Full(Option<Bytes>),
    Stream {
        messages: BoxStream<'static, Bytes>,
        mode: Mode,
    },
}

impl RequestBody {
    /// A body of already framed (and, in text mode, encoded) bytes.
    pub(crate) fn full(bytes: Bytes) -> Self {
        RequestBody {
            kind: Kind::Full(Some(bytes)),
        }
    }

    /// A body that frames each message of `messages` as it arrives.
    pub(crate) fn stream(messages: impl Stream<Item = Bytes> + Send + 'static, mode: Mode) -> Self {
        RequestBody {
            kind: Kind::Stream {
                messages: Box::pin(messages),
                mode,
            },
        }
    }
}

/// Appends one message frame, as `mode` sends it, to `out`.
pub(crate) fn push_frame(out: &mut BytesMut, message: &[u8], mode: Mode) {
    match mode {
        Mode::Binary => {
            encode_header(0, message.len(), out);
            out.extend_from_slice(message);
        }
        Mode::Text => {
            let mut frame = BytesMut::with_capacity(message.len() + 5);
            push_frame(&mut frame, message, Mode::Binary);
            out.extend_from_slice(&weir_codec::text::encode(&frame));
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.get_mut().kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream { messages, mode } => match messages.as_mut().poll_next(cx) {
                Poll::Ready(Some(message)) => {
                    let mut out = BytesMut::with_capacity(message.len() + 5);
                    push_frame(&mut out, &message, *mode);
                    Poll::Ready(Some(Ok(Frame::data(out.freeze()))))
                }
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.kind, Kind::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Stream { .. } => SizeHint::default(),
        }
    }
}
