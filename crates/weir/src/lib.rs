//! gRPC for the browser with every kind of streaming.
//!
//! weir puts gRPC services on the web. This crate is the library under the `weir` gateway
//! binary, for Rust servers that want the same in-process:
//!
//! - [`grpc_web::GrpcWebLayer`]: a tower layer that adds gRPC-Web (binary and text, HTTP/1.1
//!   and HTTP/2, all four call types) to any gRPC service such as a tonic router, with CORS
//!   ([`Cors`]), limits and deadlines;
//! - [`edge`]: the call edge that layer, the WebTransport endpoint and native gRPC on the
//!   same port all go through — limits, metadata and frame checks, one deadline per call,
//!   the mapping of what a service answers to a status; its docs draw the path of a call;
//! - [`server`]: a small HTTP/1.1 + HTTP/2 server loop with a graceful stop (drain, then
//!   close), to run such a service on a TCP listener, in cleartext or over TLS ([`tls`]).
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
//! # Cargo features
//!
//! All are on by default. The gRPC-Web layer, [`Cors`], [`Status`] and [`body`] need none of
//! them: a server that already has an HTTP stack (tonic, axum) can depend on
//! `weir = { version = "0.1", default-features = false }` and compiles no TLS, QUIC or
//! Prometheus crates.
//!
//! | feature | enables | brings in |
//! |---|---|---|
//! | `server` | [`server`] | hyper's and hyper-util's servers |
//! | `tls` | [`tls`], [`Server::serve_tls`](server::Server::serve_tls); implies `server` | rustls |
//! | `proxy` | [`proxy`]; implies `metrics` (it counts upstream failures) | hyper's HTTP/2 client, rustls (TLS upstreams) |
//! | `webtransport` | [`webtransport`] | quinn, rustls, web-transport-proto, rcgen |
//! | `metrics` | [`metrics`] | prometheus-client |
//!
//! # Runnable examples
//!
//! In `crates/weir/examples/`, each listening where `--listen ADDR` says and serving until
//! Ctrl-C (`cargo run -p weir --example NAME -- --listen 127.0.0.1:8080`):
//!
//! - `tonic_grpc_web`: a tonic service (the gRPC interop `TestService`) behind
//!   [`GrpcWebLayer`](grpc_web::GrpcWebLayer) with a CORS policy, served by
//!   [`Server`](server::Server);
//! - `axum_side_by_side`: an axum app with REST routes (`GET /health`, `GET /hello/{name}`)
//!   and the gRPC-Web service as its fallback, on one port;
//! - `embedded_gateway`: the gateway as a library, [`Proxy`](proxy::Proxy) to the upstream
//!   given by `--upstream http://HOST:PORT`, behind the layer, with call metrics at
//!   `GET /metrics`.
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
// The crate docs above link every module; with some features off, some of those links have no
// target.
#![cfg_attr(
    not(all(
        feature = "server",
        feature = "tls",
        feature = "proxy",
        feature = "webtransport",
        feature = "metrics"
    )),
    allow(rustdoc::broken_intra_doc_links)
)]

#[cfg(feature = "metrics")]
pub mod admin;
pub mod body;
mod call;
mod cors;
pub mod edge;
pub mod grpc_web;
mod hop;
#[cfg(feature = "metrics")]
pub mod metrics;
mod names;
pub mod page;
#[cfg(feature = "proxy")]
pub mod proxy;
#[cfg(feature = "server")]
pub mod server;
pub(crate) mod status;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "webtransport")]
pub mod webtransport;

pub use cors::Cors;
pub use status::Status;
pub use weir_codec::Code;
