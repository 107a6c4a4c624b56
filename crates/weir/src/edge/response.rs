//! The response at the edge: what the service answered, as a well-formed native gRPC response.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http::header::{self, HeaderMap, HeaderValue};
use http_body::{Body, Frame};
use http_body_util::BodyExt as _;
use tokio::time::Sleep;
use weir_codec::Code;
use weir_codec::frame::FrameDecoder;

use crate::Status;
use crate::body::{BoxBody, BoxError};
use crate::call::CallFailure;
use crate::status::StatusExt as _;

/// How much of a non-gRPC answer's body goes into `grpc-message`.
const SUMMARY_BYTES: usize = 256;
/// How long to wait for that much of it.
const SUMMARY_WAIT: Duration = Duration::from_secs(1);

/// A response body as it leaves the edge: the service's frames, checked (messages within the
/// response limit) and forwarded as they come, then trailers that always carry a valid
/// `grpc-status` — whatever the service did, a deadline, or a failure of its stream.
///
/// Dropping it before its end drops the service's body, which cancels the service's call
/// (an upstream sees `RST_STREAM(CANCEL)`).
pub struct ResponseBody {
    /// The service's body; dropped as soon as the call ends.
    inner: Option<BoxBody>,
    frames: FrameDecoder,
    failure: CallFailure,
    /// The call's one deadline timer, carried over from waiting for the response head.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("open", &self.inner.is_some())
            .finish_non_exhaustive()
    }
}

impl ResponseBody {
    fn empty() -> Self {
        ResponseBody {
            inner: None,
            frames: FrameDecoder::messages(0),
            failure: CallFailure::default(),
            deadline: None,
        }
    }

    /// A native gRPC "Trailers-Only" response: HTTP 200, the status in the headers, no body.
    pub(crate) fn trailers_only(status: Status) -> Response<ResponseBody> {
        let mut response = Response::new(ResponseBody::empty());
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        status.write_headers(response.headers_mut());
        response
    }

    /// Whether the body has ended (or never had anything to send).
    pub fn is_done(&self) -> bool {
        self.inner.is_none()
    }

    /// Ends the call with `trailers`, settled.
    fn end(&mut self, mut trailers: HeaderMap) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.inner = None;
        self.deadline = None;
        settle(&mut trailers, &self.failure);
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }

    fn fail(&mut self, status: &Status) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if status.code() != Code::Cancelled && self.failure.get().is_none() {
            tracing::info!(code = %status.code(), message = status.message(), "call failed");
        }
        self.end(status.to_headers())
    }
}

/// Makes trailers final: the edge's own failure replaces the service's status; a missing or
/// malformed `grpc-status` (which a client would read as success, or not at all) is `INTERNAL`.
fn settle(trailers: &mut HeaderMap, failure: &CallFailure) {
    if let Some(status) = failure.get() {
        status.write_headers(trailers);
        return;
    }
    let problem = match trailers.get(&crate::names::GRPC_STATUS) {
        None => "the service ended its response with trailers but no grpc-status",
        Some(value) if Code::from_header(value.as_bytes()).is_none() => {
            "the service ended its response with an invalid grpc-status"
        }
        Some(_) => return,
    };
    tracing::info!("{problem}");
    Status::new(Code::Internal, problem).write_headers(trailers);
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
                return this.fail(&status);
            }
            // Whole frames out first, as they are: a run of complete frames within one chunk
            // is forwarded without copying; only a frame that spans chunks is gathered.
            match this.frames.decode_run() {
                Ok(Some(run)) => return Poll::Ready(Some(Ok(Frame::data(run)))),
                Ok(None) => {}
                Err(e) => return this.fail(&Status::from_response_frame_error(&e)),
            }
            let Some(inner) = this.inner.as_mut() else {
                return Poll::Ready(None);
            };
            match std::task::ready!(Pin::new(inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.frames.push(data),
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            if let Err(e) = this.frames.finish() {
                                return this.fail(&Status::from_response_frame_error(&e));
                            }
                            return this.end(trailers);
                        }
                    }
                },
                Some(Err(e)) => return this.fail(&Status::from_response_body_error(&e)),
                None => {
                    let status = match this.frames.finish() {
                        Err(e) => Status::from_response_frame_error(&e),
                        Ok(()) => Status::new(
                            Code::Internal,
                            "the service ended its response without a status (no grpc-status trailer)",
                        ),
                    };
                    return this.fail(&status);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_none()
    }
}

/// Turns the service's answer into the edge's: a gRPC answer streams through [`ResponseBody`];
/// anything else becomes a trailers-only status.
pub(super) async fn respond<B>(
    response: Response<B>,
    failure: CallFailure,
    max_message_size: usize,
    deadline: Option<Pin<Box<Sleep>>>,
) -> Response<ResponseBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = response.into_parts();
    if !Status::is_grpc_response(parts.status, &parts.headers) {
        let status = match Status::from_headers(&parts.headers) {
            Some(status) => status,
            None => {
                let summary = summarize(BoxBody::new(body)).await;
                let content_type = parts
                    .headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("no content-type");
                Status::new(
                    Code::from_http_status(parts.status.as_u16()),
                    format!(
                        "the service answered HTTP {} ({content_type}), not gRPC: {summary}",
                        parts.status
                    ),
                )
            }
        };
        tracing::warn!(http_status = %parts.status, code = %status.code(), "the service answered without gRPC");
        return ResponseBody::trailers_only(failure.get().unwrap_or(status));
    }
    crate::hop::strip_response(&mut parts.headers);
    parts.version = http::Version::default();
    if parts.headers.contains_key(&crate::names::GRPC_STATUS) {
        // Trailers-Only: the status stays in the headers.
        settle(&mut parts.headers, &failure);
        return Response::from_parts(parts, ResponseBody::empty());
    }
    let body = ResponseBody {
        inner: Some(BoxBody::new(body)),
        frames: FrameDecoder::messages(max_message_size),
        failure,
        deadline,
    };
    Response::from_parts(parts, body)
}

/// The first bytes of a non-gRPC answer's body (an error page), as one printable line.
async fn summarize(mut body: BoxBody) -> String {
    let mut bytes = Vec::new();
    let read = async {
        while bytes.len() < SUMMARY_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        bytes.extend_from_slice(&data);
                    }
                }
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(SUMMARY_WAIT, read).await;
    bytes.truncate(SUMMARY_BYTES);
    let text = String::from_utf8_lossy(&bytes);
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        "empty body".to_owned()
    } else {
        line
    }
}
