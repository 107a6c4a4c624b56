//! A gateway under test: [`GrpcWebLayer`] over [`Metrics`] over [`Proxy`], served by
//! [`Server`] on an ephemeral loopback port, in front of upstreams on their own ports: the
//! interop `TestService` served natively (h2c) and recording the request heads it receives,
//! or a scripted HTTP/2 server that misbehaves on purpose.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tower::Layer as _;
use tower_service::Service;
use weir::body::BoxBody;
use weir::grpc_web::GrpcWebLayer;
use weir::metrics::Metrics;
use weir::proxy::{ClusterConfig, Proxy, ProxyBuilder};
use weir::server::Server;
use weir_testservice::{CallCounts, CallObserver, TestServiceImpl};

use super::{Client, HANG_GUARD, Proto, guard};

/// The request head as an upstream received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    /// The URI's authority (`:authority` over HTTP/2).
    pub authority: Option<String>,
    pub headers: HeaderMap,
}

/// Records every request head, then hands the request on.
#[derive(Clone)]
struct Recording<S> {
    inner: S,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl<S, B> Service<Request<B>> for Recording<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> S::Future {
        self.seen.lock().unwrap().push(Seen {
            path: request.uri().path().to_owned(),
            authority: request.uri().authority().map(ToString::to_string),
            headers: request.headers().clone(),
        });
        self.inner.call(request)
    }
}

/// The interop `TestService` served natively by [`Server`]; shut down when dropped.
pub struct Upstream {
    pub addr: SocketAddr,
    pub observer: Arc<CallObserver>,
    seen: Arc<Mutex<Vec<Seen>>>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        Upstream::start_with_id(weir_testservice::DEFAULT_SERVER_ID).await
    }

    /// An upstream that reports `server_id` in responses to `fill_server_id` requests.
    pub async fn start_with_id(server_id: &str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Upstream::on(listener, server_id)
    }

    /// An upstream on an already bound listener.
    pub fn on(listener: TcpListener, server_id: &str) -> Upstream {
        let addr = listener.local_addr().unwrap();
        let observer = Arc::new(CallObserver::new());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let service = Recording {
            inner: TestServiceImpl::new()
                .with_observer(observer.clone())
                .with_server_id(server_id)
                .into_service(),
            seen: seen.clone(),
        };
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            Server::new()
                .serve(listener, service, async {
                    let _ = rx.await;
                })
                .await;
        });
        Upstream {
            addr,
            observer,
            seen,
            shutdown: Some(tx),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every request head received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The only request head received so far.
    pub fn only_seen(&self) -> Seen {
        let seen = self.seen();
        assert_eq!(seen.len(), 1, "{seen:?}");
        seen.into_iter().next().unwrap()
    }

    /// Waits (with the hang guard) until the observer's counters satisfy `condition`.
    pub async fn wait_for(&self, condition: impl FnMut(&CallCounts) -> bool) -> CallCounts {
        match tokio::time::timeout(HANG_GUARD, self.observer.wait_for(condition)).await {
            Ok(counts) => counts,
            Err(_) => panic!(
                "hang guard: upstream observer never matched; counts {:?}",
                self.observer.counts()
            ),
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A proxy with one cluster `up` at `127.0.0.1:port`, serving `grpc.testing.TestService`.
pub fn to_upstream(port: u16) -> ProxyBuilder {
    Proxy::builder()
        .cluster(ClusterConfig::new("up").address("127.0.0.1", port))
        .route("grpc.testing.TestService", "up")
}

/// The gateway: gRPC-Web layer, metrics and proxy, with the proxy's metrics and drain token
/// wired as the `weir` binary wires them.
pub struct Gateway {
    pub addr: SocketAddr,
    pub metrics: Metrics,
    pub drain: CancellationToken,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Gateway {
    pub async fn start(proxy: ProxyBuilder) -> Gateway {
        Gateway::with_layer(GrpcWebLayer::new(), proxy).await
    }

    pub async fn with_layer(layer: GrpcWebLayer, proxy: ProxyBuilder) -> Gateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Metrics::new();
        let drain = CancellationToken::new();
        let proxy = proxy
            .metrics(metrics.clone())
            .drain(drain.clone())
            .build()
            .unwrap();
        let service = layer.layer(metrics.layer().layer(proxy));
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            Server::new()
                .serve(listener, service, async {
                    let _ = rx.await;
                })
                .await;
        });
        Gateway {
            addr,
            metrics,
            drain,
            shutdown: Some(tx),
        }
    }

    pub async fn client(&self, proto: Proto) -> Client {
        Client::connect(self.addr, proto).await
    }

    /// A tonic client on a new HTTP/2 connection to the gateway.
    pub async fn tonic(
        &self,
    ) -> weir_testservice::pb::test_service_client::TestServiceClient<tonic::transport::Channel>
    {
        let endpoint =
            tonic::transport::Channel::from_shared(format!("http://{}", self.addr)).unwrap();
        weir_testservice::pb::test_service_client::TestServiceClient::new(
            guard("tonic connect", endpoint.connect()).await.unwrap(),
        )
    }

    /// The value of one series of the metrics (`name{labels}`), 0 when it does not exist.
    pub fn metric(&self, series: &str) -> f64 {
        let text = self.metrics.encode();
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// What a [`Scripted`] upstream answers.
#[derive(Debug, Clone)]
pub enum Script {
    /// A plain HTTP answer.
    Http {
        status: StatusCode,
        content_type: &'static str,
        body: &'static str,
    },
    /// HTTP 200 `application/grpc` with one message, then the end of the body without any
    /// trailers.
    NoTrailers,
    /// HTTP 200 `application/grpc` with one message; the body then stays open until the test
    /// kills the connection or the stream is reset.
    OneMessageThenHang,
    /// No answer at all, until the stream is reset.
    Silent,
    /// HTTP 200 `application/grpc` whose body is these DATA chunks (cut anywhere, also
    /// inside frames), then trailers with `grpc-status: 0`.
    Chunks(Vec<Bytes>),
}

/// Counts, when dropped, a request whose handling (pending answer or open response body)
/// the scripted upstream gave up: the stream was reset or its connection died.
struct Released(Arc<AtomicUsize>);

impl Drop for Released {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A hand-written HTTP/2 upstream that answers every request by its [`Script`].
pub struct Scripted {
    pub addr: SocketAddr,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    requests: Arc<Mutex<usize>>,
    released: Arc<AtomicUsize>,
    accept: JoinHandle<()>,
}

/// The gRPC message the scripted upstream sends: an empty `SimpleResponse`.
pub const SCRIPTED_MESSAGE: &[u8] = &[];

impl Scripted {
    pub async fn start(script: Script) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(0));
        let released = Arc::new(AtomicUsize::new(0));
        // Response bodies that must stay open; kept until the upstream is dropped.
        let open: Arc<Mutex<Vec<mpsc::Sender<Bytes>>>> = Arc::default();
        let accept = {
            let connections = connections.clone();
            let requests = requests.clone();
            let released = released.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let script = script.clone();
                    let requests = requests.clone();
                    let open = open.clone();
                    let released = released.clone();
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        *requests.lock().unwrap() += 1;
                        let guard = Released(released.clone());
                        let (response, pending) = match script {
                            Script::Silent => (None, Some(guard)),
                            _ => (Some(answer(&script, &open, guard)), None),
                        };
                        async move {
                            drop(request);
                            match response {
                                Some(response) => Ok::<_, Infallible>(response),
                                None => {
                                    let _released_when_dropped = pending;
                                    std::future::pending().await
                                }
                            }
                        }
                    });
                    let connection = tokio::spawn(async move {
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                    connections.lock().unwrap().push(connection);
                }
            })
        };
        Scripted {
            addr,
            connections,
            requests,
            released,
            accept,
        }
    }

    /// Waits (with the hang guard) until `count` requests were given up: for `Silent` and
    /// `OneMessageThenHang`, the proxy reset their streams.
    pub async fn wait_released(&self, count: usize) {
        guard("scripted upstream streams released", async {
            while self.released.load(Ordering::SeqCst) < count {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        *self.requests.lock().unwrap()
    }

    /// Kills every connection: their tasks are aborted and the sockets dropped, without any
    /// HTTP/2 goodbye.
    pub fn kill_connections(&self) {
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.accept.abort();
        self.kill_connections();
    }
}

/// The answer to one request; `guard` lives as long as its response body.
fn answer(
    script: &Script,
    open: &Mutex<Vec<mpsc::Sender<Bytes>>>,
    guard: Released,
) -> Response<BoxBody> {
    let grpc = |body: BoxBody| {
        Response::builder()
            .header(header::CONTENT_TYPE, "application/grpc")
            .body(body)
            .unwrap()
    };
    match script {
        Script::Http {
            status,
            content_type,
            body,
        } => Response::builder()
            .status(*status)
            .header(header::CONTENT_TYPE, *content_type)
            .body(BoxBody::new(Full::new(Bytes::from_static(body.as_bytes()))))
            .unwrap(),
        Script::NoTrailers => grpc(BoxBody::new(Full::new(weir_codec::frame::encode_message(
            SCRIPTED_MESSAGE,
        )))),
        Script::OneMessageThenHang => {
            let (tx, rx) = mpsc::channel::<Bytes>(4);
            tx.try_send(weir_codec::frame::encode_message(SCRIPTED_MESSAGE))
                .unwrap();
            open.lock().unwrap().push(tx);
            let frames = ReceiverStream::new(rx).map(move |data| {
                let _ = &guard;
                Ok::<_, Infallible>(hyper::body::Frame::data(data))
            });
            grpc(BoxBody::new(StreamBody::new(frames)))
        }
        Script::Chunks(chunks) => {
            let mut frames: Vec<Result<hyper::body::Frame<Bytes>, Infallible>> = chunks
                .iter()
                .map(|chunk| Ok(hyper::body::Frame::data(chunk.clone())))
                .collect();
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            frames.push(Ok(hyper::body::Frame::trailers(trailers)));
            let frames = tokio_stream::iter(frames).map(move |frame| {
                let _ = &guard;
                frame
            });
            grpc(BoxBody::new(StreamBody::new(frames)))
        }
        Script::Silent => unreachable!("a silent upstream does not answer"),
    }
}

/// A native gRPC response read to its end: head, body bytes and HTTP trailers.
#[derive(Debug)]
pub struct NativeReply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl NativeReply {
    /// `grpc-status` from the trailers, or from the headers of a trailers-only response.
    pub fn code(&self) -> i32 {
        let block = self.trailers.as_ref().unwrap_or(&self.headers);
        block
            .get("grpc-status")
            .unwrap_or_else(|| panic!("no grpc-status in {self:?}"))
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    pub fn message(&self) -> String {
        let block = self.trailers.as_ref().unwrap_or(&self.headers);
        block
            .get("grpc-message")
            .map(|v| weir_codec::status::decode_message(v.as_bytes()))
            .unwrap_or_default()
    }
}

/// Sends a native gRPC request (build it with [`Client::builder`]; `content-type` and `te`
/// are added) and reads the response to its end.
pub async fn native_call(
    client: &mut Client,
    request: http::request::Builder,
    body: Bytes,
) -> NativeReply {
    let request = request
        .method("POST")
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers")
        .body(BoxBody::full(body))
        .unwrap();
    let response = client.send(request).await;
    let (parts, body) = response.into_parts();
    let collected = guard("native body", body.collect()).await.unwrap();
    let trailers = collected.trailers().cloned();
    NativeReply {
        status: parts.status,
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
    }
}
