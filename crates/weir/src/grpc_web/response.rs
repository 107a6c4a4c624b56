//! Response side: the edge's native gRPC response becomes a gRPC-Web one.
//!
//! The call edge ([`crate::edge::ResponseBody`]) has already checked every frame and settled
//! the status; here frames are only re-encoded (base64 in text mode), the HTTP trailers
//! become the final `0x80` frame of the body, and heartbeats fill idle time when the client
//! asked for them.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http::header::{self, HeaderMap, HeaderValue};
use http_body::{Body, Frame};
use tokio::time::Sleep;
use weir_codec::content_type::ContentType;
use weir_codec::grpc_web::{Mode, ResponseEncoder};
use weir_codec::timeout;

use crate::body::{BoxBody, BoxError};
use crate::edge::ResponseBody;

/// How the client wants its response encoded: its content type, and the codec's encoder for
/// that mode (the same rules weir's clients decode with).
#[derive(Debug, Clone)]
pub(crate) struct Encoding {
    pub(crate) content_type: ContentType,
    encoder: ResponseEncoder,
}

impl Encoding {
    pub(crate) fn new(content_type: ContentType) -> Self {
        let encoder = ResponseEncoder::new(Mode::of(&content_type));
        Encoding {
            content_type,
            encoder,
        }
    }

    fn encode(&self, wire: Bytes) -> Bytes {
        self.encoder.frames(wire)
    }

    fn trailer_frame(&self, trailers: &HeaderMap) -> Bytes {
        self.encoder.trailers(trailers)
    }

    fn heartbeat(&self) -> Bytes {
        self.encoder.heartbeat()
    }
}

/// Translates the edge's response head; the body is wrapped in [`WebBody`].
pub(crate) fn translate(
    response: Response<ResponseBody>,
    encoding: Encoding,
    heartbeat: Option<Duration>,
    late: bool,
) -> Response<BoxBody> {
    let (mut parts, inner) = response.into_parts();
    parts.headers.insert(
        header::CONTENT_TYPE,
        encoding.content_type.to_header_value(),
    );
    if inner.is_done() {
        // Trailers-Only: the status stays in the headers, where gRPC-Web clients look for it
        // when the body is empty.
        return Response::from_parts(parts, BoxBody::empty());
    }
    if let Some(interval) = heartbeat
        && let Ok(value) = HeaderValue::try_from(timeout::format(interval))
    {
        parts.headers.insert(crate::names::WEIR_HEARTBEAT, value);
    }
    let body = WebBody {
        inner,
        encoding,
        heartbeat: heartbeat.map(|interval| Heartbeat {
            interval,
            timer: Box::pin(tokio::time::sleep(interval)),
        }),
        late_metadata: late.then(|| metadata_of(&parts.headers)),
        done: false,
    };
    Response::from_parts(parts, BoxBody::new(body))
}

/// The edge's frames, re-encoded, ending with the trailer frame.
struct WebBody {
    inner: ResponseBody,
    encoding: Encoding,
    heartbeat: Option<Heartbeat>,
    /// Response-header metadata that arrived after weir had sent the HTTP headers itself
    /// (see [`early`]); it goes out with the trailers.
    late_metadata: Option<HeaderMap>,
    done: bool,
}

/// Heartbeats the client asked for: a `0x40` frame whenever the body was idle this long.
struct Heartbeat {
    interval: Duration,
    timer: Pin<Box<Sleep>>,
}

impl Heartbeat {
    /// Restarts the idle timer after something went out.
    fn sent(&mut self) {
        let next = tokio::time::Instant::now() + self.interval;
        self.timer.as_mut().reset(next);
    }
}

impl WebBody {
    fn trailers(&mut self, mut trailers: HeaderMap) -> Bytes {
        self.done = true;
        self.heartbeat = None;
        if let Some(late) = self.late_metadata.take() {
            for (name, value) in &late {
                if !trailers.contains_key(name) {
                    trailers.append(name, value.clone());
                }
            }
        }
        self.encoding.trailer_frame(&trailers)
    }
}

impl Body for WebBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => {
                // Idle: a heartbeat, if asked for and due. The edge hands out whole frames, so
                // this is always a frame boundary.
                if let Some(heartbeat) = &mut this.heartbeat
                    && heartbeat.timer.as_mut().poll(cx).is_ready()
                {
                    heartbeat.sent();
                    return Poll::Ready(Some(Ok(Frame::data(this.encoding.heartbeat()))));
                }
                Poll::Pending
            }
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    if let Some(heartbeat) = &mut this.heartbeat {
                        heartbeat.sent();
                    }
                    Poll::Ready(Some(Ok(Frame::data(this.encoding.encode(data)))))
                }
                Err(frame) => {
                    let trailers = frame.into_trailers().unwrap_or_default();
                    Poll::Ready(Some(Ok(Frame::data(this.trailers(trailers)))))
                }
            },
            // The edge ends every call with trailers; these only pass through.
            Poll::Ready(Some(Err(e))) => {
                this.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

/// Response headers that are call metadata (not HTTP framing or CORS).
fn metadata_of(headers: &HeaderMap) -> HeaderMap {
    let mut metadata = headers.clone();
    metadata.remove(header::CONTENT_TYPE);
    metadata.remove(crate::names::WEIR_HEARTBEAT);
    metadata.remove(header::DATE);
    metadata.remove(header::SERVER);
    metadata
}

/// The edge's response still being awaited.
pub(crate) type PendingResponse =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, BoxError>> + Send>>;

/// Answers a call whose client asked for heartbeats before the service has sent its response
/// headers, so that heartbeats can start at once (a proxy's idle timer runs from the request,
/// and some gRPC servers send their headers only with the first message). The service's
/// header metadata, when it comes, is delivered with the trailers: gRPC-Web cannot send
/// headers once the body has begun. The edge still enforces the deadline meanwhile.
pub(crate) fn early(
    pending: PendingResponse,
    encoding: Encoding,
    interval: Duration,
) -> Response<BoxBody> {
    let mut response = Response::new(BoxBody::empty());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        encoding.content_type.to_header_value(),
    );
    if let Ok(value) = HeaderValue::try_from(timeout::format(interval)) {
        response
            .headers_mut()
            .insert(crate::names::WEIR_HEARTBEAT, value);
    }
    let body = EarlyBody {
        state: EarlyState::Waiting(pending),
        encoding,
        interval,
        // The first heartbeat goes out with the headers: a whole interval has passed.
        timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
    };
    *response.body_mut() = BoxBody::new(body);
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
    interval: Duration,
    timer: Pin<Box<Sleep>>,
}

impl EarlyBody {
    /// Ends the call with a trailer frame made of `headers`.
    fn end(&mut self, headers: &HeaderMap) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.state = EarlyState::Done;
        let block = self.encoding.trailer_frame(&metadata_of(headers));
        Poll::Ready(Some(Ok(Frame::data(block))))
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
                EarlyState::Waiting(pending) => match pending.as_mut().poll(cx) {
                    Poll::Ready(Ok(response)) => {
                        if response.body().is_done() {
                            return this.end(response.headers());
                        }
                        let translated =
                            translate(response, this.encoding.clone(), Some(this.interval), true);
                        this.state = EarlyState::Streaming(translated.into_body());
                    }
                    Poll::Ready(Err(e)) => {
                        let status = crate::edge::service_error(e);
                        return this.end(&status.to_headers());
                    }
                    Poll::Pending => {
                        if this.timer.as_mut().poll(cx).is_ready() {
                            let next = tokio::time::Instant::now() + this.interval;
                            this.timer.as_mut().reset(next);
                            return Poll::Ready(Some(Ok(Frame::data(this.encoding.heartbeat()))));
                        }
                        return Poll::Pending;
                    }
                },
            }
        }
    }
}
