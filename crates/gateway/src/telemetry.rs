//! Logs and traces: the `tracing` subscriber (text or JSON lines on stderr) and, when
//! `[tracing] otlp_endpoint` is set, a span per call exported with OpenTelemetry over
//! OTLP/gRPC, continuing the client's W3C trace context and handing it on upstream.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use weir::metrics::TraceHook;

use crate::config::{LogFormat, Tracing};

/// The installed subscriber's exporter, flushed by [`Telemetry::shutdown`].
pub(crate) struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// Installs the global subscriber. Must run inside the Tokio runtime (the exporter's batch
/// task is spawned on it).
pub(crate) fn init(
    format: LogFormat,
    level: &str,
    tracing: Option<&Tracing>,
) -> Result<Telemetry, String> {
    let filter = EnvFilter::try_from_env("WEIR_LOG")
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"))
        // Call spans are for the trace exporter, not for the log lines.
        .add_directive("weir::call=off".parse().map_err(|e| format!("{e}"))?);
    let ansi = colour_logs(
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        std::env::var_os("NO_COLOR"),
    );
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    let registry = tracing_subscriber::registry().with(fmt.with_filter(filter));
    let Some(tracing) = tracing else {
        registry.init();
        return Ok(Telemetry { provider: None });
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(tracing.otlp_endpoint.clone())
        .with_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("tracing.otlp_endpoint: {e}"))?;
    let processor =
        opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(tracing.service_name.clone())
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        // A client's sampling decision is kept; calls that start a trace are sampled at the
        // configured ratio.
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            tracing.sample_ratio,
        ))))
        .with_resource(resource)
        .build();
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("weir"))
        .with_filter(Targets::new().with_target("weir::call", tracing::Level::INFO));
    registry.with(otel).init();
    Ok(Telemetry {
        provider: Some(provider),
    })
}

/// Whether text logs are coloured: only on a terminal, and not when `NO_COLOR` is set to
/// anything but the empty string (<https://no-color.org>).
pub(crate) fn colour_logs(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|value| value.is_empty())
}

impl Telemetry {
    /// What the metrics layer calls for each call's span, when traces are exported: the
    /// client's `traceparent`/`tracestate` become the span's parent, and the upstream gets the
    /// span's own context in their place (`grpc-trace-bin` passes untouched).
    pub(crate) fn trace_hook(&self) -> Option<Arc<TraceHook>> {
        self.provider.as_ref()?;
        Some(Arc::new(|span: &tracing::Span, headers: &mut HeaderMap| {
            let propagator = TraceContextPropagator::new();
            let parent = propagator.extract(&Headers(headers));
            // Fails only when no OpenTelemetry layer sees the span (it was filtered out).
            if span.set_parent(parent).is_err() {
                return;
            }
            propagator.inject_context(&span.context(), &mut HeadersMut(headers));
        }))
    }

    /// Exports the spans still buffered. Call outside the runtime's tasks, before it stops.
    pub(crate) fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown_with_timeout(Duration::from_secs(5))
        {
            eprintln!("weir: exporting the last traces failed: {e}");
        }
    }
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeadersMut<'a>(&'a mut HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}
