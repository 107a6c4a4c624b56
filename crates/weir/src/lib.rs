//! gRPC for the browser with every kind of streaming.
//!
//! weir puts gRPC services on the web. This crate is the library under the `weir` gateway
//! binary, for Rust servers that want the same in-process:
//!
//! - [`grpc_web::GrpcWebLayer`]: a tower layer that adds gRPC-Web (binary and text, HTTP/1.1
//!   and HTTP/2, all four call types) to any gRPC service such as a tonic router, with CORS
//!   ([`Cors`]), limits and deadlines;
//! - [`server`]: a small HTTP/1.1 + HTTP/2 server loop with graceful shutdown, to run such a
//!   service on a TCP listener, in cleartext or over TLS ([`tls`]).
//!
//! - [`proxy::Proxy`]: forwards native gRPC calls, schema-agnostic, to upstream clusters
//!   (HTTP/2 pools, balancing, deadlines, failures mapped to statuses).
//!
//! - [`webtransport`]: gRPC over WebTransport (HTTP/3), every call type with full duplex,
//!   into the same services.
//!
//! - [`metrics`] and [`admin`]: Prometheus metrics of the calls, and the `/metrics` and
//!   `/healthz` endpoint of an admin listener; [`page`]: a landing page at `/`.
//!
//! Wire formats live in the sans-IO [`weir_codec`] crate.
//!
//! # Example: gRPC-Web for a tonic service
//!
//! ```no_run
//! use tower::Layer as _;
//! use weir::{Cors, grpc_web::GrpcWebLayer};
//!
//! # async fn run(routes: tonic::service::Routes) -> Result<(), Box<dyn std::error::Error>> {
//! let service = GrpcWebLayer::new()
//!     .cors(Cors::default().allow_origin("http://localhost:3000")?)
//!     .layer(routes);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! weir::server::Server::new().serve(listener, service, std::future::pending()).await;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod admin;
pub mod body;
mod call;
mod cors;
pub mod grpc_web;
mod hop;
pub mod metrics;
mod names;
pub mod page;
pub mod proxy;
pub mod server;
pub(crate) mod status;
pub mod tls;
pub mod webtransport;

pub use cors::Cors;
pub use status::Status;
pub use weir_codec::Code;
