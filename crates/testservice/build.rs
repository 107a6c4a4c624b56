//! Generates the `grpc.testing` messages, servers and clients.
//!
//! The protos are parsed with `protox` (pure Rust), so no `protoc` binary is
//! needed. The encoded `FileDescriptorSet` is written next to the generated
//! code and exposed by the crate as `FILE_DESCRIPTOR_SET`.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../../proto");
    let proto_dir = proto_root.join("grpc/testing");
    println!("cargo:rerun-if-changed={}", proto_dir.display());
    for name in ["empty.proto", "messages.proto", "test.proto"] {
        println!("cargo:rerun-if-changed={}", proto_dir.join(name).display());
    }

    let fds = protox::compile(["grpc/testing/test.proto"], [&proto_root])?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("grpc_testing_descriptor.bin"),
        fds.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
