//! An upstream cluster: its addresses, kept fresh by re-resolving DNS, one HTTP/2 connection
//! pool per address, and power-of-two-choices balancing over them.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::mpsc;
use tower::ServiceExt as _;
use tower::balance::p2c::Balance;
use tower::buffer::Buffer;
use tower::discover::Change;
use tower::load::{CompleteOnResponse, PendingRequests};
use tower::util::BoxCloneSyncService;
use tower_service::Service;

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
            keep_alive_interval: Some(Duration::from_secs(30)),
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

    /// HTTP/2 PING interval on upstream connections (`None`: off; default 30 s) and how long
    /// an unanswered PING may take before the connection is dropped (default 20 s).
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

/// A cluster's calls: a cheap-to-clone handle onto the balancer.
#[derive(Clone)]
pub(crate) struct Cluster {
    pub(crate) name: Arc<str>,
    service: BoxCloneSyncService<Request<BoxBody>, Response<Incoming>, BoxError>,
    pub(crate) connect_timeout: Duration,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("name", &self.name).finish()
    }
}

type Discovered = Change<SocketAddr, PendingRequests<Endpoint, CompleteOnResponse>>;

impl Cluster {
    /// Starts the cluster's resolver task; must run inside a tokio runtime.
    pub(crate) fn start(config: ClusterConfig) -> Self {
        let (tx, rx) = mpsc::channel::<Result<Discovered, Infallible>>(64);
        let discover = tokio_stream::wrappers::ReceiverStream::new(rx);
        let balance = Balance::new(discover);
        let service = Buffer::new(balance, 1024);
        let name: Arc<str> = config.name.clone().into();
        let connect_timeout = config.connect_timeout;
        tokio::spawn(resolve(config, tx));
        Cluster {
            name,
            service: BoxCloneSyncService::new(service),
            connect_timeout,
        }
    }

    /// Sends a call to one of the cluster's endpoints. Waits for an endpoint up to the connect
    /// timeout (at start, DNS may not have answered yet).
    pub(crate) async fn call(
        &self,
        request: Request<BoxBody>,
    ) -> Result<Response<Incoming>, BoxError> {
        let mut service = self.service.clone();
        let ready = tokio::time::timeout(self.connect_timeout, service.ready()).await;
        match ready {
            Ok(Ok(service)) => service.call(request).await,
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!(
                "no address of cluster {:?} became available within {:?}",
                self.name, self.connect_timeout
            )
            .into()),
        }
    }
}

/// Keeps the balancer's endpoint set equal to what the cluster's targets resolve to.
async fn resolve(config: ClusterConfig, tx: mpsc::Sender<Result<Discovered, Infallible>>) {
    let mut current: HashSet<SocketAddr> = HashSet::new();
    loop {
        // Each address remembers the name it came from, for `:authority` and TLS.
        let mut found: HashMap<SocketAddr, &(String, u16)> = HashMap::new();
        let mut failures = 0;
        for target in &config.targets {
            match tokio::net::lookup_host((target.0.as_str(), target.1)).await {
                Ok(addrs) => found.extend(addrs.map(|addr| (addr, target))),
                Err(e) => {
                    failures += 1;
                    tracing::warn!(cluster = %config.name, host = %target.0, "cannot resolve upstream address: {e}");
                }
            }
        }
        // A DNS hiccup must not empty a working cluster: keep the old set when every lookup
        // failed.
        if failures < config.targets.len() || current.is_empty() {
            for (addr, (host, port)) in &found {
                if current.contains(addr) {
                    continue;
                }
                let endpoint = match Endpoint::new(&config, host, *port, *addr) {
                    Ok(endpoint) => endpoint,
                    Err(e) => {
                        tracing::warn!(cluster = %config.name, %addr, "cannot use upstream address: {e}");
                        continue;
                    }
                };
                tracing::debug!(cluster = %config.name, %addr, "upstream address added");
                let load = PendingRequests::new(endpoint, CompleteOnResponse::default());
                if tx.send(Ok(Change::Insert(*addr, load))).await.is_err() {
                    return;
                }
            }
            let found: HashSet<SocketAddr> = found.into_keys().collect();
            for addr in current.difference(&found) {
                tracing::debug!(cluster = %config.name, %addr, "upstream address removed");
                if tx.send(Ok(Change::Remove(*addr))).await.is_err() {
                    return;
                }
            }
            current = found;
        }
        tokio::select! {
            () = tokio::time::sleep(config.resolve_interval) => {}
            () = tx.closed() => return,
        }
    }
}

/// Resolves every name to one fixed address, so that each endpoint's connection pool dials
/// its own address while requests keep the configured host name (for `:authority` and TLS
/// server name checks).
#[derive(Debug, Clone, Copy)]
struct FixedAddr(SocketAddr);

impl Service<Name> for FixedAddr {
    type Response = std::iter::Once<SocketAddr>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Name) -> Self::Future {
        std::future::ready(Ok(std::iter::once(self.0)))
    }
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector<FixedAddr>>;

/// One upstream address with its own HTTP/2 connection pool.
#[derive(Clone)]
struct Endpoint {
    client: Client<Connector, BoxBody>,
    scheme: Scheme,
    authority: Authority,
}

impl Endpoint {
    fn new(
        config: &ClusterConfig,
        host: &str,
        port: u16,
        addr: SocketAddr,
    ) -> Result<Self, BoxError> {
        let mut http = HttpConnector::new_with_resolver(FixedAddr(addr));
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.connect_timeout));
        let (connector, scheme) = match &config.tls {
            Some(tls) => (
                hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config({
                        // The connector sets ALPN (h2) itself and refuses a config that has it.
                        let mut tls = (**tls).clone();
                        tls.alpn_protocols.clear();
                        tls
                    })
                    .https_only()
                    .enable_http2()
                    .wrap_connector(http),
                Scheme::HTTPS,
            ),
            None => (
                hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(
                        rustls::ClientConfig::builder_with_provider(Arc::new(
                            rustls::crypto::ring::default_provider(),
                        ))
                        .with_safe_default_protocol_versions()?
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth(),
                    )
                    .https_or_http()
                    .enable_http2()
                    .wrap_connector(http),
                Scheme::HTTP,
            ),
        };
        let client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .http2_keep_alive_interval(config.keep_alive_interval)
            .http2_keep_alive_timeout(config.keep_alive_timeout)
            .http2_keep_alive_while_idle(true)
            .build(connector);
        let authority = Authority::try_from(format!("{host}:{port}"))?;
        Ok(Endpoint {
            client,
            scheme,
            authority,
        })
    }
}

impl Service<Request<BoxBody>> for Endpoint {
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Incoming>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<BoxBody>) -> Self::Future {
        let path = request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        let uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path)
            .build();
        let client = self.client.clone();
        Box::pin(async move {
            *request.uri_mut() = uri?;
            *request.version_mut() = http::Version::HTTP_2;
            Ok(client.request(request).await?)
        })
    }
}
