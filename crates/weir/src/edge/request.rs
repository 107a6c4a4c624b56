//! The request body at the edge: whole message frames, checked, on to the service.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame};
use weir_codec::Code;
use weir_codec::frame::FrameDecoder;

use crate::Status;
use crate::body::BoxError;
use crate::call::{CallFailure, Spliced};
use crate::status::StatusExt as _;

/// A request body as the service sees it: the client's gRPC frames, each checked (a message,
/// within the request limit), handed on whole as they arrive — a burst of small frames as one
/// chunk. A violation fails the body and is remembered as the call's failure, so that the
/// client gets the edge's reason rather than the service's view of a broken body.
pub struct RequestBody<B> {
    inner: B,
    /// Frames read before the service was called (see [`RequestBody::prefetch`]).
    prefetched: Option<Bytes>,
    frames: FrameDecoder,
    failure: CallFailure,
    done: bool,
}

impl<B> std::fmt::Debug for RequestBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBody")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<B> RequestBody<B> {
    pub(crate) fn new(inner: B, max_message_size: usize, failure: CallFailure) -> Self {
        RequestBody {
            inner,
            prefetched: None,
            frames: FrameDecoder::messages(max_message_size),
            failure,
            done: false,
        }
    }

    fn fail(&mut self, status: Status) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if status.code() != Code::Cancelled {
            tracing::info!(code = %status.code(), message = status.message(), "rejected request body");
        }
        self.failure.set(status.clone());
        self.done = true;
        Poll::Ready(Some(Err(crate::call::request_body_error(status))))
    }

    /// Whole frames now buffered, joined as they arrived.
    fn drain_frames(&mut self) -> Result<Option<Bytes>, Status> {
        let mut spliced = Spliced::default();
        while let Some(run) = self
            .frames
            .decode_run()
            .map_err(|e| Status::from_request_frame_error(&e))?
        {
            spliced.push(run);
        }
        Ok(spliced.into_bytes())
    }
}

impl<B> RequestBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    /// Reads up to the first whole frame (or the end of the body) before the service is
    /// called; a violation is returned, to refuse the call without calling the service.
    pub(crate) async fn prefetch(&mut self) -> Result<(), Status> {
        use http_body_util::BodyExt as _;
        match self.frame().await {
            Some(Ok(frame)) => {
                self.prefetched = frame.into_data().ok();
                Ok(())
            }
            Some(Err(_)) => Err(self
                .failure
                .get()
                .unwrap_or_else(|| Status::new(Code::Cancelled, "request body failed"))),
            None => Ok(()),
        }
    }
}

/// The status of a failed request body: the front door's own verdict when it gave one (a
/// `grpc-web-text` body that is not base64), else the client gave up.
fn status_of(err: BoxError) -> Status {
    match err.downcast::<Status>() {
        Ok(status) => *status,
        Err(err) => Status::new(Code::Cancelled, format!("request body failed: {err}")),
    }
}

impl<B> Body for RequestBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(frames) = this.prefetched.take() {
            return Poll::Ready(Some(Ok(Frame::data(frames))));
        }
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    // Requests carry no trailers in gRPC; anything but data is ignored.
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    this.frames.push(data);
                    match this.drain_frames() {
                        Ok(Some(frames)) => return Poll::Ready(Some(Ok(Frame::data(frames)))),
                        Ok(None) => continue,
                        Err(status) => return this.fail(status),
                    }
                }
                Some(Err(e)) => return this.fail(status_of(e.into())),
                None => {
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
        self.done && self.prefetched.is_none()
    }
}
