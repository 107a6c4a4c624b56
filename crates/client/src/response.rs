//! Reading a gRPC-Web response: status mapping, incremental frame decoding, deadlines.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use http::HeaderMap;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};
use weir_codec::Code;
use weir_codec::grpc_web::{
    Mode, ResponseDecoder, ResponseError, ResponseEvent, ResponseHead, trailer_status,
};

use crate::status::{self, Status};

/// A complete response of a unary or client-streaming call.
#[derive(Debug, Clone)]
pub struct Response<T> {
    headers: HeaderMap,
    message: T,
    trailers: HeaderMap,
}

impl<T> Response<T> {
    /// The response headers (initial metadata and HTTP headers).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The response message.
    pub fn message(&self) -> &T {
        &self.message
    }

    /// Takes the message out.
    pub fn into_message(self) -> T {
        self.message
    }

    /// The trailing metadata, without `grpc-status` and `grpc-message`.
    pub fn trailers(&self) -> &HeaderMap {
        &self.trailers
    }

    /// The response with its message mapped.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Response<U> {
        Response {
            headers: self.headers,
            message: f(self.message),
            trailers: self.trailers,
        }
    }
}

/// The response stream of a call, read message by message.
///
/// [`message`](Self::message) returns the messages in order, then `Ok(None)` when the call
/// ended with `OK`, or `Err(status)` when it ended with any other status or failed.
///
/// The body is read with `weir-codec`'s gRPC-Web response decoder: heartbeat frames (weir's
/// `0x40` extension) are skipped, and a frame with flags gRPC-Web reserves ends the call with
/// `INTERNAL`.
///
/// Dropping a `Streaming` before its end abandons the call: over HTTP/2 the stream is reset
/// (`CANCEL`), over HTTP/1.1 the connection is closed, and the server sees the cancellation.
pub struct Streaming {
    headers: HeaderMap,
    body: Option<Incoming>,
    decoder: ResponseDecoder,
    /// The trailer block once the body yielded it (it settles the call when the body ends),
    /// then the trailing metadata once the call ended with `OK`.
    trailers: Option<HeaderMap>,
    /// The call's final outcome once known.
    done: Option<Result<(), Status>>,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl std::fmt::Debug for Streaming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streaming")
            .field("headers", &self.headers)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

pub(crate) fn deadline_exceeded() -> Status {
    Status::new(Code::DeadlineExceeded, "deadline exceeded (client timer)")
}

impl Streaming {
    /// Interprets a response head; a non-gRPC-Web answer or a trailers-only response ends the
    /// call here.
    pub(crate) fn new(
        response: http::Response<Incoming>,
        max_message_size: usize,
        deadline: Option<Instant>,
    ) -> Result<Streaming, Status> {
        let (parts, body) = response.into_parts();
        let mode = match ResponseHead::classify(parts.status, &parts.headers) {
            ResponseHead::Body(mode) => mode,
            ResponseHead::TrailersOnly(status) => return Streaming::ended(parts.headers, status),
            ResponseHead::Failed(status) => return Err(status),
        };
        Ok(Streaming {
            headers: parts.headers,
            body: Some(body),
            decoder: ResponseDecoder::new(mode, max_message_size),
            trailers: None,
            done: None,
            deadline: deadline.map(|at| Box::pin(tokio::time::sleep_until(at))),
        })
    }

    /// A trailers-only response.
    fn ended(headers: HeaderMap, status: Status) -> Result<Streaming, Status> {
        if !status.is_ok() {
            return Err(status);
        }
        Ok(Streaming {
            trailers: Some(status.metadata().clone()),
            headers,
            body: None,
            decoder: ResponseDecoder::new(Mode::Binary, 0),
            done: Some(Ok(())),
            deadline: None,
        })
    }

    /// The response headers (initial metadata and HTTP headers).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The trailing metadata (without `grpc-status` and `grpc-message`), once the stream
    /// ended with `OK`. On other statuses it is in [`Status::metadata`].
    pub fn trailers(&self) -> Option<&HeaderMap> {
        match self.done {
            Some(Ok(())) => self.trailers.as_ref(),
            _ => None,
        }
    }

    /// The next message, `Ok(None)` when the call ended with `OK`, `Err` when it ended with
    /// another status or failed (the same status again on later calls).
    pub async fn message(&mut self) -> Result<Option<Bytes>, Status> {
        loop {
            if let Some(done) = &self.done {
                return done.clone().map(|()| None);
            }
            match self.decoder.decode() {
                Ok(Some(ResponseEvent::Message(frame))) => {
                    if frame.is_compressed() {
                        return self.fail(Status::new(
                            Code::Internal,
                            "compressed response message, but no compression was offered",
                        ));
                    }
                    return Ok(Some(frame.into_payload()));
                }
                Ok(Some(ResponseEvent::Heartbeat)) => continue,
                Ok(Some(ResponseEvent::Trailers(block))) => {
                    // Read on to the end of the body (so that an HTTP/1.1 connection can be
                    // reused, and so that bytes after the block are caught), then settle.
                    self.trailers = Some(block);
                    continue;
                }
                Ok(None) => {}
                Err(e) => return self.fail(e.to_status()),
            }
            if self.body.is_none() {
                return self.end_of_body().map(|()| None);
            }
            match self.next_body_frame().await? {
                Some(frame) => match frame.into_data() {
                    Ok(data) => self.decoder.push(data),
                    Err(frame) => {
                        // gRPC-Web puts the status in the body, but accept HTTP trailers too.
                        if let Ok(block) = frame.into_trailers() {
                            self.decoder.push_trailers(block);
                            self.body = None;
                        }
                    }
                },
                None => self.body = None,
            }
        }
    }

    /// The next message decoded as `M`.
    pub async fn message_as<M: prost::Message + Default>(&mut self) -> Result<Option<M>, Status> {
        match self.message().await? {
            Some(bytes) => M::decode(bytes).map(Some).map_err(|e| {
                Status::new(
                    Code::Internal,
                    format!("cannot decode response message: {e}"),
                )
            }),
            None => Ok(None),
        }
    }

    /// Abandons the call (the same as dropping it).
    pub fn cancel(self) {}

    /// The messages as a [`Stream`]; it ends after `OK` or after the first error.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, Status>> + Send {
        futures_util::stream::unfold(Some(self), |state| async move {
            let mut call = state?;
            match call.message().await {
                Ok(Some(message)) => Some((Ok(message), Some(call))),
                Ok(None) => None,
                Err(status) => Some((Err(status), None)),
            }
        })
    }

    fn fail<T>(&mut self, status: Status) -> Result<T, Status> {
        self.body = None;
        self.done = Some(Err(status.clone()));
        Err(status)
    }

    async fn next_body_frame(&mut self) -> Result<Option<hyper::body::Frame<Bytes>>, Status> {
        let Some(body) = self.body.as_mut() else {
            return Ok(None);
        };
        let next = match self.deadline.as_mut() {
            Some(sleep) => tokio::select! {
                biased;
                frame = body.frame() => frame,
                () = sleep.as_mut() => return self.fail(deadline_exceeded()),
            },
            None => body.frame().await,
        };
        match next {
            Some(Ok(frame)) => Ok(Some(frame)),
            Some(Err(e)) => self.fail(status::from_transport(&e, "response body")),
            None => Ok(None),
        }
    }

    /// The body ended: settles the call with its trailer block.
    fn end_of_body(&mut self) -> Result<(), Status> {
        if let Err(e) = self.decoder.finish() {
            return self.fail(e.to_status());
        }
        let Some(block) = self.trailers.take() else {
            return self.fail(ResponseError::MissingTrailers.to_status());
        };
        let status = trailer_status(&block);
        if status.is_ok() {
            self.trailers = Some(status.metadata().clone());
            self.done = Some(Ok(()));
            Ok(())
        } else {
            self.fail(status)
        }
    }

    /// Reads exactly one message and the end of the call (unary and client-streaming calls).
    pub(crate) async fn single(mut self) -> Result<Response<Bytes>, Status> {
        let Some(message) = self.message().await? else {
            return Err(Status::new(
                Code::Internal,
                "the server ended the call with OK but sent no response message",
            ));
        };
        if self.message().await?.is_some() {
            return Err(Status::new(
                Code::Internal,
                "the server sent more than one response message",
            ));
        }
        Ok(Response {
            headers: self.headers,
            message,
            trailers: self.trailers.unwrap_or_default(),
        })
    }
}
