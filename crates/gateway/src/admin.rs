//! The admin listener: `/metrics` (Prometheus) and `/healthz`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use http::{Method, Request, Response, StatusCode, header};
use tower_service::Service;
use weir::body::BoxBody;
use weir::metrics::Metrics;

/// Serves the admin endpoints.
#[derive(Debug, Clone)]
pub(crate) struct Admin {
    metrics: Metrics,
    draining: Arc<AtomicBool>,
}

impl Admin {
    pub(crate) fn new(metrics: Metrics, draining: Arc<AtomicBool>) -> Self {
        Admin { metrics, draining }
    }

    fn answer(&self, method: &Method, path: &str) -> Response<BoxBody> {
        let (status, content_type, body) = match (method, path) {
            (&Method::GET, "/metrics") => (
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                self.metrics.encode(),
            ),
            (&Method::GET, "/healthz") if self.draining.load(Ordering::Relaxed) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                "shutting down\n".to_owned(),
            ),
            (&Method::GET, "/healthz") => (
                StatusCode::OK,
                "text/plain; charset=utf-8",
                "ok\n".to_owned(),
            ),
            (_, "/metrics" | "/healthz") => (
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain; charset=utf-8",
                "use GET\n".to_owned(),
            ),
            _ => (
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "not found; try /metrics or /healthz\n".to_owned(),
            ),
        };
        let mut response = Response::new(BoxBody::full(body));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static(content_type),
        );
        response
    }
}

impl<B> Service<Request<B>> for Admin {
    type Response = Response<BoxBody>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<BoxBody>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        std::future::ready(Ok(self.answer(request.method(), request.uri().path())))
    }
}
