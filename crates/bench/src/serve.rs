//! `weir-bench serve KIND`: one contender in a process of its own.
//!
//! The harness runs every server as a child process of its own binary, so that servers and
//! the load generator do not share a runtime, and so that each server's memory can be read
//! from `/proc/PID/status`. A server prints `listening on http://ADDR` (weir's layer and
//! gateway print `webtransport URL HASH` before it: they also serve gRPC over WebTransport,
//! with a development certificate of that SHA-256), then one line `cancelled MICROS` (wall
//! clock, µs since the Unix epoch) each time a TestService handler sees a call cancelled.

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
    /// The same with the access log on: one JSON line per call, written to /dev/null (the
    /// formatting and the write, without a disk).
    WeirGatewayAccessLog,
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

/// A WebTransport listener on a free loopback port, announced as `webtransport URL HASH`;
/// sessions from any origin (the browser benchmark's page) are accepted.
fn webtransport(cors: &Cors) -> Result<WebTransportServer, String> {
    let identity = ServerIdentity::development().map_err(|e| e.to_string())?;
    // As many calls per session as the heaviest workload opens at once.
    let config = WebTransportConfig::default()
        .max_calls_per_session(1000)
        .cors(cors.clone());
    let server = WebTransportServer::bind(([127, 0, 0, 1], 0).into(), identity, config)
        .map_err(|e| format!("webtransport: {e}"))?;
    let hashes = server.certificate_hashes().hex().join(",");
    say(&format!(
        "webtransport {} {hashes}",
        server.url("127.0.0.1")
    ));
    Ok(server)
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
    match kind {
        Kind::WeirLayer => {
            let webtransport = webtransport(&cors)?;
            let service = TestServiceImpl::new()
                .with_observer(observer.clone())
                .into_service()
                .map_request(|request: http::Request<weir::body::BoxBody>| request)
                .map_response(|response| response.map(weir::body::boxed));
            tokio::spawn(webtransport.serve(service, std::future::pending()));
            say(&format!("listening on http://{addr}"));
            report_cancellations(observer.clone());
            let service = GrpcWebLayer::new().cors(cors).layer(routes());
            server.serve(listener, service, stop).await;
        }
        Kind::WeirGateway | Kind::WeirGatewayAccessLog => {
            let port = upstream.ok_or("weir-gateway needs --upstream PORT")?;
            let access_log = matches!(kind, Kind::WeirGatewayAccessLog);
            if access_log {
                let sink = std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/null")
                    .map_err(|e| format!("/dev/null: {e}"))?;
                tracing_subscriber::fmt()
                    .json()
                    .with_writer(std::sync::Mutex::new(sink))
                    .with_max_level(tracing::Level::INFO)
                    .init();
            }
            let metrics = Metrics::new();
            let proxy = Proxy::builder()
                .cluster(ClusterConfig::new("up").address("127.0.0.1", port))
                .route("*", "up")
                .metrics(metrics.clone())
                .build()
                .map_err(|e| e.to_string())?;
            let webtransport = webtransport(&cors)?;
            let grpc = metrics.layer().access_log(access_log).layer(proxy);
            tokio::spawn(webtransport.serve(grpc.clone(), std::future::pending()));
            say(&format!("listening on http://{addr}"));
            let service = GrpcWebLayer::new().cors(cors).layer(grpc);
            server.serve(listener, service, stop).await;
        }
        Kind::TonicWeb => {
            say(&format!("listening on http://{addr}"));
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
            say(&format!("listening on http://{addr}"));
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
