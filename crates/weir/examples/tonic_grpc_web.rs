//! A tonic service on the web: the gRPC interop `TestService` behind weir's gRPC-Web layer
//! (with a CORS policy), served by [`weir::server::Server`]. One port answers browsers
//! (gRPC-Web, binary and text) and native gRPC clients alike, over HTTP/1.1 and HTTP/2.
//!
//! ```text
//! cargo run -p weir --example tonic_grpc_web -- \
//!     --listen 127.0.0.1:8080 --allow-origin http://localhost:3000
//! ```
//!
//! Stop it with Ctrl-C: open calls get the server's grace period to finish.

use std::net::SocketAddr;

use tower::Layer as _;
use weir::Cors;
use weir::grpc_web::GrpcWebLayer;
use weir::server::Server;
use weir_testservice::TestServiceImpl;
use weir_testservice::pb::test_service_server::TestServiceServer;

const USAGE: &str = "usage: tonic_grpc_web [--listen ADDR] [--allow-origin ORIGIN]...";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut listen: SocketAddr = "127.0.0.1:8080".parse()?;
    // Same-origin pages and non-browser clients are always allowed; cross-origin pages only
    // when listed.
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

    // Any tonic service works the same way: here the generated server of the interop
    // `grpc.testing.TestService`, in tonic's router.
    let routes =
        tonic::service::Routes::new(TestServiceServer::new(TestServiceImpl::new())).prepare();
    let service = GrpcWebLayer::new().cors(cors).layer(routes);

    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    Server::new()
        .serve(listener, service, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    Ok(())
}
