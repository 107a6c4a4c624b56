//! `weir serve` with a WebTransport listener stops as soon as no call is open, not at the end
//! of its shutdown grace period.

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
