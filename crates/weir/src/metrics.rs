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
//!
//! The same layer can also write an **access log** ([`MetricsLayer::access_log`]: one
//! `tracing` event per call, target `weir::access`) and open a **span per call**
//! ([`MetricsLayer::trace_calls`]: target `weir::call`, with the OpenTelemetry semantic
//! conventions' names), both with the call's front door ([`Door`]), client ([`Peer`]),
//! upstream address ([`Upstream`]), status, duration and the bytes of gRPC frames each way.
//! Neither costs anything when off.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
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
use crate::edge::{Door, Peer, Upstream};

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
            access_log: false,
            trace: None,
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
    /// For the access log and the span; `None` when both are off.
    detail: Option<Box<Detail>>,
}

/// What the access log and the call's span say beyond the metrics.
struct Detail {
    path: String,
    door: Option<Door>,
    peer: Option<SocketAddr>,
    upstream: Option<SocketAddr>,
    /// Bytes of request frames, counted by the request body.
    bytes_in: Arc<AtomicU64>,
    bytes_out: u64,
    access_log: bool,
    span: tracing::Span,
}

impl CallRecord {
    fn finish(&mut self, code: Code) {
        if self.done {
            return;
        }
        self.done = true;
        let inner = &self.metrics.inner;
        let elapsed = self.started.elapsed();
        inner.active.dec();
        inner
            .durations
            .get_or_create(&self.labels)
            .observe(elapsed.as_secs_f64());
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
        if let Some(detail) = self.detail.take() {
            detail.finish(code, elapsed);
        }
    }
}

impl Detail {
    fn finish(self, code: Code, elapsed: std::time::Duration) {
        let bytes_in = self.bytes_in.load(Ordering::Relaxed);
        let door = self.door.map_or("", Door::as_str);
        let span = &self.span;
        span.record("rpc.grpc.status_code", code as i64);
        span.record("weir.status", code.name());
        span.record("weir.bytes_in", bytes_in);
        span.record("weir.bytes_out", self.bytes_out);
        if let Some(upstream) = self.upstream {
            span.record("server.address", tracing::field::display(upstream));
        }
        if code != Code::Ok {
            span.record("otel.status_code", "ERROR");
        }
        if self.access_log {
            tracing::info!(
                target: "weir::access",
                method = %self.path,
                status = code.name(),
                // Whole microseconds, so the number prints without float noise.
                duration_ms = elapsed.as_micros() as f64 / 1e3,
                bytes_in,
                bytes_out = self.bytes_out,
                peer = self.peer.map(tracing::field::display),
                door,
                upstream = self.upstream.map(tracing::field::display),
            );
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

/// What [`MetricsLayer::trace_calls`] calls with each call's span and request headers.
pub type TraceHook = dyn Fn(&tracing::Span, &mut http::HeaderMap) + Send + Sync;

/// Counts calls; see [`Metrics::layer`].
#[derive(Clone)]
pub struct MetricsLayer {
    metrics: Metrics,
    access_log: bool,
    trace: Option<Arc<TraceHook>>,
}

impl std::fmt::Debug for MetricsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsLayer")
            .field("access_log", &self.access_log)
            .field("trace", &self.trace.is_some())
            .finish_non_exhaustive()
    }
}

impl MetricsLayer {
    /// Also logs one line per call: an `info` event with target `weir::access` and the fields
    /// `method`, `status`, `duration_ms`, `bytes_in`, `bytes_out` (gRPC frames, prefixes
    /// included), `peer`, `door` and `upstream`. Off by default.
    pub fn access_log(mut self, on: bool) -> Self {
        self.access_log = on;
        self
    }

    /// Also opens an `info` span per call, target `weir::call`, named after the method, with
    /// OpenTelemetry's fields (`otel.name`, `otel.kind = "server"`, `rpc.system`,
    /// `rpc.service`, `rpc.method`, `rpc.grpc.status_code`, `client.address`,
    /// `server.address` for the upstream) and weir's (`weir.door`, `weir.status`,
    /// `weir.bytes_in`, `weir.bytes_out`). The span ends with the call. `hook` is called with
    /// the span and the request's headers before the call goes on: the place to continue the
    /// client's trace context and hand it on (for example with `tracing-opentelemetry`).
    pub fn trace_calls(
        mut self,
        hook: impl Fn(&tracing::Span, &mut http::HeaderMap) + Send + Sync + 'static,
    ) -> Self {
        self.trace = Some(Arc::new(hook));
        self
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> MetricsService<S> {
        MetricsService {
            inner,
            metrics: self.metrics.clone(),
            access_log: self.access_log,
            trace: self.trace.clone(),
        }
    }
}

/// The service made by [`MetricsLayer`].
#[derive(Clone)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Metrics,
    access_log: bool,
    trace: Option<Arc<TraceHook>>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for MetricsService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> MetricsService<S> {
    fn detail<B>(&self, request: &mut Request<B>, labels: &MethodLabels) -> Option<Box<Detail>> {
        if !self.access_log && self.trace.is_none() {
            return None;
        }
        let door = request.extensions().get::<Door>().copied();
        let peer = request.extensions().get::<Peer>().map(|peer| peer.0);
        let span = match &self.trace {
            Some(hook) => {
                let span = tracing::info_span!(
                    target: "weir::call",
                    "call",
                    otel.name = %request.uri().path().trim_start_matches('/'),
                    otel.kind = "server",
                    otel.status_code = tracing::field::Empty,
                    rpc.system = "grpc",
                    rpc.service = &*labels.service,
                    rpc.method = &*labels.method,
                    rpc.grpc.status_code = tracing::field::Empty,
                    client.address = peer.map(tracing::field::display),
                    server.address = tracing::field::Empty,
                    weir.door = door.map_or("", Door::as_str),
                    weir.status = tracing::field::Empty,
                    weir.bytes_in = tracing::field::Empty,
                    weir.bytes_out = tracing::field::Empty,
                );
                hook(&span, request.headers_mut());
                span
            }
            None => tracing::Span::none(),
        };
        Some(Box::new(Detail {
            path: request.uri().path().to_owned(),
            door,
            peer,
            upstream: None,
            bytes_in: Arc::new(AtomicU64::new(0)),
            bytes_out: 0,
            access_log: self.access_log,
            span,
        }))
    }
}

impl<S, B> Service<Request<B>> for MetricsService<S>
where
    S: Service<Request<CountedRequest<B>>, Response = Response<BoxBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<BoxBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<BoxBody>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        self.metrics.inner.active.inc();
        let labels = self.metrics.labels(request.uri().path());
        let detail = self.detail(&mut request, &labels);
        let bytes_in = detail.as_ref().map(|detail| detail.bytes_in.clone());
        let mut record = CallRecord {
            labels,
            metrics: self.metrics.clone(),
            started: Instant::now(),
            done: false,
            detail,
        };
        let future = self
            .inner
            .call(request.map(|inner| CountedRequest { inner, bytes_in }));
        Box::pin(async move {
            let response = future.await?;
            if let Some(detail) = &mut record.detail {
                detail.upstream = response.extensions().get::<Upstream>().map(|up| up.0);
            }
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

pin_project_lite::pin_project! {
    /// A request body whose data is counted for the access log and the call's span.
    pub struct CountedRequest<B> {
        #[pin]
        inner: B,
        bytes_in: Option<Arc<AtomicU64>>,
    }
}

impl<B> Body for CountedRequest<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let (Poll::Ready(Some(Ok(frame))), Some(bytes)) = (&polled, this.bytes_in.as_ref())
            && let Some(data) = frame.data_ref()
        {
            bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
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
                if let (Some(data), Some(record)) = (frame.data_ref(), self.record.as_mut())
                    && let Some(detail) = record.detail.as_mut()
                {
                    detail.bytes_out += data.len() as u64;
                }
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
            detail: None,
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
