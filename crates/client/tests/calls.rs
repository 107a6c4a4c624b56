//! weir-client against weir's own stack, in-process on loopback: the gRPC-Web layer over the
//! interop TestService, and the gateway (layer → proxy) in front of a native upstream.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response as HttpResponse, StatusCode};
use prost::Message as _;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tower::Layer as _;
use weir::body::BoxBody;
use weir::grpc_web::GrpcWebLayer;
use weir::proxy::{ClusterConfig, Proxy};
use weir::server::Server;
use weir_client::{CallOptions, Client, Code, HttpVersion, Mode, Status};
use weir_testservice::pb::{
    EchoStatus, Payload, ResponseParameters, SimpleRequest, SimpleResponse,
    StreamingInputCallRequest, StreamingInputCallResponse, StreamingOutputCallRequest,
    StreamingOutputCallResponse,
};
use weir_testservice::{CallCounts, CallObserver, TestServiceImpl};

/// Hang guard, not a performance assertion.
const GUARD: Duration = Duration::from_secs(10);

async fn guard<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(GUARD, f).await {
        Ok(v) => v,
        Err(_) => panic!("hang guard: {what}"),
    }
}

const EMPTY: &str = "grpc.testing.TestService/EmptyCall";
const UNARY: &str = "/grpc.testing.TestService/UnaryCall";
const OUTPUT: &str = "grpc.testing.TestService/StreamingOutputCall";
const INPUT: &str = "grpc.testing.TestService/StreamingInputCall";
const DUPLEX: &str = "grpc.testing.TestService/FullDuplexCall";

struct Running {
    addr: SocketAddr,
    observer: Arc<CallObserver>,
    _stop: Vec<oneshot::Sender<()>>,
}

async fn serve<S, B>(service: S) -> (SocketAddr, oneshot::Sender<()>)
where
    S: tower::Service<http::Request<hyper::body::Incoming>, Response = HttpResponse<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<weir::body::BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<weir::body::BoxError>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        Server::new()
            .serve(listener, service, async {
                let _ = rx.await;
            })
            .await;
    });
    (addr, tx)
}

/// The layer over the TestService.
async fn layer() -> Running {
    let observer = Arc::new(CallObserver::new());
    let service = GrpcWebLayer::new().layer(
        TestServiceImpl::new()
            .with_observer(observer.clone())
            .into_service(),
    );
    let (addr, stop) = serve(service).await;
    Running {
        addr,
        observer,
        _stop: vec![stop],
    }
}

/// The gateway (layer → proxy) in front of a native TestService upstream.
async fn gateway() -> Running {
    let observer = Arc::new(CallObserver::new());
    let (upstream, stop_upstream) = serve(
        TestServiceImpl::new()
            .with_observer(observer.clone())
            .into_service(),
    )
    .await;
    let proxy = Proxy::builder()
        .cluster(ClusterConfig::new("up").address("127.0.0.1", upstream.port()))
        .route("*", "up")
        .build()
        .unwrap();
    let (addr, stop) = serve(GrpcWebLayer::new().layer(proxy)).await;
    Running {
        addr,
        observer,
        _stop: vec![stop, stop_upstream],
    }
}

impl Running {
    fn client(&self, version: HttpVersion, mode: Mode) -> Client {
        Client::builder(format!("http://{}", self.addr))
            .http_version(version)
            .mode(mode)
            .build()
            .unwrap()
    }

    async fn wait_for(&self, condition: impl FnMut(&CallCounts) -> bool) -> CallCounts {
        guard("observer", self.observer.wait_for(condition)).await
    }
}

const ALL: [(HttpVersion, Mode); 4] = [
    (HttpVersion::Http1, Mode::Binary),
    (HttpVersion::Http1, Mode::Text),
    (HttpVersion::Http2, Mode::Binary),
    (HttpVersion::Http2, Mode::Text),
];

fn stream_request(sizes: &[i32], interval_us: i32) -> StreamingOutputCallRequest {
    StreamingOutputCallRequest {
        response_parameters: sizes
            .iter()
            .map(|&size| ResponseParameters {
                size,
                interval_us,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn payload(size: usize) -> Option<Payload> {
    Some(Payload {
        body: vec![7; size],
        ..Default::default()
    })
}

async fn every_call_type(server: &Running) {
    for (version, mode) in ALL {
        let client = server.client(version, mode);
        let what = format!("{version:?} {mode:?}");

        let reply = guard(
            "empty",
            client.unary(EMPTY, Bytes::new(), CallOptions::new()),
        )
        .await
        .unwrap();
        assert!(reply.message().is_empty(), "{what}");

        let request = SimpleRequest {
            response_size: 1000,
            payload: payload(10),
            ..Default::default()
        };
        let reply: weir_client::Response<SimpleResponse> = guard(
            "unary",
            client.unary_message(UNARY, &request, CallOptions::new()),
        )
        .await
        .unwrap();
        assert_eq!(reply.message().payload.as_ref().unwrap().body.len(), 1000);

        let mut stream = guard(
            "server stream",
            client.server_streaming_message(
                OUTPUT,
                &stream_request(&[1, 70_000, 3], 0),
                CallOptions::new(),
            ),
        )
        .await
        .unwrap();
        let mut sizes = Vec::new();
        while let Some(m) = guard("next", stream.message_as::<StreamingOutputCallResponse>())
            .await
            .unwrap()
        {
            sizes.push(m.payload.unwrap().body.len());
        }
        assert_eq!(sizes, [1, 70_000, 3], "{what}");
        assert!(stream.trailers().is_some());

        let requests: Vec<Bytes> = [5usize, 0, 3000]
            .iter()
            .map(|&n| {
                StreamingInputCallRequest {
                    payload: payload(n),
                    ..Default::default()
                }
                .encode_to_vec()
                .into()
            })
            .collect();
        let reply = guard(
            "client stream",
            client.client_streaming(
                INPUT,
                futures_util::stream::iter(requests),
                CallOptions::new(),
            ),
        )
        .await
        .unwrap();
        let reply = StreamingInputCallResponse::decode(reply.message().clone()).unwrap();
        assert_eq!(reply.aggregated_payload_size, 3005, "{what}");
    }
}

#[tokio::test]
async fn every_call_type_through_the_layer() {
    every_call_type(&layer().await).await;
}

#[tokio::test]
async fn every_call_type_through_the_gateway() {
    every_call_type(&gateway().await).await;
}

#[tokio::test]
async fn full_duplex_over_http2() {
    for server in [layer().await, gateway().await] {
        for mode in [Mode::Binary, Mode::Text] {
            let client = server.client(HttpVersion::Http2, mode);
            let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
            let requests = tokio_stream::wrappers::ReceiverStream::new(rx);
            let call = client.streaming(DUPLEX, requests, CallOptions::new());
            // The call starts (response headers arrive) before any request is sent.
            let send_first = tx.send(stream_request(&[11], 0).encode_to_vec().into());
            let (call, sent) =
                guard("duplex start", async { tokio::join!(call, send_first) }).await;
            sent.unwrap();
            let mut call = call.unwrap();
            for size in [11, 22, 33] {
                if size != 11 {
                    tx.send(stream_request(&[size], 0).encode_to_vec().into())
                        .await
                        .unwrap();
                }
                // Each answer arrives while the request stream is still open.
                let reply = guard("pong", call.message_as::<StreamingOutputCallResponse>())
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(reply.payload.unwrap().body.len(), size as usize);
            }
            drop(tx);
            assert!(guard("end", call.message()).await.unwrap().is_none());
        }
    }
}

#[tokio::test]
async fn metadata_both_ways() {
    let server = layer().await;
    for (version, mode) in ALL {
        let client = server.client(version, mode);
        let options = CallOptions::new()
            .metadata("x-grpc-test-echo-initial", "hello")
            .binary_metadata("x-grpc-test-echo-trailing-bin", &[0xab, 0x00, 0xff]);
        let reply = guard("echo", client.unary(EMPTY, Bytes::new(), options))
            .await
            .unwrap();
        assert_eq!(reply.headers()["x-grpc-test-echo-initial"], "hello");
        let value = &reply.trailers()["x-grpc-test-echo-trailing-bin"];
        let name = http::HeaderName::from_static("x-grpc-test-echo-trailing-bin");
        assert_eq!(
            weir_codec::metadata::decode_binary(&name, value).unwrap(),
            [0xab, 0x00, 0xff]
        );
    }
    // Invalid metadata never leaves the client.
    let client = server.client(HttpVersion::Http1, Mode::Binary);
    let err = client
        .unary(
            EMPTY,
            Bytes::new(),
            CallOptions::new().metadata("x-bad", "\u{7f}"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    assert_eq!(server.observer.counts().started, 4);
}

#[tokio::test]
async fn statuses_from_the_server() {
    let server = gateway().await;
    for (version, mode) in ALL {
        let client = server.client(version, mode);
        // Trailers-only: an error before any message.
        let request = SimpleRequest {
            response_status: Some(EchoStatus {
                code: 2,
                message: "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n".into(),
            }),
            ..Default::default()
        };
        let err = client
            .unary(UNARY, request.encode_to_vec().into(), CallOptions::new())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unknown);
        assert_eq!(
            err.message(),
            "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n"
        );

        // An error after messages: they arrive, then the status.
        let mut request = stream_request(&[4, 4], 0);
        request.response_status = Some(EchoStatus {
            code: 9,
            message: "late".into(),
        });
        let mut stream = client
            .server_streaming(OUTPUT, request.encode_to_vec().into(), CallOptions::new())
            .await
            .unwrap();
        assert!(stream.message().await.unwrap().is_some());
        assert!(stream.message().await.unwrap().is_some());
        let err = stream.message().await.unwrap_err();
        assert_eq!(
            (err.code(), err.message()),
            (Code::FailedPrecondition, "late")
        );
        // Settled: the same status again.
        assert_eq!(
            stream.message().await.unwrap_err().code(),
            Code::FailedPrecondition
        );

        let err = client
            .unary(
                "grpc.testing.TestService/Nope",
                Bytes::new(),
                CallOptions::new(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented);
    }
}

#[tokio::test]
async fn max_message_size_is_checked_on_the_prefix() {
    let server = layer().await;
    for (version, mode) in ALL {
        let client = Client::builder(format!("http://{}", server.addr))
            .http_version(version)
            .mode(mode)
            .max_message_size(100)
            .build()
            .unwrap();
        let mut stream = client
            .server_streaming_message(
                OUTPUT,
                &stream_request(&[10, 100_000], 0),
                CallOptions::new(),
            )
            .await
            .unwrap();
        assert!(stream.message().await.unwrap().is_some());
        let err = stream.message().await.unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    }
}

#[tokio::test]
async fn deadline_sent_and_enforced() {
    let server = gateway().await;
    for (n, (version, mode)) in ALL.into_iter().enumerate() {
        let client = server.client(version, mode);
        // The server would answer after 10 s: the deadline ends the call first, and the
        // upstream handler sees the cancellation.
        let request = stream_request(&[1, 1], 10_000_000);
        let mut stream = guard(
            "start",
            client.server_streaming_message(
                OUTPUT,
                &request,
                CallOptions::new().timeout(Duration::from_millis(300)),
            ),
        )
        .await
        .unwrap();
        let err = loop {
            match guard("deadline", stream.message()).await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("stream ended OK"),
                Err(e) => break e,
            }
        };
        assert_eq!(
            err.code(),
            Code::DeadlineExceeded,
            "{version:?} {mode:?}: {err}"
        );
        drop(stream);
        let n = n as u64 + 1;
        server
            .wait_for(|c| c.cancelled + c.completed >= n && c.in_flight() == 0)
            .await;
    }
    // A client-streaming call that never ends its request stream, with the client's
    // default deadline.
    let client = Client::builder(format!("http://{}", server.addr))
        .http2()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let (_tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let requests = tokio_stream::wrappers::ReceiverStream::new(rx);
    let err = guard(
        "client-stream deadline",
        client.client_streaming(INPUT, requests, CallOptions::new()),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded);
}

#[tokio::test]
async fn dropping_a_call_cancels_it_upstream() {
    let server = gateway().await;
    let mut expected = 0;
    for (version, mode) in ALL {
        let client = server.client(version, mode);
        // Busy: after the first message. Idle: before any message.
        for sizes in [&[8, 8][..], &[]] {
            let mut request = stream_request(&[8], 0);
            request.response_parameters.push(ResponseParameters {
                size: 8,
                interval_us: 30_000_000,
                ..Default::default()
            });
            if sizes.is_empty() {
                request.response_parameters.remove(0);
            }
            let mut stream = guard(
                "start",
                client.server_streaming_message(OUTPUT, &request, CallOptions::new()),
            )
            .await
            .unwrap();
            if !sizes.is_empty() {
                assert!(guard("first", stream.message()).await.unwrap().is_some());
            }
            drop(stream);
            expected += 1;
            server.wait_for(|c| c.cancelled >= expected).await;
        }
    }
}

/// A server that answers every request with a canned response.
async fn canned(
    make: impl Fn() -> HttpResponse<BoxBody> + Clone + Send + Sync + 'static,
) -> (String, oneshot::Sender<()>) {
    let service = tower::service_fn(move |_req: http::Request<hyper::body::Incoming>| {
        let make = make.clone();
        async move { Ok::<_, Infallible>(make()) }
    });
    let (addr, stop) = serve(service).await;
    (format!("http://{addr}"), stop)
}

async fn call_canned(
    make: impl Fn() -> HttpResponse<BoxBody> + Clone + Send + Sync + 'static,
) -> Status {
    let (url, _stop) = canned(make).await;
    let mut last = None;
    for version in [HttpVersion::Http1, HttpVersion::Http2] {
        let client = Client::builder(&url).http_version(version).build().unwrap();
        let status = guard(
            "canned",
            client.unary(EMPTY, Bytes::new(), CallOptions::new()),
        )
        .await
        .unwrap_err();
        if let Some(previous) = &last {
            let previous: &Status = previous;
            assert_eq!(previous.code(), status.code());
        }
        last = Some(status);
    }
    last.unwrap()
}

fn grpc_web(body: Bytes) -> HttpResponse<BoxBody> {
    HttpResponse::builder()
        .header("content-type", "application/grpc-web+proto")
        .body(BoxBody::full(body))
        .unwrap()
}

fn ok_trailer_frame() -> Bytes {
    let mut t = HeaderMap::new();
    t.insert("grpc-status", HeaderValue::from_static("0"));
    weir_codec::trailers::encode_frame(&t)
}

fn frame(flags: u8, payload: &'static [u8]) -> Bytes {
    weir_codec::frame::Frame::new(flags, Bytes::from_static(payload)).encode()
}

fn concat(parts: &[Bytes]) -> Bytes {
    parts.iter().flat_map(|p| p.iter().copied()).collect()
}

/// Reads a server stream to its end: the messages, and how it ended.
async fn read_stream(client: &Client) -> (Vec<Bytes>, Result<(), Status>) {
    let mut stream = guard(
        "start",
        client.server_streaming(OUTPUT, Bytes::new(), CallOptions::new()),
    )
    .await
    .unwrap();
    let mut messages = Vec::new();
    loop {
        match guard("message", stream.message()).await {
            Ok(Some(message)) => messages.push(message),
            Ok(None) => return (messages, Ok(())),
            Err(status) => return (messages, Err(status)),
        }
    }
}

#[tokio::test]
async fn heartbeat_frames_are_skipped() {
    let body = concat(&[
        weir_codec::frame::encode_message(b"one"),
        frame(0x40, b""),
        weir_codec::frame::encode_message(b"two"),
        frame(0x40, b""),
        ok_trailer_frame(),
    ]);
    let binary = body.clone();
    let (binary_url, _stop_binary) = canned(move || grpc_web(binary.clone())).await;
    let text = weir_codec::text::encode(&body);
    let (text_url, _stop_text) = canned(move || {
        HttpResponse::builder()
            .header("content-type", "application/grpc-web-text+proto")
            .body(BoxBody::full(text.clone()))
            .unwrap()
    })
    .await;
    for url in [&binary_url, &text_url] {
        for version in [HttpVersion::Http1, HttpVersion::Http2] {
            let client = Client::builder(url).http_version(version).build().unwrap();
            let (messages, end) = read_stream(&client).await;
            assert_eq!(messages, ["one", "two"], "{url} {version:?}");
            assert_eq!(end, Ok(()), "{url} {version:?}");
        }
    }
    // A unary call sees its one message, not the heartbeats around it.
    let single = concat(&[
        frame(0x40, b""),
        weir_codec::frame::encode_message(b"only"),
        frame(0x40, b""),
        ok_trailer_frame(),
    ]);
    let (url, _stop) = canned(move || grpc_web(single.clone())).await;
    let client = Client::builder(&url).build().unwrap();
    let reply = guard(
        "unary",
        client.unary(EMPTY, Bytes::new(), CallOptions::new()),
    )
    .await
    .unwrap();
    assert_eq!(reply.message(), "only");
}

#[tokio::test]
async fn frames_with_reserved_flags_end_the_call_with_internal() {
    for flags in [0x02, 0x41, 0x81, 0xc0] {
        // After a good message, so that the frame cannot be mistaken for a late failure.
        let body = concat(&[
            weir_codec::frame::encode_message(b"fine"),
            frame(flags, b""),
            ok_trailer_frame(),
        ]);
        let (url, _stop) = canned(move || grpc_web(body.clone())).await;
        for version in [HttpVersion::Http1, HttpVersion::Http2] {
            let client = Client::builder(&url).http_version(version).build().unwrap();
            let (messages, end) = read_stream(&client).await;
            assert_eq!(messages, ["fine"], "{flags:#04x}");
            let status = end.unwrap_err();
            assert_eq!(status.code(), Code::Internal, "{flags:#04x}: {status}");
            assert!(
                status
                    .message()
                    .contains(&format!("reserved flags {flags:#04x}")),
                "{status}"
            );
        }
        let status =
            call_canned(move || grpc_web(concat(&[frame(flags, b"x"), ok_trailer_frame()]))).await;
        assert_eq!(status.code(), Code::Internal, "{flags:#04x}: {status}");
    }
    // A heartbeat with a payload.
    let status = call_canned(|| grpc_web(concat(&[frame(0x40, b"x"), ok_trailer_frame()]))).await;
    assert_eq!(status.code(), Code::Internal, "{status}");
    assert!(status.message().contains("heartbeat"), "{status}");
    // Anything after the trailer frame, a heartbeat included.
    let status = call_canned(|| {
        grpc_web(concat(&[
            weir_codec::frame::encode_message(b""),
            ok_trailer_frame(),
            frame(0x40, b""),
        ]))
    })
    .await;
    assert_eq!(status.code(), Code::Internal, "{status}");
    assert!(status.message().contains("after the trailer"), "{status}");
}

#[tokio::test]
async fn protocol_violations_map_to_statuses() {
    // HTTP errors.
    let status = call_canned(|| {
        HttpResponse::builder()
            .status(StatusCode::NOT_FOUND)
            .body(BoxBody::full("no"))
            .unwrap()
    })
    .await;
    assert_eq!(status.code(), Code::Unimplemented);
    let status = call_canned(|| {
        HttpResponse::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .body(BoxBody::empty())
            .unwrap()
    })
    .await;
    assert_eq!(status.code(), Code::Unavailable);
    // 200 but not gRPC-Web.
    let status = call_canned(|| HttpResponse::new(BoxBody::full("<html>"))).await;
    assert_eq!(status.code(), Code::Unknown);
    // A message and no trailer frame.
    let status = call_canned(|| grpc_web(weir_codec::frame::encode_message(b""))).await;
    assert_eq!(status.code(), Code::Internal);
    assert!(status.message().contains("without a status"), "{status}");
    // Truncated frame.
    let status = call_canned(|| grpc_web(Bytes::from_static(&[0, 0, 0, 0, 9, 1]))).await;
    assert_eq!(status.code(), Code::Internal);
    // A trailer frame without grpc-status.
    let status =
        call_canned(|| grpc_web(weir_codec::trailers::encode_frame(&HeaderMap::new()))).await;
    assert_eq!(status.code(), Code::Internal);
    // OK without a message for a unary call.
    let status = call_canned(|| {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_static("0"));
        grpc_web(weir_codec::trailers::encode_frame(&t))
    })
    .await;
    assert_eq!(status.code(), Code::Internal);
    // Trailers-only with an error, without content type.
    let status = call_canned(|| {
        HttpResponse::builder()
            .header("grpc-status", "7")
            .header("grpc-message", "go%20away")
            .body(BoxBody::empty())
            .unwrap()
    })
    .await;
    assert_eq!(
        (status.code(), status.message()),
        (Code::PermissionDenied, "go away")
    );
    // Nobody listening.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = Client::builder(format!("http://{addr}")).build().unwrap();
    let status = client
        .unary(EMPTY, Bytes::new(), CallOptions::new())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    // Said as such, with the address: not as a failed request.
    assert!(
        status
            .message()
            .starts_with(&format!("cannot connect to {addr}: ")),
        "{status}"
    );
    assert!(status.message().contains("refused"), "{status}");
}
