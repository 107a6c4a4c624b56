//! `weir demo`: the gateway with the interop TestService as its in-process backend.
//!
//! The TestService runs in this process on a private loopback port, and the gateway proxies
//! to it exactly as it would to any upstream: the demo exercises the production code path.
//! Beside the TestService it offers server reflection (`grpc.reflection.v1` and `v1alpha`,
//! tonic-reflection), so `weir call` and other tools learn its schema from it.

use tokio_util::sync::CancellationToken;

use crate::DemoArgs;
use crate::config::{self, Config};

/// The demo's page, served at `/` (built from `web/client` by `npm run build:demo`).
const DEMO_PAGE: &str = include_str!("assets/index.html");

pub(crate) async fn run(args: DemoArgs) -> Result<(), String> {
    let DemoArgs {
        listen,
        allow_origins,
        admin_listen: admin,
        webtransport_listen,
        log_format: _,
    } = args;
    let backend = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot start the in-process TestService: {e}"))?;
    let backend_addr = backend.local_addr().map_err(|e| e.to_string())?;
    let service = backend_service()?;
    let stop_backend = CancellationToken::new();
    let backend_task = tokio::spawn({
        let stop = stop_backend.clone().cancelled_owned();
        async move {
            weir::server::Server::new()
                .serve(backend, service, stop)
                .await;
        }
    });

    let mut config = Config::route_all(
        listen,
        "testservice",
        vec![format!("http://{backend_addr}")],
    );
    config.admin = admin.map(|address| config::Admin { address });
    config.webtransport = webtransport_listen.map(config::WebTransport::new);
    config.cors.allow_origins = allow_origins;
    // No load balancer to wait for: Ctrl-C stops the demo at once.
    config.timeouts.drain_delay = std::time::Duration::ZERO;
    config.validate()?;
    tracing::info!(backend = %backend_addr, "in-process TestService started");

    let result = crate::gateway::run(
        config,
        None,
        None,
        Some(DEMO_PAGE),
        "weir demo",
        crate::Signals::install(),
        // Nothing to reload: a hangup of its terminal ends the demo.
        None,
    )
    .await;
    stop_backend.cancel();
    let _ = backend_task.await;
    result
}

/// The TestService routes with server reflection of their descriptors, behind the interop
/// metadata echo.
fn backend_service() -> Result<weir_testservice::TestServer, String> {
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(weir_testservice::FILE_DESCRIPTOR_SET)
    };
    let v1 = reflection()
        .build_v1()
        .map_err(|e| format!("server reflection: {e}"))?;
    let v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| format!("server reflection: {e}"))?;
    let routes = weir_testservice::routes()
        .add_service(v1)
        .add_service(v1alpha)
        .prepare();
    Ok(weir_testservice::EchoMetadata::new(routes))
}
