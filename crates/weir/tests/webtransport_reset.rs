//! The code of the server's RESET_STREAM when a client stops reading a call
//! (`docs/protocol/webtransport.md` §5): always the mapping's `CANCEL`, whatever code the
//! client's STOP_SENDING carried. QUIC stacks answer a STOP_SENDING by resetting with the
//! peer's own code when the stream is merely dropped (quinn does), which would send a bare 0
//! or an undefined code back unmapped.
//!
//! A receiver cannot read the reset code of a direction it stopped itself, so the test reads
//! the frame off quinn's own trace of the frames it receives. This file holds one test: the
//! subscriber it installs is global to the test process.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut as _, Bytes, BytesMut};
use prost::Message as _;
use tower::ServiceExt as _;
use weir::webtransport::{ServerIdentity, WebTransportConfig, WebTransportServer, codes};
use weir_client::webtransport::WebTransportClient;
use weir_codec::frame::{FLAG_TRAILERS, encode_header, encode_message};
use weir_testservice::TestServiceImpl;
use weir_testservice::pb::{ResponseParameters, StreamingOutputCallRequest};
use wtransport::endpoint::ConnectOptions;

/// Everything quinn traces, kept for the test to read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// The error codes of the RESET_STREAM frames received so far.
    fn reset_codes(&self) -> Vec<u64> {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        text.lines()
            .filter(|line| line.contains("ResetStream"))
            .filter_map(|line| {
                let rest = &line[line.find("error_code")? + "error_code".len()..];
                let digits: String = rest
                    .chars()
                    .skip_while(|c| !c.is_ascii_digit())
                    .take_while(char::is_ascii_digit)
                    .collect();
                digits.parse().ok()
            })
            .collect()
    }
}

fn request_head(path: &str) -> Bytes {
    let block = format!(":path: {path}\r\ncontent-type: application/grpc+proto\r\n");
    let mut out = BytesMut::new();
    encode_header(FLAG_TRAILERS, block.len(), &mut out);
    out.put_slice(block.as_bytes());
    out.freeze()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_call_is_reset_with_cancel_whatever_the_client_sent() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("quinn_proto=trace")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let server = WebTransportServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        ServerIdentity::development().unwrap(),
        WebTransportConfig::default(),
    )
    .unwrap();
    let url = server.url("127.0.0.1");
    let hashes = server.certificate_hashes().get();
    let service = TestServiceImpl::new()
        .into_service()
        .map_request(|request: http::Request<weir::body::BoxBody>| request)
        .map_response(|response| response.map(weir::body::boxed));
    tokio::spawn(server.serve(service, std::future::pending()));
    let client = WebTransportClient::connect_with(ConnectOptions::builder(&url).build(), &hashes)
        .await
        .unwrap();

    // A slow server stream, so that the server is still sending when the client stops.
    let request = StreamingOutputCallRequest {
        response_parameters: (0..50)
            .map(|_| ResponseParameters {
                size: 10,
                interval_us: 20_000,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let (mut send, mut recv) = client.connection().open_bi().await.unwrap().await.unwrap();
    send.write_all(&request_head(
        "/grpc.testing.TestService/StreamingOutputCall",
    ))
    .await
    .unwrap();
    send.write_all(&encode_message(&request.encode_to_vec()))
        .await
        .unwrap();
    send.quic_stream_mut().finish().unwrap();
    let mut first = [0u8; 5];
    recv.read_exact(&mut first).await.unwrap();
    // STOP_SENDING with a bare 0, as a peer that skips the HTTP/3 code mapping sends it.
    recv.quic_stream_mut()
        .stop(wtransport::quinn::VarInt::from_u32(0))
        .unwrap();

    let expected = weir_codec::webtransport::to_http3(codes::CANCEL);
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen = captured.reset_codes();
        if !seen.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, [expected], "RESET_STREAM codes received");
}
