//! The call edge: the policy every call gets, whatever front door it came through.
//!
//! weir has three front doors — gRPC-Web over HTTP/1.1 and HTTP/2 ([`crate::grpc_web`]),
//! native gRPC on the same port, and gRPC over WebTransport ([`crate::webtransport`]) — and
//! every one of them hands its calls, as native gRPC calls, to one [`Edge`] in front of the
//! back end (an in-process router or the upstream [`Proxy`](crate::proxy::Proxy)). A front
//! door only adapts bytes: gRPC-Web framing, base64 and CORS; WebTransport streams and header
//! blocks. Everything else is decided here, once:
//!
//! | concern | rule |
//! |---|---|
//! | header size | the HTTP/2 header list size (RFC 9113 §6.5.2: name + value + 32 per field, `:path` included) over `max_header_list_size` → `RESOURCE_EXHAUSTED` |
//! | metadata | every value valid for its key (ASCII, or base64 for `-bin`) → else `INTERNAL` |
//! | hop-by-hop headers | stripped from requests (`connection`, `te`, the statuses only servers send, ...); `te: trailers` set |
//! | deadline | `grpc-timeout` parsed once (malformed → `INTERNAL`), capped by `max_call`; **one timer per call**, armed while the service answers and then in the response body; `DEADLINE_EXCEEDED` and the service's stream dropped (cancelled) when it fires. The deadline travels to the back end as a [`Deadline`] request extension, which the proxy forwards as the time left |
//! | request frames | each frame a message (flags `0x00`/`0x01`; reserved bits → `INTERNAL`), under `max_request_message_size` (→ `RESOURCE_EXHAUSTED`, refused from its 5-byte prefix), the body ending on a frame boundary |
//! | response head | a non-gRPC answer (not HTTP 200 with a gRPC content type) becomes a status from its `grpc-status` or from its HTTP status; hop-by-hop and framing headers stripped |
//! | response frames | flags and `max_response_message_size` checked as for requests |
//! | response end | trailers without a valid `grpc-status`, or a body that ends without trailers, become `INTERNAL`; a failed body becomes its HTTP/2 reset's status ([`weir_codec::Code::from_h2_error`]) or `UNAVAILABLE` |
//! | precedence | when the edge refused part of a call (an oversize or malformed request frame), its reason replaces whatever status the service then reports: the service only saw a broken body |
//!
//! Why a service wrapper rather than a tower layer users stack themselves: the edge's verdicts
//! must reach each front door in its own shape (a trailers-only gRPC-Web answer, a
//! WebTransport trailer block), and its request-side findings must override the service's
//! status; [`GrpcWebLayer`](crate::grpc_web::GrpcWebLayer) and the WebTransport endpoint
//! therefore build the [`Edge`] around the service they are given, so no call can bypass it.
//! [`EdgeLayer`] is public for servers that take native gRPC calls through other doors.
//!
//! # The path of a call
//!
//! ```text
//!  browser ──gRPC-Web──▶ GrpcWebService ─┐ (CORS, base64, 0x80 trailer frame, heartbeats)
//!  gRPC client ─native──▶ GrpcWebService ─┤ (passes the call on as it is)
//!  browser ─WebTransport─▶ endpoint ──────┤ (stream ⇄ header block, frames, trailer block)
//!                                         ▼
//!                                       Edge  (head checks, one deadline, frame checks,
//!                                         │    status mapping, header cleanup)
//!                                         ▼
//!                          in-process service, or Proxy ─HTTP/2─▶ upstream
//!                          (the proxy routes, caps the deadline at max_call, forwards the
//!                           time left in grpc-timeout, and splices frames)
//! ```

pub(crate) mod head;
#[cfg(feature = "proxy")]
pub(crate) use head::parse_timeout;
mod request;
mod response;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;
use weir_codec::Code;

pub use request::RequestBody;
pub use response::ResponseBody;

use crate::Status;
use crate::body::{BoxBody, BoxError};
use crate::call::CallFailure;

/// Default limit on one message in either direction, as in gRPC implementations (4 MiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;
/// Default limit on a request's header list (RFC 9113 §6.5.2), 16 KiB.
pub const DEFAULT_MAX_HEADER_LIST_SIZE: usize = 16 * 1024;

/// The limits of the call edge. The defaults are safe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeConfig {
    pub(crate) max_request_message_size: usize,
    pub(crate) max_response_message_size: usize,
    pub(crate) max_header_list_size: usize,
    pub(crate) max_call: Option<Duration>,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            max_request_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_response_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_header_list_size: DEFAULT_MAX_HEADER_LIST_SIZE,
            max_call: None,
        }
    }
}

impl EdgeConfig {
    /// Limits each request message (default 4 MiB); a larger one ends the call with
    /// `RESOURCE_EXHAUSTED` before its payload is read.
    pub fn max_request_message_size(mut self, limit: usize) -> Self {
        self.max_request_message_size = limit;
        self
    }

    /// Limits each response message (default 4 MiB); a larger one ends the call with
    /// `RESOURCE_EXHAUSTED` and cancels the service's stream.
    pub fn max_response_message_size(mut self, limit: usize) -> Self {
        self.max_response_message_size = limit;
        self
    }

    /// Limits the request's header list (default 16 KiB, counted as HTTP/2 does: name, value
    /// and 32 bytes per field); a larger one is answered `RESOURCE_EXHAUSTED` without calling
    /// the service.
    pub fn max_header_list_size(mut self, limit: usize) -> Self {
        self.max_header_list_size = limit;
        self
    }

    /// Caps every call's deadline (default: none): a call without `grpc-timeout` gets this
    /// one, a longer one is shortened to it.
    pub fn max_call(mut self, max: Option<Duration>) -> Self {
        self.max_call = max;
        self
    }
}

/// When a call must be over: a request extension set by the [`Edge`], for back ends that
/// forward the call (the proxy sends the time left upstream as `grpc-timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(pub Instant);

/// Which front door a call came through: a request extension each door sets, read by logs,
/// metrics and traces ([`crate::metrics`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Door {
    /// gRPC-Web, binary (`application/grpc-web`).
    GrpcWeb,
    /// gRPC-Web, base64 text (`application/grpc-web-text`).
    GrpcWebText,
    /// Native gRPC on the same port.
    Grpc,
    /// gRPC over WebTransport.
    WebTransport,
}

impl Door {
    /// `grpc-web`, `grpc-web-text`, `grpc` or `webtransport`.
    pub fn as_str(self) -> &'static str {
        match self {
            Door::GrpcWeb => "grpc-web",
            Door::GrpcWebText => "grpc-web-text",
            Door::Grpc => "grpc",
            Door::WebTransport => "webtransport",
        }
    }
}

/// The client's address: a request extension set by weir's [server](crate) and WebTransport
/// endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub std::net::SocketAddr);

/// The upstream address that answered a call: a response extension set by the
/// [proxy](crate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upstream(pub std::net::SocketAddr);

/// Marks a request that passed the edge's head checks (hop-by-hop headers already stripped),
/// so a back end need not repeat them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Admitted;

/// A [`Layer`] that puts the call edge in front of a native gRPC service. See the
/// [module docs](self).
#[derive(Debug, Clone, Default)]
pub struct EdgeLayer {
    config: Arc<EdgeConfig>,
}

impl EdgeLayer {
    /// A layer with these limits.
    pub fn new(config: EdgeConfig) -> Self {
        EdgeLayer {
            config: Arc::new(config),
        }
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge::new(inner, self.config.clone())
    }
}

/// The call edge around a native gRPC service: see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Edge<S> {
    inner: S,
    config: Arc<EdgeConfig>,
}

impl<S> Edge<S> {
    pub(crate) fn new(inner: S, config: Arc<EdgeConfig>) -> Self {
        Edge { inner, config }
    }

    /// The edge's limits.
    pub fn config(&self) -> &EdgeConfig {
        &self.config
    }
}

/// The future of an [`Edge`] call.
pub type EdgeFuture<E> =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, E>> + Send + 'static>>;

impl<S, B, ResBody> Service<Request<B>> for Edge<S>
where
    S: Service<Request<BoxBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody>;
    type Error = S::Error;
    type Future = EdgeFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The instance that was polled ready serves this call; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = self.config.clone();
        let received = Instant::now();
        let (mut parts, body) = request.into_parts();
        // A body of announced length is on its way whole (a buffered gRPC-Web call, what
        // browsers send over HTTP/1.1): its first frame is checked before the service hears of
        // the call, so a malformed call never reaches an upstream. A streamed body is not
        // waited for — its client may expect an answer before it sends.
        let announced = body.size_hint().exact().is_some_and(|len| len > 0)
            || parts
                .headers
                .get(http::header::CONTENT_LENGTH)
                .is_some_and(|len| len.as_bytes() != b"0");
        let timeout = match head::admit(&mut parts, &config) {
            Ok(timeout) => timeout,
            Err(status) => {
                tracing::info!(code = %status.code(), message = status.message(), path = parts.uri.path(), "refused call");
                drop(body);
                return Box::pin(std::future::ready(Ok(ResponseBody::trailers_only(status))));
            }
        };
        let deadline = timeout.map(|t| received + t);
        if let Some(deadline) = deadline {
            parts.extensions.insert(Deadline(deadline));
        }
        parts.extensions.insert(Admitted);
        // A front door that must know the edge's verdict on the request body (WebTransport
        // answers a violation with STOP_SENDING) hands its own failure slot in.
        let failure = parts.extensions.remove::<CallFailure>().unwrap_or_default();
        let mut body = RequestBody::new(body, config.max_request_message_size, failure.clone());
        Box::pin(async move {
            let mut timer = deadline.map(|at| Box::pin(tokio::time::sleep_until(at)));
            if announced {
                tokio::select! {
                    refused = body.prefetch() => if let Err(status) = refused {
                        return Ok(ResponseBody::trailers_only(status));
                    },
                    () = until(timer.as_mut()) => {
                        let status = Status::new(
                            Code::DeadlineExceeded,
                            "deadline (grpc-timeout) exceeded before the request arrived",
                        );
                        return Ok(ResponseBody::trailers_only(status));
                    }
                }
            }
            let future = inner.call(Request::from_parts(parts, BoxBody::new(body)));
            let response = tokio::select! {
                response = future => response?,
                () = until(timer.as_mut()) => {
                    let status = Status::new(
                        Code::DeadlineExceeded,
                        "deadline (grpc-timeout) exceeded before the service answered",
                    );
                    return Ok(ResponseBody::trailers_only(status));
                }
            };
            Ok(response::respond(response, failure, config.max_response_message_size, timer).await)
        })
    }
}

/// Waits for an optional timer; never completes without one.
pub(crate) async fn until(timer: Option<&mut Pin<Box<tokio::time::Sleep>>>) {
    match timer {
        Some(timer) => timer.as_mut().await,
        None => std::future::pending().await,
    }
}

/// A service error as the status a client gets: the service is unavailable.
pub(crate) fn service_error(err: impl Into<BoxError>) -> Status {
    let err = err.into();
    Status::new(Code::Unavailable, format!("the service failed: {err}"))
}
