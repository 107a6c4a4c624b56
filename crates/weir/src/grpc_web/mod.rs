//! gRPC-Web in front of any gRPC service.
//!
//! [`GrpcWebLayer`] wraps a service that speaks native gRPC over `http` types (a tonic
//! router, an axum app with gRPC routes, weir's upstream proxy) and lets browsers call it with
//! gRPC-Web, binary or text, over HTTP/1.1 or HTTP/2. Native gRPC requests pass through
//! untouched, so one port serves both.
//!
//! The translation follows the [gRPC-Web protocol][web]: request bodies are already gRPC
//! frames (after base64 decoding in text mode) and go to the service as they arrive, any
//! number of them, which is what makes client streaming work over HTTP/1.1; response frames
//! are forwarded as soon as the service produces them, and its HTTP trailers become the final
//! `0x80` frame of the body.
//!
//! ```
//! use weir::grpc_web::GrpcWebLayer;
//! use weir::Cors;
//!
//! # fn wrap<S>(grpc_service: S) -> Result<(), Box<dyn std::error::Error>> {
//! let layer = GrpcWebLayer::new()
//!     .cors(Cors::default().allow_origin("https://app.example.com")?)
//!     .max_request_message_size(1024 * 1024);
//! let service = tower::Layer::layer(&layer, grpc_service);
//! # let _ = service; Ok(()) }
//! ```
//!
//! [web]: https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-WEB.md

mod layer;
mod request;
mod response;
mod service;

pub use layer::GrpcWebLayer;
pub use service::GrpcWebService;
