//! Streaming through the gRPC-Web layer over real sockets: responses are forwarded as they are
//! produced, request bodies are streamed to the service, full duplex works over HTTP/2, and a
//! client that goes away cancels the call.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use weir::body::BoxBody;
use weir_testservice::pb::{
    Empty, ResponseParameters, StreamingInputCallRequest, StreamingInputCallResponse,
    StreamingOutputCallRequest, StreamingOutputCallResponse,
};

use support::*;

const VARIANTS: [(Proto, Mode); 4] = [
    (Proto::H1, Mode::Binary),
    (Proto::H1, Mode::Text),
    (Proto::H2, Mode::Binary),
    (Proto::H2, Mode::Text),
];

fn payload_len(message: &StreamingOutputCallResponse) -> usize {
    message.payload.as_ref().map_or(0, |p| p.body.len())
}

/// The first message of a stream reaches the client while the second one is still 10 s
/// away: the layer does not buffer responses. Dropping the call then cancels the handler.
async fn not_buffered(proto: Proto, mode: Mode) {
    let server = TestServer::start().await;
    let mut client = server.client(proto).await;
    let request = StreamingOutputCallRequest {
        response_parameters: vec![
            ResponseParameters {
                size: 7,
                ..Default::default()
            },
            ResponseParameters {
                size: 8,
                interval_us: 10_000_000,
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let http_request = client
        .request(STREAMING_OUTPUT_CALL, mode)
        .body(BoxBody::full(mode.body(&[request])))
        .unwrap();
    let mut call = client.start(http_request, mode).await;
    assert_eq!(call.status, http::StatusCode::OK);
    let first: StreamingOutputCallResponse = call.next_as().await.expect("first message");
    assert_eq!(payload_len(&first), 7);
    assert_eq!(server.observer.counts().in_flight(), 1);

    call.abandon();
    drop(client);
    let counts = server.wait_for(|c| c.cancelled >= 1).await;
    assert_eq!(counts.completed, 0, "{counts:?}");
    server.assert_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_buffered_h1_binary() {
    not_buffered(Proto::H1, Mode::Binary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_buffered_h1_text() {
    not_buffered(Proto::H1, Mode::Text).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_buffered_h2_binary() {
    not_buffered(Proto::H2, Mode::Binary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_buffered_h2_text() {
    not_buffered(Proto::H2, Mode::Text).await;
}

/// Client streaming with the request messages sent one by one through a streaming request
/// body: the service is called as soon as the first one arrives, long before the body ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_streaming_message_by_message() {
    for (proto, mode) in VARIANTS {
        let server = TestServer::start().await;
        let mut client = server.client(proto).await;
        let (tx, body) = channel_body();
        let request = client
            .request(STREAMING_INPUT_CALL, mode)
            .body(body)
            .unwrap();
        let sizes = [27_182, 8, 1_828, 45_904];
        let frame = |size: usize| {
            mode.frame(&prost::Message::encode_to_vec(&StreamingInputCallRequest {
                payload: zeros(size),
                ..Default::default()
            }))
        };
        tx.send(frame(sizes[0])).await.unwrap();
        let response =
            tokio::spawn(async move { client.start(request, mode).await.finish().await });
        // The handler runs while the request body is still open.
        server.wait_for(|c| c.started == 1).await;
        for size in &sizes[1..] {
            tx.send(frame(*size)).await.unwrap();
        }
        drop(tx);
        let reply = guard("client streaming reply", response).await.unwrap();
        reply.assert_ok();
        let response: StreamingInputCallResponse = reply.decode(0);
        assert_eq!(
            response.aggregated_payload_size, 74_922,
            "{proto:?} {mode:?}"
        );
        server.wait_for(|c| c.completed == 1).await;
    }
}

/// Full duplex over HTTP/2: each response arrives before the next request is sent.
async fn ping_pong(proto: Proto, mode: Mode) {
    let server = TestServer::start().await;
    let mut client = server.client(proto).await;
    let (tx, body) = channel_body();
    let request = client.request(FULL_DUPLEX_CALL, mode).body(body).unwrap();
    let request_sizes = [27_182, 8, 1_828, 45_904];
    let response_sizes = [31_415, 9, 2_653, 58_979];
    let ping = |i: usize| {
        mode.frame(&prost::Message::encode_to_vec(
            &StreamingOutputCallRequest {
                response_parameters: params(&[response_sizes[i]]),
                payload: zeros(request_sizes[i]),
                ..Default::default()
            },
        ))
    };
    // The response head may only come once the service answered; hyper sends the request
    // head straight away, so queue the first ping before waiting for it.
    tx.send(ping(0)).await.unwrap();
    let mut call = client.start(request, mode).await;
    assert_eq!(call.status, http::StatusCode::OK);
    for (i, size) in response_sizes.into_iter().enumerate() {
        if i > 0 {
            tx.send(ping(i)).await.unwrap();
        }
        let pong: StreamingOutputCallResponse = call.next_as().await.expect("pong");
        assert_eq!(payload_len(&pong), size as usize);
    }
    drop(tx);
    let reply = call.finish().await;
    assert!(reply.messages.is_empty());
    reply.assert_ok();
    server.wait_for(|c| c.completed == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_pong_h2_binary() {
    ping_pong(Proto::H2, Mode::Binary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_pong_h2_text() {
    ping_pong(Proto::H2, Mode::Text).await;
}

/// HTTP/1.1 allows it as well when both ends stream (chunked request body read while the
/// response is being written), which hyper does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_pong_h1_binary() {
    ping_pong(Proto::H1, Mode::Binary).await;
}

fn endless_stream(interval: Duration) -> StreamingOutputCallRequest {
    StreamingOutputCallRequest {
        response_parameters: (0..200)
            .map(|_| ResponseParameters {
                size: 10,
                interval_us: i32::try_from(interval.as_micros()).unwrap(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// An HTTP/2 client resets the stream in the middle of a server stream: the handler sees the
/// cancellation, and the connection goes on serving other calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_reset_cancels_the_call() {
    for mode in [Mode::Binary, Mode::Text] {
        let server = TestServer::start().await;
        let mut client = server.client(Proto::H2).await;
        let request = client
            .request(STREAMING_OUTPUT_CALL, mode)
            .body(BoxBody::full(
                mode.body(&[endless_stream(Duration::from_millis(50))]),
            ))
            .unwrap();
        let mut call = client.start(request, mode).await;
        for _ in 0..2 {
            let message: StreamingOutputCallResponse = call.next_as().await.unwrap();
            assert_eq!(payload_len(&message), 10);
        }
        // Dropping the response body resets the stream (RST_STREAM CANCEL).
        call.abandon();
        let counts = server.wait_for(|c| c.cancelled == 1).await;
        assert_eq!(counts.completed, 0);

        // Same connection, next call.
        let reply = client.unary(EMPTY_CALL, mode, &Empty {}).await;
        reply.assert_ok();
    }
}

/// An HTTP/1.1 client closes its TCP connection while the server streams: the handler sees
/// the cancellation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_disconnect_cancels_the_call() {
    for mode in [Mode::Binary, Mode::Text] {
        let server = TestServer::start().await;
        let body = mode.body(&[endless_stream(Duration::from_millis(50))]);
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let head = format!(
            "POST {STREAMING_OUTPUT_CALL} HTTP/1.1\r\nhost: {}\r\ncontent-type: {}\r\nx-grpc-web: 1\r\ncontent-length: {}\r\n\r\n",
            server.addr,
            mode.content_type(),
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body).await.unwrap();

        // Read until the head and a couple of chunks of the streamed body have arrived.
        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        guard("streamed HTTP/1.1 response", async {
            loop {
                let n = stream.read(&mut buf).await.unwrap();
                assert_ne!(n, 0, "server closed the connection");
                received.extend_from_slice(&buf[..n]);
                if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n")
                    && received.len() > end + 4 + 40
                {
                    break;
                }
            }
        })
        .await;
        let text = String::from_utf8_lossy(&received);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(
            text.to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "{text}"
        );
        assert_eq!(server.observer.counts().in_flight(), 1);

        drop(stream);
        let counts = server.wait_for(|c| c.cancelled == 1).await;
        assert_eq!(counts.completed, 0);
        server.assert_serving().await;
    }
}

/// Many concurrent calls on one HTTP/2 connection, binary and text mixed, each getting its
/// own messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_on_one_h2_connection() {
    let server = TestServer::start().await;
    let client = server.client(Proto::H2).await;
    let mut calls = Vec::new();
    for i in 0..20usize {
        let mut handle = client.h2_handle();
        let mode = if i % 2 == 0 { Mode::Binary } else { Mode::Text };
        calls.push(tokio::spawn(async move {
            let sizes: Vec<i32> = (1..=5)
                .map(|k| i32::try_from(i * 100 + k).unwrap())
                .collect();
            let request = StreamingOutputCallRequest {
                response_parameters: sizes
                    .iter()
                    .map(|&size| ResponseParameters {
                        size,
                        interval_us: 1_000,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            };
            let reply = handle.unary(STREAMING_OUTPUT_CALL, mode, &request).await;
            reply.assert_ok();
            let got: Vec<i32> = (0..reply.messages.len())
                .map(|m| {
                    i32::try_from(payload_len(&reply.decode::<StreamingOutputCallResponse>(m)))
                        .unwrap()
                })
                .collect();
            assert_eq!(got, sizes);
        }));
    }
    for call in calls {
        guard("concurrent call", call).await.unwrap();
    }
    let counts = server.wait_for(|c| c.completed == 20).await;
    assert_eq!(counts.cancelled, 0);
}

/// Graceful shutdown: open calls on HTTP/1.1 and HTTP/2 run to their end, new connections
/// are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_calls_finish() {
    let mut server = TestServer::start().await;
    let request = StreamingOutputCallRequest {
        response_parameters: (0..4)
            .map(|_| ResponseParameters {
                size: 10,
                interval_us: 50_000,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let mut calls = Vec::new();
    for proto in [Proto::H1, Proto::H2] {
        let mut client = server.client(proto).await;
        let http_request = client
            .request(STREAMING_OUTPUT_CALL, Mode::Binary)
            .body(BoxBody::full(
                Mode::Binary.body(std::slice::from_ref(&request)),
            ))
            .unwrap();
        let mut call = client.start(http_request, Mode::Binary).await;
        let first: StreamingOutputCallResponse = call.next_as().await.expect("first message");
        assert_eq!(payload_len(&first), 10);
        calls.push((client, call));
    }
    server.shutdown();
    for (_client, call) in calls {
        let reply = call.finish().await;
        reply.assert_ok();
        assert_eq!(reply.messages.len(), 3);
    }
    guard("listener closed", async {
        while TcpStream::connect(server.addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(server.observer.counts().completed, 2);
}

/// A client that gives up in the middle of its upload (client streaming): the handler sees the
/// cancellation. On HTTP/2 the client resets the stream and keeps the connection; on HTTP/1.1
/// it closes the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_upload_cancels_the_call() {
    for (proto, mode) in VARIANTS {
        let server = TestServer::start().await;
        let mut client = server.client(proto).await;
        let keep = (proto == Proto::H2).then(|| client.h2_handle());
        let (tx, body) = channel_body();
        tx.send(mode.body(&[StreamingInputCallRequest {
            payload: zeros(10),
            ..Default::default()
        }]))
        .await
        .unwrap();
        let request = client
            .request(STREAMING_INPUT_CALL, mode)
            .body(body)
            .unwrap();
        let call = tokio::spawn(async move { client.start(request, mode).await.finish().await });
        server.wait_for(|c| c.started == 1).await;
        // Drops the response future, the client and (for HTTP/1.1) the connection; the
        // request body's sender stays alive so the body does not simply end.
        call.abort();
        let _ = call.await;
        let counts = server.wait_for(|c| c.cancelled == 1).await;
        assert_eq!(counts.completed, 0, "{proto:?} {mode:?}");
        drop(tx);
        if let Some(mut same_connection) = keep {
            same_connection
                .unary(EMPTY_CALL, mode, &Empty {})
                .await
                .assert_ok();
        }
        server.assert_serving().await;
    }
}
