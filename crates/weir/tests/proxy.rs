//! The upstream proxy behind the gRPC-Web layer, over real loopback sockets: calls of every
//! kind forwarded to a native gRPC upstream, routing, request headers as the upstream sees
//! them, deadlines, heartbeats, metrics and balancing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::header;
use prost::Message as _;
use tokio_stream::StreamExt as _;
use weir::body::BoxBody;
use weir::grpc_web::GrpcWebLayer;
use weir::proxy::{ClusterConfig, Proxy};
use weir_codec::{metadata, timeout};
use weir_testservice::pb::{
    EchoStatus, Empty, SimpleRequest, SimpleResponse, StreamingInputCallRequest,
    StreamingInputCallResponse, StreamingOutputCallRequest, StreamingOutputCallResponse,
};

use support::gateway::*;
use support::*;

const VARIANTS: [(Proto, Mode); 4] = [
    (Proto::H1, Mode::Binary),
    (Proto::H1, Mode::Text),
    (Proto::H2, Mode::Binary),
    (Proto::H2, Mode::Text),
];

const UNIMPLEMENTED_SERVICE_CALL: &str = "/grpc.testing.UnimplementedService/UnimplementedCall";

fn payload_len(message: &StreamingOutputCallResponse) -> usize {
    message.payload.as_ref().map_or(0, |p| p.body.len())
}

/// A gateway in front of one fresh upstream.
async fn gateway() -> (Gateway, Upstream) {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(to_upstream(upstream.port())).await;
    (gateway, upstream)
}

fn echo_status(message: &str) -> Option<EchoStatus> {
    Some(EchoStatus {
        code: 2,
        message: message.to_owned(),
    })
}

// Forwarding

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_unary() {
    let (gateway, upstream) = gateway().await;
    for (proto, mode) in VARIANTS {
        let mut client = gateway.client(proto).await;
        let reply = client.unary(EMPTY_CALL, mode, &Empty {}).await;
        reply.assert_ok();
        assert_eq!(reply.messages.len(), 1, "{proto:?} {mode:?}");
        assert!(reply.messages[0].is_empty());
        assert!(reply.content_type().starts_with(mode.content_type()));
        assert!(reply.trailers.is_some(), "status in a trailer frame");
    }
    upstream.wait_for(|c| c.completed == 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_unary() {
    let (gateway, _upstream) = gateway().await;
    for (proto, mode) in VARIANTS {
        let mut client = gateway.client(proto).await;
        let request = SimpleRequest {
            response_size: 314_159,
            payload: zeros(271_828),
            ..Default::default()
        };
        let reply = client.unary(UNARY_CALL, mode, &request).await;
        reply.assert_ok();
        assert_eq!(reply.messages.len(), 1);
        let response: SimpleResponse = reply.decode(0);
        assert_eq!(
            response.payload.unwrap().body.len(),
            314_159,
            "{proto:?} {mode:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_streaming() {
    let (gateway, _upstream) = gateway().await;
    for (proto, mode) in VARIANTS {
        let mut client = gateway.client(proto).await;
        let request = StreamingOutputCallRequest {
            response_parameters: params(&[31_415, 9, 2_653, 58_979]),
            ..Default::default()
        };
        let reply = client.unary(STREAMING_OUTPUT_CALL, mode, &request).await;
        reply.assert_ok();
        let got: Vec<usize> = (0..reply.messages.len())
            .map(|i| payload_len(&reply.decode(i)))
            .collect();
        assert_eq!(got, [31_415, 9, 2_653, 58_979], "{proto:?} {mode:?}");
    }
}

/// Client streaming with all messages in one request body, which is how it works over
/// HTTP/1.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_streaming_one_body() {
    let (gateway, _upstream) = gateway().await;
    for (proto, mode) in VARIANTS {
        let mut client = gateway.client(proto).await;
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
        assert_eq!(
            response.aggregated_payload_size, 74_922,
            "{proto:?} {mode:?}"
        );
    }
}

/// Full duplex over HTTP/2: each response comes back through the proxy before the next
/// request is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_pong_h2() {
    let (gateway, upstream) = gateway().await;
    for mode in [Mode::Binary, Mode::Text] {
        let mut client = gateway.client(Proto::H2).await;
        let (tx, body) = channel_body();
        let request = client.request(FULL_DUPLEX_CALL, mode).body(body).unwrap();
        let request_sizes = [27_182, 8, 1_828, 45_904];
        let response_sizes = [31_415, 9, 2_653, 58_979];
        let ping = |i: usize| {
            mode.frame(
                &StreamingOutputCallRequest {
                    response_parameters: params(&[response_sizes[i]]),
                    payload: zeros(request_sizes[i]),
                    ..Default::default()
                }
                .encode_to_vec(),
            )
        };
        // The response head comes once the upstream answered, which it may do only after the
        // first request message.
        tx.send(ping(0)).await.unwrap();
        let mut call = client.start(request, mode).await;
        for (i, size) in response_sizes.into_iter().enumerate() {
            if i > 0 {
                tx.send(ping(i)).await.unwrap();
            }
            let pong: StreamingOutputCallResponse = call.next_as().await.expect("pong");
            assert_eq!(payload_len(&pong), size as usize, "{mode:?}");
        }
        drop(tx);
        let reply = call.finish().await;
        assert!(reply.messages.is_empty());
        reply.assert_ok();
    }
    upstream.wait_for(|c| c.completed == 2).await;
}

fn with_echo_metadata(builder: http::request::Builder) -> http::request::Builder {
    builder
        .header("x-grpc-test-echo-initial", INITIAL_VALUE)
        .header(
            "x-grpc-test-echo-trailing-bin",
            metadata::encode_binary(TRAILING_VALUE),
        )
}

fn assert_trailing_echo(block: &http::HeaderMap) {
    let name = http::HeaderName::from_static("x-grpc-test-echo-trailing-bin");
    let value = block.get(&name).expect("trailing metadata");
    assert_eq!(
        metadata::decode_binary(&name, value).unwrap(),
        TRAILING_VALUE
    );
}

/// Initial metadata and binary trailing metadata make the round trip through the proxy, for
/// streamed responses and for trailers-only ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_metadata() {
    let (gateway, _upstream) = gateway().await;
    for (proto, mode) in VARIANTS {
        let mut client = gateway.client(proto).await;
        let request = with_echo_metadata(client.request(UNARY_CALL, mode))
            .body(BoxBody::full(mode.body(&[SimpleRequest {
                response_size: 314_159,
                payload: zeros(271_828),
                ..Default::default()
            }])))
            .unwrap();
        let reply = client.start(request, mode).await.finish().await;
        reply.assert_ok();
        assert_eq!(reply.messages.len(), 1);
        assert_eq!(reply.headers["x-grpc-test-echo-initial"], INITIAL_VALUE);
        assert_trailing_echo(reply.trailers.as_ref().expect("a trailer frame"));

        let request = with_echo_metadata(client.request(UNARY_CALL, mode))
            .body(BoxBody::full(mode.body(&[SimpleRequest {
                response_status: echo_status("test status message"),
                ..Default::default()
            }])))
            .unwrap();
        let reply = client.start(request, mode).await.finish().await;
        assert_eq!(reply.assert_code(2), "test status message");
        assert!(reply.is_trailers_only(), "{proto:?} {mode:?} {reply:?}");
        assert_eq!(reply.headers["x-grpc-test-echo-initial"], INITIAL_VALUE);
        assert_trailing_echo(&reply.headers);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_code_and_message() {
    let (gateway, _upstream) = gateway().await;
    for (proto, mode) in VARIANTS {
        let mut client = gateway.client(proto).await;
        let unary = SimpleRequest {
            response_status: echo_status(SPECIAL_MESSAGE),
            ..Default::default()
        };
        let reply = client.unary(UNARY_CALL, mode, &unary).await;
        assert_eq!(reply.assert_code(2), SPECIAL_MESSAGE, "{proto:?} {mode:?}");
        assert!(reply.is_trailers_only(), "{reply:?}");

        let streaming = StreamingOutputCallRequest {
            response_parameters: params(&[1]),
            response_status: echo_status("test status message"),
            ..Default::default()
        };
        let reply = client.unary(FULL_DUPLEX_CALL, mode, &streaming).await;
        assert_eq!(reply.assert_code(2), "test status message");
        assert_eq!(reply.messages.len(), 1);
        assert!(reply.trailers.is_some(), "{reply:?}");
    }
}

/// Native gRPC clients reach the upstream through the gateway port as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_grpc_through_the_gateway() {
    let (gateway, upstream) = gateway().await;
    let mut native = gateway.tonic().await;

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

    let stream = guard(
        "native server stream",
        native.streaming_output_call(StreamingOutputCallRequest {
            response_parameters: params(&[31_415, 9, 2_653]),
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    let messages: Vec<Result<StreamingOutputCallResponse, tonic::Status>> =
        guard("native stream messages", stream.into_inner().collect()).await;
    let sizes: Vec<usize> = messages
        .into_iter()
        .map(|m| payload_len(&m.unwrap()))
        .collect();
    assert_eq!(sizes, [31_415, 9, 2_653]);

    let mut request = tonic::Request::new(SimpleRequest {
        response_status: echo_status(SPECIAL_MESSAGE),
        ..Default::default()
    });
    request.metadata_mut().insert(
        "x-grpc-test-echo-initial",
        tonic::metadata::MetadataValue::from_static(INITIAL_VALUE),
    );
    request.metadata_mut().insert_bin(
        "x-grpc-test-echo-trailing-bin",
        tonic::metadata::MetadataValue::from_bytes(TRAILING_VALUE),
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
    assert_eq!(
        status
            .metadata()
            .get_bin("x-grpc-test-echo-trailing-bin")
            .unwrap()
            .to_bytes()
            .unwrap(),
        TRAILING_VALUE
    );

    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let requests = tokio_stream::wrappers::ReceiverStream::new(rx);
    tx.send(StreamingOutputCallRequest {
        response_parameters: params(&[9]),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut pongs = guard("native duplex", native.full_duplex_call(requests))
        .await
        .unwrap()
        .into_inner();
    let pong = guard("first pong", pongs.message()).await.unwrap().unwrap();
    assert_eq!(payload_len(&pong), 9);
    tx.send(StreamingOutputCallRequest {
        response_parameters: params(&[8]),
        ..Default::default()
    })
    .await
    .unwrap();
    let pong = guard("second pong", pongs.message())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(payload_len(&pong), 8);
    drop(tx);
    assert!(guard("end", pongs.message()).await.unwrap().is_none());

    upstream.wait_for(|c| c.completed == 4).await;
}

// Routing

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrouted_service_is_unimplemented() {
    let (gateway, upstream) = gateway().await;
    for proto in [Proto::H1, Proto::H2] {
        let mut client = gateway.client(proto).await;
        let reply = client
            .unary(UNIMPLEMENTED_SERVICE_CALL, Mode::Binary, &Empty {})
            .await;
        let message = reply.assert_code(12);
        assert!(message.contains("no route"), "{message}");
    }
    let mut client = gateway.client(Proto::H2).await;
    let request = client.builder(UNIMPLEMENTED_SERVICE_CALL);
    let reply = native_call(&mut client, request, weir_codec::frame::encode_message(&[])).await;
    assert_eq!(reply.code(), 12, "{reply:?}");
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
    assert_eq!(upstream.observer.counts().started, 0);
    // The routed service still works.
    client
        .unary(EMPTY_CALL, Mode::Binary, &Empty {})
        .await
        .assert_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_route_sends_everything() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(
        Proxy::builder()
            .cluster(ClusterConfig::new("up").address("127.0.0.1", upstream.port()))
            .route("*", "up"),
    )
    .await;
    let mut client = gateway.client(Proto::H2).await;
    client
        .unary(EMPTY_CALL, Mode::Binary, &Empty {})
        .await
        .assert_ok();
    let reply = client
        .unary(UNIMPLEMENTED_SERVICE_CALL, Mode::Binary, &Empty {})
        .await;
    // The upstream's own answer, not the proxy's.
    let message = reply.assert_code(12);
    assert!(message.contains("is not implemented"), "{message}");
    let paths: Vec<String> = upstream.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, [EMPTY_CALL, UNIMPLEMENTED_SERVICE_CALL]);
}

// Request headers

/// Over HTTP/1.1 a client can send connection-level headers; none reaches the upstream, and
/// neither do statuses (which only servers send) nor the gateway's own `weir-heartbeat`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_and_reserved_headers_stay_at_the_gateway() {
    let (gateway, upstream) = gateway().await;
    let mut client = gateway.client(Proto::H1).await;
    let mode = Mode::Binary;
    let request = http::Request::builder()
        .uri(EMPTY_CALL)
        .method("POST")
        .header(header::HOST, "evil.example:666")
        .header(header::CONTENT_TYPE, mode.content_type())
        .header("x-grpc-web", "1")
        .header(header::CONNECTION, "x-secret")
        .header("x-secret", "1")
        .header(header::TE, "gzip")
        .header("keep-alive", "timeout=5")
        .header("grpc-status", "0")
        .header("grpc-message", "spoofed")
        .header("weir-heartbeat", "1S")
        .header("x-kept", "yes")
        .body(BoxBody::full(mode.body(&[Empty {}])))
        .unwrap();
    let reply = client.start(request, mode).await.finish().await;
    reply.assert_ok();

    let seen = upstream.only_seen();
    for name in [
        "connection",
        "x-secret",
        "keep-alive",
        "grpc-status",
        "grpc-message",
        "weir-heartbeat",
    ] {
        assert!(
            !seen.headers.contains_key(name),
            "upstream received {name}: {seen:?}"
        );
    }
    assert_eq!(
        seen.headers.get_all(header::TE).iter().count(),
        1,
        "{seen:?}"
    );
    assert_eq!(seen.headers[header::TE], "trailers");
    assert_eq!(seen.headers["x-kept"], "yes");
    assert_eq!(seen.headers[header::CONTENT_TYPE], "application/grpc+proto");
    let authority = format!("127.0.0.1:{}", upstream.port());
    assert_eq!(
        seen.authority.as_deref(),
        Some(authority.as_str()),
        "{seen:?}"
    );
    if let Some(host) = seen.headers.get(header::HOST) {
        assert_eq!(host, authority.as_str());
    }
}

/// Native gRPC over HTTP/2: statuses, `weir-heartbeat` and a spoofed `:authority` are not
/// passed on either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_reserved_headers_stay_at_the_gateway() {
    let (gateway, upstream) = gateway().await;
    let mut client = gateway.client(Proto::H2).await;
    let request = http::Request::builder()
        .uri(format!("http://evil.example:666{EMPTY_CALL}"))
        .header("grpc-status", "0")
        .header("grpc-message", "spoofed")
        .header("weir-heartbeat", "1S")
        .header("x-kept", "yes");
    let reply = native_call(&mut client, request, weir_codec::frame::encode_message(&[])).await;
    assert_eq!(reply.code(), 0, "{reply:?}");
    let seen = upstream.only_seen();
    for name in ["grpc-status", "grpc-message", "weir-heartbeat"] {
        assert!(
            !seen.headers.contains_key(name),
            "upstream received {name}: {seen:?}"
        );
    }
    assert_eq!(seen.headers[header::TE], "trailers");
    assert_eq!(seen.headers["x-kept"], "yes");
    let authority = format!("127.0.0.1:{}", upstream.port());
    assert_eq!(
        seen.authority.as_deref(),
        Some(authority.as_str()),
        "{seen:?}"
    );
    if let Some(host) = seen.headers.get(header::HOST) {
        assert_eq!(host, authority.as_str());
    }
}

// Deadlines

/// A stream of `messages` messages: the first at once, then one every `interval`.
fn slow_stream(messages: usize, interval: Duration) -> StreamingOutputCallRequest {
    StreamingOutputCallRequest {
        response_parameters: (0..messages)
            .map(|i| weir_testservice::pb::ResponseParameters {
                size: 10,
                interval_us: if i == 0 {
                    0
                } else {
                    i32::try_from(interval.as_micros()).unwrap()
                },
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn forwarded_timeout(seen: &Seen) -> Duration {
    let value = seen
        .headers
        .get("grpc-timeout")
        .unwrap_or_else(|| panic!("no grpc-timeout upstream: {seen:?}"));
    timeout::parse(value.as_bytes()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_ends_a_stream() {
    for proto in [Proto::H1, Proto::H2] {
        let (gateway, upstream) = gateway().await;
        let mut client = gateway.client(proto).await;
        let mode = Mode::Binary;
        let request = client
            .request(STREAMING_OUTPUT_CALL, mode)
            .header("grpc-timeout", "300m")
            .body(BoxBody::full(
                mode.body(&[slow_stream(10, Duration::from_millis(500))]),
            ))
            .unwrap();
        let reply = client.start(request, mode).await.finish().await;
        // The first message, then the status in a trailer frame.
        reply.assert_code(4);
        assert_eq!(reply.messages.len(), 1, "{reply:?}");
        assert!(reply.trailers.is_some(), "{reply:?}");
        // The upstream handler ended, one way or another (its own deadline, or the reset).
        upstream
            .wait_for(|c| c.started == 1 && c.in_flight() == 0)
            .await;
        let forwarded = forwarded_timeout(&upstream.only_seen());
        assert!(forwarded <= Duration::from_millis(300), "{forwarded:?}");
        assert!(!forwarded.is_zero());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_timeout_caps_calls() {
    let upstream = Upstream::start().await;
    let gateway =
        Gateway::start(to_upstream(upstream.port()).max_timeout(Some(Duration::from_millis(200))))
            .await;
    let mut client = gateway.client(Proto::H2).await;
    let mode = Mode::Binary;
    let reply = client
        .unary(
            STREAMING_OUTPUT_CALL,
            mode,
            &slow_stream(10, Duration::from_millis(500)),
        )
        .await;
    reply.assert_code(4);
    assert_eq!(reply.messages.len(), 1, "{reply:?}");
    upstream
        .wait_for(|c| c.started == 1 && c.in_flight() == 0)
        .await;
    let forwarded = forwarded_timeout(&upstream.only_seen());
    assert!(forwarded <= Duration::from_millis(200), "{forwarded:?}");

    // A longer grpc-timeout is shortened to the cap as well.
    let request = client
        .request(EMPTY_CALL, mode)
        .header("grpc-timeout", "1H")
        .body(BoxBody::full(mode.body(&[Empty {}])))
        .unwrap();
    client.start(request, mode).await.finish().await.assert_ok();
    let forwarded = forwarded_timeout(&upstream.seen()[1]);
    assert!(forwarded <= Duration::from_millis(200), "{forwarded:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_grpc_timeout_is_refused() {
    let (gateway, upstream) = gateway().await;
    for proto in [Proto::H1, Proto::H2] {
        let mut client = gateway.client(proto).await;
        let mode = Mode::Binary;
        let request = client
            .request(EMPTY_CALL, mode)
            .header("grpc-timeout", "10x")
            .body(BoxBody::full(mode.body(&[Empty {}])))
            .unwrap();
        let reply = client.start(request, mode).await.finish().await;
        let message = reply.assert_code(13);
        assert!(message.contains("10x"), "{message}");
    }
    // Native gRPC: refused by the proxy itself.
    let mut client = gateway.client(Proto::H2).await;
    let request = client.builder(EMPTY_CALL).header("grpc-timeout", "10x");
    let reply = native_call(&mut client, request, weir_codec::frame::encode_message(&[])).await;
    assert_eq!(reply.code(), 13, "{reply:?}");
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
    assert_eq!(upstream.observer.counts().started, 0);
}

// Heartbeats

/// A stream of two messages, the second one a second after the first.
fn one_second_gap() -> StreamingOutputCallRequest {
    StreamingOutputCallRequest {
        response_parameters: vec![
            weir_testservice::pb::ResponseParameters {
                size: 10,
                ..Default::default()
            },
            weir_testservice::pb::ResponseParameters {
                size: 10,
                interval_us: 1_000_000,
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

async fn heartbeat_gateway() -> (Gateway, Upstream) {
    let upstream = Upstream::start().await;
    let layer =
        GrpcWebLayer::new().heartbeat_bounds(Duration::from_millis(50), Duration::from_secs(60));
    let gateway = Gateway::with_layer(layer, to_upstream(upstream.port())).await;
    (gateway, upstream)
}

/// Reads a call to its end; returns the flags of every frame before the trailer frame.
async fn frame_flags(call: &mut Call) -> Vec<u8> {
    let mut flags = Vec::new();
    while let Some(frame) = call.next_frame().await {
        if frame.flags() == 0x40 {
            assert!(frame.payload().is_empty(), "heartbeat with a payload");
        }
        flags.push(frame.flags());
    }
    flags
}

fn assert_heartbeats_between_messages(flags: &[u8]) {
    let messages: Vec<usize> = flags
        .iter()
        .enumerate()
        .filter(|(_, f)| **f == 0)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(messages.len(), 2, "{flags:x?}");
    let between = flags[messages[0]..messages[1]]
        .iter()
        .filter(|f| **f == 0x40)
        .count();
    // About ten are due in the one-second gap; a few suffice to show they come.
    assert!(between >= 3, "{between} heartbeats: {flags:x?}");
    assert!(
        flags.iter().all(|f| *f == 0 || *f == 0x40),
        "unexpected flags: {flags:x?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_fill_idle_streams() {
    let (gateway, _upstream) = heartbeat_gateway().await;
    let mut tasks = Vec::new();
    for proto in [Proto::H1, Proto::H2] {
        let mut client = gateway.client(proto).await;
        tasks.push(tokio::spawn(async move {
            let mode = Mode::Binary;
            let request = client
                .request(STREAMING_OUTPUT_CALL, mode)
                .header("weir-heartbeat", "100m")
                .body(BoxBody::full(mode.body(&[one_second_gap()])))
                .unwrap();
            let mut call = client.start(request, mode).await;
            let confirmed = timeout::parse(call.headers["weir-heartbeat"].as_bytes()).unwrap();
            assert_eq!(confirmed, Duration::from_millis(100), "{proto:?}");
            let flags = frame_flags(&mut call).await;
            assert_heartbeats_between_messages(&flags);
            assert_eq!(call.finish().await.code(), 0);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_in_text_mode() {
    let (gateway, _upstream) = heartbeat_gateway().await;
    let mut client = gateway.client(Proto::H1).await;
    let mode = Mode::Text;
    let request = client
        .request(STREAMING_OUTPUT_CALL, mode)
        .header("weir-heartbeat", "100m")
        .body(BoxBody::full(mode.body(&[one_second_gap()])))
        .unwrap();
    let mut call = client.start(request, mode).await;
    assert!(call.headers.contains_key("weir-heartbeat"));
    let flags = frame_flags(&mut call).await;
    assert_heartbeats_between_messages(&flags);
    let raw = String::from_utf8(call.raw().to_vec()).unwrap();
    assert!(raw.contains("QAAAAAA="), "{raw}");
    assert_eq!(call.finish().await.code(), 0);
}

/// Without the request header, or with an invalid one, there is no heartbeat and the call
/// succeeds as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_heartbeats_unless_asked_for() {
    let (gateway, _upstream) = heartbeat_gateway().await;
    let mut tasks = Vec::new();
    for asked in [None, Some("soon"), Some("0x40"), Some("123456789m")] {
        let mut client = gateway.client(Proto::H2).await;
        tasks.push(tokio::spawn(async move {
            let mode = Mode::Binary;
            let mut request = client.request(STREAMING_OUTPUT_CALL, mode);
            if let Some(value) = asked {
                request = request.header("weir-heartbeat", value);
            }
            let request = request
                .body(BoxBody::full(mode.body(&[one_second_gap()])))
                .unwrap();
            let mut call = client.start(request, mode).await;
            assert!(!call.headers.contains_key("weir-heartbeat"), "{asked:?}");
            let flags = frame_flags(&mut call).await;
            assert_eq!(flags, [0, 0], "{asked:?}");
            assert_eq!(call.finish().await.code(), 0);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

// Metrics

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_proxied_calls() {
    let (gateway, _upstream) = gateway().await;
    let mut client = gateway.client(Proto::H2).await;
    for _ in 0..3 {
        client
            .unary(UNARY_CALL, Mode::Binary, &SimpleRequest::default())
            .await
            .assert_ok();
    }
    client
        .unary(
            UNARY_CALL,
            Mode::Text,
            &SimpleRequest {
                response_status: echo_status("no"),
                ..Default::default()
            },
        )
        .await
        .assert_code(2);
    let mut native = gateway.tonic().await;
    guard("native unary", native.unary_call(SimpleRequest::default()))
        .await
        .unwrap();
    assert_eq!(
        gateway.metric(
            r#"weir_calls_total{service="grpc.testing.TestService",method="UnaryCall",code="OK"}"#
        ),
        4.0,
        "{}",
        gateway.metrics.encode()
    );
    assert_eq!(
        gateway.metric(
            r#"weir_calls_total{service="grpc.testing.TestService",method="UnaryCall",code="UNKNOWN"}"#
        ),
        1.0,
        "{}",
        gateway.metrics.encode()
    );
    assert_eq!(gateway.metric("weir_calls_active"), 0.0);
    assert!(
        !gateway
            .metrics
            .encode()
            .contains("weir_upstream_errors_total{")
    );
}

// Balancing

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balances_over_the_clusters_addresses() {
    let first = Upstream::start_with_id("first").await;
    let second = Upstream::start_with_id("second").await;
    let gateway = Gateway::start(
        Proxy::builder()
            .cluster(
                ClusterConfig::new("up")
                    .address("127.0.0.1", first.port())
                    .address("127.0.0.1", second.port()),
            )
            .route("grpc.testing.TestService", "up"),
    )
    .await;
    let mut client = gateway.client(Proto::H2).await;
    let mut served = [0, 0];
    for _ in 0..20 {
        let reply = client
            .unary(
                UNARY_CALL,
                Mode::Binary,
                &SimpleRequest {
                    fill_server_id: true,
                    ..Default::default()
                },
            )
            .await;
        reply.assert_ok();
        let response: SimpleResponse = reply.decode(0);
        match response.server_id.as_str() {
            "first" => served[0] += 1,
            "second" => served[1] += 1,
            other => panic!("served by {other:?}"),
        }
    }
    assert!(served[0] > 0 && served[1] > 0, "{served:?}");
    assert_eq!(first.observer.counts().completed, served[0]);
    assert_eq!(second.observer.counts().completed, served[1]);
    // The authority sent is each address's own.
    assert_eq!(
        first.seen()[0].authority,
        Some(format!("127.0.0.1:{}", first.port()))
    );
    assert_eq!(
        second.seen()[0].authority,
        Some(format!("127.0.0.1:{}", second.port()))
    );
}

/// One of the cluster's addresses refuses connections: every call still succeeds, on the
/// other address (nothing was sent to the dead one, so moving on is safe), and the dead
/// address is only retried after a back-off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_move_on_from_an_address_that_refuses_connections() {
    let dead = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let live = Upstream::start_with_id("live").await;
    let gateway = Gateway::start(
        Proxy::builder()
            .cluster(
                ClusterConfig::new("up")
                    .address("127.0.0.1", dead)
                    .address("127.0.0.1", live.port()),
            )
            .route("grpc.testing.TestService", "up"),
    )
    .await;
    let mut client = gateway.client(Proto::H2).await;
    for _ in 0..20 {
        client
            .unary(UNARY_CALL, Mode::Binary, &SimpleRequest::default())
            .await
            .assert_ok();
    }
    assert_eq!(live.observer.counts().completed, 20);
    assert!(
        !gateway
            .metrics
            .encode()
            .contains("weir_upstream_errors_total{"),
        "no call failed"
    );
}

/// A client that gives up in the middle of its upload (request body still open) — before the
/// upstream answered, and after it sent its headers and a message: the gateway resets the
/// upstream stream. The client fails its request body with `CANCEL`, so it resets its stream
/// on HTTP/2 (what a browser's abort does) and drops the connection on HTTP/1.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_upload_resets_the_upstream_stream() {
    for script in [Script::Silent, Script::OneMessageThenHang] {
        for (proto, mode) in VARIANTS {
            let upstream = Scripted::start(script.clone()).await;
            let gateway = Gateway::start(to_upstream(upstream.port())).await;
            let mut client = gateway.client(proto).await;
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, h2::Error>>(4);
            let frames = tokio_stream::wrappers::ReceiverStream::new(rx)
                .map(|chunk| chunk.map(hyper::body::Frame::data));
            let body = BoxBody::new(http_body_util::StreamBody::new(frames));
            tx.send(Ok(mode.body(&[StreamingOutputCallRequest::default()])))
                .await
                .unwrap();
            let request = client.request(FULL_DUPLEX_CALL, mode).body(body).unwrap();
            let call =
                tokio::spawn(async move { client.start(request, mode).await.finish().await });
            guard("upstream request", async {
                while upstream.requests() < 1 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await;
            tx.send(Err(h2::Error::from(h2::Reason::CANCEL)))
                .await
                .unwrap();
            upstream.wait_released(1).await;
            call.abort();
        }
    }
}

/// Upstream DATA frames need not align with gRPC frames: a frame split inside its header or
/// its payload, several frames and parts of others in one chunk, an empty message. The
/// client still gets every message, whole and in order, in both modes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_chunks_that_split_frames() {
    let payloads: Vec<Vec<u8>> = vec![
        vec![1; 10],
        Vec::new(),
        vec![2; 300],
        vec![3; 3],
        vec![4; 70_000],
        vec![5; 1],
    ];
    let mut wire = Vec::new();
    for payload in &payloads {
        wire.extend_from_slice(&weir_codec::frame::encode_message(payload));
    }
    let wire = Bytes::from(wire);
    // Cut points: inside the first header, just after it, inside a payload, on a boundary,
    // across several frames, inside the big frame, and the rest.
    let cuts = [2, 5, 12, 15, 20, 331, 400, 40_000, 70_300, wire.len()];
    let mut chunks = Vec::new();
    let mut start = 0;
    for end in cuts {
        chunks.push(wire.slice(start..end));
        start = end;
    }
    let upstream = Scripted::start(Script::Chunks(chunks)).await;
    let gateway = Gateway::start(to_upstream(upstream.port())).await;
    for (proto, mode) in VARIANTS {
        let mut client = gateway.client(proto).await;
        let reply = client
            .call_raw(FULL_DUPLEX_CALL, mode, mode.frame(b""))
            .await;
        reply.assert_code(0);
        let got: Vec<Vec<u8>> = reply.messages.iter().map(|m| m.to_vec()).collect();
        assert_eq!(got, payloads, "{proto:?} {mode:?}");
    }
}
