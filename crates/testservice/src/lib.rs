//! placeholder
#![allow(missing_docs)]
pub mod pb { tonic::include_proto!("grpc.testing"); }
