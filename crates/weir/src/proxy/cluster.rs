//! An upstream cluster: its addresses, kept fresh by re-resolving DNS, one HTTP/2 connection
//! per address, and power-of-two-choices balancing over them.
//!
//! Calls are sent from the caller's own task: picking an address and opening a stream on its
//! connection takes no hop through another task. An address whose connection cannot be
//! established is passed over for a while (growing back-off) and the call moves on to another
//! address — nothing was sent yet, so that is always safe.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::future::{self, BoxFuture};
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use crate::body::{BoxBody, BoxError};

/// How to reach one upstream cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub(crate) name: String,
    pub(crate) targets: Vec<(String, u16)>,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) connect_timeout: Duration,
    pub(crate) resolve_interval: Duration,
    pub(crate) keep_alive_interval: Option<Duration>,
    pub(crate) keep_alive_timeout: Duration,
}

impl ClusterConfig {
    /// A cluster named `name` (used in logs and metrics) reached over cleartext HTTP/2 (h2c).
    pub fn new(name: impl Into<String>) -> Self {
        ClusterConfig {
            name: name.into(),
            targets: Vec::new(),
            tls: None,
            connect_timeout: Duration::from_secs(5),
            resolve_interval: Duration::from_secs(30),
            keep_alive_interval: None,
            keep_alive_timeout: Duration::from_secs(20),
        }
    }

    /// Adds an address, `host:port`; host names are resolved and re-resolved periodically.
    pub fn address(mut self, host: impl Into<String>, port: u16) -> Self {
        self.targets.push((host.into(), port));
        self
    }

    /// Speaks TLS (ALPN `h2`, set by weir) to the upstream with this client configuration.
    pub fn tls(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// How long to wait for a connection (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How often host names are resolved again (default 30 s).
    pub fn resolve_interval(mut self, interval: Duration) -> Self {
        self.resolve_interval = interval;
        self
    }

    /// HTTP/2 PING interval on upstream connections while calls are open (`None`, the
    /// default: off) and how long an unanswered PING may take before the connection is dropped
    /// (default 20 s).
    ///
    /// Off by default because gRPC servers police PINGs: grpc-go, for one, answers a client
    /// that pings more often than every 5 minutes (its default `EnforcementPolicy.MinTime`)
    /// with `GOAWAY ENHANCE_YOUR_CALM "too_many_pings"`, which ends every stream on the
    /// connection. Turn it on for upstreams that permit it. Dead upstream connections are
    /// noticed without it by TCP keep-alive (probes after 60 s of silence, every 10 s).
    pub fn keep_alive(mut self, interval: Option<Duration>, timeout: Duration) -> Self {
        self.keep_alive_interval = interval;
        self.keep_alive_timeout = timeout;
        self
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A cluster's calls: a cheap-to-clone handle onto its endpoints.
#[derive(Clone)]
pub(crate) struct Cluster {
    pub(crate) name: Arc<str>,
    shared: Arc<Shared>,
}

struct Shared {
    /// The addresses DNS gave last, each with its connection; replaced as a whole.
    endpoints: RwLock<Arc<[Arc<Endpoint>]>>,
    connect_timeout: Duration,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("name", &self.name).finish()
    }
}

impl Cluster {
    /// Starts the cluster's resolver task; must run inside a tokio runtime. The task ends once
    /// the last handle is dropped.
    pub(crate) fn start(config: ClusterConfig) -> Self {
        let shared = Arc::new(Shared {
            endpoints: RwLock::new(Arc::from(Vec::new())),
            connect_timeout: config.connect_timeout,
        });
        let name: Arc<str> = config.name.clone().into();
        tokio::spawn(resolve(config, Arc::downgrade(&shared)));
        Cluster { name, shared }
    }

    fn endpoints(&self) -> Arc<[Arc<Endpoint>]> {
        self.shared
            .endpoints
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sends a call to one of the cluster's endpoints. Waits for an address up to the connect
    /// timeout (at start, DNS may not have answered yet).
    pub(crate) async fn call(
        &self,
        request: Request<BoxBody>,
    ) -> Result<Response<Incoming>, BoxError> {
        let connect_timeout = self.shared.connect_timeout;
        let started = Instant::now();
        let mut endpoints = self.endpoints();
        // With no address at all (DNS gave nothing, or has not answered yet) wait for one.
        while endpoints.is_empty() {
            if started.elapsed() >= connect_timeout {
                return Err(format!(
                    "no address of cluster {:?} resolved within {connect_timeout:?}",
                    self.name
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            endpoints = self.endpoints();
        }
        // One connect timeout for the whole call, however many addresses it tries.
        let deadline = started + connect_timeout;
        let mut tried = vec![false; endpoints.len()];
        let mut request = request;
        let mut last_error: Option<BoxError> = None;
        while let Some(index) = pick(&endpoints, &tried) {
            tried[index] = true;
            let endpoint = &endpoints[index];
            if Instant::now() >= deadline {
                last_error.get_or_insert_with(|| {
                    format!(
                        "no connection to cluster {:?} within the connect timeout ({connect_timeout:?})",
                        self.name
                    )
                    .into()
                });
                break;
            }
            match endpoint.send(request, connect_timeout, deadline).await {
                Ok(mut response) => {
                    response
                        .extensions_mut()
                        .insert(crate::edge::Upstream(endpoint.addr));
                    return Ok(response);
                }
                // Not sent: the connection could not be made; another address may do.
                Err(Unsent {
                    request: back,
                    error,
                }) => {
                    tracing::debug!(cluster = %self.name, addr = %endpoint.addr, "{error}");
                    request = *back;
                    last_error = Some(error);
                }
                Err(Failed(error)) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| "no address to call".into()))
    }
}

/// Power of two choices among the endpoints not tried yet, preferring those not backing off:
/// the one with fewer calls in flight of two picked at random.
fn pick(endpoints: &[Arc<Endpoint>], tried: &[bool]) -> Option<usize> {
    let now = Instant::now();
    let untried = |i: &usize| !tried[*i];
    let usable = |i: &usize| endpoints[*i].usable(now);
    // Addresses backing off are passed over, unless all are: then they are tried anyway
    // rather than failing without trying.
    let prefer_usable = (0..endpoints.len()).filter(untried).any(|i| usable(&i));
    let candidates = || {
        (0..endpoints.len())
            .filter(untried)
            .filter(move |i| !prefer_usable || usable(i))
    };
    match candidates().count() {
        0 => None,
        1 => candidates().next(),
        n => {
            let a = fastrand::usize(..n);
            let b = (a + 1 + fastrand::usize(..n - 1)) % n;
            let (a, b) = (candidates().nth(a)?, candidates().nth(b)?);
            let load = |i: usize| endpoints[i].in_flight.load(Ordering::Relaxed);
            Some(if load(b) < load(a) { b } else { a })
        }
    }
}

/// Keeps the endpoint set equal to what the cluster's targets resolve to.
async fn resolve(config: ClusterConfig, shared: Weak<Shared>) {
    let mut last_good: HashMap<usize, Vec<SocketAddr>> = HashMap::new();
    loop {
        // Each address remembers the name it came from, for `:authority` and TLS.
        let mut found: HashMap<SocketAddr, &(String, u16)> = HashMap::new();
        let mut failures = 0;
        for (index, target) in config.targets.iter().enumerate() {
            let host = target.0.trim_start_matches('[').trim_end_matches(']');
            match tokio::net::lookup_host((host, target.1)).await {
                Ok(addrs) => {
                    let addrs: Vec<SocketAddr> = addrs.collect();
                    found.extend(addrs.iter().map(|addr| (*addr, target)));
                    last_good.insert(index, addrs);
                }
                Err(e) => {
                    failures += 1;
                    // One host's DNS hiccup must not drop its working addresses.
                    if let Some(previous) = last_good.get(&index) {
                        found.extend(previous.iter().map(|addr| (*addr, target)));
                    }
                    tracing::warn!(cluster = %config.name, host = %target.0, "cannot resolve upstream address: {e}");
                }
            }
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let current = shared
            .endpoints
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        // A DNS hiccup must not empty a working cluster: keep the old set when every lookup
        // failed.
        if failures < config.targets.len() || current.is_empty() {
            let mut next: Vec<Arc<Endpoint>> = Vec::with_capacity(found.len());
            for endpoint in current.iter() {
                if found.contains_key(&endpoint.addr) {
                    next.push(endpoint.clone());
                } else {
                    tracing::debug!(cluster = %config.name, addr = %endpoint.addr, "upstream address removed");
                }
            }
            let known: HashSet<SocketAddr> = current.iter().map(|e| e.addr).collect();
            for (addr, (host, port)) in &found {
                if known.contains(addr) {
                    continue;
                }
                match Endpoint::new(&config, host, *port, *addr) {
                    Ok(endpoint) => {
                        tracing::debug!(cluster = %config.name, %addr, "upstream address added");
                        next.push(Arc::new(endpoint));
                    }
                    Err(e) => {
                        tracing::warn!(cluster = %config.name, %addr, "cannot use upstream address: {e}");
                    }
                }
            }
            *shared
                .endpoints
                .write()
                .unwrap_or_else(PoisonError::into_inner) = Arc::from(next);
        }
        drop(shared);
        tokio::time::sleep(config.resolve_interval).await;
    }
}

/// How long an address whose connection failed is passed over: doubling from the first,
/// up to the last.
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(16);

/// One upstream address with its HTTP/2 connection, opened on first use and again whenever
/// it closed.
struct Endpoint {
    addr: SocketAddr,
    scheme: Scheme,
    authority: Authority,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    http2: http2::Builder<TokioExecutor>,
    /// The open connection, if any.
    connection: Mutex<Option<SendRequest<BoxBody>>>,
    /// The attempt under way, if any: calls that need the connection share it. It runs in a
    /// task of its own, so it completes (and its outcome counts) even when the calls that
    /// wait for it give up first.
    connecting: Mutex<Option<Attempt>>,
    /// The last failed attempt: when, why, and how many in a row.
    failure: Mutex<Option<(Instant, String)>>,
    failures: AtomicU32,
    in_flight: AtomicUsize,
}

/// A connection attempt that several calls may wait for.
type Attempt = future::Shared<BoxFuture<'static, Result<SendRequest<BoxBody>, String>>>;

/// Why a call did not go out on an endpoint.
enum SendError {
    /// Nothing was sent (no connection): the request comes back for another endpoint.
    Unsent {
        request: Box<Request<BoxBody>>,
        error: BoxError,
    },
    /// The call was sent and failed.
    Failed(BoxError),
}
use SendError::{Failed, Unsent};

/// Counts a call in flight on an endpoint while it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        InFlight(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Endpoint {
    fn new(
        config: &ClusterConfig,
        host: &str,
        port: u16,
        addr: SocketAddr,
    ) -> Result<Self, BoxError> {
        // IPv6 literals go in brackets in an authority, without them in a server name.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let authority = if bare.contains(':') {
            Authority::try_from(format!("[{bare}]:{port}"))?
        } else {
            Authority::try_from(format!("{bare}:{port}"))?
        };
        let (tls, scheme) = match &config.tls {
            Some(tls) => {
                let mut tls = (**tls).clone();
                tls.alpn_protocols = vec![b"h2".to_vec()];
                let name = ServerName::try_from(bare.to_owned())?;
                (
                    Some((TlsConnector::from(Arc::new(tls)), name)),
                    Scheme::HTTPS,
                )
            }
            None => (None, Scheme::HTTP),
        };
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .keep_alive_interval(config.keep_alive_interval)
            .keep_alive_timeout(config.keep_alive_timeout)
            .keep_alive_while_idle(false);
        Ok(Endpoint {
            addr,
            scheme,
            authority,
            tls,
            http2,
            connection: Mutex::new(None),
            connecting: Mutex::new(None),
            failure: Mutex::new(None),
            failures: AtomicU32::new(0),
            in_flight: AtomicUsize::new(0),
        })
    }

    /// Whether calls may come here: no connection failure, or its back-off is over.
    fn usable(&self, now: Instant) -> bool {
        let failures = self.failures.load(Ordering::Relaxed);
        if failures == 0 {
            return true;
        }
        let failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        match &*failure {
            Some((at, _)) => now >= *at + backoff(failures),
            None => true,
        }
    }

    /// The open connection, if it is still usable.
    fn open_connection(&self) -> Option<SendRequest<BoxBody>> {
        let connection = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        connection
            .as_ref()
            .filter(|sender| !sender.is_closed())
            .cloned()
    }

    /// The connection, opened if needed: one attempt at a time, shared by the calls that
    /// need it, each waiting for it until its own `deadline`.
    async fn connection(
        self: &Arc<Self>,
        timeout: Duration,
        deadline: Instant,
    ) -> Result<SendRequest<BoxBody>, BoxError> {
        if let Some(sender) = self.open_connection() {
            return Ok(sender);
        }
        let attempt = {
            let mut connecting = self
                .connecting
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // Checked again under the lock: an attempt may have just succeeded.
            if let Some(sender) = self.open_connection() {
                return Ok(sender);
            }
            connecting
                .get_or_insert_with(|| self.start_attempt(timeout))
                .clone()
        };
        match tokio::time::timeout_at(deadline, attempt).await {
            Ok(result) => result.map_err(BoxError::from),
            Err(_) => Err(format!(
                "no connection to {} within the connect timeout ({timeout:?})",
                self.addr
            )
            .into()),
        }
    }

    /// Starts connecting in a task of its own, which records the outcome.
    fn start_attempt(self: &Arc<Self>, timeout: Duration) -> Attempt {
        let this = self.clone();
        let task = tokio::spawn(async move {
            let attempt = match tokio::time::timeout(timeout, this.connect()).await {
                Ok(attempt) => attempt,
                Err(_) => Err(format!("connecting timed out after {timeout:?}").into()),
            };
            let outcome = match attempt {
                Ok(sender) => {
                    *this
                        .connection
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some(sender.clone());
                    Ok(sender)
                }
                Err(error) => {
                    let text = format!("{}: {}", this.addr, super::error_chain(error.as_ref()));
                    this.failed(text.clone());
                    Err(text)
                }
            };
            *this
                .connecting
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = None;
            outcome
        });
        let attempt: BoxFuture<'static, Result<SendRequest<BoxBody>, String>> =
            Box::pin(async move {
                task.await
                    .unwrap_or_else(|e| Err(format!("the connection attempt failed: {e}")))
            });
        attempt.shared()
    }

    /// Counts a failure to connect (or a connection that died before answering anything).
    fn failed(&self, why: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), why));
    }

    async fn connect(&self) -> Result<SendRequest<BoxBody>, BoxError> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        // A dead peer (a host gone, a partition) is noticed even on an idle connection.
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(60))
            .with_interval(Duration::from_secs(10));
        socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive)?;
        match &self.tls {
            None => self.handshake(tcp).await,
            Some((connector, name)) => {
                let tls = connector.connect(name.clone(), tcp).await?;
                match tls.get_ref().1.alpn_protocol() {
                    None | Some(b"h2") => self.handshake(tls).await,
                    Some(other) => Err(format!(
                        "the upstream chose ALPN protocol {:?}, not h2",
                        String::from_utf8_lossy(other)
                    )
                    .into()),
                }
            }
        }
    }

    async fn handshake<T>(&self, io: T) -> Result<SendRequest<BoxBody>, BoxError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, connection) = self.http2.handshake(TokioIo::new(io)).await?;
        let addr = self.addr;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%addr, "upstream connection ended: {e}");
            }
        });
        Ok(sender)
    }

    /// Sends `request` on this endpoint's connection; gives it back when it could not be sent.
    async fn send(
        self: &Arc<Self>,
        mut request: Request<BoxBody>,
        connect_timeout: Duration,
        deadline: Instant,
    ) -> Result<Response<Incoming>, SendError> {
        let _in_flight = InFlight::new(&self.in_flight);
        let path = request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        match Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
        {
            Ok(uri) => *request.uri_mut() = uri,
            Err(e) => return Err(Failed(e.into())),
        }
        *request.version_mut() = http::Version::HTTP_2;
        // A request the upstream refused unprocessed (its GOAWAY at a restart, or
        // REFUSED_STREAM) is sent again when its whole body went by and was small: the
        // request head is kept, the body recorded as it is sent.
        let head = RequestHead::of(&request);
        let replay = Replay::default();
        let request = request.map(|body| BoxBody::new(ReplayBody::new(body, replay.clone())));
        let mut request = request;
        let mut replays = 0;
        // A connection that closes (say the upstream's GOAWAY at a restart) between
        // being picked and taking the request gives it back: once more on a new one.
        let mut retried = false;
        loop {
            let mut sender = match self.connection(connect_timeout, deadline).await {
                Ok(sender) => sender,
                Err(error) => {
                    return Err(Unsent {
                        request: Box::new(request),
                        error,
                    });
                }
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    // Only an answer proves the address works (a peer can accept TCP and the
                    // HTTP/2 preface and then say nothing).
                    self.failures.store(0, Ordering::Relaxed);
                    return Ok(response);
                }
                Err(mut e) => match e.take_message() {
                    Some(back) if !retried => {
                        retried = true;
                        request = back;
                        self.forget_closed();
                    }
                    Some(back) => {
                        return Err(Unsent {
                            request: Box::new(back),
                            error: e.into_error().into(),
                        });
                    }
                    None => {
                        let error = e.into_error();
                        if replays < MAX_REPLAYS
                            && weir_codec::status::h2_unprocessed(&error)
                            && let Some(body) = replay.whole_body()
                        {
                            replays += 1;
                            tracing::debug!(addr = %self.addr, "the upstream refused a call unprocessed; sending it again");
                            self.forget_closed();
                            request = head.with_body(body, &replay);
                            continue;
                        }
                        return Err(Failed(error.into()));
                    }
                },
            }
        }
    }

    /// Drops the stored connection once it has closed, so that the next call opens another.
    fn forget_closed(&self) {
        let mut connection = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if connection.as_ref().is_some_and(SendRequest::is_closed) {
            *connection = None;
        }
    }
}

/// How often one call is sent again after an upstream refused it unprocessed.
const MAX_REPLAYS: usize = 2;
/// Largest request body kept to send again (unary and server-streaming requests fit).
const REPLAY_LIMIT: usize = 64 * 1024;

/// What of a request is needed to send it again: everything but its body and extensions.
struct RequestHead {
    method: http::Method,
    uri: Uri,
    version: http::Version,
    headers: http::HeaderMap,
}

impl RequestHead {
    fn of<B>(request: &Request<B>) -> Self {
        RequestHead {
            method: request.method().clone(),
            uri: request.uri().clone(),
            version: request.version(),
            headers: request.headers().clone(),
        }
    }

    fn with_body(&self, body: bytes::Bytes, replay: &Replay) -> Request<BoxBody> {
        let mut request = Request::new(BoxBody::new(ReplayBody::new(
            BoxBody::full(body),
            replay.clone(),
        )));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// The request body as it went out: kept while it is small, to be sent again.
#[derive(Clone, Default)]
struct Replay(Arc<Mutex<ReplayState>>);

#[derive(Default)]
struct ReplayState {
    sent: bytes::BytesMut,
    /// The body ended, and all of it is in `sent`.
    complete: bool,
    /// The body outgrew [`REPLAY_LIMIT`] or failed: it cannot be sent again.
    spoiled: bool,
}

impl Replay {
    fn lock(&self) -> std::sync::MutexGuard<'_, ReplayState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The whole body, if it went by and was kept; the record starts anew for the next try.
    fn whole_body(&self) -> Option<bytes::Bytes> {
        let mut state = self.lock();
        if !state.complete || state.spoiled {
            return None;
        }
        let body = state.sent.split().freeze();
        *state = ReplayState::default();
        Some(body)
    }
}

pin_project_lite::pin_project! {
    /// A request body that records what it yields into a [`Replay`].
    struct ReplayBody {
        #[pin]
        inner: BoxBody,
        replay: Replay,
    }
}

impl ReplayBody {
    fn new(inner: BoxBody, replay: Replay) -> Self {
        ReplayBody { inner, replay }
    }
}

impl http_body::Body for ReplayBody {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, BoxError>>> {
        let this = self.project();
        let polled = std::task::ready!(this.inner.poll_frame(cx));
        let mut state = this.replay.lock();
        match &polled {
            Some(Ok(frame)) => match frame.data_ref() {
                Some(data) if state.sent.len() + data.len() <= REPLAY_LIMIT => {
                    state.sent.extend_from_slice(data);
                }
                Some(_) => {
                    state.spoiled = true;
                    state.sent = bytes::BytesMut::new();
                }
                // Requests carry no trailers in gRPC: one cannot be replayed faithfully.
                None => state.spoiled = true,
            },
            Some(Err(_)) => state.spoiled = true,
            None => state.complete = true,
        }
        std::task::Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        let ended = self.inner.is_end_stream();
        if ended {
            // hyper reads no further: what was recorded is the whole body.
            self.replay.lock().complete = true;
        }
        ended
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(6);
    (BACKOFF_FIRST * 2u32.pow(doublings)).min(BACKOFF_MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Listeners that accept connections and never say anything (a hung process, a
    /// half-open load balancer): their sockets are kept open for the test's lifetime.
    async fn silent_listener() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        port
    }

    fn request() -> Request<BoxBody> {
        Request::builder()
            .method("POST")
            .uri("/pkg.Svc/Method")
            .header("content-type", "application/grpc")
            .body(crate::body::boxed(
                http_body_util::Empty::<bytes::Bytes>::new(),
            ))
            .unwrap()
    }

    /// The connect timeout bounds a call's wait for a connection: with every address hung,
    /// a call fails after about one connect timeout, not one per address.
    #[tokio::test]
    async fn all_addresses_hung_fail_within_one_connect_timeout() {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let timeout = Duration::from_millis(300);
        let mut config = ClusterConfig::new("hung")
            .tls(Arc::new(tls))
            .connect_timeout(timeout);
        for _ in 0..6 {
            config = config.address("127.0.0.1", silent_listener().await);
        }
        let cluster = Cluster::start(config);
        let started = std::time::Instant::now();
        let result = cluster.call(request()).await;
        let took = started.elapsed();
        assert!(result.is_err());
        // One timeout per address would be 1.8 s; the bound leaves room for a busy machine.
        assert!(
            took < timeout * 4,
            "the call took {took:?} with a {timeout:?} connect timeout"
        );
    }

    /// An HTTP/2 upstream answering every call after `delay`, at most `streams` at a time;
    /// with `goaway_after`, each connection shuts down gracefully after that many calls.
    async fn h2_upstream(
        streams: u32,
        delay: Duration,
        goaway_after: Option<usize>,
    ) -> (u16, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let calls = Arc::new(AtomicUsize::new(0));
                let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(16);
                let service = hyper::service::service_fn(move |_req: Request<Incoming>| {
                    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                    let tx = tx.clone();
                    async move {
                        tokio::time::sleep(delay).await;
                        if goaway_after == Some(n) {
                            let _ = tx.send(()).await;
                        }
                        Ok::<_, std::convert::Infallible>(
                            Response::builder()
                                .header("content-type", "application/grpc")
                                .header("grpc-status", "0")
                                .body(http_body_util::Empty::<bytes::Bytes>::new())
                                .unwrap(),
                        )
                    }
                });
                tokio::spawn(async move {
                    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .max_concurrent_streams(streams)
                        .serve_connection(TokioIo::new(socket), service);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => return,
                        _ = rx.recv() => conn.as_mut().graceful_shutdown(),
                    }
                    let _ = conn.await;
                });
            }
        });
        (port, connections)
    }

    /// The upstream's SETTINGS_MAX_CONCURRENT_STREAMS: calls beyond it wait for a stream
    /// (as with the legacy client), none fails.
    #[tokio::test]
    async fn calls_beyond_max_concurrent_streams_queue() {
        let (port, connections) = h2_upstream(1, Duration::from_millis(200), None).await;
        let cluster = Cluster::start(ClusterConfig::new("one").address("127.0.0.1", port));
        // The first call learns the SETTINGS.
        cluster.call(request()).await.unwrap();
        let calls: Vec<_> = (0..4)
            .map(|_| {
                let cluster = cluster.clone();
                tokio::spawn(async move { cluster.call(request()).await.map(|_| ()) })
            })
            .collect();
        for call in calls {
            call.await.unwrap().unwrap();
        }
        assert_eq!(
            connections.load(Ordering::SeqCst),
            1,
            "all on one connection"
        );
    }

    /// An upstream that shuts each connection down gracefully (GOAWAY) every few calls, under
    /// load: calls it refused unprocessed are sent again on a new connection, and none fails.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn goaway_under_load_fails_no_call() {
        let (port, connections) = h2_upstream(100, Duration::from_millis(5), Some(20)).await;
        let cluster = Cluster::start(ClusterConfig::new("one").address("127.0.0.1", port));
        let calls: Vec<_> = (0..16)
            .map(|_| {
                let cluster = cluster.clone();
                tokio::spawn(async move {
                    let mut failed = Vec::new();
                    for _ in 0..25 {
                        if let Err(e) = cluster.call(request()).await {
                            failed.push(super::super::error_chain(e.as_ref()));
                        }
                    }
                    failed
                })
            })
            .collect();
        let mut failed = Vec::new();
        for call in calls {
            failed.extend(call.await.unwrap());
        }
        assert!(
            failed.is_empty(),
            "{} of 400 calls failed: {:?}",
            failed.len(),
            &failed[..failed.len().min(3)]
        );
        assert!(connections.load(Ordering::SeqCst) > 1);
    }

    /// A connection attempt outlives the call that started it: calls whose deadline is
    /// shorter than the upstream's handshake (TLS over a long round trip) still let it finish,
    /// and later calls use the connection.
    #[cfg(feature = "tls")] // for its TLS upstream
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn short_deadlines_never_let_a_slow_handshake_finish() {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let der = CertificateDer::from(cert.cert.der().to_vec());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
        let server_tls = crate::tls::server_config(vec![der.clone()], key).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(server_tls);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A far-away upstream: the handshake takes 300 ms.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let Ok(tls) = acceptor.accept(socket).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(|_req: Request<Incoming>| async {
                        Ok::<_, std::convert::Infallible>(
                            Response::builder()
                                .header("content-type", "application/grpc")
                                .header("grpc-status", "0")
                                .body(http_body_util::Empty::<bytes::Bytes>::new())
                                .unwrap(),
                        )
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        let client_tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let cluster = Cluster::start(
            ClusterConfig::new("far")
                .address("127.0.0.1", port)
                .tls(Arc::new(client_tls)),
        );
        let mut answered = 0;
        for _ in 0..10 {
            // Each call has a 200 ms deadline, as the proxy's grpc-timeout applies it.
            if let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_millis(200), cluster.call(request())).await
            {
                answered += 1;
            }
        }
        // Sanity: without a deadline the upstream is fine.
        cluster.call(request()).await.unwrap();
        assert!(answered > 0, "10 calls of 200 ms over 2 s, none answered");
    }

    /// An IPv6 literal upstream (`http://[::1]:50051`; the gateway's config hands over the
    /// host without brackets) gets a bracketed authority.
    #[test]
    fn ipv6_literal_upstreams_are_usable() {
        for host in ["::1", "[::1]"] {
            let endpoint = Endpoint::new(
                &ClusterConfig::new("v6"),
                host,
                50051,
                "[::1]:50051".parse().unwrap(),
            )
            .unwrap();
            assert_eq!(endpoint.authority.as_str(), "[::1]:50051");
        }
    }
}
