//! Bad input over real sockets: each case gets its precise answer, and the server goes on
//! serving other calls afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use http::StatusCode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use weir::body::BoxBody;
use weir::grpc_web::GrpcWebLayer;
use weir_codec::frame;
use weir_testservice::pb::{
    Empty, ResponseParameters, SimpleRequest, StreamingInputCallRequest, StreamingOutputCallRequest,
};

use support::*;

const VARIANTS: [(Proto, Mode); 4] = [
    (Proto::H1, Mode::Binary),
    (Proto::H1, Mode::Text),
    (Proto::H2, Mode::Binary),
    (Proto::H2, Mode::Text),
];

const RESOURCE_EXHAUSTED: i32 = 8;
const INTERNAL: i32 = 13;
const DEADLINE_EXCEEDED: i32 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_content_type_is_415() {
    let server = TestServer::start().await;
    for proto in [Proto::H1, Proto::H2] {
        for content_type in ["text/plain", "application/json", "application/grpc-webby"] {
            let mut client = server.client(proto).await;
            let request = client
                .request_typed(EMPTY_CALL, content_type)
                .body(BoxBody::full(Mode::Binary.body(&[Empty {}])))
                .unwrap();
            let (status, _, _) = read_body(client.send(request).await).await;
            assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type}");
        }
        // No content type at all.
        let mut client = server.client(proto).await;
        let request = client
            .builder(EMPTY_CALL)
            .method("POST")
            .body(BoxBody::full(Mode::Binary.body(&[Empty {}])))
            .unwrap();
        let (status, _, _) = read_body(client.send(request).await).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    assert_eq!(server.observer.counts().started, 0);
    server.assert_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_post_methods_are_405() {
    let server = TestServer::start().await;
    for proto in [Proto::H1, Proto::H2] {
        for (method, mode) in [
            ("GET", Mode::Binary),
            ("PUT", Mode::Binary),
            ("GET", Mode::Text),
            ("DELETE", Mode::Text),
        ] {
            let mut client = server.client(proto).await;
            let request = client
                .request(EMPTY_CALL, mode)
                .method(method)
                .body(BoxBody::empty())
                .unwrap();
            let (status, headers, _) = read_body(client.send(request).await).await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {mode:?}");
            assert!(
                headers["allow"].to_str().unwrap().contains("POST"),
                "{headers:?}"
            );
        }
    }
    assert_eq!(server.observer.counts().started, 0);
    server.assert_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_request_message_is_resource_exhausted() {
    let server = TestServer::with_layer(GrpcWebLayer::new().max_request_message_size(1024)).await;
    for (proto, mode) in VARIANTS {
        let mut client = server.client(proto).await;
        let request = SimpleRequest {
            response_size: 10,
            payload: zeros(2000),
            ..Default::default()
        };
        let reply = client.unary(UNARY_CALL, mode, &request).await;
        let message = reply.assert_code(RESOURCE_EXHAUSTED);
        assert!(message.contains("1024"), "{message}");
        assert!(reply.messages.is_empty());
    }
    server.assert_serving().await;
}

/// Request messages that break the rules in the middle of a full-duplex call, after the
/// response has begun: the layer's precise status wins over what the service saw (an error
/// reading its request stream), in the trailer frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_request_message_mid_stream() {
    let server = TestServer::with_layer(GrpcWebLayer::new().max_request_message_size(1024)).await;
    let ping = |mode: Mode, size: usize| {
        mode.frame(&prost::Message::encode_to_vec(
            &StreamingOutputCallRequest {
                response_parameters: params(&[5]),
                payload: zeros(size),
                ..Default::default()
            },
        ))
    };
    for (proto, mode) in VARIANTS {
        // (second chunk, expected code, part of the message)
        let cases: [(Bytes, i32, &str); 3] = [
            (ping(mode, 2000), RESOURCE_EXHAUSTED, "1024"),
            (mode.wire(&[0, 0, 0, 0, 20, 1, 2]), INTERNAL, "truncated"),
            (
                mode.wire(&frame::Frame::new(frame::FLAG_TRAILERS, Bytes::new()).encode()),
                INTERNAL,
                "trailer frame",
            ),
        ];
        for (bad, code, needle) in cases {
            let mut client = server.client(proto).await;
            let (tx, body) = channel_body();
            tx.send(ping(mode, 10)).await.unwrap();
            let request = client.request(FULL_DUPLEX_CALL, mode).body(body).unwrap();
            let mut call = client.start(request, mode).await;
            assert_eq!(call.status, StatusCode::OK);
            let first = call.next_message().await.expect("first response");
            assert!(!first.is_empty());
            tx.send(bad).await.unwrap();
            drop(tx);
            let reply = call.finish().await;
            assert!(reply.trailers.is_some(), "{reply:?}");
            let message = reply.assert_code(code);
            assert!(message.contains(needle), "{proto:?} {mode:?}: {message}");
        }
    }
    server.wait_for(|c| c.in_flight() == 0).await;
    server.assert_serving().await;
}

/// A length prefix announcing 4 GiB is refused as soon as the 5-byte header arrives, while
/// the request body is still open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_length_prefix_is_refused_at_once() {
    let server = TestServer::start().await;
    for (proto, mode) in VARIANTS {
        for path in [UNARY_CALL, STREAMING_INPUT_CALL] {
            let mut client = server.client(proto).await;
            let (tx, body) = channel_body();
            tx.send(mode.wire(&[0, 0xff, 0xff, 0xff, 0xff]))
                .await
                .unwrap();
            let request = client.request(path, mode).body(body).unwrap();
            let reply = client.start(request, mode).await.finish().await;
            let message = reply.assert_code(RESOURCE_EXHAUSTED);
            assert!(message.contains("4294967295"), "{message}");
            assert!(message.contains("4194304"), "{message}");
            drop(tx);
        }
    }
    server.assert_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_request_body_is_internal() {
    let server = TestServer::start().await;
    for (proto, mode) in VARIANTS {
        // Cut inside the payload, and inside the 5-byte header.
        let whole = frame::encode_message(&prost::Message::encode_to_vec(&SimpleRequest {
            payload: zeros(100),
            ..Default::default()
        }));
        for cut in [whole.len() - 10, 3] {
            let mut client = server.client(proto).await;
            let reply = client
                .call_raw(UNARY_CALL, mode, mode.wire(&whole[..cut]))
                .await;
            let message = reply.assert_code(INTERNAL);
            assert!(message.contains("truncated"), "{message}");
        }
    }
    server.assert_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_base64_is_internal() {
    let server = TestServer::start().await;
    for proto in [Proto::H1, Proto::H2] {
        let valid = Mode::Text.body(&[Empty {}]);
        let bodies: [Bytes; 3] = [
            Bytes::from_static(b"!!!!"),
            // A valid unit followed by garbage.
            [valid.as_ref(), b"A*AA"].concat().into(),
            // Ends inside a 4-character group.
            Bytes::from_static(b"AAAAAAA"),
        ];
        for body in bodies {
            let mut client = server.client(proto).await;
            let reply = client.call_raw(EMPTY_CALL, Mode::Text, body.clone()).await;
            let message = reply.assert_code(INTERNAL);
            assert!(message.contains("grpc-web-text"), "{body:?}: {message}");
        }
    }
    server.assert_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_trailer_frame_is_internal() {
    let server = TestServer::start().await;
    let trailer_frame = frame::Frame::new(
        frame::FLAG_TRAILERS,
        Bytes::from_static(b"grpc-status: 0\r\n"),
    )
    .encode();
    for (proto, mode) in VARIANTS {
        // Alone, in a unary call.
        let mut client = server.client(proto).await;
        let reply = client
            .call_raw(EMPTY_CALL, mode, mode.wire(&trailer_frame))
            .await;
        let message = reply.assert_code(INTERNAL);
        assert!(message.contains("trailer frame"), "{message}");

        // After a message, in a client stream.
        let mut body = mode
            .body(&[StreamingInputCallRequest {
                payload: zeros(3),
                ..Default::default()
            }])
            .to_vec();
        body.extend_from_slice(&mode.wire(&trailer_frame));
        let reply = client
            .call_raw(STREAMING_INPUT_CALL, mode, body.into())
            .await;
        let message = reply.assert_code(INTERNAL);
        assert!(message.contains("trailer frame"), "{message}");
    }
    server.assert_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_grpc_timeout_is_internal() {
    let server = TestServer::start().await;
    for (proto, mode) in VARIANTS {
        for timeout in ["abc", "123456789S", "10", "-1S", "1s"] {
            let mut client = server.client(proto).await;
            let request = client
                .request(EMPTY_CALL, mode)
                .header("grpc-timeout", timeout)
                .body(BoxBody::full(mode.body(&[Empty {}])))
                .unwrap();
            let reply = client.start(request, mode).await.finish().await;
            reply.assert_code(INTERNAL);
            assert!(reply.is_trailers_only(), "{timeout}: {reply:?}");
        }
    }
    assert_eq!(server.observer.counts().started, 0);
    server.assert_serving().await;
}

/// Metadata values must be printable ASCII (except `-bin` keys): a byte 0xff is refused before
/// the service is called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_metadata_value_is_internal() {
    let server = TestServer::start().await;
    for (proto, mode) in VARIANTS {
        let mut client = server.client(proto).await;
        let request = client
            .request(EMPTY_CALL, mode)
            .header(
                "x-custom",
                http::HeaderValue::from_bytes(b"caf\xff").unwrap(),
            )
            .body(BoxBody::full(mode.body(&[Empty {}])))
            .unwrap();
        let reply = client.start(request, mode).await.finish().await;
        let message = reply.assert_code(INTERNAL);
        assert!(message.contains("x-custom"), "{message}");
    }
    assert_eq!(server.observer.counts().started, 0);
    server.assert_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_response_message_is_resource_exhausted() {
    let server = TestServer::with_layer(GrpcWebLayer::new().max_response_message_size(1024)).await;
    for (proto, mode) in VARIANTS {
        let mut client = server.client(proto).await;
        let reply = client
            .unary(
                UNARY_CALL,
                mode,
                &SimpleRequest {
                    response_size: 2000,
                    ..Default::default()
                },
            )
            .await;
        let message = reply.assert_code(RESOURCE_EXHAUSTED);
        assert!(message.contains("1024"), "{message}");
        assert!(reply.messages.is_empty());

        // In a stream: the messages before the big one arrive, then the status.
        let reply = client
            .unary(
                STREAMING_OUTPUT_CALL,
                mode,
                &StreamingOutputCallRequest {
                    response_parameters: params(&[10, 2000, 10]),
                    ..Default::default()
                },
            )
            .await;
        reply.assert_code(RESOURCE_EXHAUSTED);
        assert_eq!(reply.messages.len(), 1);
    }
    // Every handler ended (the streams were cancelled by the layer).
    server.wait_for(|c| c.in_flight() == 0).await;
    server.assert_serving().await;
}

/// The layer's own header limit answers RESOURCE_EXHAUSTED without calling the service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_header_list_in_layer_is_resource_exhausted() {
    let server = TestServer::with_layer(GrpcWebLayer::new().max_header_list_size(1024)).await;
    for (proto, mode) in VARIANTS {
        let mut client = server.client(proto).await;
        let request = client
            .request(EMPTY_CALL, mode)
            .header("x-big", "a".repeat(2000))
            .body(BoxBody::full(mode.body(&[Empty {}])))
            .unwrap();
        let reply = client.start(request, mode).await.finish().await;
        let message = reply.assert_code(RESOURCE_EXHAUSTED);
        assert!(message.contains("max_header_list_size"), "{message}");
        assert!(reply.is_trailers_only());
    }
    assert_eq!(server.observer.counts().started, 0);
    server.assert_serving().await;
}

/// The server's own header limit (16 KiB by default, the same as the layer's):
///
/// - HTTP/2: hyper/h2 enforce SETTINGS_MAX_HEADER_LIST_SIZE and answer **431** before the
///   layer sees the request;
/// - HTTP/1.1: hyper bounds the head by its read buffer (limit + 8 KiB): a head that fits the
///   buffer but not the limit reaches the layer, which answers **RESOURCE_EXHAUSTED (8)**; a
///   head larger than the buffer is answered **431** by hyper.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_header_list_in_server() {
    let server = TestServer::start().await;

    // 20 KiB: over the limit, within hyper's HTTP/1.1 buffer.
    let big = "a".repeat(20 * 1024);
    for mode in [Mode::Binary, Mode::Text] {
        let mut client = server.client(Proto::H1).await;
        let request = client
            .request(EMPTY_CALL, mode)
            .header("x-big", big.as_str())
            .body(BoxBody::full(mode.body(&[Empty {}])))
            .unwrap();
        let reply = client.start(request, mode).await.finish().await;
        let message = reply.assert_code(RESOURCE_EXHAUSTED);
        assert!(message.contains("16384"), "{message}");

        let mut client = server.client(Proto::H2).await;
        let request = client
            .request(EMPTY_CALL, mode)
            .header("x-big", big.as_str())
            .body(BoxBody::full(mode.body(&[Empty {}])))
            .unwrap();
        let (status, _, _) = read_body(client.send(request).await).await;
        assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }

    // 500 KiB: over hyper's HTTP/1.1 buffer too.
    let huge = "a".repeat(500 * 1024);
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST {EMPTY_CALL} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/grpc-web\r\nx-big: {huge}\r\ncontent-length: 5\r\n\r\n",
        server.addr
    );
    // The server may answer and close before reading everything; ignore write errors.
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&frame::encode_message(&[])).await;
    let mut response = Vec::new();
    let _ = guard("431 answer", stream.read_to_end(&mut response)).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 431"), "{response}");

    let mut client = server.client(Proto::H2).await;
    let request = client
        .request(EMPTY_CALL, Mode::Binary)
        .header("x-big", "a".repeat(40 * 1024).as_str())
        .body(BoxBody::full(Mode::Binary.body(&[Empty {}])))
        .unwrap();
    let (status, _, _) = read_body(client.send(request).await).await;
    assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);

    assert_eq!(server.observer.counts().started, 0);
    server.assert_serving().await;
}

/// Raw CR or LF inside a header value over HTTP/1.1: hyper answers 400 and closes that
/// connection; the server keeps serving other connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_crlf_in_header_value() {
    let server = TestServer::start().await;
    let body = Mode::Binary.body(&[Empty {}]);
    for bad in ["x-evil: a\rb", "x-evil: a\nb", "x-evil: a\r\rb"] {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let head = format!(
            "POST {EMPTY_CALL} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/grpc-web\r\n{bad}\r\ncontent-length: {}\r\n\r\n",
            server.addr,
            body.len()
        );
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(&body).await;
        let mut response = Vec::new();
        let _ = guard(
            "answer to a malformed head",
            stream.read_to_end(&mut response),
        )
        .await;
        let response = String::from_utf8_lossy(&response);
        assert!(response.starts_with("HTTP/1.1 400"), "{bad:?}: {response}");
        assert!(!response.contains("grpc-status"), "{bad:?}: {response}");
    }
    assert_eq!(server.observer.counts().started, 0);
    server.assert_serving().await;
}

/// `grpc-timeout` bounds a server stream: with a message every 500 ms and a 300 ms deadline,
/// the call ends with DEADLINE_EXCEEDED in the trailer frame and the handler ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_timeout_deadline_exceeded() {
    let server = TestServer::start().await;
    for (i, (proto, mode)) in VARIANTS.into_iter().enumerate() {
        let mut client = server.client(proto).await;
        let request = StreamingOutputCallRequest {
            response_parameters: (0..5)
                .map(|_| ResponseParameters {
                    size: 1,
                    interval_us: 500_000,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let http_request = client
            .request(STREAMING_OUTPUT_CALL, mode)
            .header("grpc-timeout", "300m")
            .body(BoxBody::full(mode.body(&[request])))
            .unwrap();
        let reply = client.start(http_request, mode).await.finish().await;
        reply.assert_code(DEADLINE_EXCEEDED);
        assert!(reply.messages.is_empty());
        assert!(reply.trailers.is_some(), "status in the trailer frame");
        let n = i as u64 + 1;
        let counts = server
            .wait_for(|c| c.started == n && c.in_flight() == 0)
            .await;
        assert_eq!(counts.started, n);
    }
    server.assert_serving().await;
}

/// `grpc-timeout` on a client stream whose request body stays open: the handler waits for
/// input it never gets, and the call ends with DEADLINE_EXCEEDED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_timeout_on_client_stream() {
    let server = TestServer::start().await;
    for (proto, mode) in VARIANTS {
        let mut client = server.client(proto).await;
        // The request body stays open, so the handler waits for more input.
        let (tx, body) = channel_body();
        tx.send(mode.body(&[StreamingInputCallRequest::default()]))
            .await
            .unwrap();
        let request = client
            .request(STREAMING_INPUT_CALL, mode)
            .header("grpc-timeout", "100m")
            .body(body)
            .unwrap();
        let reply = client.start(request, mode).await.finish().await;
        reply.assert_code(DEADLINE_EXCEEDED);
        drop(tx);
    }
    server.wait_for(|c| c.in_flight() == 0).await;
    server.assert_serving().await;
}
