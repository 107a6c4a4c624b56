//! A tiny gRPC-Web test client over real sockets, and a test server on an ephemeral loopback
//! port running the interop `TestService` behind [`GrpcWebLayer`].
//!
//! Requests are encoded with `weir_codec::frame` (and `weir_codec::text` in text mode);
//! responses are decoded incrementally with `FrameDecoder` and `trailers::decode`, so tests can
//! read a response message by message while the server is still producing it.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tower::Layer as _;
use weir::body::BoxBody;
use weir::grpc_web::GrpcWebLayer;
use weir::server::Server;
use weir_codec::frame::{self, FrameDecoder, FrameKind};
use weir_codec::text::{self, TextDecoder};
use weir_codec::{status, trailers};
use weir_testservice::pb::{Payload, PayloadType, ResponseParameters};
use weir_testservice::{CallCounts, CallObserver, TestServiceImpl};

pub mod gateway;

/// Hang guard for every wait in the tests. Not a performance assertion: a correct server
/// answers in milliseconds, a broken one would otherwise make the test run forever.
pub const HANG_GUARD: Duration = Duration::from_secs(5);

pub const INITIAL_VALUE: &str = "test_initial_metadata_value";
pub const TRAILING_VALUE: &[u8] = &[0xab, 0xab, 0xab];
pub const SPECIAL_MESSAGE: &str =
    "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n";

pub const EMPTY_CALL: &str = "/grpc.testing.TestService/EmptyCall";
pub const UNARY_CALL: &str = "/grpc.testing.TestService/UnaryCall";
pub const STREAMING_OUTPUT_CALL: &str = "/grpc.testing.TestService/StreamingOutputCall";
pub const STREAMING_INPUT_CALL: &str = "/grpc.testing.TestService/StreamingInputCall";
pub const FULL_DUPLEX_CALL: &str = "/grpc.testing.TestService/FullDuplexCall";

/// Fails the test instead of hanging when `future` does not complete in time.
pub async fn guard<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(HANG_GUARD, future).await {
        Ok(value) => value,
        Err(_) => panic!("hang guard: {what} did not complete within {HANG_GUARD:?}"),
    }
}

pub fn zeros(size: usize) -> Option<Payload> {
    Some(Payload {
        r#type: PayloadType::Compressable as i32,
        body: vec![0; size],
    })
}

pub fn params(sizes: &[i32]) -> Vec<ResponseParameters> {
    sizes
        .iter()
        .map(|&size| ResponseParameters {
            size,
            ..Default::default()
        })
        .collect()
}

/// The HTTP version a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.1.
    H1,
    /// Cleartext HTTP/2 with prior knowledge.
    H2,
}

/// The gRPC-Web flavour of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `application/grpc-web+proto`.
    Binary,
    /// `application/grpc-web-text+proto`: base64 bodies.
    Text,
}

impl Mode {
    pub fn content_type(self) -> &'static str {
        match self {
            Mode::Binary => "application/grpc-web+proto",
            Mode::Text => "application/grpc-web-text+proto",
        }
    }

    /// One message frame as this mode sends it; in text mode a padded base64 unit of its own.
    pub fn frame(self, payload: &[u8]) -> Bytes {
        self.wire(&frame::encode_message(payload))
    }

    /// Raw bytes as this mode sends them (base64 in text mode).
    pub fn wire(self, raw: &[u8]) -> Bytes {
        match self {
            Mode::Binary => Bytes::copy_from_slice(raw),
            Mode::Text => text::encode(raw),
        }
    }

    /// A whole request body: one frame per message, each encoded on its own.
    pub fn body<M: Message>(self, messages: &[M]) -> Bytes {
        let mut out = BytesMut::new();
        for message in messages {
            out.extend_from_slice(&self.frame(&message.encode_to_vec()));
        }
        out.freeze()
    }
}

/// The interop `TestService` behind a gRPC-Web layer, served by [`Server`] on
/// `127.0.0.1:0`. Shut down when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub observer: Arc<CallObserver>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl TestServer {
    /// A server with the default layer.
    pub async fn start() -> TestServer {
        TestServer::with_layer(GrpcWebLayer::new()).await
    }

    pub async fn with_layer(layer: GrpcWebLayer) -> TestServer {
        TestServer::with(Server::new(), layer).await
    }

    pub async fn with(server: Server, layer: GrpcWebLayer) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let observer = Arc::new(CallObserver::new());
        let service = layer.layer(
            TestServiceImpl::new()
                .with_observer(observer.clone())
                .into_service(),
        );
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            server
                .serve(listener, service, async {
                    let _ = rx.await;
                })
                .await;
        });
        TestServer {
            addr,
            observer,
            shutdown: Some(tx),
        }
    }

    /// A new connection to the server.
    pub async fn client(&self, proto: Proto) -> Client {
        Client::connect(self.addr, proto).await
    }

    /// The server's own origin, as a browser on a page it served would send it.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits (with the hang guard) until the observer's counters satisfy `condition`.
    pub async fn wait_for(&self, condition: impl FnMut(&CallCounts) -> bool) -> CallCounts {
        match tokio::time::timeout(HANG_GUARD, self.observer.wait_for(condition)).await {
            Ok(counts) => counts,
            Err(_) => panic!(
                "hang guard: observer never matched; counts {:?}",
                self.observer.counts()
            ),
        }
    }

    /// Checks that the server still serves normal calls, on fresh HTTP/1.1 and HTTP/2
    /// connections, in both modes.
    pub async fn assert_serving(&self) {
        for proto in [Proto::H1, Proto::H2] {
            for mode in [Mode::Binary, Mode::Text] {
                let mut client = self.client(proto).await;
                let reply = client
                    .unary(EMPTY_CALL, mode, &weir_testservice::pb::Empty {})
                    .await;
                reply.assert_ok();
                assert_eq!(reply.messages.len(), 1, "{proto:?} {mode:?}");
            }
        }
    }
}

impl TestServer {
    /// Starts the server's graceful shutdown: it stops accepting connections and lets open
    /// calls finish.
    pub fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A streaming request body fed through a channel; the body ends when the sender is dropped.
pub fn channel_body() -> (mpsc::Sender<Bytes>, BoxBody) {
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let frames =
        ReceiverStream::new(rx).map(|data| Ok::<_, Infallible>(hyper::body::Frame::data(data)));
    (tx, BoxBody::new(StreamBody::new(frames)))
}

enum Sender {
    H1(http1::SendRequest<BoxBody>),
    H2(http2::SendRequest<BoxBody>),
}

/// One client connection, HTTP/1.1 or HTTP/2.
pub struct Client {
    addr: SocketAddr,
    proto: Proto,
    sender: Sender,
}

impl Client {
    pub async fn connect(addr: SocketAddr, proto: Proto) -> Client {
        let stream = guard("connect", TcpStream::connect(addr)).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let io = TokioIo::new(stream);
        let sender = match proto {
            Proto::H1 => {
                let (sender, conn) = http1::handshake(io).await.unwrap();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Sender::H1(sender)
            }
            Proto::H2 => {
                let (sender, conn) = http2::handshake(TokioExecutor::new(), io).await.unwrap();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Sender::H2(sender)
            }
        };
        Client {
            addr,
            proto,
            sender,
        }
    }

    pub fn proto(&self) -> Proto {
        self.proto
    }

    /// Another handle on the same HTTP/2 connection (for concurrent streams).
    pub fn h2_handle(&self) -> Client {
        match &self.sender {
            Sender::H2(sender) => Client {
                addr: self.addr,
                proto: self.proto,
                sender: Sender::H2(sender.clone()),
            },
            Sender::H1(_) => panic!("HTTP/1.1 connections carry one call at a time"),
        }
    }

    /// A request to `path` with the method and headers of a gRPC-Web call, without a body yet.
    pub fn request(&self, path: &str, mode: Mode) -> http::request::Builder {
        self.request_typed(path, mode.content_type())
    }

    /// Like [`request`](Self::request) with any content type.
    pub fn request_typed(&self, path: &str, content_type: &str) -> http::request::Builder {
        self.builder(path)
            .method("POST")
            .header(header::CONTENT_TYPE, content_type)
            .header("x-grpc-web", "1")
            .header(header::ACCEPT, content_type)
    }

    /// A request to `path` with only the URI (and `Host` on HTTP/1.1) filled in.
    pub fn builder(&self, path: &str) -> http::request::Builder {
        match self.proto {
            Proto::H1 => Request::builder()
                .uri(path)
                .header(header::HOST, self.addr.to_string()),
            Proto::H2 => Request::builder().uri(format!("http://{}{path}", self.addr)),
        }
    }

    /// Sends a request and returns the response head and its still unread body.
    pub async fn send(&mut self, request: Request<BoxBody>) -> Response<Incoming> {
        self.try_send(request).await.unwrap()
    }

    /// Like [`send`](Self::send), for requests that may fail at the HTTP level.
    pub async fn try_send(
        &mut self,
        request: Request<BoxBody>,
    ) -> Result<Response<Incoming>, hyper::Error> {
        guard("response head", async {
            match &mut self.sender {
                Sender::H1(sender) => {
                    sender.ready().await?;
                    sender.send_request(request).await
                }
                Sender::H2(sender) => {
                    sender.ready().await?;
                    sender.send_request(request).await
                }
            }
        })
        .await
    }

    /// Sends a gRPC-Web request and returns the call, to be read message by message.
    pub async fn start(&mut self, request: Request<BoxBody>, mode: Mode) -> Call {
        Call::new(self.send(request).await, mode)
    }

    /// A call with the given request body, read to its end.
    pub async fn call_raw(&mut self, path: &str, mode: Mode, body: Bytes) -> Reply {
        let request = self.request(path, mode).body(BoxBody::full(body)).unwrap();
        self.start(request, mode).await.finish().await
    }

    /// A unary call, read to its end.
    pub async fn unary<M: Message>(&mut self, path: &str, mode: Mode, message: &M) -> Reply {
        self.call_raw(path, mode, mode.body(std::slice::from_ref(message)))
            .await
    }
}

/// An ongoing gRPC-Web call whose response is read incrementally.
pub struct Call {
    pub status: StatusCode,
    pub headers: HeaderMap,
    body: Incoming,
    text: Option<TextDecoder>,
    frames: FrameDecoder,
    trailers: Option<HeaderMap>,
    ended: bool,
    raw: BytesMut,
}

impl Call {
    fn new(response: Response<Incoming>, mode: Mode) -> Call {
        let (parts, body) = response.into_parts();
        Call {
            status: parts.status,
            headers: parts.headers,
            body,
            text: (mode == Mode::Text).then(TextDecoder::new),
            frames: FrameDecoder::new(usize::MAX),
            trailers: None,
            ended: false,
            raw: BytesMut::new(),
        }
    }

    /// The next response message, or `None` once the trailer frame (or the end of the body)
    /// was read.
    pub async fn next_message(&mut self) -> Option<Bytes> {
        self.next_frame().await.map(frame::Frame::into_payload)
    }

    /// The next frame that is not the trailer frame, with its flags (heartbeats, `0x40`, are
    /// returned like messages), or `None` once the trailer frame (or the end of the body) was
    /// read.
    pub async fn next_frame(&mut self) -> Option<frame::Frame> {
        guard("next response frame", self.next_frame_unguarded()).await
    }

    /// Everything the body carried so far, as received (base64 in text mode).
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The trailer frame's block, once read.
    pub fn trailers(&self) -> Option<&HeaderMap> {
        self.trailers.as_ref()
    }

    async fn next_frame_unguarded(&mut self) -> Option<frame::Frame> {
        loop {
            if let Some(frame) = self.frames.decode().unwrap() {
                assert!(
                    self.trailers.is_none(),
                    "a frame followed the trailer frame"
                );
                match frame.kind() {
                    FrameKind::Message => return Some(frame),
                    FrameKind::Trailers => {
                        let block = trailers::decode(frame.payload()).unwrap();
                        self.trailers = Some(block);
                        continue;
                    }
                }
            }
            if self.ended {
                return None;
            }
            match self.body.frame().await {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        self.raw.extend_from_slice(&data);
                        let data = match &mut self.text {
                            Some(decoder) => {
                                assert!(
                                    data.iter().all(|b| b.is_ascii_alphanumeric()
                                        || matches!(b, b'+' | b'/' | b'=')),
                                    "grpc-web-text response body is not base64: {data:?}"
                                );
                                decoder.decode(&data).unwrap()
                            }
                            None => data,
                        };
                        self.frames.push(data);
                    }
                    Err(frame) => panic!("gRPC-Web response carried HTTP trailers: {frame:?}"),
                },
                Some(Err(e)) => panic!("response body failed: {e}"),
                None => {
                    self.ended = true;
                    if let Some(decoder) = &self.text {
                        decoder.finish().unwrap();
                    }
                    self.frames.finish().unwrap();
                }
            }
        }
    }

    /// The next response message, decoded.
    pub async fn next_as<M: Message + Default>(&mut self) -> Option<M> {
        self.next_message()
            .await
            .map(|payload| M::decode(payload).unwrap())
    }

    /// Reads the rest of the response.
    pub async fn finish(mut self) -> Reply {
        let mut messages = Vec::new();
        while let Some(message) = self.next_message().await {
            messages.push(message);
        }
        // Nothing may follow the trailer frame.
        if !self.ended {
            assert!(
                guard("end of body", self.body.frame()).await.is_none(),
                "the body went on after the trailer frame"
            );
        }
        Reply {
            status: self.status,
            headers: self.headers,
            messages,
            trailers: self.trailers,
        }
    }

    /// Gives up the call, dropping the response body (an HTTP/2 client resets the stream).
    pub fn abandon(self) {
        drop(self);
    }
}

/// A complete gRPC-Web response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub messages: Vec<Bytes>,
    /// The trailer frame's block, `None` for a trailers-only response.
    pub trailers: Option<HeaderMap>,
}

impl Reply {
    /// Where the status is: the trailer frame, or the headers of a trailers-only response.
    pub fn status_block(&self) -> &HeaderMap {
        self.trailers.as_ref().unwrap_or(&self.headers)
    }

    pub fn code(&self) -> i32 {
        let value = self
            .status_block()
            .get("grpc-status")
            .unwrap_or_else(|| panic!("no grpc-status in {self:?}"));
        value.to_str().unwrap().parse().unwrap()
    }

    pub fn message(&self) -> String {
        self.status_block()
            .get("grpc-message")
            .map(|v| status::decode_message(v.as_bytes()))
            .unwrap_or_default()
    }

    pub fn is_trailers_only(&self) -> bool {
        self.trailers.is_none() && self.messages.is_empty()
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    /// Asserts an HTTP 200 gRPC-Web response with this code; returns the message.
    pub fn assert_code(&self, code: i32) -> String {
        assert_eq!(self.status, StatusCode::OK, "{self:?}");
        assert!(
            self.content_type().starts_with("application/grpc-web"),
            "{self:?}"
        );
        assert_eq!(self.code(), code, "{self:?} (message {:?})", self.message());
        self.message()
    }

    pub fn assert_ok(&self) {
        self.assert_code(0);
    }

    pub fn decode<M: Message + Default>(&self, index: usize) -> M {
        M::decode(self.messages[index].clone()).unwrap()
    }

    pub fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.headers.get(name)
    }
}

/// Reads a plain HTTP response body (an error page) to its end.
pub async fn read_body(response: Response<Incoming>) -> (StatusCode, HeaderMap, Bytes) {
    let (parts, body) = response.into_parts();
    let body = guard("error body", body.collect())
        .await
        .unwrap()
        .to_bytes();
    (parts.status, parts.headers, body)
}
