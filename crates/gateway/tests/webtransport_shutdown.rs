//! `weir serve` with a WebTransport listener: it keeps accepting sessions during the drain
//! phase of a stop, and stops as soon as no call is open, not at the end of its shutdown
//! grace period.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.
#![cfg(unix)]

mod support;

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};

use support::{HANG_GUARD, WEIR, serve, terminate, wait_for_lines};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_gateway_with_webtransport_stops_at_once() {
    // The upstream is never called; the grace period is an hour.
    let mut gateway = serve(
        "wt-shutdown",
        "[[listener]]\naddress = \"127.0.0.1:0\"\n\
         [clusters.up]\naddresses = [\"http://127.0.0.1:9\"]\n\
         [routes]\n\"*\" = \"up\"\n\
         [webtransport]\naddress = \"127.0.0.1:0\"\n\
         [timeouts]\nshutdown_grace = \"1h\"\ndrain_delay = \"0s\"\n",
        Stdio::null(),
    );
    wait_for_lines(&mut gateway.lines, &["listening on ", "webtransport on "]).await;

    terminate(&gateway.child).await;
    let status = tokio::time::timeout(HANG_GUARD, gateway.child.wait())
        .await
        .expect("hang guard: weir serve waited for its grace period with nothing open")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webtransport_sessions_open_during_the_drain() {
    // The upstream: `weir demo` (native gRPC on its port, with server reflection).
    let mut demo = tokio::process::Command::new(WEIR)
        .args(["demo", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut demo_lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let upstream = wait_for_lines(&mut demo_lines, &["listening on "]).await;

    let mut gateway = serve(
        "wt-drain",
        &format!(
            "[[listener]]\naddress = \"127.0.0.1:0\"\n\
             [clusters.up]\naddresses = [\"{}\"]\n\
             [routes]\n\"*\" = \"up\"\n\
             [webtransport]\naddress = \"127.0.0.1:0\"\n\
             [timeouts]\ndrain_delay = \"20s\"\nshutdown_grace = \"1h\"\n",
            upstream[0]
        ),
        Stdio::null(),
    );
    let found = wait_for_lines(&mut gateway.lines, &["listening on ", "webtransport on "]).await;
    let http = found[0].clone();

    terminate(&gateway.child).await;

    // Within the drain: the discovery document is served and a new session carries a call.
    let call = tokio::process::Command::new(WEIR)
        .args([
            "call",
            &http,
            "grpc.testing.TestService/EmptyCall",
            "--webtransport",
            "--discover",
            "-d",
            "{}",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let call = tokio::time::timeout(HANG_GUARD, call)
        .await
        .expect("hang guard: weir call")
        .unwrap();
    assert!(
        call.status.success(),
        "weir call during the drain: {}",
        String::from_utf8_lossy(&call.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&call.stdout).trim(), "{}");
    assert!(
        gateway.child.try_wait().unwrap().is_none(),
        "weir serve is still draining"
    );

    // A second signal cuts the drain short; with nothing open it exits at once (far below
    // the 20 s drain delay).
    let second = std::time::Instant::now();
    terminate(&gateway.child).await;
    let status = tokio::time::timeout(HANG_GUARD, gateway.child.wait())
        .await
        .expect("hang guard: weir serve did not stop after a second signal")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        second.elapsed() < Duration::from_secs(10),
        "stopped {:?} after the second signal; the drain was not cut short",
        second.elapsed()
    );
}
