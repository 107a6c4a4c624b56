//! `weir-bench serve KIND`: one contender in a process of its own.
//!
//! The harness runs every server as a child process of its own binary, so that servers and
//! the load generator do not share a runtime, and so that each server's memory can be read
//! from `/proc/PID/status`. A server prints `listening on http://ADDR`, then one line
//! `cancelled MICROS` (wall clock, µs since the Unix epoch) each time a TestService handler
//! sees a call cancelled.
//!
//! With `WEIR_BENCH_WEBTRANSPORT=1` in its environment, `weir-layer` also serves the same
//! TestService over WebTransport (HTTP/3, development certificate, any page origin) and prints
//! `webtransport on URL sha-256 HEX` after its `listening on` line: the browser benchmark
//! (`web/bench`) reads it. Off by default, so the other sections measure the layer alone.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tower::ServiceExt as _;
use tower_layer::Layer as _;
use weir::Cors;
use weir::grpc_web::GrpcWebLayer;
use weir::metrics::Metrics;
use weir::proxy::{ClusterConfig, Proxy};
use weir::server::Server;
use weir::webtransport::{ServerIdentity, WebTransportConfig, WebTransportServer};
use weir_testservice::{CallObserver, TestServiceImpl};

/// The server kinds.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Kind {
    /// weir's gRPC-Web layer over the TestService, served by weir's server.
    WeirLayer,
    /// tonic-web's layer over the same TestService, served by tonic (HTTP/1.1 accepted).
    TonicWeb,
    /// The TestService on plain tonic: native gRPC over h2c only.
    TonicNative,
    /// weir's gateway (layer → metrics → proxy) in front of an upstream.
    WeirGateway,
}

/// Streams one connection may carry: enough for the memory figures.
const STREAMS: u32 = 100_000;

pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Prints a `cancelled` line for every cancellation the observer counts.
fn report_cancellations(observer: Arc<CallObserver>) {
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            let counts = observer.wait_for(|c| c.cancelled > seen).await;
            let at = now_micros();
            for _ in seen..counts.cancelled {
                say(&format!("cancelled {at}"));
            }
            seen = counts.cancelled;
        }
    });
}

/// Serves `routes` over WebTransport on a UDP port of loopback, in a task of its own.
fn serve_webtransport(routes: tonic::service::Routes, cors: Cors) -> Result<(), String> {
    let identity = ServerIdentity::development().map_err(|e| format!("webtransport: {e}"))?;
    let config = WebTransportConfig::default().cors(cors);
    let server = WebTransportServer::bind(([127, 0, 0, 1], 0).into(), identity, config)
        .map_err(|e| format!("webtransport: cannot listen: {e}"))?;
    say(&format!(
        "webtransport on {} sha-256 {}",
        server.url("127.0.0.1"),
        server.certificate_hashes().hex().join(",")
    ));
    let service = routes
        .map_request(|request: http::Request<weir::body::BoxBody>| request)
        .map_response(|response| response.map(weir::body::boxed));
    tokio::spawn(server.serve(service, std::future::pending()));
    Ok(())
}

pub async fn run(kind: Kind, upstream: Option<u16>) -> Result<(), String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let observer = Arc::new(CallObserver::new());
    let routes = || {
        TestServiceImpl::new()
            .with_observer(observer.clone())
            .into_routes()
    };
    let stop = std::future::pending::<()>();
    let server = Server::new().max_concurrent_streams(STREAMS);
    let cors = Cors::default()
        .allow_origin("*")
        .map_err(|e| e.to_string())?;
    say(&format!("listening on http://{addr}"));
    match kind {
        Kind::WeirLayer => {
            report_cancellations(observer.clone());
            if std::env::var_os("WEIR_BENCH_WEBTRANSPORT").is_some_and(|v| v == "1") {
                serve_webtransport(routes(), cors.clone())?;
            }
            let service = GrpcWebLayer::new().cors(cors).layer(routes());
            server.serve(listener, service, stop).await;
        }
        Kind::WeirGateway => {
            let port = upstream.ok_or("weir-gateway needs --upstream PORT")?;
            let metrics = Metrics::new();
            let proxy = Proxy::builder()
                .cluster(ClusterConfig::new("up").address("127.0.0.1", port))
                .route("*", "up")
                .metrics(metrics.clone())
                .build()
                .map_err(|e| e.to_string())?;
            let service = GrpcWebLayer::new()
                .cors(cors)
                .layer(metrics.layer().layer(proxy));
            server.serve(listener, service, stop).await;
        }
        Kind::TonicWeb => {
            report_cancellations(observer.clone());
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            tonic::transport::Server::builder()
                .accept_http1(true)
                .max_concurrent_streams(Some(STREAMS))
                .layer(tonic_web::GrpcWebLayer::new())
                .add_routes(routes())
                .serve_with_incoming(incoming)
                .await
                .map_err(|e| e.to_string())?;
        }
        Kind::TonicNative => {
            report_cancellations(observer.clone());
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            tonic::transport::Server::builder()
                .max_concurrent_streams(Some(STREAMS))
                .add_routes(routes())
                .serve_with_incoming(incoming)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}
