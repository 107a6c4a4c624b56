//! The interop test cases, run against the service over a real HTTP/2
//! connection with the generated tonic client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::Channel;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request};
use weir_testservice::pb::test_service_client::TestServiceClient;
use weir_testservice::pb::unimplemented_service_client::UnimplementedServiceClient;
use weir_testservice::pb::{
    EchoStatus, Empty, Payload, PayloadType, ResponseParameters, SimpleRequest,
    StreamingInputCallRequest, StreamingOutputCallRequest, StreamingOutputCallResponse,
};
use weir_testservice::{CallCounts, CallObserver, TestServiceImpl};

const INITIAL_VALUE: &str = "test_initial_metadata_value";
const TRAILING_VALUE: &[u8] = &[0xab, 0xab, 0xab];
const SPECIAL_MESSAGE: &str = "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n";

async fn start(service: TestServiceImpl) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .serve_with_incoming(service.into_service(), TcpIncoming::from(listener)),
    );
    addr
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn client() -> TestServiceClient<Channel> {
    TestServiceClient::new(channel(start(TestServiceImpl::new()).await).await)
}

async fn observed_client() -> (TestServiceClient<Channel>, Arc<CallObserver>) {
    let observer = Arc::new(CallObserver::new());
    let service = TestServiceImpl::new().with_observer(observer.clone());
    let client = TestServiceClient::new(channel(start(service).await).await);
    (client, observer)
}

async fn wait_counts(
    observer: &CallObserver,
    condition: impl FnMut(&CallCounts) -> bool,
) -> CallCounts {
    tokio::time::timeout(Duration::from_secs(5), observer.wait_for(condition))
        .await
        .unwrap_or_else(|_| panic!("observer never matched: {:?}", observer.counts()))
}

fn zeros(size: usize) -> Option<Payload> {
    Some(Payload {
        r#type: PayloadType::Compressable as i32,
        body: vec![0; size],
    })
}

fn params(sizes: &[i32]) -> Vec<ResponseParameters> {
    sizes
        .iter()
        .map(|&size| ResponseParameters {
            size,
            ..Default::default()
        })
        .collect()
}

fn output_request(sizes: &[i32], payload: usize) -> StreamingOutputCallRequest {
    StreamingOutputCallRequest {
        response_parameters: params(sizes),
        payload: zeros(payload),
        ..Default::default()
    }
}

fn echo_status(code: i32, message: &str) -> Option<EchoStatus> {
    Some(EchoStatus {
        code,
        message: message.to_owned(),
    })
}

fn sizes(responses: &[StreamingOutputCallResponse]) -> Vec<usize> {
    responses
        .iter()
        .map(|r| r.payload.as_ref().map_or(0, |p| p.body.len()))
        .collect()
}

fn with_echo_metadata<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    let metadata = request.metadata_mut();
    metadata.insert("x-grpc-test-echo-initial", INITIAL_VALUE.parse().unwrap());
    metadata.insert_bin(
        "x-grpc-test-echo-trailing-bin",
        MetadataValue::from_bytes(TRAILING_VALUE),
    );
    request
}

fn assert_echoed_trailer(metadata: &MetadataMap) {
    let trailer = metadata
        .get_bin("x-grpc-test-echo-trailing-bin")
        .expect("echoed trailer");
    assert_eq!(trailer.to_bytes().unwrap().as_ref(), TRAILING_VALUE);
}

#[tokio::test]
async fn empty_unary() {
    let response = client().await.empty_call(Empty {}).await.unwrap();
    assert_eq!(response.into_inner(), Empty {});
}

#[tokio::test]
async fn large_unary() {
    let response = client()
        .await
        .unary_call(SimpleRequest {
            response_size: 314_159,
            payload: zeros(271_828),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let payload = response.payload.unwrap();
    assert_eq!(payload.r#type, PayloadType::Compressable as i32);
    assert_eq!(payload.body.len(), 314_159);
    assert!(payload.body.iter().all(|&b| b == 0));
    assert!(response.server_id.is_empty());
}

#[tokio::test]
async fn cacheable_unary_and_server_id() {
    let response = client()
        .await
        .cacheable_unary_call(SimpleRequest {
            response_size: 10,
            fill_server_id: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.payload.unwrap().body.len(), 10);
    assert_eq!(response.server_id, weir_testservice::DEFAULT_SERVER_ID);
    assert_eq!(response.hostname, weir_testservice::DEFAULT_SERVER_ID);
}

#[tokio::test]
async fn negative_size_is_invalid_argument() {
    let mut client = client().await;
    let status = client
        .unary_call(SimpleRequest {
            response_size: -1,
            ..Default::default()
        })
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    let status = client
        .streaming_output_call(output_request(&[1, -2], 0))
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    // In a bidi call, the error comes after the messages before it.
    let requests = tokio_stream::iter([output_request(&[3, -2], 0)]);
    let mut stream = client
        .full_duplex_call(requests)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        stream.message().await.unwrap().map(|r| sizes(&[r])),
        Some(vec![3])
    );
    let status = stream.message().await.map(|_| ()).unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn server_streaming() {
    let mut stream = client()
        .await
        .streaming_output_call(output_request(&[31415, 9, 2653, 58979], 0))
        .await
        .unwrap()
        .into_inner();
    let mut responses = Vec::new();
    while let Some(response) = stream.message().await.unwrap() {
        responses.push(response);
    }
    assert_eq!(sizes(&responses), [31415, 9, 2653, 58979]);
}

#[tokio::test]
async fn server_streaming_is_lazy_and_paced() {
    let request = StreamingOutputCallRequest {
        response_parameters: vec![
            ResponseParameters {
                size: 5,
                interval_us: 0,
                ..Default::default()
            },
            ResponseParameters {
                size: 6,
                interval_us: 300_000,
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let started = Instant::now();
    let mut stream = client()
        .await
        .streaming_output_call(request)
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    let first_at = started.elapsed();
    assert_eq!(sizes(&[first]), [5]);
    assert!(
        first_at < Duration::from_millis(250),
        "first message waited for the second: {first_at:?}"
    );
    let second = stream.message().await.unwrap().unwrap();
    assert_eq!(sizes(&[second]), [6]);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(stream.message().await.unwrap().is_none());
}

#[tokio::test]
async fn client_streaming() {
    let requests = [27182, 8, 1828, 45904].map(|size| StreamingInputCallRequest {
        payload: zeros(size),
        ..Default::default()
    });
    let response = client()
        .await
        .streaming_input_call(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.aggregated_payload_size, 74922);
}

#[tokio::test]
async fn ping_pong() {
    let (tx, rx) = mpsc::channel(1);
    let mut stream = client()
        .await
        .full_duplex_call(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    for (response_size, request_size) in [(31415, 27182), (9, 8), (2653, 1828), (58979, 45904)] {
        tx.send(output_request(&[response_size], request_size))
            .await
            .unwrap();
        let response = stream.message().await.unwrap().unwrap();
        assert_eq!(sizes(&[response]), [response_size as usize]);
    }
    drop(tx);
    assert!(stream.message().await.unwrap().is_none());
}

#[tokio::test]
async fn half_duplex_answers_after_the_client_finished() {
    let (tx, rx) = mpsc::channel(4);
    let mut stream = client()
        .await
        .half_duplex_call(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(output_request(&[1, 2], 0)).await.unwrap();
    tx.send(output_request(&[3], 0)).await.unwrap();
    let early = tokio::time::timeout(Duration::from_millis(200), stream.message()).await;
    assert!(
        early.is_err(),
        "half duplex answered before the client finished"
    );
    drop(tx);
    let mut responses = Vec::new();
    while let Some(response) = stream.message().await.unwrap() {
        responses.push(response);
    }
    assert_eq!(sizes(&responses), [1, 2, 3]);
}

#[tokio::test]
async fn empty_stream() {
    let mut stream = client()
        .await
        .full_duplex_call(tokio_stream::empty())
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_none());
}

#[tokio::test]
async fn custom_metadata_unary() {
    let response = client()
        .await
        .unary_call(with_echo_metadata(SimpleRequest {
            response_size: 314_159,
            payload: zeros(271_828),
            ..Default::default()
        }))
        .await
        .unwrap();
    let metadata = response.metadata();
    assert_eq!(
        metadata.get("x-grpc-test-echo-initial").unwrap(),
        INITIAL_VALUE
    );
    // tonic merges the trailers of a unary call into its metadata.
    assert_echoed_trailer(metadata);
}

#[tokio::test]
async fn custom_metadata_streaming() {
    let requests = tokio_stream::iter([output_request(&[314_159], 271_828)]);
    let response = client()
        .await
        .full_duplex_call(with_echo_metadata(requests))
        .await
        .unwrap();
    assert_eq!(
        response.metadata().get("x-grpc-test-echo-initial").unwrap(),
        INITIAL_VALUE
    );
    let mut stream = response.into_inner();
    let mut responses = Vec::new();
    while let Some(response) = stream.message().await.unwrap() {
        responses.push(response);
    }
    assert_eq!(sizes(&responses), [314_159]);
    let trailers = stream.trailers().await.unwrap().unwrap();
    assert_echoed_trailer(&trailers);
}

#[tokio::test]
async fn custom_metadata_on_error() {
    // An immediate error is a trailers-only response: the echo rides in it.
    let status = client()
        .await
        .unary_call(with_echo_metadata(SimpleRequest {
            response_status: echo_status(2, "boom"),
            ..Default::default()
        }))
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(status.code(), Code::Unknown);
    assert_eq!(
        status.metadata().get("x-grpc-test-echo-initial").unwrap(),
        INITIAL_VALUE
    );
    assert_echoed_trailer(status.metadata());
}

async fn check_status(code: i32, message: &str) {
    let mut client = client().await;
    let want = Code::from_i32(code);

    let status = client
        .unary_call(SimpleRequest {
            response_status: echo_status(code, message),
            ..Default::default()
        })
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!((status.code(), status.message()), (want, message));

    let request = StreamingOutputCallRequest {
        response_status: echo_status(code, message),
        ..Default::default()
    };
    let mut stream = client
        .full_duplex_call(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let status = stream.message().await.map(|_| ()).unwrap_err();
    assert_eq!((status.code(), status.message()), (want, message));
}

#[tokio::test]
async fn status_code_and_message() {
    check_status(2, "test status message").await;
}

#[tokio::test]
async fn special_status_message() {
    check_status(2, SPECIAL_MESSAGE).await;
}

#[tokio::test]
async fn streaming_status_after_messages() {
    let request = StreamingOutputCallRequest {
        response_parameters: params(&[1, 2]),
        response_status: echo_status(9, SPECIAL_MESSAGE),
        ..Default::default()
    };
    let mut stream = client()
        .await
        .streaming_output_call(request)
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_some());
    assert!(stream.message().await.unwrap().is_some());
    let status = stream.message().await.map(|_| ()).unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(status.message(), SPECIAL_MESSAGE);
}

#[tokio::test]
async fn unimplemented_method() {
    let status = client()
        .await
        .unimplemented_call(Empty {})
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
}

#[tokio::test]
async fn unimplemented_service() {
    let addr = start(TestServiceImpl::new()).await;
    let status = UnimplementedServiceClient::new(channel(addr).await)
        .unimplemented_call(Empty {})
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
}

#[tokio::test]
async fn timeout_on_sleeping_server() {
    let (mut client, observer) = observed_client().await;
    let mut request = Request::new(StreamingOutputCallRequest {
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
    request.set_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let mut stream = client
        .streaming_output_call(request)
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_some());
    let status = stream.message().await.map(|_| ()).unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert!(started.elapsed() < Duration::from_secs(4));
    // The server ended the call itself: completed, not cancelled.
    let counts = wait_counts(&observer, |c| c.completed == 1).await;
    assert_eq!(counts.cancelled, 0);
}

#[tokio::test]
async fn timeout_on_sleeping_bidi() {
    // The standard case: a 1 ms deadline on a full duplex call, with a
    // server that sleeps before answering.
    let (tx, rx) = mpsc::channel(1);
    let mut request = Request::new(ReceiverStream::new(rx));
    request.set_timeout(Duration::from_millis(1));
    let result = client().await.full_duplex_call(request).await;
    let mut sleepy = output_request(&[31415], 27182);
    sleepy.response_parameters[0].interval_us = 100_000;
    let _ = tx.send(sleepy).await;
    let status = match result {
        Ok(response) => response
            .into_inner()
            .message()
            .await
            .map(|r| r.map(|r| sizes(&[r])))
            .unwrap_err(),
        Err(status) => status,
    };
    // Either the server's deadline ended the call, or tonic's client enforced the same
    // grpc-timeout first: tonic reports its own timer as CANCELLED "Timeout expired".
    let client_timer = status.code() == Code::Cancelled && status.message() == "Timeout expired";
    assert!(
        status.code() == Code::DeadlineExceeded || client_timer,
        "{status:?}"
    );
}

#[tokio::test]
async fn observer_sees_server_stream_cancellation() {
    let (mut client, observer) = observed_client().await;
    let request = StreamingOutputCallRequest {
        response_parameters: vec![
            ResponseParameters {
                size: 1,
                ..Default::default()
            },
            ResponseParameters {
                size: 1,
                interval_us: 10_000_000,
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let mut stream = client
        .streaming_output_call(request)
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_some());
    assert_eq!(observer.counts().in_flight(), 1);
    drop(stream);
    let counts = wait_counts(&observer, |c| c.cancelled == 1).await;
    assert_eq!(
        counts,
        CallCounts {
            started: 1,
            completed: 0,
            cancelled: 1
        }
    );
}

#[tokio::test]
async fn observer_sees_bidi_cancellation() {
    let (mut client, observer) = observed_client().await;
    let (tx, rx) = mpsc::channel(1);
    let mut stream = client
        .full_duplex_call(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut request = output_request(&[1, 1], 0);
    request.response_parameters[1].interval_us = 10_000_000;
    tx.send(request).await.unwrap();
    assert!(stream.message().await.unwrap().is_some());
    // The client gives up while the server sleeps. (h2 resets the stream once
    // both directions are dropped on the client side.)
    drop(stream);
    drop(tx);
    let counts = wait_counts(&observer, |c| c.cancelled == 1).await;
    assert_eq!((counts.started, counts.completed), (1, 0));
}

#[tokio::test]
async fn observer_counts_completed_calls() {
    let (mut client, observer) = observed_client().await;
    client.empty_call(Empty {}).await.unwrap();
    let mut stream = client
        .streaming_output_call(output_request(&[1, 2], 0))
        .await
        .unwrap()
        .into_inner();
    while stream.message().await.unwrap().is_some() {}
    let counts = wait_counts(&observer, |c| c.completed == 2).await;
    assert_eq!(counts.in_flight(), 0);
    assert_eq!(counts.cancelled, 0);
}
