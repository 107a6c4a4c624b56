//! gRPC over WebTransport: every call type, full duplex included, from a browser.
//!
//! The mapping is specified in `docs/protocol/webtransport.md`: one WebTransport session per
//! QUIC connection, one bidirectional stream per call; on each stream a request header block,
//! message frames identical to gRPC's and the end of the request; back a response header
//! block, messages and a trailer block.
//!
//! The server runs on [quinn] and drives the HTTP/3 side of the session itself (SETTINGS, the
//! extended CONNECT, capsules), with the encodings of `web-transport-proto`: what the
//! specification says about sessions (one per connection, which streams are refused, how a
//! session is closed with a code and reason a page can read) is then weir's to keep.
//!
//! [`WebTransportServer`] accepts sessions and hands each call, as a native gRPC request, to
//! the same kind of `tower::Service` the HTTP front doors use — an in-process tonic router or
//! the upstream [`Proxy`](crate::proxy::Proxy) — so bidi calls from a browser reach an
//! upstream HTTP/2 stream with backpressure both ways.
//!
//! ```no_run
//! use weir::webtransport::{ServerIdentity, WebTransportConfig, WebTransportServer};
//!
//! # async fn run(grpc_service: weir::proxy::Proxy) -> Result<(), weir::body::BoxError> {
//! let server = WebTransportServer::bind(
//!     "127.0.0.1:4433".parse()?,
//!     ServerIdentity::development()?,
//!     WebTransportConfig::default(),
//! )?;
//! println!("certificate hashes: {:?}", server.certificate_hashes().hex());
//! server.serve(grpc_service, std::future::pending()).await;
//! # Ok(()) }
//! ```

mod call;
pub mod discovery;
mod identity;
mod session;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower_service::Service;
use weir_codec::webtransport::{Version, http3};

use identity::Certified;
pub use identity::{CertificateHashes, ServerIdentity};

use crate::Cors;
use crate::body::{BoxBody, BoxError};
use crate::cors::OriginCheck;
use crate::edge::{Edge, EdgeConfig};

/// The newest version of `docs/protocol/webtransport.md` this server speaks (query parameter
/// `v`), the one its [`url`](WebTransportServer::url) names; it serves every older one too.
pub const PROTOCOL_VERSION: &str = Version::LATEST.as_str();

/// Unidirectional streams a client may have open: HTTP/3's three (control, QPACK encoder and
/// decoder) and a few spare (§6).
const MAX_UNI_STREAMS: u32 = 8;
/// Datagrams are not part of the mapping; the few a client sends anyway are dropped unread,
/// from a buffer this small.
const DATAGRAM_BUFFER: usize = 64 * 1024;

pub use weir_codec::webtransport::codes;

/// Settings of a WebTransport listener. The defaults are safe.
#[derive(Debug, Clone)]
pub struct WebTransportConfig {
    pub(crate) path: String,
    pub(crate) cors: Cors,
    pub(crate) max_sessions: usize,
    pub(crate) max_sessions_per_client: usize,
    pub(crate) max_calls_per_session: u32,
    pub(crate) edge: Arc<EdgeConfig>,
    pub(crate) header_timeout: Duration,
    pub(crate) keep_alive: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) rotate_every: Duration,
    pub(crate) own_ports: Vec<u16>,
    pub(crate) shutdown_grace: Duration,
}

impl Default for WebTransportConfig {
    fn default() -> Self {
        WebTransportConfig {
            path: "/weir".to_owned(),
            cors: Cors::default(),
            max_sessions: 1000,
            max_sessions_per_client: 100,
            max_calls_per_session: 100,
            edge: Arc::new(EdgeConfig::default()),
            header_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            rotate_every: Duration::from_secs(11 * 24 * 3600),
            own_ports: Vec::new(),
            shutdown_grace: Duration::ZERO,
        }
    }
}

impl WebTransportConfig {
    /// Session path (default `/weir`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Which page origins may open sessions: the same policy as CORS (default: none but the
    /// server's own origin and non-browser clients).
    pub fn cors(mut self, cors: Cors) -> Self {
        self.cors = cors;
        self
    }

    /// Ports on the session's own host whose pages may open sessions whatever the CORS policy
    /// says: the gateway's HTTP listeners, which serve its own pages (default: none).
    pub fn own_http_ports(mut self, ports: Vec<u16>) -> Self {
        self.own_ports = ports;
        self
    }

    /// Most concurrent sessions (default 1000); QUIC connections beyond it are refused
    /// (`CONNECTION_REFUSED`).
    pub fn max_sessions(mut self, sessions: usize) -> Self {
        self.max_sessions = sessions;
        self
    }

    /// Most concurrent sessions from one client IP address (default 100; a browser opens one
    /// per page, and many users may share an address behind a NAT). QUIC connections beyond
    /// it are refused (`CONNECTION_REFUSED`), so one client cannot take every session.
    pub fn max_sessions_per_client(mut self, sessions: usize) -> Self {
        self.max_sessions_per_client = sessions;
        self
    }

    /// Most concurrent calls per session (default 100), as QUIC stream credit: a client that
    /// opens more waits.
    pub fn max_calls_per_session(mut self, calls: u32) -> Self {
        self.max_calls_per_session = calls;
        self
    }

    /// The call edge's limits (see [`crate::edge`]): message size in each direction, header
    /// list size, longest call. A gateway gives its HTTP listeners the same [`EdgeConfig`], so
    /// that every door applies one policy.
    pub fn edge(mut self, edge: EdgeConfig) -> Self {
        self.edge = Arc::new(edge);
        self
    }

    /// Largest request header list (default 16 KiB, counted as HTTP/2 does: name, value and
    /// 32 bytes per field); a header block frame longer than this is refused from its 5-byte
    /// prefix, before it is read. Shorthand for the [`edge`](Self::edge)'s
    /// `max_header_list_size`.
    pub fn max_header_block(mut self, bytes: usize) -> Self {
        Arc::make_mut(&mut self.edge).max_header_list_size = bytes;
        self
    }

    /// Largest message in both directions (default 4 MiB): shorthand for the
    /// [`edge`](Self::edge)'s request and response limits.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        let edge = Arc::make_mut(&mut self.edge);
        edge.max_request_message_size = bytes;
        edge.max_response_message_size = bytes;
        self
    }

    /// How long a new call stream may take to send its request header block (default 10 s);
    /// a stream that takes longer is reset with `PROTOCOL_ERROR`.
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// QUIC keep-alive interval (default 10 s) and idle timeout (default 60 s).
    pub fn keep_alive(mut self, interval: Duration, idle_timeout: Duration) -> Self {
        self.keep_alive = interval;
        self.idle_timeout = idle_timeout;
        self
    }

    /// How long open calls may go on after shutdown begins (default: none, every session is
    /// closed at once). Meanwhile new sessions are refused, new calls on open sessions are
    /// refused with `REFUSED` (the client sees `UNAVAILABLE` and may retry elsewhere), and each
    /// session closes as soon as its last call ended: a server without open calls stops at
    /// once. Sessions still open when the grace period ends are closed, which cancels their
    /// calls.
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = weir::webtransport::WebTransportConfig::default()
    ///     .shutdown_grace(Duration::from_secs(30));
    /// # let _ = config;
    /// ```
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// How often a development identity is replaced (default 11 days; it is valid for 13).
    pub fn rotate_every(mut self, every: Duration) -> Self {
        self.rotate_every = every;
        self
    }
}

/// A bound WebTransport (HTTP/3) listener.
pub struct WebTransportServer {
    endpoint: quinn::Endpoint,
    identity: ServerIdentity,
    hashes: CertificateHashes,
    config: Arc<WebTransportConfig>,
    addr: SocketAddr,
}

impl std::fmt::Debug for WebTransportServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebTransportServer")
            .field("addr", &self.addr)
            .finish()
    }
}

/// The QUIC and TLS settings of the listener (§2.1, §6).
fn server_config(
    identity: &Certified,
    config: &WebTransportConfig,
) -> Result<quinn::ServerConfig, BoxError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    // Exactly the calls, and the session's CONNECT stream.
    transport.max_concurrent_bidi_streams(quinn::VarInt::from_u32(
        config.max_calls_per_session.saturating_add(1),
    ));
    transport.max_concurrent_uni_streams(quinn::VarInt::from_u32(MAX_UNI_STREAMS));
    transport.max_idle_timeout(Some(config.idle_timeout.try_into()?));
    transport.keep_alive_interval(Some(config.keep_alive));
    transport.datagram_receive_buffer_size(Some(DATAGRAM_BUFFER));
    server.transport_config(Arc::new(transport));
    Ok(server)
}

impl WebTransportServer {
    /// Binds a UDP socket on `addr` with this identity.
    pub fn bind(
        addr: SocketAddr,
        identity: ServerIdentity,
        config: WebTransportConfig,
    ) -> Result<Self, BoxError> {
        let current = identity.current()?;
        let endpoint = quinn::Endpoint::server(server_config(&current, &config)?, addr)?;
        let addr = endpoint.local_addr()?;
        let hashes = CertificateHashes::new(&current);
        Ok(WebTransportServer {
            endpoint,
            identity,
            hashes,
            config: Arc::new(config),
            addr,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL clients open sessions with, for a host name or address `host`: the newest
    /// version of the mapping.
    pub fn url(&self, host: &str) -> String {
        format!(
            "https://{host}:{}{}?v={PROTOCOL_VERSION}",
            self.addr.port(),
            self.config.path
        )
    }

    /// The hashes of the certificate currently served, kept up to date across rotations.
    pub fn certificate_hashes(&self) -> CertificateHashes {
        self.hashes.clone()
    }

    /// Accepts sessions until `shutdown` completes; then closes every session (§2.4: a
    /// `DRAIN_WEBTRANSPORT_SESSION` capsule, then `CLOSE_WEBTRANSPORT_SESSION` with code 0
    /// and reason `shutting down`, which cancels the calls still open) and returns. With a
    /// [`shutdown_grace`](WebTransportConfig::shutdown_grace), sessions are closed as their
    /// calls end instead, within that time.
    pub async fn serve<S>(self, service: S, shutdown: impl Future<Output = ()>)
    where
        S: Service<Request<BoxBody>, Response = Response<BoxBody>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError> + Send + 'static,
    {
        let stop = CancellationToken::new();
        let sessions = Arc::new(Semaphore::new(self.config.max_sessions));
        let per_client = session::PerClient::default();
        let origin_check =
            OriginCheck::new(self.config.cors.clone(), self.config.own_ports.clone());
        let mut tasks = JoinSet::new();
        let mut rotation = JoinSet::new();
        if self.identity.is_development() {
            rotation.spawn(rotate(
                self.endpoint.clone(),
                self.identity.clone(),
                self.hashes.clone(),
                self.config.clone(),
                stop.clone(),
            ));
        }
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                incoming = self.endpoint.accept() => {
                    let Some(incoming) = incoming else { break };
                    let session = session::Session {
                        service: Edge::new(service.clone(), self.config.edge.clone()),
                        config: self.config.clone(),
                        sessions: sessions.clone(),
                        per_client: per_client.clone(),
                        origin_check: origin_check.clone(),
                        stop: stop.clone(),
                    };
                    tasks.spawn(session.run(incoming));
                }
                () = &mut shutdown => break,
            }
            // Reap finished session tasks so the set does not grow.
            while tasks.try_join_next().is_some() {}
        }
        stop.cancel();
        // Each session closes itself: at once, or once its calls ended (or at the end of the
        // grace period). Connections that arrive meanwhile are refused.
        loop {
            tokio::select! {
                incoming = self.endpoint.accept() => match incoming {
                    Some(incoming) => incoming.refuse(),
                    None => break,
                },
                joined = tasks.join_next() => if joined.is_none() { break },
            }
        }
        while tasks.join_next().await.is_some() {}
        self.endpoint
            .close(session::h3_code(http3::NO_ERROR), b"shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

/// Replaces a development certificate before it expires. Sessions already open keep theirs.
async fn rotate(
    endpoint: quinn::Endpoint,
    identity: ServerIdentity,
    hashes: CertificateHashes,
    config: Arc<WebTransportConfig>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(config.rotate_every) => {}
            () = stop.cancelled() => return,
        }
        let rotated = identity.current().and_then(|next| {
            endpoint.set_server_config(Some(server_config(&next, &config)?));
            Ok(next)
        });
        match rotated {
            Ok(next) => {
                hashes.set(&next);
                tracing::info!(hashes = ?hashes.hex(), "rotated the WebTransport development certificate");
            }
            Err(e) => tracing::warn!("cannot rotate the WebTransport development certificate: {e}"),
        }
    }
}
