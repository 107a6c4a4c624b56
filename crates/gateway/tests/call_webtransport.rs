//! `weir call --webtransport`, through the `weir` binary against `weir demo
//! --webtransport-listen`: every call type, certificate trust by hash and by the discovery
//! document, metadata, error statuses, and a full-duplex ping-pong over stdin and stdout.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

const WEIR: &str = env!("CARGO_BIN_EXE_weir");

/// How long anything may take before the test is declared hung (never a timing assertion).
const HANG_GUARD: Duration = Duration::from_secs(60);

async fn guard<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(HANG_GUARD, future).await {
        Ok(value) => value,
        Err(_) => panic!("hang guard: {what} did not complete within {HANG_GUARD:?}"),
    }
}

/// `weir demo` with WebTransport, on free ports; killed when dropped.
struct Demo {
    _child: tokio::process::Child,
    /// The gRPC-Web (and discovery) address, http://HOST:PORT.
    http: String,
    /// The WebTransport session URL.
    session: String,
    /// The development certificate's SHA-256, hex.
    hash: String,
}

async fn demo() -> Demo {
    let mut child = tokio::process::Command::new(WEIR)
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--webtransport-listen",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut http, mut session, mut hash) = (None, None, None);
    guard("weir demo to listen", async {
        while http.is_none() || session.is_none() {
            let line = lines.next_line().await.unwrap().expect("weir demo exited");
            if let Some((_, url)) = line.split_once("listening on ") {
                http = Some(url.trim().to_owned());
            }
            // "webtransport on URL (development certificate sha-256 HEX)"
            if let Some((_, rest)) = line.split_once("webtransport on ") {
                let mut words = rest.split_whitespace();
                session = words.next().map(str::to_owned);
                hash = words.last().map(|h| h.trim_end_matches(')').to_owned());
            }
        }
    })
    .await;
    // Keep reading stdout so the demo never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Demo {
        _child: child,
        http: http.unwrap(),
        session: session.unwrap(),
        hash: hash.unwrap(),
    }
}

struct Output {
    success: bool,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "success: {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.success, self.stdout, self.stderr
        )
    }
}

/// Runs `weir call ARGS... --webtransport` with `stdin` as its input, to the end.
async fn call(args: &[&str], stdin: &str) -> Output {
    let mut child = tokio::process::Command::new(WEIR)
        .arg("call")
        .args(args)
        .arg("--webtransport")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let output = guard("weir call", child.wait_with_output()).await.unwrap();
    Output {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

const UNARY: &str = "grpc.testing.TestService/UnaryCall";
const SERVER_STREAMING: &str = "grpc.testing.TestService/StreamingOutputCall";
const CLIENT_STREAMING: &str = "grpc.testing.TestService/StreamingInputCall";
const BIDI: &str = "grpc.testing.TestService/FullDuplexCall";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_type_over_webtransport() {
    let demo = demo().await;
    // The session address as the demo printed it, and as HOST:PORT (path and version added).
    let host_port = demo
        .session
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();

    // Unary, trusting the certificate by its hash; metadata echoed in headers and trailers.
    for addr in [demo.session.as_str(), host_port.as_str()] {
        let out = call(
            &[
                addr,
                UNARY,
                "--cert-hash",
                &demo.hash,
                "-d",
                r#"{"responseSize": 3}"#,
                "-H",
                "x-grpc-test-echo-initial:ada",
                "-H",
                "x-grpc-test-echo-trailing-bin:q80",
                "-v",
            ],
            "",
        )
        .await;
        assert!(out.success, "{out:?}");
        assert_eq!(out.stdout, "{\"payload\":{\"body\":\"AAAA\"}}\n", "{out:?}");
        assert!(
            out.stderr.contains("x-grpc-test-echo-initial: ada"),
            "{out:?}"
        );
        assert!(
            out.stderr.contains("x-grpc-test-echo-trailing-bin: q80"),
            "{out:?}"
        );
        assert!(out.stderr.contains("status: OK"), "{out:?}");
    }

    // Server streaming, with the session URL and hash from the discovery document.
    let out = call(
        &[
            &demo.http,
            SERVER_STREAMING,
            "--discover",
            "-d",
            r#"{"responseParameters": [{"size": 1}, {"size": 2}, {"size": 3}]}"#,
        ],
        "",
    )
    .await;
    assert!(out.success, "{out:?}");
    assert_eq!(
        out.stdout,
        "{\"payload\":{\"body\":\"AA==\"}}\n{\"payload\":{\"body\":\"AAA=\"}}\n{\"payload\":{\"body\":\"AAAA\"}}\n",
        "{out:?}"
    );

    // Client streaming from stdin, raw messages out.
    let out = call(
        &[&demo.http, CLIENT_STREAMING, "--discover"],
        "{\"payload\":{\"body\":\"AAAA\"}}\n{}\n{\"payload\":{\"body\":\"AA==\"}}\n",
    )
    .await;
    assert!(out.success, "{out:?}");
    assert_eq!(out.stdout, "{\"aggregatedPayloadSize\":4}\n", "{out:?}");

    // Bidi with all of stdin at once; raw hex out.
    let out = call(
        &[&demo.http, BIDI, "--discover", "--raw"],
        // responseParameters [{size: 1}], then [{size: 2}].
        "12020801\n12020802\n",
    )
    .await;
    assert!(out.success, "{out:?}");
    // payload {body: [0]}, then payload {body: [0, 0]}.
    assert_eq!(out.stdout, "0a03120100\n0a0412020000\n", "{out:?}");

    // An empty client stream.
    let out = call(&[&demo.http, BIDI, "--discover"], "").await;
    assert!(out.success, "{out:?}");
    assert_eq!(out.stdout, "", "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_exit_with_status_1() {
    let demo = demo().await;

    // An error status, with its trailers under -v.
    let out = call(
        &[
            &demo.http,
            UNARY,
            "--discover",
            "-d",
            r#"{"responseStatus": {"code": 5, "message": "nope"}}"#,
            "-v",
        ],
        "",
    )
    .await;
    assert!(!out.success, "{out:?}");
    assert_eq!(out.stdout, "", "{out:?}");
    assert!(out.stderr.contains("grpc-status: 5"), "{out:?}");
    assert!(
        out.stderr.contains("call failed: NOT_FOUND: nope"),
        "{out:?}"
    );

    // A deadline the server cannot meet.
    let out = call(
        &[
            &demo.http,
            SERVER_STREAMING,
            "--discover",
            "--timeout",
            "100ms",
            "-d",
            r#"{"responseParameters": [{"size": 1, "intervalUs": 30000000}]}"#,
        ],
        "",
    )
    .await;
    assert!(!out.success, "{out:?}");
    assert!(out.stderr.contains("DEADLINE_EXCEEDED"), "{out:?}");

    // A development certificate is not trusted by the system's roots, nor by another hash.
    for trust in [&[][..], &["--cert-hash", &"00".repeat(32)][..]] {
        let mut args = vec![demo.session.as_str(), UNARY, "-d", "{}"];
        args.extend_from_slice(trust);
        let out = call(&args, "").await;
        assert!(!out.success, "{out:?}");
        assert!(
            out.stderr.contains("WebTransport connection failed"),
            "{out:?}"
        );
    }

    // Bad input cancels the call and is what is reported.
    let out = call(
        &[&demo.http, BIDI, "--discover"],
        "{\"responseParameters\": [{\"size\": 1}]}\n{\"nope\": 1}\n",
    )
    .await;
    assert!(!out.success, "{out:?}");
    assert!(
        out.stderr.contains("unrecognized field name 'nope'"),
        "{out:?}"
    );

    // No discovery document where nothing listens.
    let plain = "http://127.0.0.1:1";
    let out = call(&[plain, UNARY, "--discover", "-d", "{}"], "").await;
    assert!(!out.success, "{out:?}");
    assert!(
        out.stderr.contains("/.well-known/weir/webtransport"),
        "{out:?}"
    );
}

/// Each line of stdin is sent as soon as it is read, and each response printed as soon as it
/// arrives: the test writes a request only after it has read the answer to the previous one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_ping_pong_over_stdin_and_stdout() {
    let demo = demo().await;
    let mut child = tokio::process::Command::new(WEIR)
        .args(["call", &demo.http, BIDI, "--webtransport", "--discover"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let mut output = BufReader::new(child.stdout.take().unwrap()).lines();
    for (size, body) in [(1, "AA=="), (2, "AAA="), (3, "AAAA"), (1, "AA==")] {
        let request = format!("{{\"responseParameters\": [{{\"size\": {size}}}]}}\n");
        input.write_all(request.as_bytes()).await.unwrap();
        input.flush().await.unwrap();
        let line = guard("an answer to the last line", output.next_line())
            .await
            .unwrap()
            .expect("weir call ended early");
        assert_eq!(line, format!("{{\"payload\":{{\"body\":\"{body}\"}}}}"));
    }
    drop(input);
    assert_eq!(guard("the end", output.next_line()).await.unwrap(), None);
    let status = guard("weir call to exit", child.wait()).await.unwrap();
    assert!(status.success());
}

/// A server that never answers (the QUIC handshake never completes): the session is given up
/// at the deadline, with a clear message, instead of waiting on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_fails_by_the_deadline() {
    // Bound, so that no "port unreachable" ends the attempt early, and never read.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = format!("127.0.0.1:{}", silent.local_addr().unwrap().port());
    let hash = "00".repeat(32);
    let out = call(
        &[
            &addr,
            UNARY,
            "--cert-hash",
            &hash,
            "--timeout",
            "300ms",
            "-d",
            "{}",
        ],
        "",
    )
    .await;
    assert!(!out.success, "{out:?}");
    assert!(
        out.stderr
            .contains("DEADLINE_EXCEEDED: no WebTransport session within --timeout 300ms"),
        "{out:?}"
    );
    drop(silent);
}
