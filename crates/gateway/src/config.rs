//! The gateway's configuration file (`weir serve --config weir.toml`).
//!
//! The file is a versioned contract with operators: unknown keys are errors, and every key has
//! a safe default. `weir.example.toml` at the repository root documents every key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    /// Format version of this file; only 1 exists.
    #[serde(default = "one")]
    pub(crate) version: u32,
    #[serde(default, rename = "listener")]
    pub(crate) listeners: Vec<Listener>,
    #[serde(default)]
    pub(crate) admin: Option<Admin>,
    #[serde(default)]
    pub(crate) webtransport: Option<WebTransport>,
    #[serde(default)]
    pub(crate) cors: Cors,
    #[serde(default)]
    pub(crate) limits: Limits,
    #[serde(default)]
    pub(crate) timeouts: Timeouts,
    #[serde(default)]
    pub(crate) keepalive: Keepalive,
    #[serde(default)]
    pub(crate) clusters: BTreeMap<String, Cluster>,
    /// Fully qualified service name (or `*`) → cluster name.
    #[serde(default)]
    pub(crate) routes: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) log: Log,
    /// Traces of calls over OTLP; none without it.
    #[serde(default)]
    pub(crate) tracing: Option<Tracing>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Listener {
    pub(crate) address: SocketAddr,
    #[serde(default)]
    pub(crate) tls: Option<ListenerTls>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListenerTls {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Admin {
    pub(crate) address: SocketAddr,
}

/// gRPC over WebTransport (HTTP/3), `docs/protocol/webtransport.md`.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebTransport {
    /// UDP address to listen on.
    pub(crate) address: SocketAddr,
    /// Session path; default `/weir`.
    #[serde(default = "default_wt_path")]
    pub(crate) path: String,
    /// Certificate chain and key (PEM). Without them, a development certificate that browsers
    /// accept through `serverCertificateHashes` (published at
    /// `/.well-known/weir/webtransport` on the HTTP listeners).
    #[serde(default)]
    pub(crate) cert: Option<PathBuf>,
    #[serde(default)]
    pub(crate) key: Option<PathBuf>,
    /// Most concurrent sessions; default 1000.
    #[serde(default = "default_wt_sessions")]
    pub(crate) max_sessions: usize,
    /// Most concurrent calls per session; default 100.
    #[serde(default = "default_wt_calls")]
    pub(crate) max_calls_per_session: u32,
    /// Most concurrent sessions from one client address; default 100.
    #[serde(default = "default_wt_sessions_per_client")]
    pub(crate) max_sessions_per_client: usize,
    /// `host` or `host:port` under which browsers reach this instance's WebTransport
    /// listener directly, named in the discovery document instead of the host the page
    /// reached (for instances behind a load balancer with their own certificates).
    #[serde(default)]
    pub(crate) advertise: Option<String>,
}

impl WebTransport {
    /// A listener on `address` with every other key at its default (development certificate).
    pub(crate) fn new(address: SocketAddr) -> Self {
        WebTransport {
            address,
            path: default_wt_path(),
            cert: None,
            key: None,
            max_sessions: default_wt_sessions(),
            max_calls_per_session: default_wt_calls(),
            max_sessions_per_client: default_wt_sessions_per_client(),
            advertise: None,
        }
    }
}

fn default_wt_path() -> String {
    "/weir".to_owned()
}

fn default_wt_sessions() -> usize {
    1000
}

fn default_wt_calls() -> u32 {
    100
}

fn default_wt_sessions_per_client() -> usize {
    100
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Cors {
    #[serde(default)]
    pub(crate) allow_origins: Vec<String>,
    #[serde(default)]
    pub(crate) allow_credentials: bool,
    #[serde(default, with = "humantime_serde")]
    pub(crate) max_age: Option<Duration>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Limits {
    pub(crate) max_request_message_size: usize,
    pub(crate) max_response_message_size: usize,
    pub(crate) max_header_list_size: u32,
    pub(crate) max_concurrent_streams: u32,
    /// Most connections open at once on each HTTP listener.
    pub(crate) max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_message_size: 4 * 1024 * 1024,
            max_response_message_size: 4 * 1024 * 1024,
            max_header_list_size: 16 * 1024,
            max_concurrent_streams: 200,
            max_connections: 10_000,
        }
    }
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Timeouts {
    /// Longest deadline a call may have; calls without `grpc-timeout` get it too.
    #[serde(with = "humantime_serde")]
    pub(crate) max_call: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub(crate) header_read: Duration,
    /// A client connection without a call in progress for this long is closed; `0s`: never.
    #[serde(with = "humantime_serde")]
    pub(crate) idle_connection: Duration,
    /// On SIGTERM: how long `/healthz` answers 503 while every listener still accepts,
    /// before listeners close and the grace period begins.
    #[serde(with = "humantime_serde")]
    pub(crate) drain_delay: Duration,
    #[serde(with = "humantime_serde")]
    pub(crate) shutdown_grace: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            max_call: None,
            header_read: Duration::from_secs(30),
            idle_connection: Duration::from_secs(300),
            drain_delay: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Keepalive {
    /// HTTP/2 PING interval to clients; `0s` turns pings off.
    #[serde(with = "humantime_serde")]
    pub(crate) client_ping_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub(crate) client_ping_timeout: Duration,
    /// Bounds of the heartbeat interval clients may ask for.
    #[serde(with = "humantime_serde")]
    pub(crate) heartbeat_min_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub(crate) heartbeat_max_interval: Duration,
}

impl Default for Keepalive {
    fn default() -> Self {
        Keepalive {
            client_ping_interval: Duration::from_secs(30),
            client_ping_timeout: Duration::from_secs(20),
            heartbeat_min_interval: Duration::from_secs(1),
            heartbeat_max_interval: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Cluster {
    /// `http://host:port` (h2c) or `https://host:port` (TLS, ALPN h2).
    pub(crate) addresses: Vec<String>,
    #[serde(default, with = "humantime_serde")]
    pub(crate) connect_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub(crate) resolve_interval: Option<Duration>,
    /// HTTP/2 PING interval to the upstream while calls are open; default and `0s`: off.
    #[serde(default, with = "humantime_serde")]
    pub(crate) ping_interval: Option<Duration>,
    /// PEM file of CA certificates for `https` addresses (default: the system's roots).
    #[serde(default)]
    pub(crate) ca: Option<PathBuf>,
}

impl Cluster {
    /// A cluster of `addresses` with every other key at its default.
    pub(crate) fn new(addresses: Vec<String>) -> Self {
        Cluster {
            addresses,
            connect_timeout: None,
            resolve_interval: None,
            ping_interval: None,
            ca: None,
        }
    }
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Log {
    pub(crate) format: LogFormat,
    /// A tracing filter such as `info` or `weir=debug,info`.
    pub(crate) level: String,
    /// One line per call (target `weir::access`).
    pub(crate) access: bool,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            format: LogFormat::Text,
            level: "info".to_owned(),
            access: false,
        }
    }
}

/// A span per call, exported with OpenTelemetry over OTLP/gRPC.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Tracing {
    /// The collector, e.g. `http://otel-collector:4317`.
    pub(crate) otlp_endpoint: String,
    /// `service.name` of the spans; default `weir`.
    #[serde(default = "default_service_name")]
    pub(crate) service_name: String,
    /// Share of the calls that start a trace (no sampled `traceparent`) that are recorded,
    /// 0.0 to 1.0; default 1.0. A client's own sampling decision is always kept.
    #[serde(default = "one_f64")]
    pub(crate) sample_ratio: f64,
}

fn default_service_name() -> String {
    "weir".to_owned()
}

fn one_f64() -> f64 {
    1.0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A parsed upstream address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Upstream {
    pub(crate) tls: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Upstream {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let uri: http::Uri = text
            .parse()
            .map_err(|e| format!("{text:?} is not a URL: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(format!(
                    "{text:?}: the scheme must be http (h2c) or https (TLS)"
                ));
            }
        };
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(format!("{text:?}: an upstream address has no path"));
        }
        let host = uri
            .host()
            .ok_or_else(|| format!("{text:?}: no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Upstream { tls, host, port })
    }
}

impl Config {
    /// The configuration a file with only these keys stands for, every other key at its
    /// default (not validated yet):
    ///
    /// ```toml
    /// [[listener]]
    /// address = "LISTEN"
    /// [clusters.CLUSTER]
    /// addresses = [ADDRESSES]
    /// [routes]
    /// "*" = "CLUSTER"
    /// ```
    ///
    /// It is how the command line's quick flags (`weir serve --listen … --upstream …`, `weir
    /// demo`) say what they mean.
    pub(crate) fn route_all(listen: SocketAddr, cluster: &str, addresses: Vec<String>) -> Config {
        Config {
            version: one(),
            listeners: vec![Listener {
                address: listen,
                tls: None,
            }],
            admin: None,
            webtransport: None,
            cors: Cors::default(),
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            keepalive: Keepalive::default(),
            clusters: BTreeMap::from([(cluster.to_owned(), Cluster::new(addresses))]),
            routes: BTreeMap::from([("*".to_owned(), cluster.to_owned())]),
            log: Log::default(),
            tracing: None,
        }
    }

    /// Reads and checks a file; errors name the file and the offending key.
    pub(crate) fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
        Config::parse(&text).map_err(|e| format!("config {}: {e}", path.display()))
    }

    /// Parses and checks the text of a file; errors name the offending key. The fuzz target
    /// `config` (`fuzz/`) calls this with any text.
    pub(crate) fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.version != 1 {
            return Err(format!(
                "version: {} is not supported (only 1)",
                self.version
            ));
        }
        if self.listeners.is_empty() {
            return Err("listener: at least one [[listener]] is required".to_owned());
        }
        if self.clusters.is_empty() {
            return Err("clusters: at least one [clusters.NAME] is required".to_owned());
        }
        for (name, cluster) in &self.clusters {
            if cluster.addresses.is_empty() {
                return Err(format!("clusters.{name}.addresses: empty"));
            }
            let mut schemes = std::collections::HashSet::new();
            for address in &cluster.addresses {
                let upstream = Upstream::parse(address)
                    .map_err(|e| format!("clusters.{name}.addresses: {e}"))?;
                schemes.insert(upstream.tls);
            }
            if schemes.len() > 1 {
                return Err(format!(
                    "clusters.{name}.addresses: mixes http and https; use one scheme per cluster"
                ));
            }
        }
        if self.routes.is_empty() {
            return Err(
                "routes: at least one route is required (\"*\" = \"cluster\" routes everything)"
                    .to_owned(),
            );
        }
        for (service, cluster) in &self.routes {
            if !self.clusters.contains_key(cluster) {
                return Err(format!(
                    "routes.\"{service}\": names cluster {cluster:?}, which is not defined under [clusters]"
                ));
            }
            if service != "*" && (service.is_empty() || service.contains('/')) {
                return Err(format!(
                    "routes.\"{service}\": expected a fully qualified service name such as grpc.testing.TestService, or \"*\""
                ));
            }
        }
        for origin in &self.cors.allow_origins {
            if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(format!(
                    "cors.allow_origins: {origin:?} is not an origin like https://app.example.com"
                ));
            }
        }
        if self.limits.max_connections == 0 {
            return Err("limits.max_connections: must be at least 1".to_owned());
        }
        if let Some(wt) = &self.webtransport {
            if !wt.path.starts_with('/') || wt.path.contains('?') {
                return Err(format!(
                    "webtransport.path: {:?} must start with / and have no query",
                    wt.path
                ));
            }
            if wt.cert.is_some() != wt.key.is_some() {
                return Err("webtransport.cert, webtransport.key: give both or neither (neither: a development certificate)".to_owned());
            }
            if let Some(authority) = &wt.advertise
                && (authority.parse::<http::uri::Authority>().is_err() || authority.contains('@'))
            {
                return Err(format!(
                    "webtransport.advertise: {authority:?} is not a host or host:port such as wt1.example.com:4433"
                ));
            }
            if wt.max_calls_per_session == 0
                || wt.max_sessions == 0
                || wt.max_sessions_per_client == 0
            {
                return Err("webtransport.max_sessions, webtransport.max_calls_per_session, webtransport.max_sessions_per_client: must be at least 1".to_owned());
            }
        }
        if let Some(tracing) = &self.tracing {
            let uri: Result<http::Uri, _> = tracing.otlp_endpoint.parse();
            if !matches!(
                uri.as_ref().ok().and_then(http::Uri::scheme_str),
                Some("http" | "https")
            ) {
                return Err(format!(
                    "tracing.otlp_endpoint: {:?} is not a URL like http://otel-collector:4317",
                    tracing.otlp_endpoint
                ));
            }
            if !(0.0..=1.0).contains(&tracing.sample_ratio) {
                return Err("tracing.sample_ratio: must be between 0.0 and 1.0".to_owned());
            }
        }
        if self.keepalive.heartbeat_min_interval > self.keepalive.heartbeat_max_interval {
            return Err(
                "keepalive.heartbeat_min_interval: larger than heartbeat_max_interval".to_owned(),
            );
        }
        Ok(())
    }
}

impl Config {
    /// The keys of `new` that differ from `self` and take effect only at a restart: what is
    /// bound or negotiated when a listener starts or a connection opens. A reload applies
    /// everything else (routes, clusters, CORS, message and header limits of calls,
    /// `max_call`, `drain_delay`, heartbeat bounds) to new calls.
    pub(crate) fn restart_only_changes(&self, new: &Config) -> Vec<&'static str> {
        let mut changed = Vec::new();
        let mut check = |key, differs: bool| {
            if differs {
                changed.push(key);
            }
        };
        check("listener", self.listeners != new.listeners);
        check("admin", self.admin != new.admin);
        // The WebTransport listener also keeps the CORS origins and limits it started with.
        check("webtransport", self.webtransport != new.webtransport);
        if self.webtransport.is_some() {
            check("cors (on the WebTransport listener)", self.cors != new.cors);
            check(
                "limits (on the WebTransport listener)",
                self.limits != new.limits,
            );
        }
        check(
            "limits.max_concurrent_streams",
            self.limits.max_concurrent_streams != new.limits.max_concurrent_streams,
        );
        check(
            "limits.max_header_list_size (as HTTP/2 announces it; calls get the new limit)",
            self.limits.max_header_list_size != new.limits.max_header_list_size,
        );
        check(
            "keepalive.client_ping_interval, keepalive.client_ping_timeout",
            self.keepalive.client_ping_interval != new.keepalive.client_ping_interval
                || self.keepalive.client_ping_timeout != new.keepalive.client_ping_timeout,
        );
        check(
            "timeouts.header_read",
            self.timeouts.header_read != new.timeouts.header_read,
        );
        check(
            "timeouts.idle_connection",
            self.timeouts.idle_connection != new.timeouts.idle_connection,
        );
        check(
            "limits.max_connections",
            self.limits.max_connections != new.limits.max_connections,
        );
        check(
            "timeouts.shutdown_grace",
            self.timeouts.shutdown_grace != new.timeouts.shutdown_grace,
        );
        check(
            "log.format, log.level",
            self.log.format != new.log.format || self.log.level != new.log.level,
        );
        check("tracing", self.tracing != new.tracing);
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text)
    }

    const MINIMAL: &str = r#"
        [[listener]]
        address = "127.0.0.1:8080"
        [clusters.backend]
        addresses = ["http://127.0.0.1:50051"]
        [routes]
        "*" = "backend"
    "#;

    #[test]
    fn minimal_file_gets_safe_defaults() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.limits.max_request_message_size, 4 * 1024 * 1024);
        assert!(config.cors.allow_origins.is_empty());
        assert_eq!(config.timeouts.shutdown_grace, Duration::from_secs(10));
        assert_eq!(config.timeouts.drain_delay, Duration::from_secs(5));
        assert_eq!(config.timeouts.idle_connection, Duration::from_secs(300));
        assert_eq!(config.limits.max_connections, 10_000);
    }

    #[test]
    fn connection_limits() {
        let config = parse(&format!(
            "{MINIMAL}\n[limits]\nmax_connections = 5\n[timeouts]\nidle_connection = \"0s\"\n[webtransport]\naddress = \"127.0.0.1:4433\"\nmax_sessions_per_client = 3\n"
        ))
        .unwrap();
        assert_eq!(config.limits.max_connections, 5);
        assert!(config.timeouts.idle_connection.is_zero());
        assert_eq!(
            config.webtransport.map(|wt| wt.max_sessions_per_client),
            Some(3)
        );
        let zero = parse(&format!("{MINIMAL}\n[limits]\nmax_connections = 0\n"));
        assert!(zero.unwrap_err().contains("limits.max_connections"));
    }

    #[test]
    fn the_example_file_is_valid() {
        let text = include_str!("../../../weir.example.toml");
        let config = parse(text).unwrap();
        // `weir call` learns the schema of a service by server reflection, routed like it.
        for reflection in [
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ] {
            assert_eq!(
                config.routes.get(reflection),
                config.routes.get("grpc.testing.TestService"),
                "{reflection}"
            );
        }
    }

    #[test]
    fn errors_name_the_key() {
        let unknown = format!("{MINIMAL}\n[limits]\nmax_mesage_size = 1\n");
        let err = parse(&unknown).unwrap_err();
        assert!(err.contains("max_mesage_size"), "{err}");

        let bad_route = MINIMAL.replace(r#""*" = "backend""#, r#""*" = "nope""#);
        let err = parse(&bad_route).unwrap_err();
        assert!(
            err.contains("routes.\"*\"") && err.contains("nope"),
            "{err}"
        );

        let bad_addr = MINIMAL.replace("http://127.0.0.1:50051", "ftp://x");
        let err = parse(&bad_addr).unwrap_err();
        assert!(err.contains("clusters.backend.addresses"), "{err}");

        let bad_duration = format!("{MINIMAL}\n[timeouts]\nmax_call = \"5 parsecs\"\n");
        let err = parse(&bad_duration).unwrap_err();
        assert!(err.contains("max_call"), "{err}");
    }

    #[test]
    fn values_built_in_code_are_what_the_file_says() {
        let listen: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let mut config =
            Config::route_all(listen, "backend", vec!["http://127.0.0.1:50051".to_owned()]);
        assert_eq!(config, parse(MINIMAL).unwrap());

        config.admin = Some(Admin {
            address: "127.0.0.1:9090".parse().unwrap(),
        });
        config.webtransport = Some(WebTransport::new("127.0.0.1:4433".parse().unwrap()));
        config.timeouts.max_call = Some(Duration::from_secs(300));
        let file = format!(
            "{MINIMAL}\n[admin]\naddress = \"127.0.0.1:9090\"\n[webtransport]\naddress = \"127.0.0.1:4433\"\n[timeouts]\nmax_call = \"5m\"\n"
        );
        assert_eq!(config, parse(&file).unwrap());
    }

    #[test]
    fn upstream_urls() {
        assert_eq!(
            Upstream::parse("http://localhost:50051").unwrap(),
            Upstream {
                tls: false,
                host: "localhost".into(),
                port: 50051
            }
        );
        assert_eq!(Upstream::parse("https://api.example").unwrap().port, 443);
        assert_eq!(Upstream::parse("http://[::1]:1").unwrap().host, "::1");
        assert!(Upstream::parse("127.0.0.1:50051").is_err());
        assert!(Upstream::parse("http://h:1/path").is_err());
    }

    #[test]
    fn a_reload_names_what_needs_a_restart() {
        let old = parse(MINIMAL).unwrap();
        assert!(
            old.restart_only_changes(&parse(MINIMAL).unwrap())
                .is_empty()
        );
        // Routes, clusters, CORS and limits of calls apply at once.
        let applied = parse(&format!(
            "{MINIMAL}\n[cors]\nallow_origins = [\"https://a.example\"]\n[limits]\nmax_request_message_size = 10\n[timeouts]\nmax_call = \"5s\"\ndrain_delay = \"1s\"\n"
        ))
        .unwrap();
        assert!(old.restart_only_changes(&applied).is_empty());
        let restart = parse(&format!(
            "{MINIMAL}\n[admin]\naddress = \"127.0.0.1:9\"\n[timeouts]\nshutdown_grace = \"1s\"\n"
        ))
        .unwrap();
        assert_eq!(
            old.restart_only_changes(&restart),
            ["admin", "timeouts.shutdown_grace"]
        );
    }
}
