//! An admin endpoint for operators: Prometheus metrics at `/metrics` and a health check at
//! `/healthz`.
//!
//! [`Admin`] is a `tower::Service` meant for its own listener (not the one browsers reach):
//!
//! - `GET /metrics`: the [`Metrics`] registry in the OpenMetrics text format;
//! - `GET /healthz`: `200 ok` while serving, `503 shutting down` once [`Admin::drain`] was
//!   called, so that load balancers stop sending new clients during a graceful shutdown;
//! - `POST /shutdown`: `202`, and [`Admin::shutdown_requested`] completes: the server starts
//!   the same stop as on SIGTERM;
//! - `POST /reload`: runs the hook given to [`Admin::on_reload`]: `200` with its message, or
//!   `400` with its error (`404` without a hook);
//! - `POST` requests that carry an `Origin` header are refused with `403`, so a web page
//!   cannot make a browser stop or reload a server whose admin port it can reach;
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
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use tokio::sync::watch;
use tower_service::Service;

use crate::body::BoxBody;
use crate::metrics::Metrics;

const TEXT: &str = "text/plain; charset=utf-8";

/// Serves `/metrics` and `/healthz` (see the [module docs](self)).
///
/// Clones share their state: [`drain`](Self::drain) on one is seen by all.
#[derive(Clone)]
pub struct Admin {
    metrics: Metrics,
    draining: Arc<AtomicBool>,
    shutdown: Arc<watch::Sender<bool>>,
    reload: Option<Arc<ReloadHook>>,
}

type ReloadHook = dyn Fn() -> Result<String, String> + Send + Sync;

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("draining", &self.is_draining())
            .field("reload", &self.reload.is_some())
            .finish_non_exhaustive()
    }
}

impl Admin {
    /// An admin service that publishes `metrics`, healthy until [`drain`](Self::drain).
    pub fn new(metrics: Metrics) -> Self {
        Admin {
            metrics,
            draining: Arc::new(AtomicBool::new(false)),
            shutdown: Arc::new(watch::Sender::new(false)),
            reload: None,
        }
    }

    /// What `POST /reload` runs: it answers `200` with the hook's message or `400` with its
    /// error. The hook runs on the admin listener's task: keep it short (re-reading a file
    /// is).
    pub fn on_reload(
        mut self,
        reload: impl Fn() -> Result<String, String> + Send + Sync + 'static,
    ) -> Self {
        self.reload = Some(Arc::new(reload));
        self
    }

    /// Completes once a client asked for a shutdown with `POST /shutdown` (at once if one
    /// already did).
    pub fn shutdown_requested(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut requested = self.shutdown.subscribe();
        async move {
            // The sender lives as long as `self`'s clones and this receiver: an error only
            // means "never".
            if requested.wait_for(|requested| *requested).await.is_err() {
                std::future::pending::<()>().await;
            }
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

    fn answer<B>(&self, request: &Request<B>) -> Response<BoxBody> {
        let (method, path) = (request.method(), request.uri().path());
        let (status, content_type, body) = match (method, path) {
            (&Method::POST, _) if request.headers().contains_key(header::ORIGIN) => (
                StatusCode::FORBIDDEN,
                TEXT,
                "not from a web page\n".to_owned(),
            ),
            (&Method::POST, "/reload") => match &self.reload {
                None => (
                    StatusCode::NOT_FOUND,
                    TEXT,
                    "this server cannot reload\n".to_owned(),
                ),
                Some(reload) => match reload() {
                    Ok(message) => (StatusCode::OK, TEXT, format!("{message}\n")),
                    Err(error) => (StatusCode::BAD_REQUEST, TEXT, format!("{error}\n")),
                },
            },
            (&Method::POST, "/shutdown") => {
                tracing::info!("shutdown requested on the admin listener");
                self.shutdown.send_replace(true);
                (StatusCode::ACCEPTED, TEXT, "shutting down\n".to_owned())
            }
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
            (_, "/shutdown" | "/reload") => (
                StatusCode::METHOD_NOT_ALLOWED,
                TEXT,
                "use POST\n".to_owned(),
            ),
            _ => (
                StatusCode::NOT_FOUND,
                TEXT,
                "not found; try /metrics, /healthz, POST /shutdown or POST /reload\n".to_owned(),
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
        std::future::ready(Ok(self.answer(&request)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::*;

    async fn get(admin: &Admin, method: Method, path: &str) -> (StatusCode, String) {
        send(admin, Request::builder().method(method).uri(path)).await
    }

    async fn send(admin: &Admin, request: http::request::Builder) -> (StatusCode, String) {
        let request = request.body(()).unwrap();
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

    #[tokio::test]
    async fn shutdown_is_asked_with_post_and_never_from_a_page() {
        let admin = Admin::new(Metrics::new());
        let requested = admin.shutdown_requested();
        tokio::pin!(requested);
        assert!(futures_util::poll!(requested.as_mut()).is_pending());

        assert_eq!(
            get(&admin, Method::GET, "/shutdown").await.0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        let from_page = Request::builder()
            .method(Method::POST)
            .uri("/shutdown")
            .header(header::ORIGIN, "https://evil.example");
        assert_eq!(send(&admin, from_page).await.0, StatusCode::FORBIDDEN);
        assert!(futures_util::poll!(requested.as_mut()).is_pending());

        assert_eq!(
            get(&admin, Method::POST, "/shutdown").await,
            (StatusCode::ACCEPTED, "shutting down\n".to_owned())
        );
        requested.await;
        // Asked once, seen by every later waiter too.
        admin.clone().shutdown_requested().await;
        // Asking is not draining: the server decides when /healthz turns.
        assert_eq!(get(&admin, Method::GET, "/healthz").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn reload_runs_the_hook() {
        let admin = Admin::new(Metrics::new());
        assert_eq!(
            get(&admin, Method::POST, "/reload").await.0,
            StatusCode::NOT_FOUND
        );
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let admin = admin.on_reload({
            let calls = calls.clone();
            move || match calls.fetch_add(1, Ordering::Relaxed) {
                0 => Ok("reloaded".to_owned()),
                _ => Err("routes: bad".to_owned()),
            }
        });
        assert_eq!(
            get(&admin, Method::GET, "/reload").await.0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        let from_page = Request::builder()
            .method(Method::POST)
            .uri("/reload")
            .header(header::ORIGIN, "https://evil.example");
        assert_eq!(send(&admin, from_page).await.0, StatusCode::FORBIDDEN);
        assert_eq!(calls.load(Ordering::Relaxed), 0);
        assert_eq!(
            get(&admin, Method::POST, "/reload").await,
            (StatusCode::OK, "reloaded\n".to_owned())
        );
        assert_eq!(
            get(&admin, Method::POST, "/reload").await,
            (StatusCode::BAD_REQUEST, "routes: bad\n".to_owned())
        );
    }
}
