//! Serving a service on a TCP listener: HTTP/1.1 and cleartext HTTP/2 (h2c with prior
//! knowledge) on one port, with limits and graceful shutdown.
//!
//! Browsers reach HTTP/2 only over TLS; cleartext HTTP/2 is for native gRPC clients and
//! gRPC-Web clients outside browsers (such as Node's).
//!
//! # Stopping without losing calls
//!
//! A stop behind a load balancer has two phases:
//!
//! 1. **Drain** ([`Drain::start`]): the health check reports the instance down (see
//!    `weir::admin`) while every listener keeps accepting, so requests the load balancer still
//!    sends are served. HTTP/2 connections get a GOAWAY (calls in flight go on; the client
//!    opens a new connection for new calls) and HTTP/1.1 responses carry `Connection: close`,
//!    so clients move to other instances without a request ever meeting a closed connection.
//! 2. **Close** (the `shutdown` future of [`Server::serve`]): the listener closes, idle
//!    connections are closed, and calls in flight have the [grace
//!    period](Server::grace_period) to finish.
//!
//! ```no_run
//! use std::time::Duration;
//! use weir::server::{Drain, Server};
//!
//! # async fn run(service: weir::admin::Admin) -> std::io::Result<()> {
//! let drain = Drain::new();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let shutdown = {
//!     let drain = drain.clone();
//!     async move {
//!         let _ = tokio::signal::ctrl_c().await;
//!         drain.start();
//!         // Longer than the load balancer's health-check interval × fall count.
//!         tokio::time::sleep(Duration::from_secs(5)).await;
//!     }
//! };
//! Server::new().drain(drain).serve(listener, service, shutdown).await;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Version, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;
use tower_service::Service;

use crate::body::BoxError;
use crate::edge::Peer;

/// HTTP server settings. The defaults are safe for an Internet-facing listener.
#[derive(Debug, Clone)]
pub struct Server {
    max_header_list_size: u32,
    max_concurrent_streams: u32,
    keep_alive_interval: Option<Duration>,
    keep_alive_timeout: Duration,
    header_read_timeout: Duration,
    idle_timeout: Option<Duration>,
    max_connections: usize,
    grace_period: Duration,
    drain: Drain,
}

impl Default for Server {
    fn default() -> Self {
        Server::new()
    }
}

impl Server {
    /// Defaults: 16 KiB of request headers, 200 concurrent HTTP/2 streams per connection,
    /// HTTP/2 PING every 30 s (connection dropped when unanswered for 20 s), 30 s to send
    /// request headers, connections without a call closed after 5 minutes, 10 000 connections
    /// per listener, 10 s for calls to finish at shutdown.
    pub fn new() -> Self {
        Server {
            max_header_list_size: 16 * 1024,
            max_concurrent_streams: 200,
            keep_alive_interval: Some(Duration::from_secs(30)),
            keep_alive_timeout: Duration::from_secs(20),
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Some(Duration::from_secs(300)),
            max_connections: 10_000,
            grace_period: Duration::from_secs(10),
            drain: Drain::new(),
        }
    }

    /// The drain phase this server follows (see the [module docs](self)): once `drain`
    /// starts, HTTP/2 connections get a GOAWAY and HTTP/1.1 responses carry
    /// `Connection: close`, while the listener keeps accepting until the `shutdown` future of
    /// [`serve`](Self::serve) completes. Without it there is no drain phase.
    pub fn drain(mut self, drain: Drain) -> Self {
        self.drain = drain;
        self
    }

    /// Largest request header block accepted over HTTP/2, in bytes (default 16 KiB); larger
    /// blocks are refused by the HTTP/2 layer. Over HTTP/1.1 the head is read up to hyper's
    /// buffer (about 400 KiB, HTTP 431 beyond) and the gRPC-Web layer applies its own limit
    /// ([`GrpcWebLayer::max_header_list_size`](crate::grpc_web::GrpcWebLayer::max_header_list_size)).
    pub fn max_header_list_size(mut self, bytes: u32) -> Self {
        self.max_header_list_size = bytes;
        self
    }

    /// Most concurrent calls on one HTTP/2 connection.
    pub fn max_concurrent_streams(mut self, streams: u32) -> Self {
        self.max_concurrent_streams = streams;
        self
    }

    /// Interval of HTTP/2 PINGs to clients (`None`: no pings).
    pub fn keep_alive_interval(mut self, interval: Option<Duration>) -> Self {
        self.keep_alive_interval = interval;
        self
    }

    /// HTTP/2 PINGs to clients every `interval` (`None`: none); a connection whose PING is
    /// not answered within `timeout` is closed.
    pub fn keep_alive(mut self, interval: Option<Duration>, timeout: Duration) -> Self {
        self.keep_alive_interval = interval;
        self.keep_alive_timeout = timeout;
        self
    }

    /// How long a client may take to send its request head (HTTP/1.1) or, over TLS, to
    /// finish the handshake.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// How long a connection may stay open without a call in progress (default 5 minutes;
    /// `None`: no limit). Then it is closed gracefully: an HTTP/2 connection gets a GOAWAY, an
    /// idle HTTP/1.1 connection is closed. A call in progress, a long stream included, keeps
    /// its connection open however quiet it is (HTTP/2 PINGs watch that the client is alive).
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Most connections open at once on one listener (default 10 000). A connection beyond
    /// the limit is accepted and closed at once, so that the listen queue does not hold
    /// clients waiting for a slot; the clients see their connection closed and may retry.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections;
        self
    }

    /// How long calls may run on after shutdown starts before their connections are cut.
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace_period = grace;
        self
    }

    fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            // hyper's HTTP/1.1 buffer keeps its default (~400 KiB): it bounds the request
            // head (431 beyond it; the gRPC-Web layer refuses header lists over its own limit
            // with RESOURCE_EXHAUSTED), but it also caps how much response hyper queues per
            // write, and a 24 KiB cap cut HTTP/1.1 streaming of large messages to less than
            // half (docs/benchmarks.md).
            .header_read_timeout(self.header_read_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(self.max_header_list_size)
            .max_concurrent_streams(self.max_concurrent_streams)
            .keep_alive_interval(self.keep_alive_interval)
            .keep_alive_timeout(self.keep_alive_timeout);
        builder
    }

    /// Serves `service` on `listener` in cleartext (HTTP/1.1 and h2c) until `shutdown`
    /// completes, then stops accepting, lets open calls finish within the grace period and
    /// returns.
    pub async fn serve<S, B>(
        &self,
        listener: TcpListener,
        service: S,
        shutdown: impl Future<Output = ()>,
    ) where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.serve_with(
            listener,
            |stream| async move { Ok(stream) },
            service,
            shutdown,
        )
        .await;
    }

    /// Like [`serve`](Self::serve), over TLS (HTTP/1.1 and HTTP/2 chosen by ALPN; see
    /// [`crate::tls`]). The handshake runs on the connection's own task, bounded by the
    /// header read timeout, so a slow client cannot stall others.
    #[cfg(feature = "tls")]
    pub async fn serve_tls<S, B>(
        &self,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        service: S,
        shutdown: impl Future<Output = ()>,
    ) where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let limit = self.header_read_timeout;
        let handshake = move |stream| {
            let acceptor = acceptor.clone();
            async move {
                tokio::time::timeout(limit, acceptor.accept(stream))
                    .await
                    .map_err(|_| {
                        std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
                    })?
            }
        };
        self.serve_with(listener, handshake, service, shutdown)
            .await;
    }

    async fn serve_with<S, B, A, F, IO>(
        &self,
        listener: TcpListener,
        accept: A,
        service: S,
        shutdown: impl Future<Output = ()>,
    ) where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
        A: Fn(TcpStream) -> F + Clone + Send + 'static,
        F: Future<Output = std::io::Result<IO>> + Send + 'static,
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let builder = Arc::new(self.builder());
        // Connections are told to close (HTTP/2 GOAWAY, HTTP/1.1 at the end of the current
        // response, at once when idle) when the listener closes.
        let closing = Drain::new();
        let mut connections = tokio::task::JoinSet::new();
        let slots = Arc::new(Semaphore::new(self.max_connections));
        // When a refused connection was last logged: at most one warning per minute.
        let mut warned: Option<Instant> = None;
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            // Forget connections that have ended, so the set stays as small as what is open.
            while connections.try_join_next().is_some() {}
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let Ok(slot) = slots.clone().try_acquire_owned() else {
                            if warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                                warned = Some(Instant::now());
                                tracing::warn!(
                                    %peer,
                                    max_connections = self.max_connections,
                                    "refusing connections: the listener is at its connection limit"
                                );
                            }
                            drop(stream);
                            continue;
                        };
                        if let Err(e) = stream.set_nodelay(true) {
                            tracing::debug!(%peer, "set_nodelay failed: {e}");
                        }
                        let connection = Connection {
                            builder: builder.clone(),
                            drain: self.drain.clone(),
                            closing: closing.clone(),
                            peer,
                            idle_timeout: self.idle_timeout,
                        };
                        let service = service.clone();
                        let accept = accept.clone();
                        connections.spawn(async move {
                            let _slot = slot;
                            match accept(stream).await {
                                Ok(io) => connection.serve(io, service).await,
                                Err(e) => tracing::debug!(%peer, "connection set-up failed: {e}"),
                            }
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        closing.start();
        let all_closed = async { while connections.join_next().await.is_some() {} };
        tokio::select! {
            () = all_closed => tracing::debug!("all connections closed"),
            () = tokio::time::sleep(self.grace_period) => {
                tracing::warn!(grace = ?self.grace_period, "grace period over; cutting the remaining connections");
                connections.abort_all();
            }
        }
    }
}

/// A signal that starts the drain phase of a stop (see the [module docs](self)), shared by
/// every listener that should drain together. Clones share their state.
#[derive(Debug, Clone)]
pub struct Drain {
    started: Arc<watch::Sender<bool>>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain::new()
    }
}

impl Drain {
    /// A drain that has not started.
    pub fn new() -> Self {
        Drain {
            started: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Starts the drain on every server that follows it. Idempotent.
    pub fn start(&self) {
        self.started.send_replace(true);
    }

    /// Whether [`start`](Self::start) was called.
    pub fn is_started(&self) -> bool {
        *self.started.borrow()
    }

    /// Completes once the drain has started (at once if it has).
    pub fn started(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut started = self.started.subscribe();
        async move {
            // The sender lives in `self`'s clones and in this receiver's channel: it cannot
            // be dropped while this waits, so an error only means "never".
            if started.wait_for(|started| *started).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// One accepted connection and the signals it follows.
struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    drain: Drain,
    closing: Drain,
    peer: SocketAddr,
    idle_timeout: Option<Duration>,
}

/// What a connection's requests tell the connection task.
struct ConnectionState {
    /// A request arrived over HTTP/2.
    http2: AtomicBool,
    /// Send a GOAWAY now: an HTTP/2 request arrived during the drain.
    goaway: Notify,
    /// Calls in progress: from their request until their response body is gone.
    active: AtomicUsize,
    /// When the last call ended (or the connection opened).
    last_call: Mutex<Instant>,
}

impl ConnectionState {
    fn new() -> Self {
        ConnectionState {
            http2: AtomicBool::new(false),
            goaway: Notify::new(),
            active: AtomicUsize::new(0),
            last_call: Mutex::new(Instant::now()),
        }
    }

    /// When the connection will have been idle for `timeout`, if no call is in progress.
    fn idle_until(&self, timeout: Duration) -> Option<Instant> {
        if self.active.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let last = *self
            .last_call
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(last + timeout)
    }
}

/// Counts one call as in progress on its connection until dropped (with the response body).
struct CallInProgress(Arc<ConnectionState>);

impl CallInProgress {
    fn new(state: &Arc<ConnectionState>) -> Self {
        state.active.fetch_add(1, Ordering::SeqCst);
        CallInProgress(state.clone())
    }
}

impl Drop for CallInProgress {
    fn drop(&mut self) {
        *self
            .0
            .last_call
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Waits until the connection has been idle for `timeout` (never without one): checked when
/// the time comes, since calls may have started and ended meanwhile.
async fn idle_for(state: &ConnectionState, timeout: Option<Duration>) {
    let Some(timeout) = timeout else {
        return std::future::pending().await;
    };
    loop {
        match state.idle_until(timeout) {
            Some(at) if at <= Instant::now() => return,
            Some(at) => tokio::time::sleep_until(at).await,
            // A call in progress: look again later.
            None => tokio::time::sleep(timeout).await,
        }
    }
}

impl Connection {
    async fn serve<S, B, IO>(self, io: IO, service: S)
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let state = Arc::new(ConnectionState::new());
        let service = DrainAware {
            inner: service,
            drain: self.drain.clone(),
            state: state.clone(),
            peer: Peer(self.peer),
        };
        let connection = self
            .builder
            .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
            .into_owned();
        let mut connection = std::pin::pin!(connection);
        let mut drain_started = std::pin::pin!(self.drain.started());
        let mut closing = std::pin::pin!(self.closing.started());
        let (mut drain_seen, mut goaway_sent, mut closed) = (false, false, false);
        let mut idle = std::pin::pin!(idle_for(&state, self.idle_timeout));
        loop {
            tokio::select! {
                () = &mut idle, if !goaway_sent => {
                    tracing::debug!(peer = %self.peer, "closing a connection idle for {:?}", self.idle_timeout);
                    goaway_sent = true;
                    connection.as_mut().graceful_shutdown();
                }
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        log_connection_error(self.peer, e.as_ref());
                    }
                    return;
                }
                // An HTTP/2 connection is sent its GOAWAY when the drain starts; one whose
                // first request comes later, then. HTTP/1.1 connections stay open: their
                // responses carry `Connection: close` (DrainAware).
                () = &mut drain_started, if !drain_seen => {
                    drain_seen = true;
                    if state.http2.load(Ordering::Relaxed) && !goaway_sent {
                        goaway_sent = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
                () = state.goaway.notified(), if !goaway_sent => {
                    goaway_sent = true;
                    connection.as_mut().graceful_shutdown();
                }
                () = &mut closing, if !closed => {
                    closed = true;
                    if !goaway_sent {
                        goaway_sent = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        }
    }
}

/// Marks HTTP/1.1 responses `Connection: close` during the drain, and tells the connection
/// task about HTTP/2 requests. Also gives each request its client's address ([`Peer`]).
#[derive(Clone)]
struct DrainAware<S> {
    inner: S,
    drain: Drain,
    state: Arc<ConnectionState>,
    peer: Peer,
}

impl<S, B> Service<Request<Incoming>> for DrainAware<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<InProgressBody<B>>;
    type Error = S::Error;
    type Future = DrainAwareFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(self.peer);
        let http1 = request.version() < Version::HTTP_2;
        if !http1 && !self.state.http2.swap(true, Ordering::Relaxed) && self.drain.is_started() {
            self.state.goaway.notify_one();
        }
        DrainAwareFuture {
            call: Some(CallInProgress::new(&self.state)),
            inner: self.inner.call(request),
            drain: http1.then(|| self.drain.clone()),
        }
    }
}

pin_project! {
    /// The response future of [`DrainAware`].
    struct DrainAwareFuture<F> {
        #[pin]
        inner: F,
        // For HTTP/1.x requests.
        drain: Option<Drain>,
        call: Option<CallInProgress>,
    }
}

pin_project! {
    /// A response body that keeps its call counted as in progress (for the idle timeout).
    struct InProgressBody<B> {
        #[pin]
        inner: B,
        call: Option<CallInProgress>,
    }
}

impl<B: http_body::Body> http_body::Body for InProgressBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if frame.is_none() {
            this.call.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<F, B, E> Future for DrainAwareFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<InProgressBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let call = this.call;
        let mut response = ready!(this.inner.poll(cx)).map(|response| {
            response.map(|inner| InProgressBody {
                inner,
                call: call.take(),
            })
        });
        if let (Ok(response), Some(drain)) = (&mut response, this.drain.as_ref())
            && drain.is_started()
        {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        Poll::Ready(response)
    }
}

fn log_connection_error(peer: SocketAddr, err: &(dyn std::error::Error + 'static)) {
    tracing::debug!(%peer, "connection ended with an error: {err}");
}
