//! `weir serve` with a WebTransport listener: it keeps accepting sessions during the drain
//! phase of a stop, and stops as soon as no call is open, not at the end of its shutdown
//! grace period.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.
#![cfg(unix)]

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};

const WEIR: &str = env!("CARGO_BIN_EXE_weir");

/// Far below the grace period of the configuration, far above what stopping takes.
const HANG_GUARD: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_gateway_with_webtransport_stops_at_once() {
    let dir = std::env::temp_dir().join(format!("weir-wt-shutdown-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("weir.toml");
    // The upstream is never called; the grace period is an hour.
    std::fs::write(
        &config,
        "[[listener]]\naddress = \"127.0.0.1:0\"\n\
         [clusters.up]\naddresses = [\"http://127.0.0.1:9\"]\n\
         [routes]\n\"*\" = \"up\"\n\
         [webtransport]\naddress = \"127.0.0.1:0\"\n\
         [timeouts]\nshutdown_grace = \"1h\"\ndrain_delay = \"0s\"\n",
    )
    .unwrap();
    let mut child = tokio::process::Command::new(WEIR)
        .args(["serve", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut http, mut webtransport) = (false, false);
    tokio::time::timeout(HANG_GUARD, async {
        while !(http && webtransport) {
            let line = lines.next_line().await.unwrap().expect("weir serve exited");
            http |= line.contains("listening on ");
            webtransport |= line.contains("webtransport on ");
        }
    })
    .await
    .expect("hang guard: weir serve did not start");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let pid = child.id().unwrap().to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(HANG_GUARD, child.wait())
        .await
        .expect("hang guard: weir serve waited for its grace period with nothing open")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads lines from `lines` until every prefix was seen; returns what followed each.
async fn wait_for_lines(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    prefixes: &[&str],
) -> Vec<String> {
    let mut found: Vec<Option<String>> = vec![None; prefixes.len()];
    tokio::time::timeout(HANG_GUARD, async {
        while found.iter().any(Option::is_none) {
            let line = lines.next_line().await.unwrap().expect("process exited");
            for (i, prefix) in prefixes.iter().enumerate() {
                if let Some((_, rest)) = line.split_once(prefix) {
                    found[i] = Some(rest.trim().to_owned());
                }
            }
        }
    })
    .await
    .expect("hang guard: no start-up lines");
    found.into_iter().map(Option::unwrap_or_default).collect()
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

    let dir = std::env::temp_dir().join(format!("weir-wt-drain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("weir.toml");
    std::fs::write(
        &config,
        format!(
            "[[listener]]\naddress = \"127.0.0.1:0\"\n\
             [clusters.up]\naddresses = [\"{}\"]\n\
             [routes]\n\"*\" = \"up\"\n\
             [webtransport]\naddress = \"127.0.0.1:0\"\n\
             [timeouts]\ndrain_delay = \"20s\"\nshutdown_grace = \"1h\"\n",
            upstream[0]
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(WEIR)
        .args(["serve", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let found = wait_for_lines(&mut lines, &["listening on ", "webtransport on "]).await;
    let http = found[0].clone();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let pid = child.id().unwrap().to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());

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
        child.try_wait().unwrap().is_none(),
        "weir serve is still draining"
    );

    // A second signal cuts the drain short; with nothing open it exits at once (far below
    // the 20 s drain delay).
    let second = std::time::Instant::now();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(HANG_GUARD, child.wait())
        .await
        .expect("hang guard: weir serve did not stop after a second signal")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        second.elapsed() < Duration::from_secs(10),
        "stopped {:?} after the second signal; the drain was not cut short",
        second.elapsed()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
