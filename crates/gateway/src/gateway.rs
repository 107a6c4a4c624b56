//! Wiring a configuration into listeners: one code path for `weir serve` and `weir demo`.
//!
//! Per listener: WebTransport discovery document → page at `/` (only with a page) → gRPC-Web
//! layer (CORS, limits, heartbeats) → metrics → upstream proxy.

use std::io::Write as _;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use tower::util::Oneshot;
use tower_layer::Layer as _;
use tower_service::Service;
use weir::Cors;
use weir::admin::Admin;
use weir::edge::EdgeConfig;
use weir::grpc_web::{GrpcWebLayer, GrpcWebService};
use weir::metrics::{Metrics, MetricsService, TraceHook};
use weir::page::Page;
use weir::proxy::{ClusterConfig, Proxy};
use weir::server::{Drain, Server};
use weir::webtransport::discovery::{Discovery, DiscoveryService};
use weir::webtransport::{
    CertificateHashes, ServerIdentity, WebTransportConfig, WebTransportServer,
};

use crate::config::{Config, Upstream};
use crate::{Hangups, Signals};

/// Extra time after the grace period for the final UNAVAILABLE trailers to reach clients.
const FLUSH_TIME: Duration = Duration::from_secs(2);

/// Runs the gateway until a signal (or `POST /shutdown` on the admin listener), then stops in
/// phases (docs/operations.md): drain (`/healthz` 503, every listener still accepting, HTTP/2
/// GOAWAY, HTTP/1.1 `Connection: close`) for `timeouts.drain_delay` or until a second signal;
/// then listeners close and calls in flight have `timeouts.shutdown_grace`.
///
/// `page` is served at `GET /` (the demo's page). `label` prefixes the lines printed on
/// stdout (`weir serve: listening on http://...`). Without `hangups`, SIGHUP keeps its
/// default action (the process ends, as when its terminal goes away).
pub(crate) async fn run(
    config: Config,
    load: Option<Loader>,
    trace: Option<Arc<TraceHook>>,
    page: Option<&'static str>,
    label: &str,
    mut signals: Signals,
    hangups: Option<Hangups>,
) -> Result<(), String> {
    let mut hangups = hangups.unwrap_or_else(Hangups::none);
    let metrics = Metrics::new();
    // Ends the calls still open at the end of the grace period.
    let drain = CancellationToken::new();
    // Starts the drain phase on every listener.
    let draining = Drain::new();
    let calls = Calls::build(&config, &metrics, &drain, trace.as_ref())?;
    let (cors, edge) = (calls.cors.clone(), calls.edge.clone());
    // Swapped by a reload: new calls take the new routes, clusters, CORS and limits, calls in
    // flight finish on the ones they started with.
    let web = Reloadable::new(calls.grpc_web.layer(calls.grpc.clone()));
    let grpc = Reloadable::new(calls.grpc);
    let reloader = Arc::new(Reloader {
        load,
        started: config,
        drain_delay: Mutex::new(None),
        reloading: Mutex::new(()),
        metrics: metrics.clone(),
        drain: drain.clone(),
        trace,
        web: web.clone(),
        grpc: grpc.clone(),
    });
    let config = &reloader.started;
    // /healthz turns 503 when the shutdown starts.
    let admin = Admin::new(metrics.clone()).on_reload({
        let reloader = reloader.clone();
        move || reloader.reload("POST /reload")
    });

    // HTTP listeners are bound first: WebTransport lets their pages in. WebTransport is set up
    // before they serve: they publish its certificate hashes.
    let mut bound = Vec::new();
    for listener in &config.listeners {
        let tcp = tokio::net::TcpListener::bind(listener.address)
            .await
            .map_err(|e| format!("listener {}: cannot listen: {e}", listener.address))?;
        let addr = tcp.local_addr().map_err(|e| e.to_string())?;
        bound.push((listener, tcp, addr));
    }
    let own_ports: Vec<u16> = bound.iter().map(|(_, _, addr)| addr.port()).collect();

    let mut webtransport = None;
    if let Some(wt) = &config.webtransport {
        let identity = match (&wt.cert, &wt.key) {
            (Some(cert), Some(key)) => ServerIdentity::from_pem_files(cert, key)
                .await
                .map_err(|e| format!("webtransport: {e}"))?,
            _ => ServerIdentity::development().map_err(|e| format!("webtransport: {e}"))?,
        };
        let wt_config = WebTransportConfig::default()
            .path(wt.path.clone())
            .cors(cors.clone())
            .max_sessions(wt.max_sessions)
            .max_calls_per_session(wt.max_calls_per_session)
            .max_sessions_per_client(wt.max_sessions_per_client)
            .edge(edge.clone())
            .own_http_ports(own_ports.clone())
            // Sessions close as their calls end; at the end of the grace period the drain
            // token ends the calls still open with UNAVAILABLE, whose trailers get a moment
            // to reach clients before the last sessions are closed.
            .shutdown_grace(config.timeouts.shutdown_grace + FLUSH_TIME);
        // Pages may pin only a certificate valid at most 14 days (the development one); an
        // ordinary certificate is verified by the browser the usual way, so no hashes.
        let pinnable = identity.browsers_may_pin();
        let server = WebTransportServer::bind(wt.address, identity, wt_config)
            .map_err(|e| format!("webtransport {}: cannot listen: {e}", wt.address))?;
        let hashes = server.certificate_hashes();
        let host = match wt.address.ip() {
            ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            std::net::IpAddr::V4(ip) => ip.to_string(),
        };
        let hex = hashes.hex().join(",");
        let via = if wt.cert.is_some() {
            String::new()
        } else {
            format!(" (development certificate sha-256 {hex})")
        };
        announce(
            label,
            &format!("webtransport on {}{via}", server.url(&host)),
        )?;
        let port = server_port(&server);
        let published = if pinnable {
            hashes
        } else {
            CertificateHashes::default()
        };
        let mut discovery = Discovery::new(published, port, wt.path.clone());
        if let Some(authority) = &wt.advertise {
            discovery = discovery.advertise(authority.clone());
        }
        webtransport = Some((server, discovery));
    }
    let discovery = webtransport
        .as_ref()
        .map(|(_, discovery)| discovery.clone());
    let service = DiscoveryService::new(discovery, Page::new(page, web.clone()));

    let ping = (!config.keepalive.client_ping_interval.is_zero())
        .then_some(config.keepalive.client_ping_interval);
    let server = Server::new()
        .max_header_list_size(config.limits.max_header_list_size)
        .max_concurrent_streams(config.limits.max_concurrent_streams)
        .keep_alive(ping, config.keepalive.client_ping_timeout)
        .header_read_timeout(config.timeouts.header_read)
        .idle_timeout(
            (!config.timeouts.idle_connection.is_zero()).then_some(config.timeouts.idle_connection),
        )
        .max_connections(config.limits.max_connections)
        .grace_period(config.timeouts.shutdown_grace + FLUSH_TIME)
        .drain(draining.clone());

    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    for (listener, tcp, addr) in bound {
        let server = server.clone();
        let service = service.clone();
        let stop = stop.clone().cancelled_owned();
        match &listener.tls {
            Some(tls) => {
                let tls = weir::tls::server_config_from_pem_files(&tls.cert, &tls.key)
                    .map_err(|e| format!("listener {}: tls: {e}", listener.address))?;
                announce(label, &format!("listening on https://{addr}"))?;
                tasks.spawn(async move { server.serve_tls(tcp, tls, service, stop).await });
            }
            None => {
                announce(label, &format!("listening on http://{addr}"))?;
                tasks.spawn(async move { server.serve(tcp, service, stop).await });
            }
        }
    }
    if let Some((server, _)) = webtransport {
        // With its shutdown grace (above): a listener without open calls stops at once.
        let stop = stop.clone().cancelled_owned();
        let grpc = grpc.clone();
        tasks.spawn(async move { server.serve(grpc, stop).await });
    }
    if let Some(listener) = &config.admin {
        let tcp = tokio::net::TcpListener::bind(listener.address)
            .await
            .map_err(|e| format!("admin {}: cannot listen: {e}", listener.address))?;
        let addr = tcp.local_addr().map_err(|e| e.to_string())?;
        announce(label, &format!("admin on http://{addr}"))?;
        let admin = admin.clone();
        let stop = stop.clone().cancelled_owned();
        let server = Server::new()
            .grace_period(Duration::from_secs(1))
            .drain(draining.clone());
        tasks.spawn(async move { server.serve(tcp, admin, stop).await });
    }

    let why = loop {
        tokio::select! {
            what = signals.recv() => break what,
            () = admin.shutdown_requested() => break "POST /shutdown",
            () = hangups.recv() => {
                // Logged by reload().
                let _ = reloader.reload("SIGHUP");
            }
        }
    };
    admin.drain();
    draining.start();
    let delay = reloader.drain_delay();
    if !delay.is_zero() {
        tracing::info!(
            ?delay,
            "{why}: draining: /healthz answers 503, listeners still accept (signal again to skip)"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            what = signals.recv() => tracing::info!("{what}: drain cut short"),
        }
    }
    let grace = config.timeouts.shutdown_grace;
    tracing::info!(
        ?grace,
        "{why}: shutting down: no new connections; open calls may finish"
    );
    stop.cancel();
    let drain_later = drain.clone();
    tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        tracing::info!("grace period over; ending the remaining calls with UNAVAILABLE");
        drain_later.cancel();
    });
    while tasks.join_next().await.is_some() {}
    drain.cancel();
    Ok(())
}

/// Reads the configuration again (the file with the command line's overrides), validated.
pub(crate) type Loader = Box<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// Applies a new configuration to new calls (SIGHUP, `POST /reload`).
struct Reloader {
    load: Option<Loader>,
    /// The configuration the gateway started with: listeners and connection settings stay.
    started: Config,
    /// The reloaded `timeouts.drain_delay`, once a reload changed it.
    drain_delay: Mutex<Option<Duration>>,
    /// One reload at a time (SIGHUP and `POST /reload` may come together): the services
    /// swapped are always of one configuration.
    reloading: Mutex<()>,
    metrics: Metrics,
    drain: CancellationToken,
    trace: Option<Arc<TraceHook>>,
    web: Reloadable<GrpcWebService<MetricsService<Proxy>>>,
    grpc: Reloadable<MetricsService<Proxy>>,
}

impl Reloader {
    /// Reloads, or refuses an invalid configuration and keeps the running one; logs either.
    fn reload(&self, why: &str) -> Result<String, String> {
        let _one = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let result = self.try_reload();
        match &result {
            Ok(message) => tracing::info!("{why}: {message}"),
            Err(error) => tracing::warn!("{why}: {error}"),
        }
        result
    }

    fn try_reload(&self) -> Result<String, String> {
        let load = self.load.as_ref().ok_or(
            "reload refused: the gateway was started without --config; there is no file to reload",
        )?;
        let refuse = |e: String| format!("reload refused, the running configuration stays: {e}");
        let config = load().map_err(refuse)?;
        let calls = Calls::build(&config, &self.metrics, &self.drain, self.trace.as_ref())
            .map_err(refuse)?;
        self.web.replace(calls.grpc_web.layer(calls.grpc.clone()));
        self.grpc.replace(calls.grpc);
        *self
            .drain_delay
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(config.timeouts.drain_delay);
        let restart = self.started.restart_only_changes(&config);
        Ok(if restart.is_empty() {
            "configuration reloaded; new calls use it".to_owned()
        } else {
            format!(
                "configuration reloaded; new calls use it, except for what takes effect at a restart: {}",
                restart.join("; ")
            )
        })
    }

    fn drain_delay(&self) -> Duration {
        self.drain_delay
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .unwrap_or(self.started.timeouts.drain_delay)
    }
}

/// The part of a gateway that a reload replaces: everything a call passes through after
/// the listener.
struct Calls {
    grpc_web: GrpcWebLayer,
    /// Native gRPC: the proxy, counted.
    grpc: MetricsService<Proxy>,
    cors: Cors,
    edge: EdgeConfig,
}

impl Calls {
    fn build(
        config: &Config,
        metrics: &Metrics,
        drain: &CancellationToken,
        trace: Option<&Arc<TraceHook>>,
    ) -> Result<Self, String> {
        let mut proxy = Proxy::builder()
            .max_timeout(config.timeouts.max_call)
            .metrics(metrics.clone())
            .drain(drain.clone());
        for (name, cluster) in &config.clusters {
            proxy = proxy.cluster(cluster_config(name, cluster)?);
        }
        for (service, cluster) in &config.routes {
            proxy = proxy.route(service, cluster);
        }
        let proxy = proxy.build().map_err(|e| e.to_string())?;

        let mut cors = Cors::default().allow_credentials(config.cors.allow_credentials);
        if let Some(max_age) = config.cors.max_age {
            cors = cors.max_age(max_age);
        }
        for origin in &config.cors.allow_origins {
            cors = cors
                .allow_origin(origin)
                .map_err(|e| format!("cors.allow_origins: {origin:?}: {e}"))?;
        }
        // One call edge for every door: gRPC-Web, native gRPC and WebTransport.
        let edge = EdgeConfig::default()
            .max_request_message_size(config.limits.max_request_message_size)
            .max_response_message_size(config.limits.max_response_message_size)
            .max_header_list_size(config.limits.max_header_list_size as usize)
            .max_call(config.timeouts.max_call);
        let grpc_web = GrpcWebLayer::new()
            .cors(cors.clone())
            .edge(edge.clone())
            .heartbeat_bounds(
                config.keepalive.heartbeat_min_interval,
                config.keepalive.heartbeat_max_interval,
            );
        let mut observe = metrics.layer().access_log(config.log.access);
        if let Some(trace) = trace {
            let trace = trace.clone();
            observe = observe.trace_calls(move |span, headers| trace(span, headers));
        }
        Ok(Calls {
            grpc_web,
            grpc: observe.layer(proxy),
            cors,
            edge,
        })
    }
}

/// A service that a reload replaces; each call runs on the service that was current when it
/// started.
struct Reloadable<S> {
    current: Arc<RwLock<S>>,
}

impl<S> Clone for Reloadable<S> {
    fn clone(&self) -> Self {
        Reloadable {
            current: self.current.clone(),
        }
    }
}

impl<S> Reloadable<S> {
    fn new(service: S) -> Self {
        Reloadable {
            current: Arc::new(RwLock::new(service)),
        }
    }

    fn replace(&self, service: S) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = service;
    }
}

impl<S, R> Service<R> for Reloadable<S>
where
    S: Service<R> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Oneshot<S, R>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        // Readiness is the current service's, checked by the call itself (Oneshot).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: R) -> Self::Future {
        let service = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        service.oneshot(request)
    }
}

fn server_port(server: &WebTransportServer) -> u16 {
    server.local_addr().port()
}

fn announce(label: &str, line: &str) -> Result<(), String> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{label}: {line}")
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("stdout: {e}"))
}

fn cluster_config(name: &str, cluster: &crate::config::Cluster) -> Result<ClusterConfig, String> {
    let mut config = ClusterConfig::new(name);
    let mut tls = false;
    for address in &cluster.addresses {
        let upstream =
            Upstream::parse(address).map_err(|e| format!("clusters.{name}.addresses: {e}"))?;
        tls = upstream.tls;
        config = config.address(upstream.host, upstream.port);
    }
    if tls {
        config = config.tls(
            client_tls(cluster.ca.as_deref()).map_err(|e| format!("clusters.{name}.ca: {e}"))?,
        );
    }
    if let Some(timeout) = cluster.connect_timeout {
        config = config.connect_timeout(timeout);
    }
    if let Some(interval) = cluster.resolve_interval {
        config = config.resolve_interval(interval);
    }
    if let Some(interval) = cluster.ping_interval {
        config = config.keep_alive(
            (!interval.is_zero()).then_some(interval),
            Duration::from_secs(20),
        );
    }
    Ok(config)
}

/// TLS to upstreams: the given CA file, or the system's roots.
fn client_tls(ca: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;

    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
            {
                let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                // A system store may hold certificates rustls cannot use; skip those.
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
