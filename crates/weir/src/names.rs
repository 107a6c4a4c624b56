//! Header names weir reads and writes on every call, parsed once: looking a header up by a
//! `&str` parses and validates the name each time.

use http::HeaderName;

pub(crate) const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
pub(crate) const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
pub(crate) const GRPC_STATUS_DETAILS_BIN: HeaderName =
    HeaderName::from_static("grpc-status-details-bin");
pub(crate) const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
/// Asks one hop for heartbeats (docs/protocol/heartbeat.md).
pub(crate) const WEIR_HEARTBEAT: HeaderName = HeaderName::from_static("weir-heartbeat");
