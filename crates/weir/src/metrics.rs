//! Prometheus metrics of gRPC calls.
//!
//! [`Metrics`] holds the registry; [`Metrics::layer`] counts the calls of the service it wraps
//! (place it under the gRPC-Web layer so that gRPC-Web and native calls are counted alike),
//! and [`Metrics::encode`] renders the text exposition format for a `/metrics` endpoint.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `weir_calls` (counter, `_total`) | `service`, `method`, `code` | finished calls by final status |
//! | `weir_calls_active` (gauge) | | calls in flight |
//! | `weir_call_cancellations` (counter, `_total`) | `service`, `method` | calls the client abandoned |
//! | `weir_call_duration_seconds` (histogram) | `service`, `method` | from request to final status |
//! | `weir_upstream_errors` (counter, `_total`) | `cluster`, `kind` | upstream failures: `connect`, `reset`, `non_grpc` |
//!
//! Service and method names come from request paths, which clients choose: past
//! [`MAX_LABELED_METHODS`] distinct methods, further ones are counted under `other`, so a
//! scanner cannot grow the registry without bound.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tower_layer::Layer;
use tower_service::Service;
use weir_codec::Code;

use crate::body::{BoxBody, BoxError};

/// Distinct (service, method) pairs that get their own labels.
pub const MAX_LABELED_METHODS: usize = 1000;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    service: Arc<str>,
    method: Arc<str>,
    code: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    service: Arc<str>,
    method: Arc<str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    cluster: String,
    kind: &'static str,
}

/// What went wrong with an upstream.
#[derive(Debug, Clone, Copy)]
pub enum UpstreamError {
    /// No connection could be made (or no address was available).
    Connect,
    /// The upstream reset or lost a stream mid-call.
    Reset,
    /// The upstream answered something that is not gRPC.
    NonGrpc,
}

struct Inner {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    active: Gauge,
    cancellations: Family<MethodLabels, Counter>,
    durations: Family<MethodLabels, Histogram>,
    upstream_errors: Family<UpstreamLabels, Counter>,
    /// The labels of each call path seen, up to [`MAX_LABELED_METHODS`]: looked up without
    /// allocating, shared by the calls.
    labeled: Mutex<HashMap<String, MethodLabels>>,
}

/// The metrics registry of a gateway or server; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// An empty registry with weir's metrics.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("weir");
        let calls = Family::<CallLabels, Counter>::default();
        let active = Gauge::default();
        let cancellations = Family::<MethodLabels, Counter>::default();
        let durations = Family::<MethodLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 20))
        });
        let upstream_errors = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "calls",
            "Finished calls by final gRPC status",
            calls.clone(),
        );
        registry.register("calls_active", "Calls in flight", active.clone());
        registry.register(
            "call_cancellations",
            "Calls abandoned by their client",
            cancellations.clone(),
        );
        registry.register(
            "call_duration_seconds",
            "Time from request to final status",
            durations.clone(),
        );
        registry.register(
            "upstream_errors",
            "Upstream failures by kind",
            upstream_errors.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                calls,
                active,
                cancellations,
                durations,
                upstream_errors,
                labeled: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The registry in the Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.inner.registry).is_err() {
            out.clear();
        }
        out
    }

    /// A layer that counts the calls of the service it wraps.
    pub fn layer(&self) -> MetricsLayer {
        MetricsLayer {
            metrics: self.clone(),
        }
    }

    /// Counts an upstream failure.
    pub fn upstream_error(&self, cluster: &str, kind: UpstreamError) {
        let kind = match kind {
            UpstreamError::Connect => "connect",
            UpstreamError::Reset => "reset",
            UpstreamError::NonGrpc => "non_grpc",
        };
        self.inner
            .upstream_errors
            .get_or_create(&UpstreamLabels {
                cluster: cluster.to_owned(),
                kind,
            })
            .inc();
    }

    fn labels(&self, path: &str) -> MethodLabels {
        let mut labeled = self
            .inner
            .labeled
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(labels) = labeled.get(path) {
            return labels.clone();
        }
        if labeled.len() >= MAX_LABELED_METHODS {
            return MethodLabels {
                service: Arc::from("other"),
                method: Arc::from("other"),
            };
        }
        let (service, method) = path
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .unwrap_or(("", path));
        let labels = MethodLabels {
            service: Arc::from(service),
            method: Arc::from(method),
        };
        labeled.insert(path.to_owned(), labels.clone());
        labels
    }
}

/// One call being counted; records its outcome exactly once, when it ends or is dropped.
struct CallRecord {
    metrics: Metrics,
    labels: MethodLabels,
    started: Instant,
    done: bool,
}

impl CallRecord {
    fn finish(&mut self, code: Code) {
        if self.done {
            return;
        }
        self.done = true;
        let inner = &self.metrics.inner;
        inner.active.dec();
        inner
            .durations
            .get_or_create(&self.labels)
            .observe(self.started.elapsed().as_secs_f64());
        inner
            .calls
            .get_or_create(&CallLabels {
                service: self.labels.service.clone(),
                method: self.labels.method.clone(),
                code: code.name(),
            })
            .inc();
        if code == Code::Cancelled {
            inner.cancellations.get_or_create(&self.labels).inc();
        }
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        // Dropped before a status went out: the client abandoned the call.
        self.finish(Code::Cancelled);
    }
}

fn status_of(headers: &http::HeaderMap) -> Option<Code> {
    headers
        .get(&crate::names::GRPC_STATUS)
        .and_then(|v| Code::from_header(v.as_bytes()))
}

/// Counts calls; see [`Metrics::layer`].
#[derive(Debug, Clone)]
pub struct MetricsLayer {
    metrics: Metrics,
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> MetricsService<S> {
        MetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service made by [`MetricsLayer`].
#[derive(Debug, Clone)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, B> Service<Request<B>> for MetricsService<S>
where
    S: Service<Request<B>, Response = Response<BoxBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<BoxBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<BoxBody>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.metrics.inner.active.inc();
        let mut record = CallRecord {
            labels: self.metrics.labels(request.uri().path()),
            metrics: self.metrics.clone(),
            started: Instant::now(),
            done: false,
        };
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            if let Some(code) = status_of(response.headers()) {
                record.finish(code);
                return Ok(response);
            }
            Ok(response.map(|inner| {
                crate::body::boxed(CountedBody {
                    inner,
                    record: Some(record),
                })
            }))
        })
    }
}

struct CountedBody {
    inner: BoxBody,
    record: Option<CallRecord>,
}

impl Body for CountedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(mut record) = self.record.take()
                {
                    record.finish(status_of(trailers).unwrap_or(Code::Unknown));
                }
            }
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => {
                if let Some(mut record) = self.record.take() {
                    record.finish(Code::Unknown);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded() {
        let metrics = Metrics::new();
        for i in 0..MAX_LABELED_METHODS + 10 {
            let labels = metrics.labels(&format!("/svc/M{i}"));
            if i < MAX_LABELED_METHODS {
                assert_eq!(&*labels.method, format!("M{i}"));
            } else {
                assert_eq!(&*labels.method, "other");
            }
        }
        assert_eq!(&*metrics.labels("/svc/M1").method, "M1");
    }

    #[test]
    fn records_once() {
        let metrics = Metrics::new();
        metrics.inner.active.inc();
        let mut record = CallRecord {
            labels: metrics.labels("/a.B/C"),
            metrics: metrics.clone(),
            started: Instant::now(),
            done: false,
        };
        record.finish(Code::Ok);
        drop(record);
        let text = metrics.encode();
        assert!(
            text.contains(r#"weir_calls_total{service="a.B",method="C",code="OK"} 1"#),
            "{text}"
        );
        assert!(!text.contains("CANCELLED"), "{text}");
        assert!(text.contains("weir_calls_active 0"), "{text}");
    }
}
