//! The interop metadata echo: `x-grpc-test-echo-initial` and
//! `x-grpc-test-echo-trailing-bin`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

/// Request header echoed back as a response header.
pub const ECHO_INITIAL_HEADER: &str = "x-grpc-test-echo-initial";
/// Request header (binary metadata) echoed back as a trailer.
pub const ECHO_TRAILING_HEADER: &str = "x-grpc-test-echo-trailing-bin";

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

fn initial_name() -> HeaderName {
    HeaderName::from_static(ECHO_INITIAL_HEADER)
}

fn trailing_name() -> HeaderName {
    HeaderName::from_static(ECHO_TRAILING_HEADER)
}

/// A [`Layer`] that echoes the interop test metadata, see [`EchoMetadata`].
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoMetadataLayer;

impl<S> Layer<S> for EchoMetadataLayer {
    type Service = EchoMetadata<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EchoMetadata { inner }
    }
}

/// Middleware echoing the interop test metadata around a gRPC service.
///
/// * every `x-grpc-test-echo-initial` request header is copied into the
///   response headers;
/// * the `x-grpc-test-echo-trailing-bin` request header is copied into the
///   response trailers, merged into the trailers frame that carries
///   `grpc-status` (or into the headers of a trailers-only response).
///
/// Values are copied verbatim, so binary (`-bin`, base64) values stay intact.
#[derive(Debug, Clone)]
pub struct EchoMetadata<S> {
    inner: S,
}

impl<S> EchoMetadata<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for EchoMetadata<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<EchoBody<ResBody>>;
    type Error = S::Error;
    type Future = EchoFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let initial = req
            .headers()
            .get_all(ECHO_INITIAL_HEADER)
            .iter()
            .cloned()
            .collect();
        let trailing = req.headers().get(ECHO_TRAILING_HEADER).cloned();
        EchoFuture {
            inner: self.inner.call(req),
            initial,
            trailing,
        }
    }
}

pin_project! {
    /// Response future of [`EchoMetadata`].
    #[derive(Debug)]
    pub struct EchoFuture<F> {
        #[pin]
        inner: F,
        initial: Vec<HeaderValue>,
        trailing: Option<HeaderValue>,
    }
}

impl<F, ResBody, E> Future for EchoFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
{
    type Output = Result<http::Response<EchoBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        let headers = response.headers_mut();
        for value in this.initial.drain(..) {
            headers.append(initial_name(), value);
        }
        let mut trailing = this.trailing.take();
        if headers.contains_key(GRPC_STATUS) {
            // Trailers-only response: its headers are the trailers.
            if let Some(value) = trailing.take() {
                headers.insert(trailing_name(), value);
            }
        }
        Poll::Ready(Ok(response.map(|inner| EchoBody { inner, trailing })))
    }
}

pin_project! {
    /// Response body of [`EchoMetadata`]: the inner body, with the echoed
    /// trailer merged into its trailers.
    #[derive(Debug)]
    pub struct EchoBody<B> {
        #[pin]
        inner: B,
        trailing: Option<HeaderValue>,
    }
}

impl<B: Body> Body for EchoBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        match ready!(this.inner.poll_frame(cx)) {
            Some(Ok(frame)) => {
                let frame = match frame.into_trailers() {
                    Ok(mut trailers) => {
                        if let Some(value) = this.trailing.take() {
                            trailers.insert(trailing_name(), value);
                        }
                        Frame::trailers(trailers)
                    }
                    Err(frame) => frame,
                };
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(err)) => Poll::Ready(Some(Err(err))),
            // The inner body ended without trailers: send ours alone.
            None => Poll::Ready(this.trailing.take().map(|value| {
                let mut trailers = HeaderMap::new();
                trailers.insert(trailing_name(), value);
                Ok(Frame::trailers(trailers))
            })),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.trailing.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
