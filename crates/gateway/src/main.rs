//! `weir`: gRPC for the browser with every kind of streaming.
//!
//! The binary is wiring only: command line, configuration, logging, listeners. Everything a
//! Rust user might embed lives in libraries: the gateway's services in `weir`, `weir call` in
//! `weir-call`.

mod config;
mod demo;
mod gateway;
mod telemetry;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use config::LogFormat;

/// gRPC for the browser with every kind of streaming.
///
/// weir puts gRPC services on the web: browsers call them with gRPC-Web (binary and text,
/// HTTP/1.1 and HTTP/2, unary and every kind of streaming), and native gRPC clients use the
/// same port.
#[derive(Debug, Parser)]
#[command(name = "weir", version, propagate_version = true, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Put gRPC servers on the web: a gateway in front of upstream gRPC servers.
    ///
    /// Either give a config file (see weir.example.toml) or the quick flags for one upstream:
    ///
    ///   weir serve --listen 127.0.0.1:8080 --upstream http://127.0.0.1:50051 --allow-origin http://localhost:3000
    ///
    /// Stop it with Ctrl-C or SIGTERM: /healthz turns 503 while it keeps accepting for the
    /// drain delay (a second signal cuts that short), then it stops accepting, lets calls
    /// finish within the grace period and ends the rest with UNAVAILABLE. SIGHUP reloads the
    /// config file: new calls take the new routes, clusters, CORS origins and limits.
    #[command(verbatim_doc_comment)]
    Serve(ServeArgs),
    /// Serve the gRPC interop TestService in-process, with a page that explains what it is.
    ///
    /// It is the gateway with an in-process backend: gRPC-Web and native gRPC over HTTP/1.1
    /// and cleartext HTTP/2 on one port. Stop it with Ctrl-C or SIGTERM.
    Demo(DemoArgs),
    /// Call a gRPC-Web method (or one over WebTransport): JSON (or raw bytes) in and out.
    Call(weir_call::CallArgs),
}

#[derive(Debug, Clone, clap::Args)]
struct ServeArgs {
    /// Configuration file (TOML). Conflicts with the quick flags.
    #[arg(long, short, value_name = "FILE", conflicts_with_all = ["listen", "upstreams", "admin_listen", "max_timeout"])]
    config: Option<PathBuf>,

    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,

    /// Upstream gRPC server, http://HOST:PORT (cleartext HTTP/2) or https://HOST:PORT (TLS).
    /// Repeat for several addresses of one service; every gRPC service is routed to them.
    #[arg(long = "upstream", value_name = "URL")]
    upstreams: Vec<String>,

    /// Origin allowed to call cross-origin (repeatable; `*` allows every origin). With
    /// --config, added to the file's cors.allow_origins.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origins: Vec<String>,

    /// Address of the admin listener (/metrics, /healthz).
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<SocketAddr>,

    /// Longest deadline of any call, e.g. 5m; calls without grpc-timeout get it.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    max_timeout: Option<Duration>,

    /// How long /healthz answers 503 on SIGTERM while every listener still accepts, e.g. 5s
    /// (the default) or 0s. With --config, overrides the file's timeouts.drain_delay.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    drain_delay: Option<Duration>,

    /// Log format on stderr (overrides the config file's [log] format; default text).
    #[arg(long, value_enum, env = "WEIR_LOG_FORMAT")]
    log_format: Option<LogFormat>,

    /// Check the configuration and exit without serving: status 0 and a summary on stdout
    /// when it is valid, 1 and what is wrong when not (TLS files are read at start, not here).
    #[arg(long)]
    check: bool,
}

#[derive(Debug, clap::Args)]
struct DemoArgs {
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Origin allowed to call cross-origin, e.g. http://localhost:3000 (repeatable; `*` allows
    /// every origin). Without it only same-origin pages and non-browser clients may call.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origins: Vec<String>,

    /// Address of the admin listener (/metrics, /healthz).
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<SocketAddr>,

    /// UDP address for gRPC over WebTransport (HTTP/3), with a development certificate whose
    /// hash is published at /.well-known/weir/webtransport.
    #[arg(long, value_name = "ADDR")]
    webtransport_listen: Option<SocketAddr>,

    /// Log format on stderr.
    #[arg(long, value_enum, env = "WEIR_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
}

fn serve_config(args: ServeArgs) -> Result<config::Config, String> {
    let mut config = match args.config {
        Some(path) => config::Config::load(&path)?,
        None => {
            let listen = args
                .listen
                .ok_or("give --config FILE, or --listen ADDR with at least one --upstream URL")?;
            if args.upstreams.is_empty() {
                return Err(
                    "--upstream URL is required with --listen (or use --config FILE)".into(),
                );
            }
            let mut config = config::Config::route_all(listen, "upstream", args.upstreams);
            config.admin = args.admin_listen.map(|address| config::Admin { address });
            config.timeouts.max_call = args.max_timeout;
            config
                .validate()
                .map_err(|e| e.replace("clusters.upstream.addresses", "--upstream"))?;
            config
        }
    };
    config.cors.allow_origins.extend(args.allow_origins);
    if let Some(delay) = args.drain_delay {
        config.timeouts.drain_delay = delay;
    }
    config.validate()?;
    Ok(config)
}

/// What `weir serve --check` says of a valid configuration.
fn config_summary(config: &config::Config) -> String {
    let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    format!(
        "configuration OK: {}, {}, {}{}{}",
        count(config.listeners.len(), "listener"),
        count(config.clusters.len(), "cluster"),
        count(config.routes.len(), "route"),
        if config.admin.is_some() {
            ", admin listener"
        } else {
            ""
        },
        if config.webtransport.is_some() {
            ", WebTransport listener"
        } else {
            ""
        },
    )
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("weir: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut telemetry = None;
    let result = match cli.command {
        Command::Serve(args) => match serve_config(args.clone()) {
            Ok(config) if args.check => {
                println!("weir serve: {}", config_summary(&config));
                Ok(())
            }
            Ok(config) => {
                // SIGHUP and POST /reload read the file again, with the same overrides.
                let log_format = args.log_format;
                let load: Option<gateway::Loader> = args
                    .config
                    .is_some()
                    .then(|| Box::new(move || serve_config(args.clone())) as gateway::Loader);
                let installed = {
                    // The trace exporter's batch task runs on the runtime.
                    let _entered = runtime.enter();
                    telemetry::init(
                        log_format.unwrap_or(config.log.format),
                        &config.log.level,
                        config.tracing.as_ref(),
                    )
                };
                match installed {
                    Ok(installed) => {
                        let trace = installed.trace_hook();
                        telemetry = Some(installed);
                        // The signal handlers are installed inside the runtime, before
                        // anything listens.
                        runtime.block_on(async {
                            let (signals, hangups) = (Signals::install(), Hangups::install());
                            gateway::run(
                                config,
                                load,
                                trace,
                                None,
                                "weir serve",
                                signals,
                                Some(hangups),
                            )
                            .await
                        })
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        },
        Command::Demo(args) => {
            match telemetry::init(args.log_format, "info", None) {
                Ok(installed) => telemetry = Some(installed),
                Err(e) => eprintln!("weir: logging: {e}"),
            }
            runtime.block_on(demo::run(args))
        }
        Command::Call(args) => runtime
            .block_on(weir_call::run(args))
            .map_err(|e| e.to_string()),
    };
    if let Some(telemetry) = telemetry {
        telemetry.shutdown();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C and SIGTERM, each time they arrive: the first starts a graceful stop, a second
/// hurries it.
///
/// The handlers are installed by [`Signals::install`] (within the runtime), not when
/// [`recv`](Signals::recv) is first polled: a signal sent as soon as the gateway announced its
/// listeners stops it gracefully instead of killing it.
pub(crate) struct Signals {
    #[cfg(unix)]
    handlers: Vec<(&'static str, tokio::signal::unix::Signal)>,
}

impl Signals {
    pub(crate) fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut handlers = Vec::new();
            for (what, kind) in [
                ("Ctrl-C", SignalKind::interrupt()),
                ("SIGTERM", SignalKind::terminate()),
            ] {
                match signal(kind) {
                    Ok(handler) => handlers.push((what, handler)),
                    Err(e) => tracing::warn!("cannot listen for {what}: {e}"),
                }
            }
            Signals { handlers }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// The next signal's name.
    pub(crate) async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            if self.handlers.is_empty() {
                std::future::pending::<()>().await;
            }
            let waits = self.handlers.iter_mut().map(|(what, handler)| {
                Box::pin(async move {
                    handler.recv().await;
                    *what
                })
            });
            futures_util::future::select_all(waits).await.0
        }
        #[cfg(not(unix))]
        {
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::warn!("cannot listen for Ctrl-C: {e}");
                std::future::pending::<()>().await;
            }
            "Ctrl-C"
        }
    }
}

/// SIGHUP, each time it arrives: reload the configuration.
pub(crate) struct Hangups {
    #[cfg(unix)]
    handler: Option<tokio::signal::unix::Signal>,
}

impl Hangups {
    /// No handler: SIGHUP keeps its default action.
    pub(crate) fn none() -> Self {
        #[cfg(unix)]
        {
            Hangups { handler: None }
        }
        #[cfg(not(unix))]
        Hangups {}
    }

    pub(crate) fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::hangup()) {
                Ok(handler) => Hangups {
                    handler: Some(handler),
                },
                Err(e) => {
                    tracing::warn!("cannot listen for SIGHUP: {e}");
                    Hangups { handler: None }
                }
            }
        }
        #[cfg(not(unix))]
        Hangups {}
    }

    pub(crate) async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(handler) = &mut self.handler
            && handler.recv().await.is_some()
        {
            return;
        }
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn serve(flags: &[&str]) -> Result<config::Config, String> {
        let cli = Cli::try_parse_from(["weir", "serve"].iter().chain(flags))
            .map_err(|e| e.to_string())?;
        match cli.command {
            Command::Serve(args) => serve_config(args),
            command => panic!("not serve: {command:?}"),
        }
    }

    #[test]
    fn quick_flags_make_a_config() {
        let config = serve(&[
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "http://127.0.0.1:1",
            "--upstream",
            "http://127.0.0.1:2",
            "--admin-listen",
            "127.0.0.1:9090",
            "--max-timeout",
            "5m",
            "--allow-origin",
            "http://localhost:3000",
            "--drain-delay",
            "1s",
        ])
        .unwrap();
        assert_eq!(config.timeouts.drain_delay, Duration::from_secs(1));
        assert_eq!(config.clusters["upstream"].addresses.len(), 2);
        assert_eq!(config.routes["*"], "upstream");
        assert_eq!(config.timeouts.max_call, Some(Duration::from_secs(300)));
        assert!(config.admin.is_some());
        assert_eq!(config.cors.allow_origins, ["http://localhost:3000"]);
    }

    #[test]
    fn check_summarises_a_valid_configuration() {
        let config = serve(&[
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "http://127.0.0.1:1",
            "--check",
        ])
        .unwrap();
        assert_eq!(
            config_summary(&config),
            "configuration OK: 1 listener, 1 cluster, 1 route"
        );
    }

    #[test]
    fn logs_are_coloured_only_on_a_terminal_without_no_color() {
        assert!(telemetry::colour_logs(true, None));
        assert!(telemetry::colour_logs(true, Some("".into())));
        assert!(!telemetry::colour_logs(true, Some("1".into())));
        assert!(!telemetry::colour_logs(false, None));
    }

    #[test]
    fn quick_flag_errors_name_the_flag() {
        let err = serve(&["--listen", "127.0.0.1:0", "--upstream", "ftp://x"]).unwrap_err();
        assert!(err.starts_with("--upstream: "), "{err}");
        let err = serve(&["--listen", "127.0.0.1:0"]).unwrap_err();
        assert!(err.contains("--upstream URL is required"), "{err}");
        let err = serve(&[]).unwrap_err();
        assert!(err.contains("give --config FILE"), "{err}");
        let err = serve(&[
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "http://127.0.0.1:1",
            "--allow-origin",
            "localhost",
        ])
        .unwrap_err();
        assert!(err.contains("cors.allow_origins"), "{err}");
    }
}
