//! The upstream proxy: native gRPC calls forwarded to upstream gRPC servers.
//!
//! [`Proxy`] is a `tower::Service` that takes a native gRPC call (as the
//! [gRPC-Web layer](crate::grpc_web) produces one) and forwards it, schema-agnostic, to the
//! cluster its service is routed to. Message frames are spliced through without decoding;
//! only headers and trailers are rewritten:
//!
//! - services that no route names are answered `UNIMPLEMENTED` without touching any upstream;
//! - hop-by-hop headers and the statuses only servers may send are stripped from requests;
//! - the call's deadline (the [call edge](crate::edge)'s [`Deadline`], else `grpc-timeout`) is
//!   capped by a configurable maximum and forwarded upstream reduced by the time already
//!   spent; the edge in front enforces it — the proxy keeps no timer of its own;
//! - an unreachable upstream is `UNAVAILABLE`; an upstream that fails mid-stream ends the call
//!   with a non-OK trailer, never with a body that simply stops; a non-gRPC answer (say an
//!   HTTP 503 page from a load balancer) is counted and passed on, and the edge maps it to a
//!   gRPC status with the body summarised in `grpc-message`;
//! - dropping the call (the client went away) drops the upstream stream, which hyper resets
//!   with `RST_STREAM(CANCEL)`.
//!
//! ```no_run
//! use std::time::Duration;
//! use weir::proxy::{ClusterConfig, Proxy};
//!
//! # async fn run() {
//! let proxy = Proxy::builder()
//!     .cluster(ClusterConfig::new("backend").address("127.0.0.1", 50051))
//!     .route("grpc.testing.TestService", "backend")
//!     .max_timeout(Some(Duration::from_secs(300)))
//!     .build()
//!     .expect("routes name known clusters");
//! # let _ = proxy; }
//! ```

mod body;
mod cluster;
mod headers;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use tokio::time::Instant;
use tower_service::Service;
use weir_codec::Code;

pub use cluster::ClusterConfig;

use crate::Status;
use crate::body::{BoxBody, BoxError};
use crate::edge::Deadline;
use crate::metrics::{Metrics, UpstreamError};
use crate::status::StatusExt as _;
use cluster::Cluster;
use tokio_util::sync::CancellationToken;

/// Builds a [`Proxy`].
#[derive(Debug, Default)]
pub struct ProxyBuilder {
    clusters: Vec<ClusterConfig>,
    routes: Vec<(String, String)>,
    max_timeout: Option<Duration>,
    metrics: Option<Metrics>,
    drain: Option<CancellationToken>,
}

impl ProxyBuilder {
    /// Adds an upstream cluster.
    pub fn cluster(mut self, cluster: ClusterConfig) -> Self {
        self.clusters.push(cluster);
        self
    }

    /// Routes a fully qualified gRPC service (`package.Service`) to a cluster; `*` routes
    /// every service that no other route names.
    pub fn route(mut self, service: impl Into<String>, cluster: impl Into<String>) -> Self {
        self.routes.push((service.into(), cluster.into()));
        self
    }

    /// Caps the deadline forwarded upstream (`None`: calls without a deadline run unbounded).
    /// A call without one is forwarded with this one; a longer one is shortened to it. The
    /// [call edge](crate::edge::EdgeConfig::max_call) in front should carry the same cap, as
    /// it is the edge that enforces deadlines.
    pub fn max_timeout(mut self, max: Option<Duration>) -> Self {
        self.max_timeout = max;
        self
    }

    /// Counts upstream failures in these metrics.
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// When this token is cancelled, every call still streaming ends with `UNAVAILABLE`
    /// ("the gateway is shutting down") and its upstream stream is cancelled: the end of a
    /// graceful shutdown's grace period.
    pub fn drain(mut self, token: CancellationToken) -> Self {
        self.drain = Some(token);
        self
    }

    /// Starts the clusters' resolvers and returns the proxy. Must run inside a tokio runtime.
    ///
    /// # Errors
    /// When a route names a cluster that does not exist, or a cluster has no address.
    pub fn build(self) -> Result<Proxy, BoxError> {
        let mut clusters = HashMap::new();
        for config in self.clusters {
            if config.targets.is_empty() {
                return Err(format!("cluster {:?} has no address", config.name).into());
            }
            let name = config.name.clone();
            if clusters
                .insert(name.clone(), Cluster::start(config))
                .is_some()
            {
                return Err(format!("cluster {name:?} is defined twice").into());
            }
        }
        let mut routes = HashMap::new();
        let mut fallback = None;
        for (service, cluster_name) in self.routes {
            let cluster = clusters.get(&cluster_name).cloned().ok_or_else(|| {
                format!("route for {service:?} names unknown cluster {cluster_name:?}")
            })?;
            if service == "*" {
                fallback = Some(cluster);
            } else {
                routes.insert(service, cluster);
            }
        }
        Ok(Proxy {
            inner: Arc::new(Inner {
                routes,
                fallback,
                max_timeout: self.max_timeout,
                metrics: self.metrics,
                drain: self.drain.unwrap_or_default(),
            }),
        })
    }
}

#[derive(Debug)]
struct Inner {
    routes: HashMap<String, Cluster>,
    fallback: Option<Cluster>,
    max_timeout: Option<Duration>,
    metrics: Option<Metrics>,
    drain: CancellationToken,
}

/// Forwards native gRPC calls to upstream clusters. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

impl Proxy {
    /// Starts building a proxy.
    pub fn builder() -> ProxyBuilder {
        ProxyBuilder::default()
    }

    fn route(&self, path: &str) -> Option<&Cluster> {
        let service = path.strip_prefix('/')?.split_once('/')?.0;
        self.inner
            .routes
            .get(service)
            .or(self.inner.fallback.as_ref())
    }
}

impl<B> Service<Request<B>> for Proxy
where
    B: Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<BoxBody>;
    type Error = std::convert::Infallible;
    type Future =
        Pin<Box<dyn Future<Output = Result<Response<BoxBody>, std::convert::Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let received = Instant::now();
        let path = request.uri().path().to_owned();
        let Some(cluster) = self.route(&path).cloned() else {
            let status = Status::new(
                Code::Unimplemented,
                format!("no route for {path}: its service is not served here"),
            );
            tracing::debug!(%path, "call for an unrouted service");
            return Box::pin(std::future::ready(Ok(status.into_response())));
        };
        let (mut parts, body) = request.into_parts();
        // The call edge parsed `grpc-timeout`, enforces the deadline and stripped the
        // hop-by-hop headers; a proxy used without it only forwards what it is given.
        let asked = match parts.extensions.get::<Deadline>() {
            Some(Deadline(at)) => Some(*at),
            None => match crate::edge::parse_timeout(&parts.headers) {
                Ok(timeout) => timeout.map(|t| received + t),
                Err(status) => {
                    tracing::info!(%path, code = %status.code(), message = status.message(), "refused call");
                    return Box::pin(std::future::ready(Ok(status.into_response())));
                }
            },
        };
        if parts.extensions.get::<crate::edge::Admitted>().is_none() {
            crate::hop::strip_request(&mut parts.headers);
        }
        // The upstream's authority replaces whatever the client named.
        parts.headers.remove(http::header::HOST);
        let cap = self.inner.max_timeout.map(|max| received + max);
        let deadline = match (asked, cap) {
            (Some(asked), Some(cap)) => Some(asked.min(cap)),
            (asked, cap) => asked.or(cap),
        };
        let inner = self.inner.clone();
        Box::pin(async move {
            if let Some(deadline) = deadline {
                headers::set_timeout(
                    &mut parts.headers,
                    deadline.saturating_duration_since(Instant::now()),
                );
            }
            // The request body is sent by hyper's own task, which holds the upstream stream
            // open for as long as the body may still produce data. When this call ends for any
            // reason — the client went away, a deadline, an answer — the body fails with
            // CANCEL, so that the upstream stream is reset even while the upload is open.
            let abandon = body::Abandon::new();
            let body = body::UploadBody::new(crate::body::boxed(body), &abandon);
            let request = Request::from_parts(parts, crate::body::boxed(body));
            match cluster.call(request).await {
                Ok(response) => {
                    let ends = body::Ends {
                        abandon,
                        drain: inner.drain.clone(),
                        metrics: inner.metrics.clone(),
                        cluster: cluster.name.clone(),
                    };
                    Ok(body::translate(response, ends))
                }
                Err(e) => {
                    if let Some(metrics) = &inner.metrics {
                        metrics.upstream_error(&cluster.name, UpstreamError::Connect);
                    }
                    let status = Status::new(
                        Code::Unavailable,
                        format!(
                            "upstream cluster {:?} unavailable: {}",
                            cluster.name,
                            error_chain(e.as_ref())
                        ),
                    );
                    tracing::warn!(cluster = %cluster.name, %path, "{}", status.message());
                    Ok(status.into_response())
                }
            }
        })
    }
}

/// An error and its causes on one line: hyper's errors say little without their sources.
pub(crate) fn error_chain(mut err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    while let Some(source) = err.source() {
        let text = source.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        err = source;
    }
    out
}
