//! The call edge through the gateway: one policy for every front door, and for native gRPC
//! too. Each case here once slipped past one of the doors (issue "One call edge").

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

mod support;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::BodyExt as _;
use weir::body::BoxBody;
use weir::grpc_web::GrpcWebLayer;
use weir_codec::frame;

use support::gateway::*;
use support::*;

const VARIANTS: [(Proto, Mode); 4] = [
    (Proto::H1, Mode::Binary),
    (Proto::H1, Mode::Text),
    (Proto::H2, Mode::Binary),
    (Proto::H2, Mode::Text),
];
const INTERNAL: i32 = 13;
const RESOURCE_EXHAUSTED: i32 = 8;

/// An upstream that answers OK to anything, checking nothing (as connect-node does not check
/// frame flags): only the gateway stands between a hostile client and it.
async fn lenient_upstream() -> Scripted {
    Scripted::start(Script::Chunks(vec![frame::encode_message(b"")])).await
}

/// A request frame with reserved flag bits is refused with INTERNAL by the gateway itself, over
/// every gRPC-Web variant, and the upstream never hears of the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_request_flags_never_reach_the_upstream() {
    let upstream = lenient_upstream().await;
    let gateway = Gateway::start(to_upstream(upstream.port())).await;
    for flags in [0x02u8, 0x40, 0x81] {
        for (proto, mode) in VARIANTS {
            let mut client = gateway.client(proto).await;
            let bad = frame::Frame::new(flags, Bytes::from_static(b"\x08\x01")).encode();
            let reply = client.call_raw(EMPTY_CALL, mode, mode.wire(&bad)).await;
            let message = reply.assert_code(INTERNAL);
            assert!(
                message.contains("flags"),
                "{flags:#04x} {proto:?} {mode:?}: {message}"
            );
        }
    }
    assert_eq!(upstream.requests(), 0, "the upstream was contacted");
}

/// What a native gRPC call through the gateway gets back: the status, wherever it is.
async fn native_call(gateway: &Gateway, headers: &[(&str, &str)], body: Bytes) -> HeaderMap {
    let mut client = gateway.client(Proto::H2).await;
    let mut request = client
        .builder(EMPTY_CALL)
        .method("POST")
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .send(request.body(BoxBody::full(body)).unwrap())
        .await;
    assert_eq!(response.status(), http::StatusCode::OK);
    if response.headers().contains_key("grpc-status") {
        return response.headers().clone();
    }
    let collected = response.into_body().collect().await.unwrap();
    collected.trailers().cloned().expect("trailers")
}

fn code(block: &HeaderMap) -> i32 {
    block["grpc-status"].to_str().unwrap().parse().unwrap()
}

/// Native gRPC through the gateway gets the same edge as gRPC-Web: message limits, metadata
/// validation and frame validation, before the upstream is contacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_grpc_gets_the_edge() {
    let upstream = lenient_upstream().await;
    let gateway = Gateway::with_layer(
        GrpcWebLayer::new().max_request_message_size(16),
        to_upstream(upstream.port()),
    )
    .await;
    let big = native_call(&gateway, &[], frame::encode_message(&[7; 17])).await;
    assert_eq!(code(&big), RESOURCE_EXHAUSTED, "{big:?}");
    let flags = native_call(
        &gateway,
        &[],
        frame::Frame::new(0x02, Bytes::new()).encode(),
    )
    .await;
    assert_eq!(code(&flags), INTERNAL, "{flags:?}");
    let metadata = native_call(&gateway, &[("x-a-bin", "!!")], frame::encode_message(b"")).await;
    assert_eq!(code(&metadata), INTERNAL, "{metadata:?}");
    let timeout = native_call(
        &gateway,
        &[("grpc-timeout", "1x")],
        frame::encode_message(b""),
    )
    .await;
    assert_eq!(code(&timeout), INTERNAL, "{timeout:?}");
    assert_eq!(upstream.requests(), 0, "the upstream was contacted");

    // A well-formed call goes through.
    let ok = native_call(&gateway, &[], frame::encode_message(b"")).await;
    assert_eq!(code(&ok), 0, "{ok:?}");
    assert_eq!(upstream.requests(), 1);
}

/// A native response frame with reserved flags from the upstream is refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_response_flags_are_internal() {
    let upstream = Scripted::start(Script::Chunks(vec![
        frame::Frame::new(0x40, Bytes::new()).encode(),
    ]))
    .await;
    let gateway = Gateway::start(to_upstream(upstream.port())).await;
    for (proto, mode) in VARIANTS {
        let mut client = gateway.client(proto).await;
        let reply = client.call_raw(EMPTY_CALL, mode, mode.frame(b"")).await;
        let message = reply.assert_code(INTERNAL);
        assert!(message.contains("reserved flags"), "{message}");
    }
}
