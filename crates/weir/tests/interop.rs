//! The gRPC interop cases over gRPC-Web, on real sockets: every case on HTTP/1.1 and HTTP/2,
//! binary and text, plus native gRPC on the same port and the text encoding itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use weir_codec::frame;
use weir_codec::metadata;
use weir_testservice::pb::test_service_client::TestServiceClient;
use weir_testservice::pb::{
    EchoStatus, Empty, ResponseParameters, SimpleRequest, SimpleResponse,
    StreamingInputCallRequest, StreamingInputCallResponse, StreamingOutputCallRequest,
    StreamingOutputCallResponse,
};

use support::*;

/// Generates one test per HTTP version and encoding for `async fn case(Proto, Mode)`.
macro_rules! each_variant {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            use super::support::{Mode, Proto};

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn h1_binary() {
                super::$case(Proto::H1, Mode::Binary).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn h1_text() {
                super::$case(Proto::H1, Mode::Text).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn h2_binary() {
                super::$case(Proto::H2, Mode::Binary).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn h2_text() {
                super::$case(Proto::H2, Mode::Text).await;
            }
        }
    )*};
}

each_variant!(
    empty_unary,
    large_unary,
    server_streaming,
    empty_stream,
    custom_metadata_unary,
    custom_metadata_streaming,
    custom_metadata_trailers_only,
    status_code_and_message,
    special_status_message,
    unimplemented_method,
    unimplemented_service,
    client_streaming_one_body,
);

async fn empty_unary(proto: Proto, mode: Mode) {
    let server = TestServer::start().await;
    let mut client = server.client(proto).await;
    let reply = client.unary(EMPTY_CALL, mode, &Empty {}).await;
    reply.assert_ok();
    assert_eq!(reply.messages.len(), 1);
    assert!(reply.messages[0].is_empty());
    assert!(reply.content_type().starts_with(mode.content_type()));
    assert!(reply.trailers.is_some(), "status in a trailer frame");
}

async fn large_unary(proto: Proto, mode: Mode) {
    let server = TestServer::start().await;
    let mut client = server.client(proto).await;
    let request = SimpleRequest {
        response_size: 314_159,
        payload: zeros(271_828),
        ..Default::default()
    };
    let reply = client.unary(UNARY_CALL, mode, &request).await;
    reply.assert_ok();
    assert_eq!(reply.messages.len(), 1);
    let response: SimpleResponse = reply.decode(0);
    assert_eq!(response.payload.unwrap().body.len(), 314_159);
}

async fn server_streaming(proto: Proto, mode: Mode) {
    let server = TestServer::start().await;
    let mut client = server.client(proto).await;
    let sizes = [31_415, 9, 2_653, 58_979];
    let request = StreamingOutputCallRequest {
        response_parameters: params(&sizes),
        ..Default::default()
    };
    let reply = client.unary(STREAMING_OUTPUT_CALL, mode, &request).await;
    reply.assert_ok();
    let got: Vec<usize> = (0..reply.messages.len())
        .map(|i| {
            reply
                .decode::<StreamingOutputCallResponse>(i)
                .payload
                .unwrap()
                .body
                .len()
        })
        .collect();
    assert_eq!(got, [31_415, 9, 2_653, 58_979]);
}

async fn empty_stream(proto: Proto, mode: Mode) {
    let server = TestServer::start().await;
    let mut client = server.client(proto).await;
    // FullDuplexCall with no requests at all: the body is empty.
    let reply = client
        .call_raw(FULL_DUPLEX_CALL, mode, bytes::Bytes::new())
        .await;
    reply.assert_ok();
    assert!(reply.messages.is_empty());
}

fn with_echo_metadata(builder: http::request::Builder) -> http::request::Builder {
    builder
        .header("x-grpc-test-echo-initial", INITIAL_VALUE)
        .header(
            "x-grpc-test-echo-trailing-bin",
            metadata::encode_binary(TRAILING_VALUE),
        )
}

fn assert_echoed(reply: &Reply) {
    assert_eq!(
        reply.header("x-grpc-test-echo-initial").unwrap(),
        INITIAL_VALUE,
        "initial metadata in the response headers"
    );
    let trailers = reply.trailers.as_ref().expect("a trailer frame");
    let name = http::HeaderName::from_static("x-grpc-test-echo-trailing-bin");
    let value = trailers
        .get(&name)
        .expect("trailing metadata in the trailer frame");
    assert_eq!(
        metadata::decode_binary(&name, value).unwrap(),
        TRAILING_VALUE
    );
}

async fn custom_metadata_unary(proto: Proto, mode: Mode) {
    let server = TestServer::start().await;
    let mut client = server.client(proto).await;
    let request = SimpleRequest {
        response_size: 314_159,
        payload: zeros(271_828),
        ..Default::default()
    };
    let http_request = with_echo_metadata(client.request(UNARY_CALL, mode))
        .body(weir::body::BoxBody::full(mode.body(&[request])))
        .unwrap();
    let reply = client.start(http_request, mode).await.finish().await;
    reply.assert_ok();
    assert_eq!(reply.messages.len(), 1);
    assert_echoed(&reply);
}

async fn custom_metadata_streaming(proto: Proto, mode: Mode) {
    let server = TestServer::start().await;
    let mut client = server.client(proto).await;
    let request = StreamingOutputCallRequest {
        response_parameters: params(&[314_159]),
        payload: zeros(271_828),
        ..Default::default()
    };
    let http_request = with_echo_metadata(client.request(FULL_DUPLEX_CALL, mode))
        .body(weir::body::BoxBody::full(mode.body(&[request])))
        .unwrap();
    let reply = client.start(http_request, mode).await.finish().await;
    reply.assert_ok();
    assert_eq!(reply.messages.len(), 1);
    let response: StreamingOutputCallResponse = reply.decode(0);
    assert_eq!(response.payload.unwrap().body.len(), 314_159);
    assert_echoed(&reply);
}

/// A call that fails before any message: both echoed values arrive in the headers of the
/// trailers-only response.
async fn custom_metadata_trailers_only(proto: Proto, mode: Mode) {
    let server = TestServer::start().await;
    let mut client = server.client(proto).await;
    let request = SimpleRequest {
        response_status: echo_status("test status message"),
        ..Default::default()
    };
    let http_request = with_echo_metadata(client.request(UNARY_CALL, mode))
        .body(weir::body::BoxBody::full(mode.body(&[request])))
        .unwrap();
    let reply = client.start(http_request, mode).await.finish().await;
    assert_eq!(reply.assert_code(2), "test status message");
    assert!(reply.is_trailers_only());
    assert_eq!(reply.headers["x-grpc-test-echo-initial"], INITIAL_VALUE);
    let name = http::HeaderName::from_static("x-grpc-test-echo-trailing-bin");
    let value = reply.headers.get(&name).expect("trailing metadata");
    assert_eq!(
        metadata::decode_binary(&name, value).unwrap(),
        TRAILING_VALUE
    );
}

fn echo_status(message: &str) -> Option<EchoStatus> {
    Some(EchoStatus {
        code: 2,
        message: message.to_owned(),
    })
}

async fn status_code_and_message(proto: Proto, mode: Mode) {
    let server = TestServer::start().await;
    let mut client = server.client(proto).await;

    // Unary: the service fails before any message, a trailers-only response.
    let unary = SimpleRequest {
        response_status: echo_status("test status message"),
        ..Default::default()
    };
    let reply = client.unary(UNARY_CALL, mode, &unary).await;
    assert_eq!(reply.assert_code(2), "test status message");
    assert!(reply.is_trailers_only(), "{reply:?}");
    assert!(reply.content_type().starts_with(mode.content_type()));

    // Streaming: headers went out first, so the status is in the trailer frame.
    let streaming = StreamingOutputCallRequest {
        response_status: echo_status("test status message"),
        ..Default::default()
    };
    let reply = client.unary(FULL_DUPLEX_CALL, mode, &streaming).await;
    assert_eq!(reply.assert_code(2), "test status message");
    assert!(reply.trailers.is_some(), "{reply:?}");
    assert!(
        !reply.headers.contains_key("grpc-status"),
        "status only in the trailer frame"
    );
}

async fn special_status_message(proto: Proto, mode: Mode) {
    let server = TestServer::start().await;
    let mut client = server.client(proto).await;
    let unary = SimpleRequest {
        response_status: echo_status(SPECIAL_MESSAGE),
        ..Default::default()
    };
    let reply = client.unary(UNARY_CALL, mode, &unary).await;
    assert_eq!(reply.assert_code(2), SPECIAL_MESSAGE);

    let streaming = StreamingOutputCallRequest {
        response_parameters: params(&[1]),
        response_status: echo_status(SPECIAL_MESSAGE),
        ..Default::default()
    };
    let reply = client.unary(FULL_DUPLEX_CALL, mode, &streaming).await;
    assert_eq!(reply.messages.len(), 1);
    assert_eq!(reply.assert_code(2), SPECIAL_MESSAGE);
    // On the wire the message is percent-encoded printable ASCII.
    let raw = reply.trailers.as_ref().unwrap()["grpc-message"].as_bytes();
    assert!(raw.iter().all(|b| (0x20..0x7f).contains(b)), "{raw:?}");
}

async fn unimplemented_method(proto: Proto, mode: Mode) {
    let server = TestServer::start().await;
    let mut client = server.client(proto).await;
    let reply = client
        .unary(
            "/grpc.testing.TestService/UnimplementedCall",
            mode,
            &Empty {},
        )
        .await;
    reply.assert_code(12);
    let reply = client
        .unary("/grpc.testing.TestService/NoSuchMethod", mode, &Empty {})
        .await;
    reply.assert_code(12);
}

async fn unimplemented_service(proto: Proto, mode: Mode) {
    let server = TestServer::start().await;
    let mut client = server.client(proto).await;
    let reply = client
        .unary(
            "/grpc.testing.UnimplementedService/UnimplementedCall",
            mode,
            &Empty {},
        )
        .await;
    reply.assert_code(12);
    let reply = client
        .unary("/grpc.testing.NoSuchService/Call", mode, &Empty {})
        .await;
    reply.assert_code(12);
}

/// Client streaming with every request message in one request body (what an HTTP/1.1 client
/// without streaming uploads sends).
async fn client_streaming_one_body(proto: Proto, mode: Mode) {
    let server = TestServer::start().await;
    let mut client = server.client(proto).await;
    let requests: Vec<StreamingInputCallRequest> = [27_182, 8, 1_828, 45_904]
        .into_iter()
        .map(|size| StreamingInputCallRequest {
            payload: zeros(size),
            ..Default::default()
        })
        .collect();
    let reply = client
        .call_raw(STREAMING_INPUT_CALL, mode, mode.body(&requests))
        .await;
    reply.assert_ok();
    let response: StreamingInputCallResponse = reply.decode(0);
    assert_eq!(response.aggregated_payload_size, 74_922);
}

/// The plain `application/grpc-web` content type (no `+proto`) works too, and is echoed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_content_type() {
    let server = TestServer::start().await;
    for proto in [Proto::H1, Proto::H2] {
        let mut client = server.client(proto).await;
        let request = client
            .request_typed(EMPTY_CALL, "application/grpc-web")
            .body(weir::body::BoxBody::full(Mode::Binary.body(&[Empty {}])))
            .unwrap();
        let reply = client.start(request, Mode::Binary).await.finish().await;
        reply.assert_ok();
        assert_eq!(reply.content_type(), "application/grpc-web");
    }
}

/// Native gRPC clients use the same port as gRPC-Web ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_grpc_passthrough() {
    let server = TestServer::start().await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut native = TestServiceClient::new(channel);

    let response = guard(
        "native unary",
        native.unary_call(SimpleRequest {
            response_size: 314_159,
            payload: zeros(271_828),
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    assert_eq!(response.into_inner().payload.unwrap().body.len(), 314_159);

    let mut request = tonic::Request::new(SimpleRequest {
        response_status: echo_status(SPECIAL_MESSAGE),
        ..Default::default()
    });
    request.metadata_mut().insert(
        "x-grpc-test-echo-initial",
        MetadataValue::from_static(INITIAL_VALUE),
    );
    let status = guard("native status", native.unary_call(request))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unknown);
    assert_eq!(status.message(), SPECIAL_MESSAGE);
    assert_eq!(
        status.metadata().get("x-grpc-test-echo-initial").unwrap(),
        INITIAL_VALUE
    );

    let mut stream = guard(
        "native server streaming",
        native.streaming_output_call(StreamingOutputCallRequest {
            response_parameters: params(&[31_415, 9, 2_653, 58_979]),
            ..Default::default()
        }),
    )
    .await
    .unwrap()
    .into_inner();
    let mut sizes = Vec::new();
    while let Some(message) = guard("native stream message", stream.message())
        .await
        .unwrap()
    {
        sizes.push(message.payload.unwrap().body.len());
    }
    assert_eq!(sizes, [31_415, 9, 2_653, 58_979]);

    // Full duplex, message by message.
    let (tx, rx) = mpsc::channel(4);
    let mut responses = guard(
        "native full duplex",
        native.full_duplex_call(ReceiverStream::new(rx)),
    )
    .await
    .unwrap()
    .into_inner();
    for size in [31_415, 9] {
        tx.send(StreamingOutputCallRequest {
            response_parameters: vec![ResponseParameters {
                size,
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap();
        let message = guard("native ping-pong", responses.message())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(message.payload.unwrap().body.len(), size as usize);
    }
    drop(tx);
    assert!(
        guard("native end", responses.message())
            .await
            .unwrap()
            .is_none()
    );

    // And gRPC-Web still works next to it.
    server.assert_serving().await;
}

/// Text mode: a request body of separately padded base64 units (padding in the middle of the
/// body), and a response that is base64 throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_mode_padded_units() {
    let server = TestServer::start().await;
    let requests: Vec<StreamingInputCallRequest> = [1, 2, 4]
        .into_iter()
        .map(|size| StreamingInputCallRequest {
            payload: zeros(size),
            ..Default::default()
        })
        .collect();
    let mut body = Vec::new();
    let mut units = Vec::new();
    for request in &requests {
        // Each frame on its own: 5-byte header plus a payload whose length is not a
        // multiple of 3, so every unit ends in padding.
        let wire = frame::encode_message(&prost::Message::encode_to_vec(request));
        assert_ne!(wire.len() % 3, 0);
        let unit = weir_codec::text::encode(&wire);
        assert!(unit.ends_with(b"="));
        body.extend_from_slice(&unit);
        units.push(unit);
    }
    // Padding appears before the end of the body.
    let first_pad = body.iter().position(|&b| b == b'=').unwrap();
    assert!(first_pad < body.len() - units.last().unwrap().len());

    for proto in [Proto::H1, Proto::H2] {
        let mut client = server.client(proto).await;
        let reply = client
            .call_raw(
                STREAMING_INPUT_CALL,
                Mode::Text,
                bytes::Bytes::from(body.clone()),
            )
            .await;
        reply.assert_ok();
        assert!(
            reply
                .content_type()
                .starts_with("application/grpc-web-text"),
            "{reply:?}"
        );
        let response: StreamingInputCallResponse = reply.decode(0);
        assert_eq!(response.aggregated_payload_size, 7);
    }

    // A streamed response arrives as base64 units, decodable as they come.
    for proto in [Proto::H1, Proto::H2] {
        let mut client = server.client(proto).await;
        let request = client
            .request(STREAMING_OUTPUT_CALL, Mode::Text)
            .body(weir::body::BoxBody::full(Mode::Text.body(&[
                StreamingOutputCallRequest {
                    response_parameters: params(&[1, 2, 3, 4]),
                    ..Default::default()
                },
            ])))
            .unwrap();
        let reply = client.start(request, Mode::Text).await.finish().await;
        reply.assert_ok();
        assert_eq!(
            reply.header("content-type").unwrap(),
            "application/grpc-web-text+proto"
        );
        assert_eq!(reply.messages.len(), 4);
    }
}

/// A request body that arrives in small pieces cutting through frame headers, payloads and
/// base64 groups is reassembled exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_body_in_odd_pieces() {
    let server = TestServer::start().await;
    for proto in [Proto::H1, Proto::H2] {
        for mode in [Mode::Binary, Mode::Text] {
            let requests: Vec<StreamingInputCallRequest> = [27, 8, 1_828, 459]
                .into_iter()
                .map(|size| StreamingInputCallRequest {
                    payload: zeros(size),
                    ..Default::default()
                })
                .collect();
            let body = mode.body(&requests);
            let mut client = server.client(proto).await;
            let (tx, request_body) = support::channel_body();
            let request = client
                .request(STREAMING_INPUT_CALL, mode)
                .body(request_body)
                .unwrap();
            let feeder = tokio::spawn(async move {
                for piece in body.chunks(7) {
                    tx.send(bytes::Bytes::copy_from_slice(piece)).await.unwrap();
                    tokio::task::yield_now().await;
                }
            });
            let reply = client.start(request, mode).await.finish().await;
            feeder.await.unwrap();
            reply.assert_ok();
            let response: StreamingInputCallResponse = reply.decode(0);
            assert_eq!(
                response.aggregated_payload_size,
                27 + 8 + 1_828 + 459,
                "{proto:?} {mode:?}"
            );
        }
    }
}
