//! weir-client against a third-party gRPC-Web server: the connect-node reference server of
//! `web/interop`. Skipped, with the reason printed, when its npm packages are not installed
//! (`cd web && npm ci`), unless `WEIR_REQUIRE` is set (as `scripts/test` does): then a missing
//! peer fails the test, so CI cannot pass without running it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use weir_client::{CallOptions, Client, Code, HttpVersion, Mode};
use weir_testservice::pb::{
    EchoStatus, ResponseParameters, SimpleRequest, SimpleResponse, StreamingInputCallRequest,
    StreamingInputCallResponse, StreamingOutputCallRequest, StreamingOutputCallResponse,
};

const GUARD: Duration = Duration::from_secs(60);

struct Reference {
    child: Child,
    url: String,
}

impl Drop for Reference {
    fn drop(&mut self) {
        // kill_on_drop ends the child we started (and only it).
        let _ = self.child.start_kill();
    }
}

/// `WEIR_REQUIRE` set to anything but empty, `0` or `false`: peers must be present.
fn required() -> bool {
    std::env::var("WEIR_REQUIRE")
        .is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

async fn start_reference() -> Option<Reference> {
    let interop = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../web/interop");
    let tsx = interop.join("../node_modules/.bin/tsx");
    if !tsx.exists() {
        assert!(
            !required(),
            "WEIR_REQUIRE is set but {} is missing; run `cd web && npm ci`",
            tsx.display()
        );
        println!(
            "SKIPPED: {} is missing; run `cd web && npm ci` to test against the connect-node reference server",
            tsx.display()
        );
        return None;
    }
    // node itself (not the tsx wrapper, whose child would outlive a kill of the wrapper).
    let mut child = Command::new("node")
        .args(["--import", "tsx", "src/reference-server.ts"])
        .args(["--listen", "127.0.0.1:0"])
        .current_dir(&interop)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start the reference server");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let url = tokio::time::timeout(GUARD, async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if let Some(at) = line.find("listening on ") {
                return line[at + "listening on ".len()..].trim().to_owned();
            }
        }
        panic!("the reference server exited before listening");
    })
    .await
    .expect("hang guard: reference server start");
    // Keep draining its stdout (cancellation events) so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Some(Reference { child, url })
}

#[tokio::test]
async fn every_call_type_against_connect_node() {
    let Some(server) = start_reference().await else {
        return;
    };
    let all = [
        (HttpVersion::Http1, Mode::Binary),
        (HttpVersion::Http1, Mode::Text),
        (HttpVersion::Http2, Mode::Binary),
        (HttpVersion::Http2, Mode::Text),
    ];
    for (version, mode) in all {
        let what = format!("{version:?} {mode:?}");
        let client = Client::builder(&server.url)
            .http_version(version)
            .mode(mode)
            .timeout(GUARD)
            .build()
            .unwrap();

        let request = SimpleRequest {
            response_size: 314,
            ..Default::default()
        };
        let options = CallOptions::new()
            .metadata("x-grpc-test-echo-initial", "hi")
            .binary_metadata("x-grpc-test-echo-trailing-bin", &[1, 2, 3]);
        let reply = client
            .unary_message::<_, SimpleResponse>(
                "grpc.testing.TestService/UnaryCall",
                &request,
                options,
            )
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(reply.message().payload.as_ref().unwrap().body.len(), 314);
        assert_eq!(reply.headers()["x-grpc-test-echo-initial"], "hi", "{what}");
        assert!(
            reply
                .trailers()
                .contains_key("x-grpc-test-echo-trailing-bin")
        );

        let request = StreamingOutputCallRequest {
            response_parameters: [3, 5, 7]
                .map(|size| ResponseParameters {
                    size,
                    ..Default::default()
                })
                .to_vec(),
            ..Default::default()
        };
        let mut stream = client
            .server_streaming_message(
                "grpc.testing.TestService/StreamingOutputCall",
                &request,
                CallOptions::new(),
            )
            .await
            .unwrap();
        let mut sizes = Vec::new();
        while let Some(m) = stream
            .message_as::<StreamingOutputCallResponse>()
            .await
            .unwrap()
        {
            sizes.push(m.payload.unwrap().body.len());
        }
        assert_eq!(sizes, [3, 5, 7], "{what}");

        let messages: Vec<Bytes> = [1usize, 2]
            .map(|n| {
                StreamingInputCallRequest {
                    payload: Some(weir_testservice::pb::Payload {
                        body: vec![0; n],
                        ..Default::default()
                    }),
                    ..Default::default()
                }
                .encode_to_vec()
                .into()
            })
            .to_vec();
        let reply = client
            .client_streaming(
                "grpc.testing.TestService/StreamingInputCall",
                futures_util::stream::iter(messages),
                CallOptions::new(),
            )
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let reply = StreamingInputCallResponse::decode(reply.message().clone()).unwrap();
        assert_eq!(reply.aggregated_payload_size, 3, "{what}");

        let request = SimpleRequest {
            response_status: Some(EchoStatus {
                code: 5,
                message: "nope ☺".into(),
            }),
            ..Default::default()
        };
        let err = client
            .unary(
                "grpc.testing.TestService/UnaryCall",
                request.encode_to_vec().into(),
                CallOptions::new(),
            )
            .await
            .unwrap_err();
        assert_eq!(
            (err.code(), err.message()),
            (Code::NotFound, "nope ☺"),
            "{what}"
        );

        let err = client
            .unary(
                "grpc.testing.UnimplementedService/UnimplementedCall",
                Bytes::new(),
                CallOptions::new(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented, "{what}");
    }
}
