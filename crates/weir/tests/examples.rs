//! The examples as their users run them: `axum_side_by_side` started as a process, its REST
//! routes and a gRPC-Web call to its tonic service checked over real sockets.
//!
//! The test runs the example's executable, which must be built first:
//! `cargo build -p weir --examples` (scripts/test does; `cargo test` without a target filter
//! builds the examples too).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use weir_client::{CallOptions, Client, HttpVersion, Mode};
use weir_testservice::pb::{SimpleRequest, SimpleResponse};

/// Hang guard, not a performance assertion.
const GUARD: Duration = Duration::from_secs(30);

/// An example's process, ended when the test is done with it.
struct Example {
    _child: Child,
    addr: SocketAddr,
}

/// `target/<profile>/examples/<name>`, next to this test's `target/<profile>/deps/`.
fn executable(name: &str) -> PathBuf {
    let test = std::env::current_exe().expect("this test's path");
    let profile_dir = test
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test runs from target/<profile>/deps");
    profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

async fn start(name: &str) -> Example {
    let path = executable(name);
    assert!(
        path.exists(),
        "the `{name}` example's executable {} is missing: build the examples first \
         (`cargo build -p weir --examples`)",
        path.display()
    );
    let mut child = Command::new(&path)
        .args(["--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // Ends the process we started (and only it) when the test is done.
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", path.display()));
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(GUARD, async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if let Some(url) = line.strip_prefix("listening on http://") {
                return url.trim().parse::<SocketAddr>().expect("an address");
            }
        }
        panic!("the `{name}` example exited before listening");
    })
    .await
    .expect("hang guard: example start");
    Example {
        _child: child,
        addr,
    }
}

/// A plain HTTP/1.1 GET, as curl would send it.
async fn get(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::get(path)
        .header(header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn axum_side_by_side_serves_rest_and_grpc_web() {
    let example = start("axum_side_by_side").await;
    let addr = example.addr;

    let (status, body) = tokio::time::timeout(GUARD, get(addr, "/health"))
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));
    let (status, body) = tokio::time::timeout(GUARD, get(addr, "/hello/ada"))
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "hello, ada\n"));

    let request = SimpleRequest {
        response_size: 7,
        ..Default::default()
    };
    for (version, mode) in [
        (HttpVersion::Http1, Mode::Binary),
        (HttpVersion::Http2, Mode::Text),
    ] {
        let client = Client::builder(format!("http://{addr}"))
            .http_version(version)
            .mode(mode)
            .build()
            .unwrap();
        let reply = tokio::time::timeout(
            GUARD,
            client.unary_message::<_, SimpleResponse>(
                "grpc.testing.TestService/UnaryCall",
                &request,
                CallOptions::new(),
            ),
        )
        .await
        .expect("hang guard: unary call")
        .unwrap_or_else(|status| panic!("{version:?} {mode:?}: {status:?}"));
        let payload = reply.into_message().payload.expect("a payload");
        assert_eq!(payload.body.len(), 7, "{version:?} {mode:?}");
    }
}
