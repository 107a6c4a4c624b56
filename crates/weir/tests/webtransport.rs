//! gRPC over WebTransport (`docs/protocol/webtransport.md`) over real loopback UDP, with the
//! Rust client of `weir_client::webtransport`: every call type, metadata, statuses,
//! cancellation and deadlines against an in-process `TestService` and through the upstream
//! proxy; then the answers to bad input, and the limits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{BufMut as _, Bytes, BytesMut};
use futures_util::FutureExt as _;
use http::HeaderMap;
use http::header::HeaderValue;
use prost::Message;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::Layer as _;
use tower::ServiceExt as _;
use weir::Code;
use weir::metrics::Metrics;
use weir::webtransport::{ServerIdentity, WebTransportConfig, WebTransportServer, codes};
use weir_client::webtransport::{Call, ConnectError, WebTransportClient};
use weir_codec::frame::{FLAG_TRAILERS, FrameDecoder, encode_header, encode_message};
use weir_codec::webtransport::END_OF_REQUEST;
use weir_codec::{metadata, trailers};
use weir_testservice::pb::{
    EchoStatus, Empty, SimpleRequest, SimpleResponse, StreamingInputCallRequest,
    StreamingInputCallResponse, StreamingOutputCallRequest, StreamingOutputCallResponse,
};
use weir_testservice::{CallCounts, CallObserver, TestServiceImpl};
use wtransport::endpoint::ConnectOptions;
use wtransport::error::StreamWriteError;
use wtransport::quinn::ReadError;

use support::gateway::{Upstream, to_upstream};
use support::{
    EMPTY_CALL, FULL_DUPLEX_CALL, HANG_GUARD, INITIAL_VALUE, SPECIAL_MESSAGE, STREAMING_INPUT_CALL,
    STREAMING_OUTPUT_CALL, TRAILING_VALUE, UNARY_CALL, guard, params, zeros,
};

const UNIMPLEMENTED_METHOD: &str = "/grpc.testing.TestService/UnimplementedCall";
const UNIMPLEMENTED_SERVICE: &str = "/grpc.testing.UnimplementedService/UnimplementedCall";

/// Which service answers the calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The interop `TestService` in-process.
    InProcess,
    /// Metrics and the proxy, in front of a native upstream `TestService`.
    Proxied,
}

const KINDS: [Kind; 2] = [Kind::InProcess, Kind::Proxied];

/// A WebTransport server on `127.0.0.1:0` with a development certificate; stopped when
/// dropped.
struct Stack {
    kind: Kind,
    url: String,
    hashes: Vec<[u8; 32]>,
    observer: Arc<CallObserver>,
    _upstream: Option<Upstream>,
    stop: Option<oneshot::Sender<()>>,
    served: JoinHandle<()>,
}

impl Stack {
    async fn start(kind: Kind) -> Stack {
        Stack::with(kind, WebTransportConfig::default()).await
    }

    async fn with(kind: Kind, config: WebTransportConfig) -> Stack {
        let server = WebTransportServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            ServerIdentity::development().unwrap(),
            config,
        )
        .unwrap();
        let url = server.url("127.0.0.1");
        let hashes = server.certificate_hashes().get();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async {
            let _ = stopped.await;
        };
        let (observer, upstream, served) = match kind {
            Kind::InProcess => {
                let observer = Arc::new(CallObserver::new());
                let service = TestServiceImpl::new()
                    .with_observer(observer.clone())
                    .into_service()
                    .map_request(|request: http::Request<weir::body::BoxBody>| request)
                    .map_response(|response| response.map(weir::body::boxed));
                let served = tokio::spawn(server.serve(service, shutdown));
                (observer, None, served)
            }
            Kind::Proxied => {
                let upstream = Upstream::start().await;
                let metrics = Metrics::new();
                let proxy = to_upstream(upstream.port())
                    .metrics(metrics.clone())
                    .build()
                    .unwrap();
                let service = metrics.layer().layer(proxy);
                let served = tokio::spawn(server.serve(service, shutdown));
                (upstream.observer.clone(), Some(upstream), served)
            }
        };
        Stack {
            kind,
            url,
            hashes,
            observer,
            _upstream: upstream,
            stop: Some(stop),
            served,
        }
    }

    async fn try_client(
        &self,
        options: ConnectOptions,
    ) -> Result<WebTransportClient, ConnectError> {
        guard(
            "session",
            WebTransportClient::connect_with(options, &self.hashes),
        )
        .await
    }

    async fn client(&self) -> WebTransportClient {
        self.try_client(ConnectOptions::builder(&self.url).build())
            .await
            .unwrap()
    }

    /// Waits (with the hang guard) until the handler counters satisfy `condition`.
    async fn wait_for(&self, condition: impl FnMut(&CallCounts) -> bool) -> CallCounts {
        match tokio::time::timeout(HANG_GUARD, self.observer.wait_for(condition)).await {
            Ok(counts) => counts,
            Err(_) => panic!(
                "hang guard: {:?} observer never matched; counts {:?}",
                self.kind,
                self.observer.counts()
            ),
        }
    }

    /// A fresh session still gets a good answer.
    async fn assert_serving(&self) {
        let client = self.client().await;
        let reply = guard(
            "unary call on a fresh session",
            client.unary(EMPTY_CALL, HeaderMap::new(), encode(&Empty {})),
        )
        .await
        .unwrap();
        assert!(reply.is_empty(), "{:?}", self.kind);
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn encode<M: Message>(message: &M) -> Bytes {
    Bytes::from(message.encode_to_vec())
}

fn decode<M: Message + Default>(bytes: &Bytes) -> M {
    M::decode(bytes.as_ref()).unwrap()
}

fn echo(sizes: &[i32]) -> StreamingOutputCallRequest {
    StreamingOutputCallRequest {
        response_parameters: params(sizes),
        payload: zeros(sizes.first().copied().unwrap_or(0) as usize),
        ..Default::default()
    }
}

fn body_len(message: &StreamingOutputCallResponse) -> usize {
    message.payload.as_ref().map_or(0, |p| p.body.len())
}

async fn start(client: &WebTransportClient, path: &str, metadata: HeaderMap) -> Call {
    guard("open call", client.call(path, metadata))
        .await
        .unwrap()
}

async fn next(call: &mut Call) -> Option<Bytes> {
    guard("next message", call.next_message()).await.unwrap()
}

async fn status(call: &mut Call) -> weir::Status {
    guard("call status", call.status()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_of_every_kind() {
    for kind in KINDS {
        let stack = Stack::start(kind).await;
        let client = stack.client().await;

        // empty_unary
        let reply = guard(
            "empty_unary",
            client.unary(EMPTY_CALL, HeaderMap::new(), encode(&Empty {})),
        )
        .await
        .unwrap();
        assert_eq!(decode::<Empty>(&reply), Empty {});

        // large_unary
        let request = SimpleRequest {
            response_size: 314_159,
            payload: zeros(271_828),
            ..Default::default()
        };
        let reply = guard(
            "large_unary",
            client.unary(UNARY_CALL, HeaderMap::new(), encode(&request)),
        )
        .await
        .unwrap();
        let reply: SimpleResponse = decode(&reply);
        assert_eq!(reply.payload.unwrap().body.len(), 314_159, "{kind:?}");

        // server_streaming
        let sizes = [31_415, 9, 2_653, 58_979];
        let mut call = start(&client, STREAMING_OUTPUT_CALL, HeaderMap::new()).await;
        call.send(encode(&StreamingOutputCallRequest {
            response_parameters: params(&sizes),
            ..Default::default()
        }))
        .await
        .unwrap();
        call.finish();
        let headers = guard("headers", call.headers()).await.unwrap();
        assert!(!headers.contains_key("grpc-status"), "{headers:?}");
        for size in sizes {
            let message: StreamingOutputCallResponse = decode(&next(&mut call).await.unwrap());
            assert_eq!(body_len(&message), size as usize, "{kind:?}");
        }
        assert_eq!(next(&mut call).await, None);
        assert_eq!(status(&mut call).await.code(), Code::Ok);

        // client_streaming
        let mut call = start(&client, STREAMING_INPUT_CALL, HeaderMap::new()).await;
        for size in [27_182, 8, 1_828, 45_904] {
            call.send(encode(&StreamingInputCallRequest {
                payload: zeros(size),
                ..Default::default()
            }))
            .await
            .unwrap();
        }
        call.finish();
        let reply: StreamingInputCallResponse = decode(&next(&mut call).await.unwrap());
        assert_eq!(reply.aggregated_payload_size, 74_922, "{kind:?}");
        assert_eq!(next(&mut call).await, None);

        // ping_pong: each answer arrives before the next request is sent.
        let mut call = start(&client, FULL_DUPLEX_CALL, HeaderMap::new()).await;
        for (size, answer) in [(27_182, 31_415), (8, 9), (1_828, 2_653), (45_904, 58_979)] {
            call.send(encode(&StreamingOutputCallRequest {
                response_parameters: params(&[answer]),
                payload: zeros(size),
                ..Default::default()
            }))
            .await
            .unwrap();
            let message: StreamingOutputCallResponse = decode(&next(&mut call).await.unwrap());
            assert_eq!(body_len(&message), answer as usize, "{kind:?}");
        }
        call.finish();
        assert_eq!(next(&mut call).await, None);
        assert_eq!(call.ended().unwrap().code(), Code::Ok);

        // empty_stream
        let mut call = start(&client, FULL_DUPLEX_CALL, HeaderMap::new()).await;
        call.finish();
        assert_eq!(next(&mut call).await, None, "{kind:?}");
        assert_eq!(call.trailers().unwrap()["grpc-status"], "0");

        let counts = stack.wait_for(|c| c.in_flight() == 0).await;
        assert_eq!(counts.cancelled, 0, "{kind:?}: {counts:?}");
    }
}

fn echo_metadata() -> HeaderMap {
    let mut metadata = HeaderMap::new();
    metadata.insert(
        weir_testservice::ECHO_INITIAL_HEADER,
        HeaderValue::from_static(INITIAL_VALUE),
    );
    metadata.insert(
        weir_testservice::ECHO_TRAILING_HEADER,
        metadata::encode_binary(TRAILING_VALUE),
    );
    metadata
}

fn assert_echoed(call: &Call, headers: &HeaderMap) {
    assert_eq!(
        headers[weir_testservice::ECHO_INITIAL_HEADER],
        INITIAL_VALUE
    );
    let trailers = call.trailers().unwrap();
    let name = http::HeaderName::from_static(weir_testservice::ECHO_TRAILING_HEADER);
    assert_eq!(
        metadata::decode_binary(&name, &trailers[&name]).unwrap(),
        TRAILING_VALUE
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_and_statuses() {
    for kind in KINDS {
        let stack = Stack::start(kind).await;
        let client = stack.client().await;

        // custom_metadata, unary and full duplex: the initial echo in the response header
        // block, the binary trailing echo in the trailer block.
        let mut call = start(&client, UNARY_CALL, echo_metadata()).await;
        call.send(encode(&SimpleRequest {
            response_size: 314_159,
            payload: zeros(271_828),
            ..Default::default()
        }))
        .await
        .unwrap();
        call.finish();
        let headers = guard("headers", call.headers()).await.unwrap().clone();
        assert!(next(&mut call).await.is_some());
        assert_eq!(status(&mut call).await.code(), Code::Ok);
        assert_echoed(&call, &headers);

        let mut call = start(&client, FULL_DUPLEX_CALL, echo_metadata()).await;
        call.send(encode(&echo(&[314_159]))).await.unwrap();
        call.finish();
        let headers = guard("headers", call.headers()).await.unwrap().clone();
        assert!(next(&mut call).await.is_some());
        assert_eq!(next(&mut call).await, None, "{kind:?}");
        assert_echoed(&call, &headers);

        // status_code_and_message, special_status_message
        for message in ["test status message", SPECIAL_MESSAGE] {
            let response_status = Some(EchoStatus {
                code: 2,
                message: message.to_owned(),
            });
            let request = SimpleRequest {
                response_status: response_status.clone(),
                ..Default::default()
            };
            let err = guard(
                "unary status",
                client.unary(UNARY_CALL, HeaderMap::new(), encode(&request)),
            )
            .await
            .unwrap_err();
            assert_eq!(
                (err.code(), err.message()),
                (Code::Unknown, message),
                "{kind:?}"
            );

            let mut call = start(&client, FULL_DUPLEX_CALL, HeaderMap::new()).await;
            call.send(encode(&StreamingOutputCallRequest {
                response_status,
                ..Default::default()
            }))
            .await
            .unwrap();
            call.finish();
            let err = guard("bidi status", call.next_message()).await.unwrap_err();
            assert_eq!(
                (err.code(), err.message()),
                (Code::Unknown, message),
                "{kind:?}"
            );
        }

        // unimplemented method and service
        for path in [UNIMPLEMENTED_METHOD, UNIMPLEMENTED_SERVICE] {
            let err = guard(
                "unimplemented",
                client.unary(path, HeaderMap::new(), encode(&Empty {})),
            )
            .await
            .unwrap_err();
            assert_eq!(err.code(), Code::Unimplemented, "{kind:?} {path}");
        }
        // The session is still good.
        client
            .unary(EMPTY_CALL, HeaderMap::new(), encode(&Empty {}))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_and_deadlines() {
    for kind in KINDS {
        let stack = Stack::start(kind).await;
        let client = stack.client().await;

        // cancel_after_begin: the handler has started and waits for the request stream.
        let mut call = start(&client, STREAMING_INPUT_CALL, HeaderMap::new()).await;
        stack.wait_for(|c| c.started == 1).await;
        call.cancel();
        assert_eq!(status(&mut call).await.code(), Code::Cancelled);
        let base = stack.wait_for(|c| c.in_flight() == 0).await;
        match kind {
            Kind::InProcess => assert_eq!(base.cancelled, 1, "{base:?}"),
            // The upstream stream is reset with RST_STREAM(CANCEL). tonic's request decoder
            // ends a request stream reset with CANCEL as if it had ended normally, so the
            // upstream handler, which was reading it, may complete before its server drops
            // it: either way the call is over at the upstream.
            Kind::Proxied => assert_eq!(base.cancelled + base.completed, 1, "{base:?}"),
        }

        // cancel_after_first_response: the handler (upstream: its HTTP/2 stream) sees it.
        let mut call = start(&client, FULL_DUPLEX_CALL, HeaderMap::new()).await;
        call.send(encode(&echo(&[31_415]))).await.unwrap();
        assert!(next(&mut call).await.is_some());
        call.cancel();
        assert_eq!(
            call.next_message().await.unwrap_err().code(),
            Code::Cancelled
        );
        stack.wait_for(|c| c.cancelled == base.cancelled + 1).await;

        // Dropping a call cancels it too.
        let mut call = start(&client, FULL_DUPLEX_CALL, HeaderMap::new()).await;
        call.send(encode(&echo(&[1]))).await.unwrap();
        assert!(next(&mut call).await.is_some());
        drop(call);
        stack.wait_for(|c| c.cancelled == base.cancelled + 2).await;

        let counts = stack.wait_for(|c| c.in_flight() == 0).await;
        assert_eq!(counts.cancelled, base.cancelled + 2, "{kind:?}: {counts:?}");

        // timeout_on_sleeping_server, enforced by the server: grpc-timeout only, no client
        // timer. (The gateway's timer and the handler's race: the handler may see either its
        // own deadline or the cancellation.)
        let mut metadata = HeaderMap::new();
        metadata.insert("grpc-timeout", HeaderValue::from_static("100m"));
        let mut call = start(&client, FULL_DUPLEX_CALL, metadata).await;
        call.send(encode(&StreamingOutputCallRequest {
            payload: zeros(27_182),
            ..Default::default()
        }))
        .await
        .unwrap();
        assert_eq!(
            status(&mut call).await.code(),
            Code::DeadlineExceeded,
            "{kind:?}"
        );

        // The client's own timer, on a call the server answers slowly. (The server's timer
        // races it: the handler may see a deadline or a cancellation.)
        let mut call = guard(
            "call with timeout",
            client.call_with_timeout(
                STREAMING_OUTPUT_CALL,
                HeaderMap::new(),
                Duration::from_millis(100),
            ),
        )
        .await
        .unwrap();
        let mut slow = echo(&[1]);
        slow.response_parameters[0].interval_us = 10_000_000;
        call.send(encode(&slow)).await.unwrap();
        call.finish();
        assert_eq!(
            status(&mut call).await.code(),
            Code::DeadlineExceeded,
            "{kind:?}"
        );

        stack.wait_for(|c| c.in_flight() == 0).await;
        stack.assert_serving().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_calls_multiplexed_on_one_session() {
    for kind in KINDS {
        let stack = Stack::start(kind).await;
        let client = stack.client().await;
        // All open at once, each answering its own requests: none waits for another.
        let mut calls = Vec::new();
        for _ in 0..100 {
            calls.push(start(&client, FULL_DUPLEX_CALL, HeaderMap::new()).await);
        }
        for (i, call) in calls.iter_mut().enumerate() {
            call.send(encode(&echo(&[i as i32 + 1]))).await.unwrap();
        }
        stack.wait_for(|c| c.started == 100).await;
        for (i, call) in calls.iter_mut().enumerate().rev() {
            let message: StreamingOutputCallResponse = decode(&next(call).await.unwrap());
            assert_eq!(body_len(&message), i + 1);
        }
        let statuses = futures_util::future::join_all(calls.iter_mut().map(|call| {
            call.finish();
            call.status()
        }));
        for status in guard("100 statuses", statuses).await {
            assert_eq!(status.code(), Code::Ok, "{kind:?}: {status:?}");
        }
        let counts = stack.wait_for(|c| c.completed == 100).await;
        assert_eq!(counts.cancelled, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_session_cancels_every_call() {
    for kind in KINDS {
        let stack = Stack::start(kind).await;
        let client = stack.client().await;
        let mut calls = Vec::new();
        for _ in 0..5 {
            let mut call = start(&client, FULL_DUPLEX_CALL, HeaderMap::new()).await;
            call.send(encode(&echo(&[10]))).await.unwrap();
            assert!(next(&mut call).await.is_some());
            calls.push(call);
        }
        client.close();
        for call in &mut calls {
            assert_eq!(status(call).await.code(), Code::Cancelled, "{kind:?}");
        }
        let counts = stack.wait_for(|c| c.cancelled == 5).await;
        assert_eq!(counts.in_flight(), 0, "{kind:?}: {counts:?}");
        stack.assert_serving().await;
    }
}

// ---------------------------------------------------------------------------------------
// Full duplex: a call split into a sender and a receiver used from two tasks.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_calls_ping_pong_from_two_tasks() {
    for kind in KINDS {
        let stack = Stack::start(kind).await;
        let client = stack.client().await;
        let (sender, mut receiver) = start(&client, FULL_DUPLEX_CALL, HeaderMap::new())
            .await
            .split();
        // The reader tells the writer what each answer was; the writer sends the next
        // request only then, so every request after the first is written while the reader
        // is waiting for its answer.
        let (answers_tx, mut answers_rx) = tokio::sync::mpsc::channel::<usize>(1);
        let exchanges = [(27_182, 31_415), (8, 9), (1_828, 2_653), (45_904, 58_979)];
        let writer = tokio::spawn(async move {
            let mut sender = sender;
            for (size, answer) in exchanges {
                sender
                    .send(encode(&StreamingOutputCallRequest {
                        response_parameters: params(&[answer]),
                        payload: zeros(size),
                        ..Default::default()
                    }))
                    .await
                    .unwrap();
                let got = guard("answer seen by the reader", answers_rx.recv())
                    .await
                    .unwrap();
                assert_eq!(got, answer as usize, "{kind:?}");
            }
            sender.finish();
        });
        let mut answers = 0;
        while let Some(message) = guard("next message", receiver.next_message())
            .await
            .unwrap()
        {
            let message: StreamingOutputCallResponse = decode(&message);
            answers_tx.send(body_len(&message)).await.unwrap();
            answers += 1;
        }
        guard("writer", writer).await.unwrap();
        assert_eq!(answers, exchanges.len(), "{kind:?}");
        assert_eq!(receiver.ended().unwrap().code(), Code::Ok, "{kind:?}");
        assert_eq!(receiver.trailers().unwrap()["grpc-status"], "0");
        let counts = stack.wait_for(|c| c.in_flight() == 0).await;
        assert_eq!(counts.cancelled, 0, "{kind:?}: {counts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_calls_cancel_and_fail_both_halves() {
    for kind in KINDS {
        let stack = Stack::start(kind).await;
        let client = stack.client().await;

        // Cancelling from the sender ends a receiver that is waiting, in another task.
        let (mut sender, mut receiver) = start(&client, FULL_DUPLEX_CALL, HeaderMap::new())
            .await
            .split();
        sender.send(encode(&echo(&[1]))).await.unwrap();
        assert!(
            guard("first answer", receiver.next_message())
                .await
                .unwrap()
                .is_some()
        );
        let reader = tokio::spawn(async move { receiver.next_message().await });
        stack.wait_for(|c| c.started == 1).await;
        sender.cancel();
        let read = guard("reader", reader).await.unwrap();
        assert_eq!(read.unwrap_err().code(), Code::Cancelled, "{kind:?}");
        assert_eq!(
            sender.send(encode(&echo(&[1]))).await.unwrap_err().code(),
            Code::Cancelled
        );
        stack.wait_for(|c| c.cancelled == 1).await;

        // Dropping both halves of an unfinished call cancels it (the sender's drop is no
        // half-close).
        let (mut sender, mut receiver) = start(&client, FULL_DUPLEX_CALL, HeaderMap::new())
            .await
            .split();
        sender.send(encode(&echo(&[1]))).await.unwrap();
        assert!(
            guard("answer", receiver.next_message())
                .await
                .unwrap()
                .is_some()
        );
        drop(sender);
        drop(receiver);
        stack.wait_for(|c| c.cancelled == 2).await;

        // Dropping the receiver alone cancels the call: the sender learns it.
        let (mut sender, mut receiver) = start(&client, FULL_DUPLEX_CALL, HeaderMap::new())
            .await
            .split();
        sender.send(encode(&echo(&[1]))).await.unwrap();
        assert!(
            guard("answer", receiver.next_message())
                .await
                .unwrap()
                .is_some()
        );
        drop(receiver);
        assert_eq!(
            sender.send(encode(&echo(&[1]))).await.unwrap_err().code(),
            Code::Cancelled
        );
        stack.wait_for(|c| c.cancelled == 3).await;

        // A sender that finished can go: the call completes.
        let (mut sender, mut receiver) = start(&client, FULL_DUPLEX_CALL, HeaderMap::new())
            .await
            .split();
        sender.send(encode(&echo(&[3]))).await.unwrap();
        sender.finish();
        drop(sender);
        assert!(
            guard("answer", receiver.next_message())
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(
            guard("status", receiver.status()).await.code(),
            Code::Ok,
            "{kind:?}"
        );

        // A deadline fails both halves: the receiver waiting, the sender's next send.
        let call = guard(
            "call with timeout",
            client.call_with_timeout(
                FULL_DUPLEX_CALL,
                HeaderMap::new(),
                Duration::from_millis(100),
            ),
        )
        .await
        .unwrap();
        let (mut sender, mut receiver) = call.split();
        assert_eq!(
            guard("status", receiver.status()).await.code(),
            Code::DeadlineExceeded,
            "{kind:?}"
        );
        assert_eq!(
            sender.send(encode(&echo(&[1]))).await.unwrap_err().code(),
            Code::DeadlineExceeded,
            "{kind:?}"
        );

        let counts = stack.wait_for(|c| c.in_flight() == 0).await;
        assert!(counts.cancelled >= 3, "{kind:?}: {counts:?}");
        stack.assert_serving().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_waits_for_open_calls_only() {
    // A grace period far longer than the hang guard: stopping within the guard shows that
    // the server did not wait for it.
    let config = || WebTransportConfig::default().shutdown_grace(Duration::from_secs(3600));
    for kind in KINDS {
        // No call open: the server stops at once.
        let mut stack = Stack::with(kind, config()).await;
        let client = stack.client().await;
        stack.assert_serving().await;
        stack.stop.take().unwrap().send(()).unwrap();
        guard("an idle server to stop", &mut stack.served)
            .await
            .unwrap();
        let err = client
            .unary(EMPTY_CALL, HeaderMap::new(), encode(&Empty {}))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{kind:?}: {err:?}");

        // A call open: it goes on, new calls and sessions are refused, and the server stops
        // once it ended.
        let mut stack = Stack::with(kind, config()).await;
        let client = stack.client().await;
        let mut call = start(&client, FULL_DUPLEX_CALL, HeaderMap::new()).await;
        call.send(encode(&echo(&[1]))).await.unwrap();
        assert!(next(&mut call).await.is_some());
        stack.stop.take().unwrap().send(()).unwrap();
        // Calls succeed until the session saw the shutdown, then are refused.
        let refused = guard("a call to be refused", async {
            loop {
                match client
                    .unary(EMPTY_CALL, HeaderMap::new(), encode(&Empty {}))
                    .await
                {
                    Ok(_) => tokio::task::yield_now().await,
                    Err(status) => break status,
                }
            }
        })
        .await;
        assert_eq!(refused.code(), Code::Unavailable, "{kind:?}: {refused:?}");
        assert!(
            stack
                .try_client(ConnectOptions::builder(&stack.url).build())
                .await
                .is_err()
        );
        assert!(!stack.served.is_finished(), "{kind:?}");
        call.send(encode(&echo(&[2]))).await.unwrap();
        let message: StreamingOutputCallResponse = decode(&next(&mut call).await.unwrap());
        assert_eq!(body_len(&message), 2, "{kind:?}");
        call.finish();
        assert_eq!(status(&mut call).await.code(), Code::Ok, "{kind:?}");
        guard("the server to stop after its last call", &mut stack.served)
            .await
            .unwrap();
        let counts = stack.wait_for(|c| c.in_flight() == 0).await;
        assert_eq!(counts.cancelled, 0, "{kind:?}: {counts:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Bad input, on raw streams.

fn header_frame(block: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    encode_header(FLAG_TRAILERS, block.len(), &mut out);
    out.put_slice(block);
    out.freeze()
}

fn request_head(path: &str) -> Bytes {
    header_frame(format!(":path: {path}\r\ncontent-type: application/grpc+proto\r\n").as_bytes())
}

/// How a raw response stream ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Fin,
    Reset(u64),
}

#[derive(Debug)]
struct RawReply {
    blocks: Vec<HeaderMap>,
    messages: Vec<Bytes>,
    end: End,
}

impl RawReply {
    /// The code of a trailers-only answer.
    fn trailers_only(&self) -> Code {
        assert_eq!(self.end, End::Fin, "{self:?}");
        assert_eq!(self.blocks.len(), 1, "{self:?}");
        assert!(self.messages.is_empty(), "{self:?}");
        self.code()
    }

    /// The code in the last header block.
    fn code(&self) -> Code {
        let block = self.blocks.last().unwrap();
        Code::from_header(block["grpc-status"].as_bytes()).unwrap()
    }
}

type Raw = (wtransport::SendStream, wtransport::RecvStream);

async fn raw(client: &WebTransportClient) -> Raw {
    guard("open raw stream", async {
        client.connection().open_bi().await.unwrap().await.unwrap()
    })
    .await
}

/// Writes `bytes` and, with `fin`, finishes the stream.
async fn write(stream: &mut Raw, bytes: &[u8], fin: bool) {
    stream.0.write_all(bytes).await.unwrap();
    if fin {
        stream.0.quic_stream_mut().finish().unwrap();
    }
}

async fn read_raw(stream: &mut Raw) -> RawReply {
    guard("raw response", async {
        let mut decoder = FrameDecoder::new(usize::MAX);
        let mut reply = RawReply {
            blocks: Vec::new(),
            messages: Vec::new(),
            end: End::Fin,
        };
        loop {
            while let Some(frame) = decoder.decode().unwrap() {
                if frame.flags() == FLAG_TRAILERS {
                    reply
                        .blocks
                        .push(trailers::decode(frame.payload()).unwrap());
                } else {
                    reply.messages.push(frame.into_payload());
                }
            }
            match stream
                .1
                .quic_stream_mut()
                .read_chunk(usize::MAX, true)
                .await
            {
                Ok(Some(chunk)) => decoder.push(chunk.bytes),
                Ok(None) => break,
                Err(ReadError::Reset(code)) => {
                    reply.end = End::Reset(app_code(code.into_inner()));
                    break;
                }
                Err(e) => panic!("reading the raw response: {e}"),
            }
        }
        assert!(decoder.is_at_boundary());
        reply
    })
    .await
}

/// The STOP_SENDING code the server sent on this stream.
async fn stop_code(stream: &mut Raw) -> u64 {
    match guard("STOP_SENDING", stream.0.stopped()).await {
        StreamWriteError::Stopped(code) => app_code(code.into_inner()),
        other => panic!("expected STOP_SENDING, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_a_header_block_is_reset() {
    let stack = Stack::with(
        Kind::InProcess,
        WebTransportConfig::default().header_timeout(Duration::from_millis(200)),
    )
    .await;
    let client = stack.client().await;
    let mut stream = raw(&client).await;
    // Half a frame header, then nothing.
    write(&mut stream, &[FLAG_TRAILERS, 0], false).await;
    let reply = read_raw(&mut stream).await;
    assert_eq!(
        reply.end,
        End::Reset(codes::PROTOCOL_ERROR.into()),
        "{reply:?}"
    );
    assert_eq!(
        stop_code(&mut stream).await,
        u64::from(codes::PROTOCOL_ERROR)
    );
    // The session goes on.
    client
        .unary(EMPTY_CALL, HeaderMap::new(), encode(&Empty {}))
        .await
        .unwrap();
    stack.assert_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_request_heads_are_refused_with_a_status() {
    let stack = Stack::with(
        Kind::InProcess,
        WebTransportConfig::default().max_header_block(1024),
    )
    .await;
    let client = stack.client().await;
    let cases: Vec<(&str, Bytes, Code)> = vec![
        (
            "not a header block",
            header_frame(b"no colon here\r\n"),
            Code::Internal,
        ),
        (
            "missing :path",
            header_frame(b"content-type: application/grpc\r\n"),
            Code::Internal,
        ),
        (
            "wrong content-type",
            header_frame(
                format!(":path: {EMPTY_CALL}\r\ncontent-type: application/grpc-web\r\n").as_bytes(),
            ),
            Code::Internal,
        ),
        (
            "no content-type",
            header_frame(format!(":path: {EMPTY_CALL}\r\n").as_bytes()),
            Code::Internal,
        ),
        (
            "a message first",
            encode_message(&encode(&Empty {})),
            Code::Internal,
        ),
        (
            "oversize header block",
            header_frame(
                format!(
                    ":path: {EMPTY_CALL}\r\ncontent-type: application/grpc\r\nx-big: {}\r\n",
                    "a".repeat(2000)
                )
                .as_bytes(),
            ),
            Code::ResourceExhausted,
        ),
        (
            "unknown method",
            request_head("/grpc.testing.TestService/NoSuchMethod"),
            Code::Unimplemented,
        ),
    ];
    for (what, head, code) in cases {
        let mut stream = raw(&client).await;
        write(&mut stream, &head, true).await;
        let reply = read_raw(&mut stream).await;
        assert_eq!(reply.trailers_only(), code, "{what}: {reply:?}");
        // Every refusal leaves the session and the server serving.
        client
            .unary(EMPTY_CALL, HeaderMap::new(), encode(&Empty {}))
            .await
            .unwrap();
    }
    // A first frame that cannot be a good header block is refused from its 5-byte header, at
    // once, without buffering its payload or waiting for the header timeout.
    for (flags, code) in [
        (FLAG_TRAILERS, Code::ResourceExhausted),
        (0, Code::Internal),
    ] {
        let mut stream = raw(&client).await;
        let mut head = BytesMut::new();
        encode_header(flags, 1 << 20, &mut head);
        head.put_slice(&[b'a'; 100]);
        write(&mut stream, &head, false).await;
        let reply = read_raw(&mut stream).await;
        assert_eq!(reply.trailers_only(), code, "flags {flags:#x}: {reply:?}");
        assert_eq!(
            stop_code(&mut stream).await,
            u64::from(codes::PROTOCOL_ERROR)
        );
    }
    stack.assert_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_stream_violations_end_the_call() {
    let stack = Stack::with(
        Kind::InProcess,
        WebTransportConfig::default().max_message_size(64 * 1024),
    )
    .await;
    let client = stack.client().await;

    // A second header block after a message: trailer INTERNAL, STOP_SENDING PROTOCOL_ERROR.
    let mut stream = raw(&client).await;
    write(&mut stream, &request_head(FULL_DUPLEX_CALL), false).await;
    write(&mut stream, &encode_message(&encode(&echo(&[3]))), false).await;
    write(&mut stream, &request_head(FULL_DUPLEX_CALL), false).await;
    let reply = read_raw(&mut stream).await;
    assert_eq!(reply.end, End::Fin, "{reply:?}");
    assert_eq!(reply.code(), Code::Internal, "{reply:?}");
    assert_eq!(
        stop_code(&mut stream).await,
        u64::from(codes::PROTOCOL_ERROR)
    );

    // A reserved flag.
    let mut stream = raw(&client).await;
    write(&mut stream, &request_head(FULL_DUPLEX_CALL), false).await;
    write(&mut stream, &[0x40, 0, 0, 0, 0], false).await;
    let reply = read_raw(&mut stream).await;
    assert_eq!(reply.code(), Code::Internal, "{reply:?}");
    assert_eq!(
        stop_code(&mut stream).await,
        u64::from(codes::PROTOCOL_ERROR)
    );

    // An oversize message: trailer RESOURCE_EXHAUSTED, STOP_SENDING PROTOCOL_ERROR.
    let mut stream = raw(&client).await;
    write(&mut stream, &request_head(UNARY_CALL), false).await;
    let mut big = BytesMut::new();
    encode_header(0, 100_000, &mut big);
    write(&mut stream, &big, false).await;
    let reply = read_raw(&mut stream).await;
    assert_eq!(reply.end, End::Fin, "{reply:?}");
    assert_eq!(reply.code(), Code::ResourceExhausted, "{reply:?}");
    assert_eq!(
        stop_code(&mut stream).await,
        u64::from(codes::PROTOCOL_ERROR)
    );

    // FIN inside a frame: trailer INTERNAL.
    let mut stream = raw(&client).await;
    write(&mut stream, &request_head(STREAMING_INPUT_CALL), false).await;
    write(&mut stream, &[0, 0, 0, 0, 10, 1, 2], true).await;
    let reply = read_raw(&mut stream).await;
    assert_eq!(reply.code(), Code::Internal, "{reply:?}");

    // An oversize response message: RESOURCE_EXHAUSTED.
    let err = client
        .unary(
            UNARY_CALL,
            HeaderMap::new(),
            encode(&SimpleRequest {
                response_size: 100_000,
                ..Default::default()
            }),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");

    let counts = stack.wait_for(|c| c.in_flight() == 0).await;
    assert!(counts.started >= 1, "{counts:?}");
    client
        .unary(EMPTY_CALL, HeaderMap::new(), encode(&Empty {}))
        .await
        .unwrap();
    stack.assert_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_checked_at_establishment() {
    let stack = Stack::with(
        Kind::InProcess,
        WebTransportConfig::default()
            .cors(
                weir::Cors::default()
                    .allow_origin("http://good.example")
                    .unwrap(),
            )
            .max_sessions(3),
    )
    .await;
    let with_origin = |origin: &str| {
        ConnectOptions::builder(&stack.url)
            .add_header("origin", origin)
            .build()
    };
    // 403: an origin not allowed.
    let refused = stack.try_client(with_origin("http://evil.example")).await;
    assert!(
        matches!(refused, Err(ConnectError::Rejected)),
        "{refused:?}"
    );
    // An allowed origin works.
    let good = stack
        .try_client(with_origin("http://good.example"))
        .await
        .unwrap();
    good.unary(EMPTY_CALL, HeaderMap::new(), encode(&Empty {}))
        .await
        .unwrap();

    // 404: another path, no version, another version.
    let base = stack.url.split_once('?').unwrap().0.to_owned();
    let root = base.rsplit_once('/').unwrap().0.to_owned();
    for url in [
        format!("{root}/other?v=1"),
        base.clone(),
        format!("{base}?v=3"),
    ] {
        let refused = stack
            .try_client(ConnectOptions::builder(&url).build())
            .await;
        assert!(
            matches!(refused, Err(ConnectError::Rejected)),
            "{url}: {refused:?}"
        );
    }

    // Beyond max_sessions (3, one of them `good`): the QUIC connection is refused outright,
    // before any HTTP/3 (the limit holds from the first packet).
    let second = stack.client().await;
    let third = stack.client().await;
    let refused = stack
        .try_client(ConnectOptions::builder(&stack.url).build())
        .await;
    assert!(
        matches!(&refused, Err(ConnectError::Connecting(e)) if format!("{e:?}").contains("CONNECTION_REFUSED")),
        "{refused:?}"
    );
    // Closing a session frees its place.
    third.close();
    guard("a place frees up", async {
        loop {
            if let Ok(client) = WebTransportClient::connect(&stack.url, &stack.hashes).await {
                return client;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unary(EMPTY_CALL, HeaderMap::new(), encode(&Empty {}))
    .await
    .unwrap();
    for client in [&good, &second] {
        client
            .unary(EMPTY_CALL, HeaderMap::new(), encode(&Empty {}))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousands_of_streams_wait_for_credit() {
    let stack = Stack::with(
        Kind::InProcess,
        WebTransportConfig::default().max_calls_per_session(50),
    )
    .await;
    let client = stack.client().await;
    let other = stack.client().await;

    // The highest number of handlers running at once, as the observer reports it.
    let most = Arc::new(AtomicU64::new(0));
    let watcher = {
        let most = most.clone();
        let observer = stack.observer.clone();
        tokio::spawn(async move {
            observer
                .wait_for(|c| {
                    most.fetch_max(c.in_flight(), Ordering::SeqCst);
                    false
                })
                .await;
        })
    };

    let calls: Vec<_> = (0..2000)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .unary(EMPTY_CALL, HeaderMap::new(), encode(&Empty {}))
                    .await
            })
        })
        .collect();
    // Another session is served meanwhile.
    other
        .unary(EMPTY_CALL, HeaderMap::new(), encode(&Empty {}))
        .await
        .unwrap();
    let results = tokio::time::timeout(
        Duration::from_secs(20),
        futures_util::future::join_all(calls),
    )
    .await
    .expect("hang guard: 2000 calls");
    for result in results {
        result.unwrap().unwrap();
    }
    watcher.abort();
    let counts = stack.wait_for(|c| c.in_flight() == 0).await;
    assert_eq!(counts.completed, 2001);
    // The per-session stream credit (50 calls and HTTP/3's few) bounds the handlers at once.
    assert!(most.load(Ordering::SeqCst) <= 54 + 1, "{most:?}");
    stack.assert_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_shutdown_fails_open_calls_with_unavailable() {
    for kind in KINDS {
        let mut stack = Stack::start(kind).await;
        let client = stack.client().await;
        let mut call = start(&client, FULL_DUPLEX_CALL, HeaderMap::new()).await;
        call.send(encode(&echo(&[1]))).await.unwrap();
        assert!(next(&mut call).await.is_some());
        // The server closes its sessions ("shutting down"): the call's handler is cancelled,
        // the client sees the session lost.
        stack.stop.take().unwrap().send(()).unwrap();
        assert_eq!(
            status(&mut call).await.code(),
            Code::Unavailable,
            "{kind:?}"
        );
        stack.wait_for(|c| c.cancelled == 1).await;
        // A call on the closed session fails: at once, or, when the client has not yet
        // learnt that the session closed, once the server closed the connection.
        let code = guard("call on a closed session", async {
            match client.call(EMPTY_CALL, HeaderMap::new()).await {
                Err(err) => err.code(),
                Ok(mut call) => status(&mut call).await.code(),
            }
        })
        .await;
        assert_eq!(code, Code::Unavailable, "{kind:?}");
    }
}

/// The WebTransport application code an HTTP/3 stream error code carries (the server sends
/// codes in HTTP/3's reserved range, as browsers expect).
fn app_code(wire: u64) -> u64 {
    weir_codec::webtransport::from_http3(wire).map_or(wire, u64::from)
}

/// A request message the size of the test: bigger than the request stream's flow-control
/// window (quinn's default, 1.25 MB), so that writing it cannot complete in one poll.
fn bigger_than_the_window() -> Bytes {
    encode(&StreamingInputCallRequest {
        payload: zeros(3_000_000),
        ..Default::default()
    })
}

/// A `send` whose future is dropped before it completed (a `timeout`, a `select!`, an
/// aborted task) cancels the call: part of the message may be out, so the request side is
/// reset — neither finished (a request cut short must not pass for a complete one) nor left
/// open — and both halves end with `CANCELLED`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_send_cancels_the_call() {
    let stack = Stack::start(Kind::InProcess).await;
    let client = stack.client().await;
    let (mut sender, mut receiver) = start(&client, STREAMING_INPUT_CALL, HeaderMap::new())
        .await
        .split();
    guard(
        "first send",
        sender.send(encode(&StreamingInputCallRequest {
            payload: zeros(10),
            ..Default::default()
        })),
    )
    .await
    .unwrap();
    stack.wait_for(|c| c.started == 1).await;
    // Polled once, then dropped half way through the message.
    let cut = sender.send(bigger_than_the_window()).now_or_never();
    assert!(cut.is_none(), "the write was expected to be cut short");
    assert_eq!(
        guard("receiver status", receiver.status()).await.code(),
        Code::Cancelled
    );
    let again = guard(
        "send after the cut",
        sender.send(encode(&StreamingInputCallRequest::default())),
    )
    .await
    .unwrap_err();
    assert_eq!(again.code(), Code::Cancelled);
    // The handler saw a reset, not the end of a request.
    let counts = stack.wait_for(|c| c.in_flight() == 0).await;
    assert_eq!((counts.completed, counts.cancelled), (0, 1), "{counts:?}");
    stack.assert_serving().await;
}

/// The same with an unsplit `Call`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_send_on_a_call_cancels_it() {
    let stack = Stack::start(Kind::InProcess).await;
    let client = stack.client().await;
    let mut call = start(&client, STREAMING_INPUT_CALL, HeaderMap::new()).await;
    guard(
        "first send",
        call.send(encode(&StreamingInputCallRequest {
            payload: zeros(10),
            ..Default::default()
        })),
    )
    .await
    .unwrap();
    stack.wait_for(|c| c.started == 1).await;
    let cut = call.send(bigger_than_the_window()).now_or_never();
    assert!(cut.is_none(), "the write was expected to be cut short");
    assert_eq!(call.ended().map(weir::Status::code), Some(Code::Cancelled));
    assert_eq!(status(&mut call).await.code(), Code::Cancelled);
    let again = guard(
        "send after the cut",
        call.send(encode(&StreamingInputCallRequest::default())),
    )
    .await
    .unwrap_err();
    assert_eq!(again.code(), Code::Cancelled);
    let counts = stack.wait_for(|c| c.in_flight() == 0).await;
    assert_eq!((counts.completed, counts.cancelled), (0, 1), "{counts:?}");
    stack.assert_serving().await;
}

/// `call_with_timeout` ends by its deadline even while the session has no stream credit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_with_timeout_is_bounded_while_waiting_for_credit() {
    let stack = Stack::with(
        Kind::InProcess,
        WebTransportConfig::default().max_calls_per_session(1),
    )
    .await;
    let client = stack.client().await;
    // The server grants exactly one call's stream credit besides the session's CONNECT
    // stream (§6): one call held open takes it.
    let mut held = start(&client, FULL_DUPLEX_CALL, HeaderMap::new()).await;
    stack.wait_for(|c| c.started == 1).await;
    let err = guard(
        "call_with_timeout without stream credit",
        client.call_with_timeout(
            FULL_DUPLEX_CALL,
            HeaderMap::new(),
            Duration::from_millis(100),
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    // Credit comes back when a held call ends: a call waiting for it then starts.
    held.cancel();
    let mut call = guard(
        "call_with_timeout once credit is back",
        client.call_with_timeout(FULL_DUPLEX_CALL, HeaderMap::new(), HANG_GUARD),
    )
    .await
    .unwrap();
    call.send(encode(&echo(&[1]))).await.unwrap();
    assert!(next(&mut call).await.is_some());
    drop(call);
    stack.wait_for(|c| c.in_flight() == 0).await;
}

/// Each direction has its own message limit, as on the HTTP doors: a request over the request
/// limit is refused although it is under the response limit, and a response over the request
/// limit (but under its own) goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_limits_are_per_direction() {
    let edge = weir::edge::EdgeConfig::default()
        .max_request_message_size(1024)
        .max_response_message_size(64 * 1024);
    let stack = Stack::with(Kind::InProcess, WebTransportConfig::default().edge(edge)).await;
    let client = stack.client().await;
    let big_request = SimpleRequest {
        payload: Some(weir_testservice::pb::Payload {
            body: vec![0; 2048],
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = client
        .unary(UNARY_CALL, HeaderMap::new(), encode(&big_request))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    let big_response = SimpleRequest {
        response_size: 16 * 1024,
        ..Default::default()
    };
    client
        .unary(UNARY_CALL, HeaderMap::new(), encode(&big_response))
        .await
        .unwrap();
}

/// Reads a raw response until its first message frame (after the response header block).
async fn first_message(stream: &mut Raw) -> Bytes {
    guard("first raw message", async {
        let mut decoder = FrameDecoder::new(usize::MAX);
        loop {
            while let Some(frame) = decoder.decode().unwrap() {
                if frame.flags() != FLAG_TRAILERS {
                    return frame.into_payload();
                }
            }
            let chunk = stream
                .1
                .quic_stream_mut()
                .read_chunk(usize::MAX, true)
                .await
                .unwrap()
                .expect("the response ended before a message");
            decoder.push(chunk.bytes);
        }
    })
    .await
}

/// Version 2 (§3.4, §5.3): the request ends with the end-of-request frame and its side stays
/// open, so a reset of that side alone, sent after the request ended (what Firefox's
/// `writer.abort()` does; it sends no STOP_SENDING), cancels a server stream at the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_2_a_reset_after_the_end_of_request_cancels_the_call() {
    for kind in KINDS {
        let stack = Stack::start(kind).await;
        assert!(stack.url.ends_with("?v=2"), "{}", stack.url);
        let client = stack.client().await;
        let mut stream = raw(&client).await;
        let mut slow = echo(&[1, 1]);
        slow.response_parameters[1].interval_us = 10_000_000;
        write(&mut stream, &request_head(STREAMING_OUTPUT_CALL), false).await;
        write(&mut stream, &encode_message(&encode(&slow)), false).await;
        write(&mut stream, &END_OF_REQUEST, false).await;
        first_message(&mut stream).await;
        stream
            .0
            .quic_stream_mut()
            .reset(
                wtransport::quinn::VarInt::from_u64(weir_codec::webtransport::to_http3(
                    codes::CANCEL,
                ))
                .unwrap(),
            )
            .unwrap();
        let counts = stack.wait_for(|c| c.cancelled == 1).await;
        assert_eq!(counts.in_flight(), 0, "{kind:?} {counts:?}");
        let reply = read_raw(&mut stream).await;
        assert_eq!(
            reply.end,
            End::Reset(codes::CANCEL.into()),
            "{kind:?} {reply:?}"
        );
        stack.assert_serving().await;
    }
}

/// Version 2: a frame after the end-of-request frame is a protocol error (§5.5); in
/// version 1 the end-of-request frame itself is one (a second header block).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_2_nothing_may_follow_the_end_of_request() {
    let stack = Stack::start(Kind::InProcess).await;
    let client = stack.client().await;
    let mut stream = raw(&client).await;
    write(&mut stream, &request_head(FULL_DUPLEX_CALL), false).await;
    write(&mut stream, &END_OF_REQUEST, false).await;
    write(&mut stream, &encode_message(&encode(&echo(&[3]))), false).await;
    let reply = read_raw(&mut stream).await;
    assert_eq!(reply.end, End::Fin, "{reply:?}");
    assert_eq!(reply.code(), Code::Internal, "{reply:?}");
    assert_eq!(
        stop_code(&mut stream).await,
        u64::from(codes::PROTOCOL_ERROR)
    );

    // The same frame ends a version-2 request normally: the reply comes, then the client
    // finishes its side.
    let mut stream = raw(&client).await;
    write(&mut stream, &request_head(FULL_DUPLEX_CALL), false).await;
    write(&mut stream, &encode_message(&encode(&echo(&[3]))), false).await;
    write(&mut stream, &END_OF_REQUEST, false).await;
    let reply = read_raw(&mut stream).await;
    assert_eq!(
        (reply.code(), reply.messages.len()),
        (Code::Ok, 1),
        "{reply:?}"
    );
    stream.0.quic_stream_mut().finish().unwrap();

    let v1 = stack.url.replace("?v=2", "?v=1");
    let old = stack
        .try_client(ConnectOptions::builder(&v1).build())
        .await
        .unwrap();
    let mut stream = raw(&old).await;
    write(&mut stream, &request_head(FULL_DUPLEX_CALL), false).await;
    write(&mut stream, &END_OF_REQUEST, false).await;
    let reply = read_raw(&mut stream).await;
    assert_eq!(reply.code(), Code::Internal, "{reply:?}");
    // A version-1 client's calls work as before.
    old.unary(EMPTY_CALL, HeaderMap::new(), encode(&Empty {}))
        .await
        .unwrap();
    stack.assert_serving().await;
}

/// The session ends with a `CLOSE_WEBTRANSPORT_SESSION` capsule when the server stops
/// (§2.4): code 0, reason `shutting down`, as a page reads them from `transport.closed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_server_closes_sessions_with_a_code_and_reason() {
    let mut stack = Stack::start(Kind::InProcess).await;
    let client = stack.client().await;
    client
        .unary(EMPTY_CALL, HeaderMap::new(), encode(&Empty {}))
        .await
        .unwrap();
    stack.stop.take().unwrap().send(()).unwrap();
    guard("session closed", client.connection().closed()).await;
    // wtransport closes the QUIC connection itself once the capsule arrived, and reports the
    // capsule's code and reason as the session's end (its accept calls return it).
    match client.connection().accept_bi().await {
        Err(wtransport::error::ConnectionError::ApplicationClosed(close)) => {
            assert_eq!(close.code().into_inner(), 0);
            assert_eq!(close.reason(), b"shutting down");
        }
        Err(other) => panic!("expected the session closed by the server, got {other:?}"),
        Ok(_) => panic!("a stream opened on a closed session"),
    }
    let err = client.call(EMPTY_CALL, HeaderMap::new()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
}

/// One client address may hold at most `max_sessions_per_client` sessions (§6); others are
/// unaffected, and a slot that frees up takes a new session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_per_client_address_are_limited() {
    let stack = Stack::with(
        Kind::InProcess,
        WebTransportConfig::default().max_sessions_per_client(2),
    )
    .await;
    let first = stack.client().await;
    let second = stack.client().await;
    let third = stack
        .try_client(ConnectOptions::builder(&stack.url).build())
        .await;
    assert!(third.is_err(), "a third session from one address opened");
    for client in [&first, &second] {
        client
            .unary(EMPTY_CALL, HeaderMap::new(), encode(&Empty {}))
            .await
            .unwrap();
    }
    first.shutdown().await;
    let mut again = None;
    for _ in 0..50 {
        if let Ok(client) = stack
            .try_client(ConnectOptions::builder(&stack.url).build())
            .await
        {
            again = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = again.expect("the freed slot never took a session");
    again
        .unary(EMPTY_CALL, HeaderMap::new(), encode(&Empty {}))
        .await
        .unwrap();
}
