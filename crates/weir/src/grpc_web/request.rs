//! Request side: a gRPC-Web request body becomes a native gRPC one.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame};
use weir_codec::Code;
use weir_codec::frame::{FrameDecoder, FrameKind};
use weir_codec::text::TextDecoder;

use super::{CallFailure, Spliced};
use crate::Status;
use crate::body::{BoxBody, BoxError};
use crate::call::Leftover;
use crate::status::StatusExt as _;

/// Decodes base64 in text mode, checks every frame against the limit and the framing rules,
/// and hands whole frames to the service as they arrive.
pub(crate) struct RequestBody {
    /// Taken out only on drop, to hand an unfinished body to [`Leftover`].
    inner: Option<BoxBody>,
    leftover: Leftover,
    text: Option<TextDecoder>,
    frames: FrameDecoder,
    failure: CallFailure,
    done: bool,
}

impl RequestBody {
    pub(crate) fn new(
        inner: BoxBody,
        text: bool,
        max_message_size: usize,
        failure: CallFailure,
        leftover: Leftover,
    ) -> Self {
        RequestBody {
            inner: Some(inner),
            leftover,
            text: text.then(TextDecoder::new),
            frames: FrameDecoder::new(max_message_size),
            failure,
            done: false,
        }
    }

    fn fail(&mut self, status: Status) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        tracing::info!(code = %status.code(), message = status.message(), "rejected gRPC-Web request body");
        self.failure.set(status.clone());
        self.done = true;
        Poll::Ready(Some(Err(crate::call::request_body_error(status))))
    }

    /// Whole frames now buffered, joined as they arrived.
    fn drain_frames(&mut self) -> Result<Option<Bytes>, Status> {
        let mut spliced = Spliced::default();
        while let Some(frame) = self
            .frames
            .decode()
            .map_err(|e| Status::from_request_frame_error(&e))?
        {
            if frame.kind() == FrameKind::Trailers {
                return Err(Status::new(
                    Code::Internal,
                    "request carried a trailer frame (flag 0x80); only servers send trailers",
                ));
            }
            spliced.push(frame.into_wire());
        }
        Ok(spliced.into_bytes())
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let Some(inner) = this.inner.as_mut() else {
                return Poll::Ready(None);
            };
            match ready!(Pin::new(inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    // gRPC-Web requests have no trailers; anything but data is ignored.
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    let data = match &mut this.text {
                        Some(decoder) => match decoder.decode(&data) {
                            Ok(decoded) => decoded,
                            Err(e) => {
                                return this.fail(Status::new(
                                    Code::Internal,
                                    format!("grpc-web-text request body: {e}"),
                                ));
                            }
                        },
                        None => data,
                    };
                    this.frames.push(data);
                    match this.drain_frames() {
                        Ok(Some(frames)) => return Poll::Ready(Some(Ok(Frame::data(frames)))),
                        Ok(None) => continue,
                        Err(status) => return this.fail(status),
                    }
                }
                Some(Err(e)) => {
                    // The client went away or broke the connection; it will not read a status.
                    return this.fail(Status::new(
                        Code::Cancelled,
                        format!("request body failed: {e}"),
                    ));
                }
                None => {
                    let text_end = this.text.as_ref().map_or(Ok(()), TextDecoder::finish);
                    if let Err(e) = text_end {
                        return this.fail(Status::new(
                            Code::Internal,
                            format!("grpc-web-text request body: {e}"),
                        ));
                    }
                    if let Err(e) = this.frames.finish() {
                        return this.fail(Status::from_request_frame_error(&e));
                    }
                    this.done = true;
                    return Poll::Ready(None);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        if !self.done
            && let Some(inner) = self.inner.take()
        {
            self.leftover.put(inner);
        }
    }
}
