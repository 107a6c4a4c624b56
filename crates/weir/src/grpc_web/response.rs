//! Response side: a native gRPC response becomes a gRPC-Web one.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::Response;
use http::header::{self, HeaderMap, HeaderValue};
use http_body::{Body, Frame};
use tokio::time::Sleep;
use weir_codec::Code;
use weir_codec::content_type::ContentType;
use weir_codec::frame::FrameDecoder;
use weir_codec::{text, timeout, trailers};

use super::CallFailure;
use crate::Status;
use crate::body::{self, BoxBody, BoxError};
use crate::status::StatusExt as _;

/// How the client wants its response encoded.
#[derive(Debug, Clone)]
pub(crate) struct Encoding {
    pub(crate) content_type: ContentType,
}

impl Encoding {
    fn encode(&self, wire: Bytes) -> Bytes {
        if self.content_type.is_text() {
            text::encode(&wire)
        } else {
            wire
        }
    }
}

/// A response that carries only a status, in its headers ("Trailers-Only").
pub(crate) fn trailers_only(status: &Status, encoding: &Encoding) -> Response<BoxBody> {
    let mut response = Response::new(body::empty());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        encoding.content_type.to_header_value(),
    );
    status.write_headers(headers);
    response
}

/// Translates the service's response head; the body is wrapped in [`ResponseBody`].
pub(crate) fn translate<B>(
    response: Response<B>,
    encoding: Encoding,
    failure: CallFailure,
    max_message_size: usize,
    deadline: Option<Pin<Box<Sleep>>>,
    heartbeat: Option<Duration>,
    late: bool,
) -> Response<BoxBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, inner) = response.into_parts();
    if !Status::is_grpc_response(parts.status, &parts.headers) {
        // Not a gRPC answer: map the HTTP status as the gRPC specification does for clients.
        if let Some(status) = Status::from_headers(&parts.headers) {
            return trailers_only(&status, &encoding);
        }
        let status = Status::new(
            Code::from_http_status(parts.status.as_u16()),
            format!(
                "the service answered HTTP {} without a gRPC status",
                parts.status
            ),
        );
        return trailers_only(&status, &encoding);
    }

    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::TRANSFER_ENCODING);
    parts.headers.remove(header::CONNECTION);
    parts.headers.remove(header::TRAILER);
    parts.headers.insert(
        header::CONTENT_TYPE,
        encoding.content_type.to_header_value(),
    );
    parts.version = http::Version::default();

    if parts.headers.contains_key(&crate::names::GRPC_STATUS) {
        // Trailers-Only: the status stays in the headers, where gRPC-Web clients look for
        // it when the body is empty.
        if let Some(status) = failure.get() {
            status.write_headers(&mut parts.headers);
        }
        return Response::from_parts(parts, body::empty());
    }

    if let Some(interval) = heartbeat
        && let Ok(value) = HeaderValue::try_from(timeout::format(interval))
    {
        parts
            .headers
            .insert(super::service::HEARTBEAT_HEADER, value);
    }
    let body = ResponseBody {
        inner: Some(body::boxed(inner)),
        frames: FrameDecoder::new(max_message_size),
        encoding,
        failure,
        deadline,
        heartbeat: heartbeat.map(|interval| Heartbeat {
            interval,
            timer: Box::pin(tokio::time::sleep(interval)),
        }),
        late_metadata: late.then(|| metadata_of(&parts.headers)),
    };
    Response::from_parts(parts, body::boxed(body))
}

/// Forwards whole frames as the service produces them and ends with the trailer frame.
pub(crate) struct ResponseBody {
    /// The service's body; dropped as soon as the call ends, which cancels the service.
    inner: Option<BoxBody>,
    frames: FrameDecoder,
    encoding: Encoding,
    failure: CallFailure,
    deadline: Option<Pin<Box<Sleep>>>,
    heartbeat: Option<Heartbeat>,
    /// Response-header metadata that arrived after weir had sent the HTTP headers itself
    /// (see [`early`]); it goes out with the trailers.
    late_metadata: Option<HeaderMap>,
}

/// Heartbeats the client asked for: a `0x40` frame whenever the body was idle this long.
struct Heartbeat {
    interval: Duration,
    timer: Pin<Box<Sleep>>,
}

/// The heartbeat frame: flags `0x40`, no payload.
const HEARTBEAT_FRAME: &[u8] = &[0x40, 0, 0, 0, 0];

impl ResponseBody {
    /// Restarts the idle timer after something went out.
    fn sent(&mut self) {
        if let Some(heartbeat) = &mut self.heartbeat {
            let next = tokio::time::Instant::now() + heartbeat.interval;
            heartbeat.timer.as_mut().reset(next);
        }
    }

    /// Ends the call: `pending` frames, then the trailer frame.
    fn finish(&mut self, pending: Option<Bytes>, mut trailers: HeaderMap) -> Bytes {
        self.inner = None;
        self.deadline = None;
        self.heartbeat = None;
        if let Some(late) = self.late_metadata.take() {
            for (name, value) in &late {
                if !trailers.contains_key(name) {
                    trailers.append(name, value.clone());
                }
            }
        }
        if let Some(status) = self.failure.get() {
            status.write_headers(&mut trailers);
        }
        Status::ensure_in(&mut trailers);
        let trailer_frame = trailers::encode_frame(&trailers);
        let out = match pending {
            Some(pending) => {
                let mut out = BytesMut::with_capacity(pending.len() + trailer_frame.len());
                out.extend_from_slice(&pending);
                out.extend_from_slice(&trailer_frame);
                out.freeze()
            }
            None => trailer_frame,
        };
        self.encoding.encode(out)
    }

    fn fail(&mut self, pending: Option<Bytes>, status: &Status) -> Bytes {
        if status.code() != Code::Cancelled {
            tracing::info!(code = %status.code(), message = status.message(), "gRPC-Web call failed");
        }
        self.finish(pending, status.to_headers())
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if this.inner.is_none() {
                return Poll::Ready(None);
            }
            if let Some(deadline) = this.deadline.as_mut()
                && deadline.as_mut().poll(cx).is_ready()
            {
                let status =
                    Status::new(Code::DeadlineExceeded, "deadline (grpc-timeout) exceeded");
                let out = this.fail(None, &status);
                return Poll::Ready(Some(Ok(Frame::data(out))));
            }
            // Whole frames out first, as they are: a run of complete frames within one chunk
            // is forwarded without copying; only a frame that spans chunks is gathered.
            match this.frames.decode_run() {
                Ok(Some(run)) => {
                    this.sent();
                    return Poll::Ready(Some(Ok(Frame::data(this.encoding.encode(run)))));
                }
                Ok(None) => {}
                Err(e) => {
                    let status = Status::from_response_frame_error(&e);
                    let out = this.fail(None, &status);
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
            }
            let Some(inner) = this.inner.as_mut() else {
                return Poll::Ready(None);
            };
            let frame = match Pin::new(inner).poll_frame(cx) {
                Poll::Pending => {
                    // Idle: a heartbeat, if asked for and due. Frames go out whole, so this is
                    // always a frame boundary.
                    if let Some(heartbeat) = &mut this.heartbeat
                        && heartbeat.timer.as_mut().poll(cx).is_ready()
                    {
                        this.sent();
                        let frame = this.encoding.encode(Bytes::from_static(HEARTBEAT_FRAME));
                        return Poll::Ready(Some(Ok(Frame::data(frame))));
                    }
                    return Poll::Pending;
                }
                Poll::Ready(frame) => frame,
            };
            match frame {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.frames.push(data),
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            let status = match this.frames.finish() {
                                Ok(()) => None,
                                Err(e) => Some(Status::from_response_frame_error(&e)),
                            };
                            let out = match status {
                                Some(status) => this.fail(None, &status),
                                None => this.finish(None, trailers),
                            };
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                },
                Some(Err(e)) => {
                    let status = Status::from_response_body_error(&e);
                    let out = this.fail(None, &status);
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
                None => {
                    // A body that ends without trailers must not look like success.
                    let status = match this.frames.finish() {
                        Err(e) => Status::from_response_frame_error(&e),
                        Ok(()) => Status::new(
                            Code::Internal,
                            "the service ended its response without a status (no grpc-status trailer)",
                        ),
                    };
                    let out = this.fail(None, &status);
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_none()
    }
}

/// Response headers that are call metadata (not HTTP framing or CORS).
fn metadata_of(headers: &HeaderMap) -> HeaderMap {
    let mut metadata = headers.clone();
    metadata.remove(header::CONTENT_TYPE);
    metadata.remove(super::service::HEARTBEAT_HEADER);
    metadata.remove(header::DATE);
    metadata.remove(header::SERVER);
    metadata
}

/// A service's response still being awaited.
pub(crate) type PendingResponse =
    Pin<Box<dyn Future<Output = Result<Response<BoxBody>, BoxError>> + Send>>;

/// Answers a call whose client asked for heartbeats before the service has sent its response
/// headers, so that heartbeats can start at once (a proxy's idle timer runs from the request,
/// and some gRPC servers send their headers only with the first message). The service's
/// header metadata, when it comes, is delivered with the trailers: gRPC-Web cannot send
/// headers once the body has begun.
pub(crate) fn early(
    pending: PendingResponse,
    encoding: Encoding,
    failure: CallFailure,
    max_message_size: usize,
    deadline: Option<Pin<Box<Sleep>>>,
    interval: Duration,
) -> Response<BoxBody> {
    let mut response = Response::new(body::empty());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        encoding.content_type.to_header_value(),
    );
    if let Ok(value) = HeaderValue::try_from(timeout::format(interval)) {
        response
            .headers_mut()
            .insert(super::service::HEARTBEAT_HEADER, value);
    }
    let body = EarlyBody {
        state: EarlyState::Waiting(pending),
        encoding,
        failure,
        max_message_size,
        deadline,
        interval,
        // The first heartbeat goes out with the headers: a whole interval has passed.
        timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
    };
    *response.body_mut() = body::boxed(body);
    response
}

enum EarlyState {
    Waiting(PendingResponse),
    Streaming(BoxBody),
    Done,
}

struct EarlyBody {
    state: EarlyState,
    encoding: Encoding,
    failure: CallFailure,
    max_message_size: usize,
    deadline: Option<Pin<Box<Sleep>>>,
    interval: Duration,
    timer: Pin<Box<Sleep>>,
}

impl EarlyBody {
    /// Ends the call with a trailer frame made of `headers`.
    fn end(&mut self, mut headers: HeaderMap) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.state = EarlyState::Done;
        if let Some(status) = self.failure.get() {
            status.write_headers(&mut headers);
        }
        let block = trailers::encode_frame(&metadata_of(&headers));
        Poll::Ready(Some(Ok(Frame::data(self.encoding.encode(block)))))
    }
}

impl Body for EarlyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                EarlyState::Done => return Poll::Ready(None),
                EarlyState::Streaming(body) => return Pin::new(body).poll_frame(cx),
                EarlyState::Waiting(pending) => {
                    if let Some(deadline) = this.deadline.as_mut()
                        && deadline.as_mut().poll(cx).is_ready()
                    {
                        let status = Status::new(
                            Code::DeadlineExceeded,
                            "deadline (grpc-timeout) exceeded before the service answered",
                        );
                        return this.end(status.to_headers());
                    }
                    match pending.as_mut().poll(cx) {
                        Poll::Ready(Ok(response)) => {
                            let translated = translate(
                                response,
                                this.encoding.clone(),
                                this.failure.clone(),
                                this.max_message_size,
                                this.deadline.take(),
                                Some(this.interval),
                                true,
                            );
                            let (parts, body) = translated.into_parts();
                            if parts.headers.contains_key(&crate::names::GRPC_STATUS) {
                                return this.end(parts.headers);
                            }
                            this.state = EarlyState::Streaming(body);
                        }
                        Poll::Ready(Err(e)) => {
                            let status = Status::from_response_body_error(&e);
                            return this.end(status.to_headers());
                        }
                        Poll::Pending => {
                            if this.timer.as_mut().poll(cx).is_ready() {
                                let next = tokio::time::Instant::now() + this.interval;
                                this.timer.as_mut().reset(next);
                                let frame =
                                    this.encoding.encode(Bytes::from_static(HEARTBEAT_FRAME));
                                return Poll::Ready(Some(Ok(Frame::data(frame))));
                            }
                            return Poll::Pending;
                        }
                    }
                }
            }
        }
    }
}
