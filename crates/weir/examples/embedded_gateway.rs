//! The gateway as a library: browsers' gRPC-Web calls, translated by weir's layer, forwarded
//! by [`weir::proxy::Proxy`] to an upstream gRPC server, with Prometheus metrics of the calls
//! at `GET /metrics`. No schema is needed: messages pass through undecoded.
//!
//! ```text
//! cargo run -p weir --example embedded_gateway -- \
//!     --upstream http://127.0.0.1:50051 --listen 127.0.0.1:8080
//! ```
//!
//! The upstream speaks cleartext HTTP/2 (h2c) here; see `ClusterConfig::tls` for TLS
//! upstreams. Stop it with Ctrl-C.

use std::convert::Infallible;
use std::net::SocketAddr;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, Uri};
use tower::{Layer as _, ServiceExt as _};
use weir::Cors;
use weir::body::{BoxBody, BoxError};
use weir::grpc_web::GrpcWebLayer;
use weir::metrics::Metrics;
use weir::proxy::{ClusterConfig, Proxy};
use weir::server::Server;

const USAGE: &str = "usage: embedded_gateway --upstream http://HOST:PORT [--listen ADDR] [--allow-origin ORIGIN]...";

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut listen: SocketAddr = "127.0.0.1:8080".parse()?;
    let mut upstream = None;
    let mut cors = Cors::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(value)) => listen = value.parse()?,
            ("--upstream", Some(value)) => upstream = Some(value.parse::<Uri>()?),
            ("--allow-origin", Some(value)) => cors = cors.allow_origin(&value)?,
            ("--help" | "-h", _) => {
                println!("{USAGE}");
                return Ok(());
            }
            _ => return Err(USAGE.into()),
        }
    }
    let upstream = upstream.ok_or(USAGE)?;
    if upstream.scheme_str().is_some_and(|scheme| scheme != "http") {
        return Err("this example reaches its upstream in cleartext: use an http:// URL".into());
    }
    let host = upstream.host().ok_or("the upstream URL has no host")?;
    let port = upstream.port_u16().unwrap_or(80);

    let metrics = Metrics::new();
    // Every service goes to the one cluster; routes can split services between clusters.
    let proxy = Proxy::builder()
        .cluster(ClusterConfig::new("upstream").address(host, port))
        .route("*", "upstream")
        .metrics(metrics.clone())
        .build()?;
    // The metrics layer sits under the gRPC-Web layer, so it counts gRPC-Web and native gRPC
    // calls alike.
    let gateway = GrpcWebLayer::new()
        .cors(cors)
        .layer(metrics.layer().layer(proxy));

    // `GET /metrics` for Prometheus; everything else is a call for the upstream.
    let service = tower::service_fn(move |request: Request<hyper::body::Incoming>| {
        let gateway = gateway.clone();
        let metrics = metrics.clone();
        async move {
            if request.method() == Method::GET && request.uri().path() == "/metrics" {
                let mut response = Response::new(BoxBody::full(metrics.encode()));
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                return Ok::<_, Infallible>(response);
            }
            gateway.oneshot(request).await
        }
    });

    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    Server::new()
        .serve(listener, service, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    Ok(())
}
