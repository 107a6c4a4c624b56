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

use std::sync::{Arc, Mutex, PoisonError};

use crate::Status;

/// The first failure of a call that the layer itself detected (for example an oversize
/// request message), which overrides whatever status the inner service reports once it sees
/// the broken request body: the layer knows the precise reason, the service only saw an
/// error from its body.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallFailure(Arc<Mutex<Option<Status>>>);

impl CallFailure {
    pub(crate) fn set(&self, status: Status) {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(status);
        }
    }

    pub(crate) fn get(&self) -> Option<Status> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Whole frames taken out of a [`weir_codec::frame::FrameDecoder`] in one go, joined into one
/// chunk. A single frame is passed on as the slice it arrived in, without copying.
#[derive(Debug, Default)]
pub(crate) struct Spliced {
    first: Option<bytes::Bytes>,
    joined: Option<bytes::BytesMut>,
}

impl Spliced {
    pub(crate) fn push(&mut self, wire: bytes::Bytes) {
        if let Some(joined) = &mut self.joined {
            joined.extend_from_slice(&wire);
        } else if let Some(first) = self.first.take() {
            let mut joined = bytes::BytesMut::with_capacity(first.len() + wire.len());
            joined.extend_from_slice(&first);
            joined.extend_from_slice(&wire);
            self.joined = Some(joined);
        } else {
            self.first = Some(wire);
        }
    }

    pub(crate) fn into_bytes(self) -> Option<bytes::Bytes> {
        self.joined.map(bytes::BytesMut::freeze).or(self.first)
    }
}
