//! Serving a service on a TCP listener: HTTP/1.1 and cleartext HTTP/2 (h2c with prior
//! knowledge) on one port, with limits and graceful shutdown.
//!
//! Browsers reach HTTP/2 only over TLS; cleartext HTTP/2 is for native gRPC clients and
//! gRPC-Web clients outside browsers (such as Node's).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tower_service::Service;

use crate::body::BoxError;

/// HTTP server settings. The defaults are safe for an Internet-facing listener.
#[derive(Debug, Clone)]
pub struct Server {
    max_header_list_size: u32,
    max_concurrent_streams: u32,
    keep_alive_interval: Option<Duration>,
    keep_alive_timeout: Duration,
    header_read_timeout: Duration,
    grace_period: Duration,
}

impl Default for Server {
    fn default() -> Self {
        Server::new()
    }
}

impl Server {
    /// Defaults: 16 KiB of request headers, 200 concurrent HTTP/2 streams per connection,
    /// HTTP/2 PING every 30 s (connection dropped when unanswered for 20 s), 30 s to send
    /// request headers, 10 s for calls to finish at shutdown.
    pub fn new() -> Self {
        Server {
            max_header_list_size: 16 * 1024,
            max_concurrent_streams: 200,
            keep_alive_interval: Some(Duration::from_secs(30)),
            keep_alive_timeout: Duration::from_secs(20),
            header_read_timeout: Duration::from_secs(30),
            grace_period: Duration::from_secs(10),
        }
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
        let graceful = GracefulShutdown::new();
        let mut connections = tokio::task::JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            // Forget connections that have ended, so the set stays as small as what is open.
            while connections.try_join_next().is_some() {}
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        if let Err(e) = stream.set_nodelay(true) {
                            tracing::debug!(%peer, "set_nodelay failed: {e}");
                        }
                        let builder = builder.clone();
                        let watcher = graceful.watcher();
                        let service = TowerToHyperService::new(service.clone());
                        let accept = accept.clone();
                        connections.spawn(async move {
                            let io = match accept(stream).await {
                                Ok(io) => io,
                                Err(e) => {
                                    tracing::debug!(%peer, "connection set-up failed: {e}");
                                    return;
                                }
                            };
                            let connection = builder
                                .serve_connection(TokioIo::new(io), service)
                                .into_owned();
                            if let Err(e) = watcher.watch(connection).await {
                                log_connection_error(peer, e.as_ref());
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
        tokio::select! {
            () = graceful.shutdown() => tracing::debug!("all connections closed"),
            () = tokio::time::sleep(self.grace_period) => {
                tracing::warn!(grace = ?self.grace_period, "grace period over; cutting the remaining connections");
                connections.abort_all();
            }
        }
    }
}

fn log_connection_error(peer: SocketAddr, err: &(dyn std::error::Error + 'static)) {
    tracing::debug!(%peer, "connection ended with an error: {err}");
}
