//! What a new user meets first, through the `weir` binary: `weir call` to nothing, to a
//! native gRPC server, to an unknown service, with a `.proto` that imports others, through
//! `weir.example.toml`, from a terminal; the help texts; logs on a pipe and on a terminal.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use prost::Message as _;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncWriteExt as _, BufReader};

const WEIR: &str = env!("CARGO_BIN_EXE_weir");

/// The repository's root, where a user runs `weir` from.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
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

/// Runs `weir ARGS...` from the repository's root, stdin empty, to the end.
async fn weir(args: &[&str]) -> Output {
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(WEIR)
            .args(args)
            .current_dir(repo())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("weir did not finish within 60 s")
    .unwrap();
    Output {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A `weir` process that announced `listening on URL` on stdout; killed when dropped.
struct Running {
    _child: tokio::process::Child,
    url: String,
}

async fn start(args: &[&str]) -> Running {
    let mut child = tokio::process::Command::new(WEIR)
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some((_, url)) = line.split_once("listening on ") {
                return url.trim().trim_end_matches('/').to_owned();
            }
        }
        panic!("weir {args:?} exited without listening");
    })
    .await
    .unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Running { _child: child, url }
}

/// A listener on a free port, and its URL.
async fn free_port() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url)
}

/// The TestService with server reflection, as a native gRPC server (no gRPC-Web), on a free
/// port for the rest of the test.
async fn native_with_reflection() -> String {
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(weir_testservice::FILE_DESCRIPTOR_SET)
        .build_v1()
        .unwrap();
    let routes = weir_testservice::routes().add_service(reflection).prepare();
    let (listener, url) = free_port().await;
    tokio::spawn(async move {
        weir::server::Server::new()
            .serve(listener, routes, std::future::pending())
            .await;
    });
    url
}

#[tokio::test]
async fn nothing_listening_is_a_refused_connection_not_a_reflection_failure() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    for extra in [&[][..], &["--raw"][..], &["--http1"][..]] {
        let mut args = vec![
            "call",
            &addr,
            "grpc.testing.TestService/EmptyCall",
            "-d",
            "",
        ];
        args.extend_from_slice(extra);
        let out = weir(&args).await;
        assert!(!out.success, "{out:?}");
        let first_line = out.stderr.lines().next().unwrap_or_default();
        assert!(
            first_line.contains(&format!("cannot connect to {addr}: Connection refused")),
            "{out:?}"
        );
        assert!(!out.stderr.contains("reflection"), "{out:?}");
    }
}

#[tokio::test]
async fn a_native_grpc_server_is_named_so_with_what_to_do() {
    let url = native_with_reflection().await;
    for extra in [&[][..], &["--raw"][..], &["--no-reflection"][..]] {
        let mut args = vec!["call", &url, "grpc.testing.TestService/EmptyCall", "-d", ""];
        args.extend_from_slice(extra);
        let out = weir(&args).await;
        assert!(!out.success, "{out:?}");
        assert!(
            out.stderr
                .contains("server answered with native gRPC (application/grpc"),
            "{out:?}"
        );
        assert!(out.stderr.contains("weir serve --listen"), "{out:?}");
        assert!(!out.stderr.contains("Some("), "{out:?}");
        assert!(!out.stderr.contains("--no-reflection skips"), "{out:?}");
    }
}

#[tokio::test]
async fn status_messages_and_details_are_printed() {
    // The interop TestService (tonic) answers an unknown service UNIMPLEMENTED, no message.
    let demo = start(&["demo", "--listen", "127.0.0.1:0"]).await;
    let out = weir(&["call", &demo.url, "pkg.Nope/Get", "--raw", "-d", ""]).await;
    assert!(!out.success, "{out:?}");
    assert!(
        out.stderr
            .contains("call failed: UNIMPLEMENTED (the server sent no message; servers answer so for a service or method they do not have"),
        "{out:?}"
    );

    // A status with a message and details (google.rpc.Status holding a Duration).
    #[derive(Clone, PartialEq, prost::Message)]
    struct RpcStatus {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
        #[prost(message, repeated, tag = "3")]
        details: Vec<prost_types::Any>,
    }
    let details = RpcStatus {
        code: 8,
        message: "slow down".into(),
        details: vec![prost_types::Any {
            type_url: "type.googleapis.com/google.protobuf.Duration".into(),
            value: prost_types::Duration {
                seconds: 5,
                nanos: 0,
            }
            .encode_to_vec(),
        }],
    };
    let details = weir_codec::metadata::encode_binary(&details.encode_to_vec());
    let (listener, url) = free_port().await;
    let service = tower::service_fn(move |_| {
        let details = details.clone();
        async move {
            http::Response::builder()
                .header("content-type", "application/grpc-web+proto")
                .header("grpc-status", "8")
                .header("grpc-message", "slow%20down")
                .header("grpc-status-details-bin", details)
                .body(weir::body::BoxBody::empty())
        }
    });
    tokio::spawn(async move {
        weir::server::Server::new()
            .serve(listener, service, std::future::pending())
            .await;
    });
    let out = weir(&["call", &url, "pkg.Svc/Get", "--raw", "-d", ""]).await;
    assert!(!out.success, "{out:?}");
    assert!(
        out.stderr
            .contains("call failed: RESOURCE_EXHAUSTED: slow down\n  details: type.googleapis.com/google.protobuf.Duration: \"5s\"\n"),
        "{out:?}"
    );
}

#[tokio::test]
async fn a_proto_file_finds_its_imports_without_dash_i() {
    let demo = start(&["demo", "--listen", "127.0.0.1:0"]).await;
    // As the user typed it, from the repository's root: test.proto imports
    // "grpc/testing/empty.proto", relative to proto/.
    let out = weir(&[
        "call",
        &demo.url,
        "grpc.testing.TestService/UnaryCall",
        "--proto",
        "proto/grpc/testing/test.proto",
        "-d",
        r#"{"responseSize": 2}"#,
    ])
    .await;
    assert!(out.success, "{out:?}");
    assert_eq!(out.stdout, "{\"payload\":{\"body\":\"AAA=\"}}\n", "{out:?}");

    // An import that is nowhere: said what to add.
    let dir = std::env::temp_dir().join(format!("weir-first-steps-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let proto = dir.join("a.proto");
    std::fs::write(
        &proto,
        "syntax = \"proto3\";\nimport \"elsewhere/b.proto\";\npackage a;\n",
    )
    .unwrap();
    let out = weir(&[
        "call",
        &demo.url,
        "a.Svc/Get",
        "--proto",
        proto.to_str().unwrap(),
        "-d",
        "{}",
    ])
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.success, "{out:?}");
    assert!(
        out.stderr.contains("import 'elsewhere/b.proto' not found")
            && out.stderr.contains("give -I DIR"),
        "{out:?}"
    );
}

#[tokio::test]
async fn the_example_config_routes_reflection_so_weir_call_learns_the_schema() {
    let upstream = native_with_reflection().await;
    let example = std::fs::read_to_string(repo().join("weir.example.toml")).unwrap();
    // Free ports, this test's upstream, no WebTransport listener.
    let config = example
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9901", "127.0.0.1:0")
        .replace("http://127.0.0.1:50051", &upstream);
    let (before, after) = config.split_once("[webtransport]").unwrap();
    let (_, after) = after.split_once("[cors]").unwrap();
    let config = format!("{before}[cors]{after}");
    let dir = std::env::temp_dir().join(format!("weir-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("weir.toml");
    std::fs::write(&path, config).unwrap();
    let gateway = start(&["serve", "--config", path.to_str().unwrap()]).await;
    let _ = std::fs::remove_dir_all(&dir);

    // A service only reflection knows (not in the built-in schema): the reflection service.
    let out = weir(&[
        "call",
        &gateway.url,
        "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "-d",
        r#"{"listServices": ""}"#,
        "-v",
    ])
    .await;
    assert!(out.success, "{out:?}");
    assert!(
        out.stdout
            .contains(r#"{"name":"grpc.testing.TestService"}"#),
        "{out:?}"
    );
    assert!(out.stderr.contains("schema: server reflection"), "{out:?}");

    // An unrouted service: the gateway's message comes through.
    let out = weir(&["call", &gateway.url, "pkg.Nope/Get", "--raw", "-d", ""]).await;
    assert!(!out.success, "{out:?}");
    assert!(
        out.stderr
            .contains("call failed: UNIMPLEMENTED: no route for /pkg.Nope/Get"),
        "{out:?}"
    );
}

#[tokio::test]
async fn help_texts_speak_of_what_each_command_takes() {
    let serve = weir(&["serve", "--help"]).await;
    assert!(serve.success, "{serve:?}");
    assert!(
        serve
            .stdout
            .contains("overrides the config file's [log] format"),
        "{serve:?}"
    );
    let demo = weir(&["demo", "--help"]).await;
    assert!(demo.success, "{demo:?}");
    assert!(demo.stdout.contains("--log-format"), "{demo:?}");
    assert!(!demo.stdout.contains("config file"), "{demo:?}");
    let call = weir(&["call", "--help"]).await;
    assert!(call.success, "{call:?}");
    assert!(!call.stdout.contains("--log-format"), "{call:?}");
    assert!(!call.stdout.contains("config file"), "{call:?}");
}

/// Reads `from` until `line` is seen (or 60 s pass); returns all read.
async fn read_until(from: impl AsyncRead + Unpin, line: &str) -> String {
    let mut lines = BufReader::new(from).lines();
    let mut seen = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(next)) = lines.next_line().await {
            seen.push_str(&next);
            seen.push('\n');
            if next.contains(line) {
                return;
            }
        }
    })
    .await;
    seen
}

#[tokio::test]
async fn logs_on_a_pipe_have_no_colour_codes() {
    let mut child = tokio::process::Command::new(WEIR)
        .args(["demo", "--listen", "127.0.0.1:0"])
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let logs = read_until(child.stderr.take().unwrap(), "TestService started").await;
    assert!(logs.contains("INFO"), "{logs}");
    assert!(!logs.contains("\x1b["), "{logs:?}");
}

/// Runs `command` (a shell command line) on a pseudo-terminal with util-linux's `script`,
/// writing `input` to it; returns what the terminal showed once `until` appeared.
async fn on_a_terminal(command: &str, env: &[(&str, &str)], input: &[u8], until: &str) -> String {
    let mut script = tokio::process::Command::new("script");
    script
        .args(["-q", "-e", "-c", command, "/dev/null"])
        .current_dir(repo())
        .env_remove("NO_COLOR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    for (key, value) in env {
        script.env(key, value);
    }
    let mut child = script
        .spawn()
        .expect("util-linux's `script` (Debian's bsdutils) runs commands on a terminal");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).await.unwrap();
    stdin.flush().await.unwrap();
    let seen = read_until(child.stdout.take().unwrap(), until).await;
    drop(stdin);
    seen
}

#[tokio::test]
async fn logs_on_a_terminal_are_coloured_unless_no_color() {
    let demo = format!("{WEIR} demo --listen 127.0.0.1:0");
    let coloured = on_a_terminal(&demo, &[], b"", "TestService started").await;
    assert!(coloured.contains("\x1b["), "{coloured:?}");
    let plain = on_a_terminal(&demo, &[("NO_COLOR", "1")], b"", "TestService started").await;
    assert!(plain.contains("INFO"), "{plain:?}");
    assert!(!plain.contains("\x1b["), "{plain:?}");
}

#[tokio::test]
async fn weir_call_at_a_terminal_says_what_it_reads() {
    let demo = start(&["demo", "--listen", "127.0.0.1:0"]).await;
    let command = format!(
        "{WEIR} call {} grpc.testing.TestService/FullDuplexCall",
        demo.url
    );
    let seen = on_a_terminal(
        &command,
        &[],
        b"{\"responseParameters\": [{\"size\": 1}]}\n\x04",
        "\"payload\"",
    )
    .await;
    assert!(
        seen.contains("reading request messages from stdin as JSON (grpc.testing.StreamingOutputCallRequest), one per line")
            && seen.contains("Ctrl-D ends the request stream"),
        "{seen:?}"
    );
    assert!(
        seen.contains("{\"payload\":{\"body\":\"AA==\"}}"),
        "{seen:?}"
    );

    // Not at a terminal: no prompt.
    let out = weir(&["call", &demo.url, "grpc.testing.TestService/EmptyCall"]).await;
    assert!(out.success, "{out:?}");
    assert!(!out.stderr.contains("stdin"), "{out:?}");
}

#[tokio::test]
async fn serve_check_validates_without_serving() {
    let out = weir(&["serve", "--config", "weir.example.toml", "--check"]).await;
    assert!(out.success, "{out:?}");
    assert_eq!(
        out.stdout,
        "weir serve: configuration OK: 1 listener, 1 cluster, 3 routes, admin listener, WebTransport listener\n",
        "{out:?}"
    );
    let dir = std::env::temp_dir().join(format!("weir-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("weir.toml");
    std::fs::write(
        &path,
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[clusters.a]\naddresses = [\"http://127.0.0.1:1\"]\n[routes]\n\"*\" = \"b\"\n",
    )
    .unwrap();
    let out = weir(&["serve", "--config", path.to_str().unwrap(), "--check"]).await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.success, "{out:?}");
    assert!(
        out.stderr
            .contains("names cluster \"b\", which is not defined"),
        "{out:?}"
    );
}
