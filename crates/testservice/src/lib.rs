//! The standard gRPC interop `grpc.testing.TestService`, built on tonic.
//!
//! weir uses it as the backend of its demo, tests and benchmarks. The crate
//! provides:
//!
//! * [`pb`]: the generated `grpc.testing` messages, servers and clients;
//! * [`TestServiceImpl`]: the service (see its docs for the behaviour of each
//!   method);
//! * [`EchoMetadataLayer`]: the interop metadata echo
//!   (`x-grpc-test-echo-initial`, `x-grpc-test-echo-trailing-bin`);
//! * [`CallObserver`]: counters of started / completed / cancelled calls, so
//!   tests can check that a handler saw a cancellation;
//! * [`service`] / [`TestServer`]: everything assembled, as a plain
//!   `tower::Service<http::Request<B>>` ready to be served by tonic, hyper or
//!   wrapped in more layers;
//! * [`FILE_DESCRIPTOR_SET`]: the encoded descriptors of the protos.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use weir_testservice::{CallObserver, TestServiceImpl};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let observer = Arc::new(CallObserver::new());
//! let server = TestServiceImpl::new()
//!     .with_observer(observer.clone())
//!     .into_service();
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let incoming = tonic::transport::server::TcpIncoming::from(listener);
//! tonic::transport::Server::builder()
//!     .serve_with_incoming(server, incoming)
//!     .await?;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod echo;
mod observer;
mod service;

/// The generated `grpc.testing` package: messages, `*_server` and `*_client`
/// modules.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("grpc.testing");
}

pub use echo::{
    ECHO_INITIAL_HEADER, ECHO_TRAILING_HEADER, EchoBody, EchoFuture, EchoMetadata,
    EchoMetadataLayer,
};
pub use observer::{CallCounts, CallObserver};
pub use service::{DEFAULT_SERVER_ID, ResponseStream, TestServiceImpl};

/// The encoded `google.protobuf.FileDescriptorSet` of the `grpc.testing`
/// protos (`empty.proto`, `messages.proto`, `test.proto`).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/grpc_testing_descriptor.bin"));

/// The assembled interop server: `TestService` and `UnimplementedService`
/// routes behind the metadata echo.
///
/// It implements `tower::Service<http::Request<B>>` for any body `B:
/// http_body::Body<Data = bytes::Bytes> + Send + 'static` (whose error
/// converts into a boxed error), with response
/// `http::Response<EchoBody<tonic::body::Body>>` and error
/// [`Infallible`](std::convert::Infallible). It is `Clone + Send + Sync`.
pub type TestServer = EchoMetadata<tonic::service::Routes>;

/// The interop server with default settings, see [`TestServer`].
pub fn service() -> TestServer {
    TestServiceImpl::default().into_service()
}

/// The `TestService` and `UnimplementedService` routes with default
/// settings, without the metadata echo.
pub fn routes() -> tonic::service::Routes {
    TestServiceImpl::default().into_routes()
}
