//! The upstream proxy when things go wrong, over real loopback sockets: clients that go away
//! (the upstream handler must see the cancellation), upstreams that are down, die mid-stream
//! or answer something that is not gRPC, and the drain at shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use prost::Message as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use weir::body::BoxBody;
use weir::edge::EdgeConfig;
use weir::grpc_web::GrpcWebLayer;
use weir::proxy::{ClusterConfig, Proxy};
use weir_codec::frame;
use weir_testservice::pb::{
    Empty, ResponseParameters, SimpleRequest, StreamingOutputCallRequest,
    StreamingOutputCallResponse,
};

use support::gateway::*;
use support::*;

const STREAM_CANCELLATIONS: &str = r#"weir_call_cancellations_total{service="grpc.testing.TestService",method="StreamingOutputCall"}"#;

fn upstream_errors(kind: &str) -> String {
    format!(r#"weir_upstream_errors_total{{cluster="up",kind="{kind}"}}"#)
}

/// A gateway in front of one fresh upstream.
async fn gateway() -> (Gateway, Upstream) {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(to_upstream(upstream.port())).await;
    (gateway, upstream)
}

fn stream_of(intervals: &[Duration]) -> StreamingOutputCallRequest {
    StreamingOutputCallRequest {
        response_parameters: intervals
            .iter()
            .map(|interval| ResponseParameters {
                size: 10,
                interval_us: i32::try_from(interval.as_micros()).unwrap(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// 200 messages, one every 50 ms.
fn busy_stream() -> StreamingOutputCallRequest {
    stream_of(&[Duration::from_millis(50); 200])
}

fn payload_len(message: &StreamingOutputCallResponse) -> usize {
    message.payload.as_ref().map_or(0, |p| p.body.len())
}

/// Waits (with the hang guard) until a metric series reaches `value`.
async fn wait_for_metric(gateway: &Gateway, series: &str, value: f64) {
    guard(&format!("metric {series} = {value}"), async {
        while gateway.metric(series) < value {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

// Cancellation

/// An HTTP/2 client resets its stream mid-way: the proxy resets the upstream stream, whose
/// handler sees the cancellation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_reset_reaches_the_upstream() {
    let (gateway, upstream) = gateway().await;
    let mut client = gateway.client(Proto::H2).await;
    let mode = Mode::Binary;
    let request = client
        .request(STREAMING_OUTPUT_CALL, mode)
        .body(BoxBody::full(mode.body(&[busy_stream()])))
        .unwrap();
    let mut call = client.start(request, mode).await;
    for _ in 0..2 {
        let message: StreamingOutputCallResponse = call.next_as().await.unwrap();
        assert_eq!(payload_len(&message), 10);
    }
    call.abandon();
    let counts = upstream.wait_for(|c| c.cancelled == 1).await;
    assert_eq!(counts.completed, 0);
    wait_for_metric(&gateway, STREAM_CANCELLATIONS, 1.0).await;
    // A cancellation by the client is no upstream failure.
    assert_eq!(gateway.metric(&upstream_errors("reset")), 0.0);

    // The same connection goes on.
    client.unary(EMPTY_CALL, mode, &Empty {}).await.assert_ok();
}

/// Sends a server-streaming call over a raw HTTP/1.1 connection and reads until the response
/// head and `messages` message frames of 10 bytes have arrived.
async fn h1_raw_stream(
    addr: SocketAddr,
    request: &StreamingOutputCallRequest,
    messages: usize,
) -> TcpStream {
    let mode = Mode::Binary;
    let body = mode.body(std::slice::from_ref(request));
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {STREAMING_OUTPUT_CALL} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: {}\r\nx-grpc-web: 1\r\ncontent-length: {}\r\n\r\n",
        mode.content_type(),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    // Each message is a 5-byte header and a 12-byte payload (field 1 holding 10 bytes),
    // plus chunked-encoding overhead.
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    guard("streamed HTTP/1.1 response", async {
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            assert_ne!(n, 0, "gateway closed the connection");
            received.extend_from_slice(&buf[..n]);
            if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n")
                && received.len() >= end + 4 + messages * 17
            {
                break;
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    stream
}

/// An HTTP/1.1 client closes its connection while the stream is busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_disconnect_of_a_busy_stream_reaches_the_upstream() {
    let (gateway, upstream) = gateway().await;
    let stream = h1_raw_stream(gateway.addr, &busy_stream(), 2).await;
    assert_eq!(upstream.observer.counts().in_flight(), 1);
    drop(stream);
    let counts = upstream.wait_for(|c| c.cancelled == 1).await;
    assert_eq!(counts.completed, 0);
    wait_for_metric(&gateway, STREAM_CANCELLATIONS, 1.0).await;
}

/// An HTTP/1.1 client closes its connection while the stream is idle: its next message is
/// 10 s away, so the gateway has nothing to write that would fail. It must notice the closed
/// connection anyway (hyper issue #2917) and cancel the upstream call promptly, not when the
/// next message comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_disconnect_of_an_idle_stream_reaches_the_upstream() {
    let (gateway, upstream) = gateway().await;
    let request = stream_of(&[Duration::ZERO, Duration::from_secs(10)]);
    let stream = h1_raw_stream(gateway.addr, &request, 1).await;
    assert_eq!(upstream.observer.counts().in_flight(), 1);
    drop(stream);
    let counts = upstream.wait_for(|c| c.cancelled == 1).await;
    assert_eq!(counts.completed, 0);
}

// Failures

/// A port nothing listens on.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// The upstream's port is closed: `UNAVAILABLE` naming the cluster; other clusters are still
/// served, and so is this one once its upstream comes up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_upstream_port_is_unavailable() {
    let port = closed_port().await;
    let other = Upstream::start().await;
    let gateway = Gateway::start(
        to_upstream(port)
            .cluster(ClusterConfig::new("other").address("127.0.0.1", other.port()))
            .route("grpc.testing.UnimplementedService", "other"),
    )
    .await;
    for proto in [Proto::H1, Proto::H2] {
        let mut client = gateway.client(proto).await;
        let reply = client.unary(EMPTY_CALL, Mode::Binary, &Empty {}).await;
        let message = reply.assert_code(14);
        assert!(message.contains("\"up\""), "{message}");

        // The other cluster answers (its upstream's own UNIMPLEMENTED).
        let reply = client
            .unary(
                "/grpc.testing.UnimplementedService/UnimplementedCall",
                Mode::Binary,
                &Empty {},
            )
            .await;
        let message = reply.assert_code(12);
        assert!(message.contains("is not implemented"), "{message}");
    }
    assert_eq!(other.seen().len(), 2);
    assert_eq!(gateway.metric(&upstream_errors("connect")), 2.0);

    // The upstream comes up on that port: calls go through.
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let upstream = Upstream::on(listener, "late");
    let mut client = gateway.client(Proto::H2).await;
    client
        .unary(EMPTY_CALL, Mode::Binary, &Empty {})
        .await
        .assert_ok();
    assert_eq!(upstream.observer.counts().completed, 1);
}

/// The upstream's connection dies after the response headers and one message: the client
/// gets a non-OK trailer, never a body that simply ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_dying_mid_stream_is_unavailable() {
    let upstream = Scripted::start(Script::OneMessageThenHang).await;
    let gateway = Gateway::start(to_upstream(upstream.port())).await;
    for (i, (proto, mode)) in [(Proto::H1, Mode::Binary), (Proto::H2, Mode::Text)]
        .into_iter()
        .enumerate()
    {
        let mut client = gateway.client(proto).await;
        let request = client
            .request(STREAMING_OUTPUT_CALL, mode)
            .body(BoxBody::full(mode.body(&[busy_stream()])))
            .unwrap();
        let mut call = client.start(request, mode).await;
        let first = call.next_message().await.expect("the upstream's message");
        assert_eq!(first, SCRIPTED_MESSAGE);
        upstream.kill_connections();
        let reply = call.finish().await;
        let message = reply.assert_code(14);
        assert!(reply.messages.is_empty(), "{reply:?}");
        assert!(reply.trailers.is_some(), "{reply:?}");
        assert!(!message.is_empty());
        wait_for_metric(&gateway, &upstream_errors("reset"), (i + 1) as f64).await;
    }
    assert_eq!(upstream.requests(), 2);
}

async fn scripted_reply(script: Script) -> (Gateway, Reply) {
    let upstream = Scripted::start(script).await;
    let gateway = Gateway::start(to_upstream(upstream.port())).await;
    let mut client = gateway.client(Proto::H1).await;
    let reply = client
        .unary(UNARY_CALL, Mode::Binary, &SimpleRequest::default())
        .await;
    assert_eq!(upstream.requests(), 1);
    (gateway, reply)
}

/// An HTTP 503 error page (say from a load balancer in front of the upstream):
/// `UNAVAILABLE`, with the HTTP status and the start of the page in the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_503_page_is_unavailable() {
    let (gateway, reply) = scripted_reply(Script::Http {
        status: StatusCode::SERVICE_UNAVAILABLE,
        content_type: "text/html",
        body: "<html>down for maintenance</html>",
    })
    .await;
    let message = reply.assert_code(14);
    assert!(reply.is_trailers_only(), "{reply:?}");
    assert!(message.contains("503"), "{message}");
    assert!(message.contains("down for maintenance"), "{message}");
    assert_eq!(gateway.metric(&upstream_errors("non_grpc")), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_404_is_unimplemented() {
    let (gateway, reply) = scripted_reply(Script::Http {
        status: StatusCode::NOT_FOUND,
        content_type: "text/plain",
        body: "no such path",
    })
    .await;
    let message = reply.assert_code(12);
    assert!(message.contains("404"), "{message}");
    assert_eq!(gateway.metric(&upstream_errors("non_grpc")), 1.0);
}

/// A gRPC response whose body ends without trailers must not look like success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_without_trailers_is_internal() {
    let (_gateway, reply) = scripted_reply(Script::NoTrailers).await;
    reply.assert_code(13);
    assert_eq!(reply.messages.len(), 1, "{reply:?}");
}

// Deadlines the proxy enforces itself

/// Scripted upstreams ignore `grpc-timeout`; the proxy still ends the call at the deadline
/// (`grpc-timeout` of a native call, which the gRPC-Web layer does not watch) and resets the
/// upstream stream, before the response head and in the middle of the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_timeout_holds_against_unresponsive_upstreams() {
    for (script, messages) in [(Script::Silent, 0), (Script::OneMessageThenHang, 1)] {
        let upstream = Scripted::start(script.clone()).await;
        let gateway = Gateway::start(to_upstream(upstream.port())).await;
        let mut client = gateway.client(Proto::H2).await;
        let request = client
            .builder(STREAMING_OUTPUT_CALL)
            .header("grpc-timeout", "200m");
        let body = frame::encode_message(&busy_stream().encode_to_vec());
        let reply = native_call(&mut client, request, body).await;
        assert_eq!(reply.code(), 4, "{script:?}: {reply:?}");
        assert_eq!(reply.body.len(), messages * 5, "{script:?}: {reply:?}");
        upstream.wait_released(1).await;
    }
}

/// Same with the proxy's `max_timeout` and a gRPC-Web call without `grpc-timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_timeout_holds_against_unresponsive_upstreams() {
    for (script, messages) in [(Script::Silent, 0), (Script::OneMessageThenHang, 1)] {
        let upstream = Scripted::start(script.clone()).await;
        // The gateway's composition: the edge enforces the cap, the proxy forwards it.
        let max = Some(Duration::from_millis(200));
        let gateway = Gateway::with_layer(
            GrpcWebLayer::new().edge(EdgeConfig::default().max_call(max)),
            to_upstream(upstream.port()).max_timeout(max),
        )
        .await;
        let mut client = gateway.client(Proto::H1).await;
        let reply = client
            .unary(STREAMING_OUTPUT_CALL, Mode::Binary, &busy_stream())
            .await;
        reply.assert_code(4);
        assert_eq!(reply.messages.len(), messages, "{script:?}: {reply:?}");
        upstream.wait_released(1).await;
    }
}

// Drain

/// The drain token ends open streams with `UNAVAILABLE` and cancels their upstream calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_ends_open_streams() {
    let (gateway, upstream) = gateway().await;
    let mut calls = Vec::new();
    for (proto, mode) in [(Proto::H1, Mode::Binary), (Proto::H2, Mode::Text)] {
        let mut client = gateway.client(proto).await;
        let request = client
            .request(STREAMING_OUTPUT_CALL, mode)
            .body(BoxBody::full(mode.body(&[busy_stream()])))
            .unwrap();
        let mut call = client.start(request, mode).await;
        assert!(call.next_message().await.is_some());
        calls.push((client, call));
    }
    gateway.drain.cancel();
    for (_client, call) in calls {
        let reply = call.finish().await;
        let message = reply.assert_code(14);
        assert!(message.contains("shutting down"), "{message}");
        assert!(reply.trailers.is_some(), "{reply:?}");
    }
    let counts = upstream.wait_for(|c| c.cancelled == 2).await;
    assert_eq!(counts.completed, 0);
}

/// A route naming a cluster that does not exist is refused when the proxy is built.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builder_rejects_unknown_clusters() {
    let err = Proxy::builder()
        .cluster(ClusterConfig::new("up").address("127.0.0.1", 1))
        .route("grpc.testing.TestService", "down")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("\"down\""), "{err}");
}
