//! `weir demo`: the interop TestService in-process behind the gRPC-Web layer.

use std::io::Write as _;
use std::net::SocketAddr;

use tower_layer::Layer as _;
use weir::Cors;
use weir::grpc_web::GrpcWebLayer;

use crate::site::Site;

pub(crate) async fn run(
    listen: SocketAddr,
    allow_origins: &[String],
) -> Result<(), Box<dyn std::error::Error>> {
    let mut cors = Cors::default();
    for origin in allow_origins {
        cors = cors
            .allow_origin(origin)
            .map_err(|e| format!("--allow-origin {origin:?}: {e}"))?;
    }
    let service = Site::new(
        GrpcWebLayer::new()
            .cors(cors)
            .layer(weir_testservice::service()),
    );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    println!("weir demo: listening on http://{addr} (gRPC-Web and gRPC; HTTP/1.1 and h2c)");
    std::io::stdout().flush()?;
    tracing::info!(%addr, origins = ?allow_origins, "serving the interop TestService");
    weir::server::Server::new()
        .serve(listener, service, crate::shutdown_signal())
        .await;
    Ok(())
}
