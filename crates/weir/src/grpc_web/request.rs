//! Request side: a gRPC-Web request body becomes a native gRPC one.
//!
//! Binary gRPC-Web bodies already are gRPC frames; text bodies are base64 of them. This body
//! only undoes the base64 and keeps what the service left unread for HTTP/1.1's lingering
//! close; the frames themselves are checked by the call edge ([`crate::edge::RequestBody`]).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame};
use weir_codec::Code;
use weir_codec::text::TextDecoder;

use crate::Status;
use crate::body::{BoxBody, BoxError};
use crate::call::Leftover;

/// The client's body, base64-decoded in text mode.
pub(crate) struct WebRequestBody {
    /// Taken out only on drop, to hand an unfinished body to [`Leftover`].
    inner: Option<BoxBody>,
    leftover: Leftover,
    text: Option<TextDecoder>,
    done: bool,
}

impl WebRequestBody {
    pub(crate) fn new(inner: BoxBody, text: bool, leftover: Leftover) -> Self {
        WebRequestBody {
            inner: Some(inner),
            leftover,
            text: text.then(TextDecoder::new),
            done: false,
        }
    }

    fn fail(&mut self, e: impl std::fmt::Display) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.done = true;
        let status = Status::new(Code::Internal, format!("grpc-web-text request body: {e}"));
        Poll::Ready(Some(Err(Box::new(status))))
    }
}

impl Body for WebRequestBody {
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
                    let Some(decoder) = &mut this.text else {
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    };
                    match decoder.decode(&data) {
                        Ok(decoded) if decoded.is_empty() => continue,
                        Ok(decoded) => return Poll::Ready(Some(Ok(Frame::data(decoded)))),
                        Err(e) => return this.fail(e),
                    }
                }
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    if let Some(Err(e)) = this.text.as_ref().map(TextDecoder::finish) {
                        return this.fail(e);
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

impl Drop for WebRequestBody {
    fn drop(&mut self) {
        if !self.done
            && let Some(inner) = self.inner.take()
        {
            self.leftover.put(inner);
        }
    }
}
