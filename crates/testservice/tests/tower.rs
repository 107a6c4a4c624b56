//! The assembled server used as a plain `tower::Service`, without tonic's
//! transport (as the gRPC-Web layer of weir uses it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use prost::Message;
use tower::ServiceExt;
use weir_testservice::pb::{
    ResponseParameters, SimpleRequest, SimpleResponse, StreamingOutputCallRequest,
};

fn frame(message: &impl Message) -> Bytes {
    let body = message.encode_to_vec();
    let mut buf = BytesMut::with_capacity(5 + body.len());
    buf.put_u8(0);
    buf.put_u32(u32::try_from(body.len()).unwrap());
    buf.put_slice(&body);
    buf.freeze()
}

fn grpc_request(path: &str) -> http::request::Builder {
    Request::post(path)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
}

async fn call(request: Request<Full<Bytes>>) -> (Response<()>, Bytes, Option<HeaderMap>) {
    let response = weir_testservice::service().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    (
        Response::from_parts(parts, ()),
        collected.to_bytes(),
        trailers,
    )
}

#[tokio::test]
async fn unary_with_echo_over_plain_tower() {
    let body = frame(&SimpleRequest {
        response_size: 3,
        ..Default::default()
    });
    let request = grpc_request("/grpc.testing.TestService/UnaryCall")
        .header("x-grpc-test-echo-initial", "hello")
        .header("x-grpc-test-echo-trailing-bin", "q6ur")
        .body(Full::new(body))
        .unwrap();
    let (response, mut data, trailers) = call(request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-grpc-test-echo-initial"], "hello");
    assert!(response.headers().get("grpc-status").is_none());

    assert_eq!(data.get_u8(), 0);
    let len = data.get_u32() as usize;
    assert_eq!(len, data.len());
    let message = SimpleResponse::decode(data).unwrap();
    assert_eq!(message.payload.unwrap().body, [0, 0, 0]);

    let trailers = trailers.expect("trailers");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["x-grpc-test-echo-trailing-bin"], "q6ur");
}

#[tokio::test]
async fn error_is_trailers_only_with_echo() {
    let body = frame(&SimpleRequest {
        response_size: -1,
        ..Default::default()
    });
    let request = grpc_request("/grpc.testing.TestService/UnaryCall")
        .header("x-grpc-test-echo-trailing-bin", "q6ur")
        .body(Full::new(body))
        .unwrap();
    let (response, data, trailers) = call(request).await;
    assert_eq!(response.headers()["grpc-status"], "3");
    assert_eq!(response.headers()["x-grpc-test-echo-trailing-bin"], "q6ur");
    assert!(data.is_empty());
    assert!(trailers.is_none());
}

#[tokio::test]
async fn deadline_is_enforced_without_tonic_transport() {
    let body = frame(&StreamingOutputCallRequest {
        response_parameters: vec![
            ResponseParameters {
                size: 1,
                ..Default::default()
            },
            ResponseParameters {
                size: 1,
                interval_us: 5_000_000,
                ..Default::default()
            },
        ],
        ..Default::default()
    });
    let request = grpc_request("/grpc.testing.TestService/StreamingOutputCall")
        .header("grpc-timeout", "200m")
        .body(Full::new(body))
        .unwrap();
    let started = std::time::Instant::now();
    let (response, data, trailers) = call(request).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    assert_eq!(response.status(), 200);
    // One frame: 5-byte prefix + payload { body: [0] } (5 bytes).
    assert_eq!(data.len(), 5 + 5, "exactly one message");
    assert_eq!(trailers.expect("trailers")["grpc-status"], "4");
}

#[tokio::test]
async fn unknown_paths_are_unimplemented() {
    for path in [
        "/grpc.testing.TestService/NoSuchMethod",
        "/grpc.testing.NoSuchService/Call",
        "/grpc.testing.UnimplementedService/UnimplementedCall",
        "/grpc.testing.TestService/UnimplementedCall",
    ] {
        let body = frame(&weir_testservice::pb::Empty {});
        let request = grpc_request(path).body(Full::new(body)).unwrap();
        let (response, _, trailers) = call(request).await;
        let status = response
            .headers()
            .get("grpc-status")
            .or_else(|| trailers.as_ref().and_then(|t| t.get("grpc-status")))
            .cloned();
        assert_eq!(status.unwrap(), "12", "{path}");
    }
}

#[test]
fn file_descriptor_set_names_the_protos() {
    let fds = weir_testservice::FILE_DESCRIPTOR_SET;
    for name in [
        "grpc/testing/empty.proto",
        "grpc/testing/messages.proto",
        "grpc/testing/test.proto",
    ] {
        assert!(
            fds.windows(name.len()).any(|w| w == name.as_bytes()),
            "{name} missing"
        );
    }
}

#[test]
fn server_is_clone_send_sync() {
    fn check<T: Clone + Send + Sync + 'static>(_: &T) {}
    check(&weir_testservice::service());
}
