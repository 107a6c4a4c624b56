//! What the `weir serve` integration tests share: a gateway started from a config file, its
//! start-up lines, and signals to it.

#![allow(dead_code)] // Each test file uses part of it.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

pub const WEIR: &str = env!("CARGO_BIN_EXE_weir");

/// How long anything may take before a test is declared hung (never a timing assertion).
pub const HANG_GUARD: Duration = Duration::from_secs(60);

/// `weir serve --config` on a file of its own; killed, and the file removed, when dropped.
pub struct Serve {
    pub child: Child,
    pub lines: Lines<BufReader<ChildStdout>>,
    dir: PathBuf,
}

/// Starts `weir serve` on `config` (TOML), written to a fresh directory named after `name`.
pub fn serve(name: &str, config: &str, stderr: Stdio) -> Serve {
    let dir = std::env::temp_dir().join(format!("weir-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("weir.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = tokio::process::Command::new(WEIR)
        .args(["serve", "--config"])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    Serve { child, lines, dir }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reads lines until every prefix was seen; returns what followed each, trimmed.
pub async fn wait_for_lines(
    lines: &mut Lines<BufReader<ChildStdout>>,
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

/// Sends SIGTERM to `child`.
pub async fn terminate(child: &Child) {
    let pid = child.id().unwrap().to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
}
