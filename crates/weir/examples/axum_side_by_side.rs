//! REST and gRPC-Web on one port: an axum app whose own routes answer `GET /health` and
//! `GET /hello/{name}`, and whose fallback is a tonic service (the gRPC interop
//! `TestService`) behind weir's gRPC-Web layer. Served by [`weir::server::Server`], so
//! HTTP/1.1 and HTTP/2 both work.
//!
//! ```text
//! cargo run -p weir --example axum_side_by_side -- --listen 127.0.0.1:8080
//! curl http://127.0.0.1:8080/hello/ada
//! ```
//!
//! Stop it with Ctrl-C.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use tower::Layer as _;
use weir::Cors;
use weir::grpc_web::GrpcWebLayer;
use weir::server::Server;

const USAGE: &str = "usage: axum_side_by_side [--listen ADDR] [--allow-origin ORIGIN]...";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut listen: SocketAddr = "127.0.0.1:8080".parse()?;
    let mut cors = Cors::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(value)) => listen = value.parse()?,
            ("--allow-origin", Some(value)) => cors = cors.allow_origin(&value)?,
            ("--help" | "-h", _) => {
                println!("{USAGE}");
                return Ok(());
            }
            _ => return Err(USAGE.into()),
        }
    }

    let grpc = GrpcWebLayer::new()
        .cors(cors)
        .layer(weir_testservice::routes());
    let app = Router::new()
        .route("/health", get(health))
        .route("/hello/{name}", get(hello))
        // Every other request is a gRPC call (`POST /package.Service/Method`): gRPC-Web from
        // browsers, or native gRPC. The layer answers anything else with an HTTP error.
        .fallback_service(grpc);

    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    Server::new()
        .serve(listener, app, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    Ok(())
}

async fn health() -> &'static str {
    "ok\n"
}

async fn hello(Path(name): Path<String>) -> String {
    format!("hello, {name}\n")
}
