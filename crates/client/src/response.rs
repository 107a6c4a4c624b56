//! Reading a gRPC-Web response: status mapping, incremental frame decoding, deadlines.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use http::HeaderMap;
use http::header::CONTENT_TYPE;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};
use weir_codec::Code;
use weir_codec::content_type::{ContentType, Protocol};
use weir_codec::frame::{FrameDecoder, FrameError, FrameKind};
use weir_codec::text::TextDecoder;
use weir_codec::trailers;

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
/// Dropping a `Streaming` before its end abandons the call: over HTTP/2 the stream is reset
/// (`CANCEL`), over HTTP/1.1 the connection is closed, and the server sees the cancellation.
pub struct Streaming {
    headers: HeaderMap,
    body: Option<Incoming>,
    text: Option<TextDecoder>,
    frames: FrameDecoder,
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
        let headers = parts.headers;
        if parts.status != http::StatusCode::OK {
            // A status in the headers wins: some servers send trailers-only with an HTTP error.
            if let Some(status) = Status::from_headers(&headers)
                && !status.is_ok()
            {
                return Err(status);
            }
            let code = Code::from_http_status(parts.status.as_u16());
            return Err(Status::new(
                code,
                format!("server answered HTTP {} instead of gRPC-Web", parts.status),
            ));
        }
        let content_type = headers.get(CONTENT_TYPE).and_then(ContentType::from_header);
        let text = match content_type {
            Some(ct) if ct.protocol() != Protocol::Grpc => ct.is_text(),
            _ => {
                if let Some(status) = Status::from_headers(&headers) {
                    // Trailers-only answers need not repeat the content type.
                    return Streaming::ended(headers, status);
                }
                return Err(Status::new(
                    Code::Unknown,
                    format!(
                        "server answered with content type {:?}, not gRPC-Web",
                        headers.get(CONTENT_TYPE)
                    ),
                ));
            }
        };
        if let Some(status) = Status::from_headers(&headers) {
            return Streaming::ended(headers, status);
        }
        Ok(Streaming {
            headers,
            body: Some(body),
            text: text.then(TextDecoder::new),
            frames: FrameDecoder::new(max_message_size),
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
            text: None,
            frames: FrameDecoder::new(0),
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
        self.trailers.as_ref()
    }

    /// The next message, `Ok(None)` when the call ended with `OK`, `Err` when it ended with
    /// another status or failed (the same status again on later calls).
    pub async fn message(&mut self) -> Result<Option<Bytes>, Status> {
        loop {
            if let Some(done) = &self.done {
                return done.clone().map(|()| None);
            }
            match self.frames.decode() {
                Ok(Some(frame)) => match frame.kind() {
                    FrameKind::Message if frame.is_compressed() => {
                        return self.fail(Status::new(
                            Code::Internal,
                            "compressed response message, but no compression was offered",
                        ));
                    }
                    FrameKind::Message => return Ok(Some(frame.into_payload())),
                    FrameKind::Trailers => {
                        let block = match trailers::decode(frame.payload()) {
                            Ok(block) => block,
                            Err(e) => return self.fail(Status::new(Code::Internal, e.to_string())),
                        };
                        self.trailer_block(block).await?;
                        continue;
                    }
                },
                Ok(None) => {}
                Err(e @ FrameError::TooLarge { .. }) => {
                    return self.fail(Status::new(
                        Code::ResourceExhausted,
                        format!("response {e}"),
                    ));
                }
                Err(e) => return self.fail(Status::new(Code::Internal, e.to_string())),
            }
            match self.next_body_frame().await? {
                Some(frame) => match frame.into_data() {
                    Ok(data) => self.push(data)?,
                    Err(frame) => {
                        // gRPC-Web puts the status in the body, but accept HTTP trailers too.
                        if let Ok(block) = frame.into_trailers() {
                            self.body = None;
                            self.end_of_body(Some(block))?;
                        }
                    }
                },
                None => {
                    self.body = None;
                    self.end_of_body(None)?;
                }
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

    fn push(&mut self, data: Bytes) -> Result<(), Status> {
        if self.trailers.is_some() && !data.is_empty() {
            return self.fail(Status::new(
                Code::Internal,
                "response body went on after the trailer frame",
            ));
        }
        let data = match &mut self.text {
            Some(decoder) => match decoder.decode(&data) {
                Ok(data) => data,
                Err(e) => {
                    return self.fail(Status::new(
                        Code::Internal,
                        format!("grpc-web-text response: {e}"),
                    ));
                }
            },
            None => data,
        };
        self.frames.push(data);
        Ok(())
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

    /// The trailer frame arrived: read on to the end of the body (so that an HTTP/1.1
    /// connection can be reused), then settle the call.
    async fn trailer_block(&mut self, block: HeaderMap) -> Result<(), Status> {
        self.trailers = Some(block);
        if !self.frames.is_at_boundary() {
            return self.fail(Status::new(
                Code::Internal,
                "response body went on after the trailer frame",
            ));
        }
        while let Some(frame) = self.next_body_frame().await? {
            if let Ok(data) = frame.into_data() {
                self.push(data)?;
            }
        }
        self.body = None;
        self.end_of_body(None)
    }

    fn end_of_body(&mut self, http_trailers: Option<HeaderMap>) -> Result<(), Status> {
        if let Some(decoder) = &self.text
            && let Err(e) = decoder.finish()
        {
            return self.fail(Status::new(
                Code::Internal,
                format!("grpc-web-text response: {e}"),
            ));
        }
        if let Err(e) = self.frames.finish() {
            return self.fail(Status::new(Code::Internal, format!("response: {e}")));
        }
        let block = match (self.trailers.take(), http_trailers) {
            (Some(block), _) | (None, Some(block)) => block,
            (None, None) => {
                return self.fail(Status::new(
                    Code::Internal,
                    "response ended without a status (no trailer frame)",
                ));
            }
        };
        match Status::from_headers(&block) {
            Some(status) if status.is_ok() => {
                self.trailers = Some(status.metadata().clone());
                self.done = Some(Ok(()));
                Ok(())
            }
            Some(status) => self.fail(status),
            None => self.fail(Status::new(
                Code::Internal,
                "trailer block without grpc-status",
            )),
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
