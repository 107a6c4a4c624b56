//! Connection-level limits of `weir::server::Server`: connections per listener and the idle
//! connection timeout (docs/operations.md, "Connection limits").

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Full, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use weir::body::BoxBody;
use weir::server::Server;

/// `GET /` answers at once; `GET /slow` streams 5 chunks 100 ms apart.
async fn service(request: Request<Incoming>) -> Result<Response<BoxBody>, Infallible> {
    if request.uri().path() == "/slow" {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, weir::body::BoxError>>(1);
        tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if tx
                    .send(Ok(Frame::data(Bytes::from_static(b"x"))))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        return Ok(Response::new(weir::body::boxed(body)));
    }
    Ok(Response::new(weir::body::boxed(Full::new(
        Bytes::from_static(b"ok"),
    ))))
}

async fn start(server: Server) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        server
            .serve(
                listener,
                tower::service_fn(service),
                std::future::pending::<()>(),
            )
            .await;
    });
    addr
}

/// Sends `GET path` on a keep-alive connection and reads the whole (chunked) response.
async fn get(stream: &mut TcpStream, path: &str) -> String {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed during the response");
            response.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&response);
            if text.ends_with("0\r\n\r\n")
                || (text.contains("content-length: 2") && text.ends_with("ok"))
            {
                return;
            }
        }
    })
    .await
    .expect("response in time");
    String::from_utf8(response).unwrap()
}

/// Whether the server closed `stream` (reads EOF) within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(within, stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_at_once() {
    let addr = start(Server::new().max_connections(2)).await;
    let mut first = TcpStream::connect(addr).await.unwrap();
    let mut second = TcpStream::connect(addr).await.unwrap();
    assert!(get(&mut first, "/").await.starts_with("HTTP/1.1 200"));
    assert!(get(&mut second, "/").await.starts_with("HTTP/1.1 200"));
    // A third is accepted and closed without an answer.
    let mut third = TcpStream::connect(addr).await.unwrap();
    assert!(closed_within(&mut third, Duration::from_secs(2)).await);
    // The open ones are unaffected; a slot that frees up takes a new connection.
    assert!(get(&mut first, "/").await.starts_with("HTTP/1.1 200"));
    drop(second);
    let mut fourth = None;
    for _ in 0..50 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 12];
        if stream.read_exact(&mut buf).await.is_ok() {
            assert_eq!(&buf, b"HTTP/1.1 200");
            fourth = Some(stream);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(fourth.is_some(), "the freed slot never took a connection");
}

#[tokio::test]
async fn idle_connections_are_closed_but_not_under_a_call() {
    let addr = start(Server::new().idle_timeout(Some(Duration::from_millis(300)))).await;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    assert!(get(&mut idle, "/").await.starts_with("HTTP/1.1 200"));
    assert!(
        closed_within(&mut idle, Duration::from_secs(3)).await,
        "an idle keep-alive connection stays open"
    );

    // A response streaming for 500 ms, quiet for 100 ms at a time, is not cut: the timeout
    // counts only time without a call in progress.
    let mut busy = TcpStream::connect(addr).await.unwrap();
    let response = get(&mut busy, "/slow").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(response.matches("\r\nx\r\n").count(), 5, "{response}");
    // Its idle time starts when the call ended: the connection takes another call at once
    // (had the timer run during the call, it would have been closed after the response).
    assert!(get(&mut busy, "/").await.starts_with("HTTP/1.1 200"));

    // Without a timeout, an idle connection stays.
    let addr = start(Server::new().idle_timeout(None)).await;
    let mut kept = TcpStream::connect(addr).await.unwrap();
    assert!(get(&mut kept, "/").await.starts_with("HTTP/1.1 200"));
    assert!(!closed_within(&mut kept, Duration::from_millis(600)).await);
}
