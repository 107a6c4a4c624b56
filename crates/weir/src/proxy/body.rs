//! Upstream responses on their way back to the client.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame};
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;
use weir_codec::Code;

use crate::Status;
use crate::body::{BoxBody, BoxError};
use crate::metrics::{Metrics, UpstreamError};
use crate::status::StatusExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio_util::sync::WaitForCancellationFutureOwned;

/// Cancels a call's upload when dropped (see [`UploadBody`]), and knows whether the client
/// abandoned its upload.
pub(super) struct Abandon {
    over: CancellationToken,
    client_gone: Arc<AtomicBool>,
}

impl Abandon {
    pub(super) fn new() -> Self {
        Abandon {
            over: CancellationToken::new(),
            client_gone: Arc::default(),
        }
    }

    fn client_gone(&self) -> bool {
        self.client_gone.load(Ordering::Relaxed)
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        self.over.cancel();
    }
}

/// The request body on its way upstream, which fails with `CANCEL` once the call is over
/// (its [`Abandon`] dropped), so hyper resets the upstream stream instead of keeping it open
/// for an upload nobody waits for.
pub(super) struct UploadBody {
    inner: BoxBody,
    over: Pin<Box<WaitForCancellationFutureOwned>>,
    client_gone: Arc<AtomicBool>,
    done: bool,
}

impl UploadBody {
    pub(super) fn new(inner: BoxBody, abandon: &Abandon) -> Self {
        UploadBody {
            inner,
            over: Box::pin(abandon.over.clone().cancelled_owned()),
            client_gone: abandon.client_gone.clone(),
            done: false,
        }
    }
}

impl Body for UploadBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.over.as_mut().poll(cx).is_ready() {
            self.done = true;
            let status = Status::new(Code::Cancelled, "the call ended before its upload");
            return Poll::Ready(Some(Err(Box::new(status))));
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                if e.is::<crate::call::Abandoned>() {
                    self.client_gone.store(true, Ordering::Relaxed);
                }
            }
            Poll::Ready(None) => self.done = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// What can end an upstream call besides the upstream itself.
pub(super) struct Ends {
    pub(super) abandon: Abandon,
    pub(super) drain: CancellationToken,
    pub(super) metrics: Option<Metrics>,
    pub(super) cluster: Arc<str>,
}

/// Turns the upstream's response into the edge's: the body is watched for the upstream's
/// failures and the gateway's drain. A non-gRPC answer is counted here and mapped to a status
/// by the call edge, which does so for every back end.
pub(super) fn translate(response: Response<Incoming>, ends: Ends) -> Response<BoxBody> {
    let cluster = &*ends.cluster;
    let (parts, body) = response.into_parts();
    if !Status::is_grpc_response(parts.status, &parts.headers) {
        tracing::warn!(%cluster, http_status = %parts.status, "upstream answered non-gRPC");
        if let Some(metrics) = &ends.metrics {
            metrics.upstream_error(cluster, UpstreamError::NonGrpc);
        }
    }
    let body = UpstreamBody {
        inner: Some(body),
        drain: Box::pin(ends.drain.cancelled_owned()),
        metrics: ends.metrics,
        cluster: ends.cluster,
        abandon: ends.abandon,
    };
    Response::from_parts(parts, crate::body::boxed(body))
}

/// The upstream's body, ended by a status trailer whatever happens to the upstream.
struct UpstreamBody {
    /// Dropped as soon as the call ends, which resets the upstream stream.
    inner: Option<Incoming>,
    drain: Pin<Box<WaitForCancellationFutureOwned>>,
    metrics: Option<Metrics>,
    cluster: Arc<str>,
    /// Ends the upload when this body goes (see [`UploadBody`]).
    abandon: Abandon,
}

impl UpstreamBody {
    fn end(&mut self, status: &Status) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.inner = None;
        Poll::Ready(Some(Ok(Frame::trailers(status.to_headers()))))
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if this.drain.as_mut().poll(cx).is_ready() {
            return this.end(&Status::new(
                Code::Unavailable,
                "the gateway is shutting down; retry the call",
            ));
        }
        match Pin::new(inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(frame))) => {
                if frame.is_trailers() {
                    this.inner = None;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let e: BoxError = Box::new(e);
                let mut status = Status::from_response_body_error(&e);
                if this.abandon.client_gone() {
                    // The upstream reset because the client abandoned its upload.
                    status = Status::new(Code::Cancelled, "the client abandoned the call");
                }
                if status.code() == Code::Unavailable {
                    status = Status::new(
                        Code::Unavailable,
                        format!("upstream stream failed: {}", super::error_chain(e.as_ref())),
                    );
                }
                tracing::info!(cluster = %this.cluster, code = %status.code(), "{}", status.message());
                if let Some(metrics) = &this.metrics
                    && status.code() != Code::Cancelled
                {
                    metrics.upstream_error(&this.cluster, UpstreamError::Reset);
                }
                this.end(&status)
            }
            // The edge turns an end without trailers into INTERNAL.
            Poll::Ready(None) => {
                this.inner = None;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_none()
    }
}
