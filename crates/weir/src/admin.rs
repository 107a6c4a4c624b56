//! An admin endpoint for operators: Prometheus metrics at `/metrics` and a health check at
//! `/healthz`.
//!
//! [`Admin`] is a `tower::Service` meant for its own listener (not the one browsers reach):
//!
//! - `GET /metrics`: the [`Metrics`] registry in the OpenMetrics text format;
//! - `GET /healthz`: `200 ok` while serving, `503 shutting down` once [`Admin::drain`] was
//!   called, so that load balancers stop sending new clients during a graceful shutdown;
//! - other methods on those paths: `405`; any other path: `404`.
//!
//! ```no_run
//! use weir::admin::Admin;
//! use weir::metrics::Metrics;
//!
//! # async fn run() -> std::io::Result<()> {
//! let metrics = Metrics::new();
//! // ... `metrics.layer()` counts the calls of the gRPC service ...
//! let admin = Admin::new(metrics);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9090").await?;
//! let shutdown = {
//!     let admin = admin.clone();
//!     async move {
//!         let _ = tokio::signal::ctrl_c().await;
//!         admin.drain();
//!     }
//! };
//! weir::server::Server::new().serve(listener, admin, shutdown).await;
//! # Ok(()) }
//! ```

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use tower_service::Service;

use crate::body::BoxBody;
use crate::metrics::Metrics;

const TEXT: &str = "text/plain; charset=utf-8";

/// Serves `/metrics` and `/healthz` (see the [module docs](self)).
///
/// Clones share their state: [`drain`](Self::drain) on one is seen by all.
#[derive(Debug, Clone)]
pub struct Admin {
    metrics: Metrics,
    draining: Arc<AtomicBool>,
}

impl Admin {
    /// An admin service that publishes `metrics`, healthy until [`drain`](Self::drain).
    pub fn new(metrics: Metrics) -> Self {
        Admin {
            metrics,
            draining: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Marks the server as shutting down: from now on `/healthz` answers `503`.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether [`drain`](Self::drain) was called.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    fn answer(&self, method: &Method, path: &str) -> Response<BoxBody> {
        let (status, content_type, body) = match (method, path) {
            (&Method::GET, "/metrics") => (
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                self.metrics.encode(),
            ),
            (&Method::GET, "/healthz") if self.is_draining() => (
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                "shutting down\n".to_owned(),
            ),
            (&Method::GET, "/healthz") => (StatusCode::OK, TEXT, "ok\n".to_owned()),
            (_, "/metrics" | "/healthz") => {
                (StatusCode::METHOD_NOT_ALLOWED, TEXT, "use GET\n".to_owned())
            }
            _ => (
                StatusCode::NOT_FOUND,
                TEXT,
                "not found; try /metrics or /healthz\n".to_owned(),
            ),
        };
        let mut response = Response::new(BoxBody::full(body));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::*;

    async fn get(admin: &Admin, method: Method, path: &str) -> (StatusCode, String) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .unwrap();
        let response = admin.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn metrics_health_and_the_rest() {
        let admin = Admin::new(Metrics::new());
        let (status, body) = get(&admin, Method::GET, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("weir_calls_active"), "{body}");
        assert_eq!(
            get(&admin, Method::GET, "/healthz").await,
            (StatusCode::OK, "ok\n".to_owned())
        );
        assert_eq!(
            get(&admin, Method::POST, "/healthz").await.0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(get(&admin, Method::GET, "/").await.0, StatusCode::NOT_FOUND);

        // A clone drains them all.
        admin.clone().drain();
        assert!(admin.is_draining());
        assert_eq!(
            get(&admin, Method::GET, "/healthz").await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting down\n".to_owned()
            )
        );
    }
}
