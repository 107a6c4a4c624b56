//! Recovery after HTTP/2 abuse (issue 14, "Recovery"): after each pattern an attacker can send
//! on one connection — rapid reset, streams opened and abandoned, PING, SETTINGS and
//! CONTINUATION floods, a huge header block, a flow-control window overflow — an ordinary
//! call on a new connection is answered, through the layer in weir's server and through the
//! gateway. The time it took is printed (not asserted: a benchmark's business), and the hang
//! guard fails the test if the server wedges.
//!
//! Which limit holds each pattern is in docs/operations.md, "HTTP/2 abuse".

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

mod support;

use std::time::{Duration, Instant};

use bytes::{BufMut as _, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use support::gateway::{Gateway, Upstream, to_upstream};
use support::{EMPTY_CALL, Mode, Proto, TestServer, guard};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn frame(out: &mut BytesMut, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap();
    out.put_slice(&len.to_be_bytes()[1..]);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_u32(stream);
    out.put_slice(payload);
}

/// An HPACK block of literal fields without indexing (no Huffman coding, short strings).
fn hpack(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        out.push(u8::try_from(name.len()).unwrap());
        out.extend_from_slice(name.as_bytes());
        out.push(u8::try_from(value.len()).unwrap());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

fn call_head() -> Vec<u8> {
    hpack(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", EMPTY_CALL),
        (":authority", "x"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ])
}

/// One abusive connection: the preface, then `pattern`'s frames. Reads whatever the server
/// sends in the background, so that the server is never blocked on this connection's
/// writes unless the pattern wants it to be.
async fn abuse(addr: std::net::SocketAddr, pattern: BytesMut, read: bool) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut start = BytesMut::from(PREFACE);
    frame(&mut start, SETTINGS, 0, 0, &[]);
    stream.write_all(&start).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let reading = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        if read {
            while let Ok(1..) = reader.read(&mut buf).await {}
        }
        reader
    });
    // The server may close the connection part way: that is one of the right answers.
    let _ = tokio::time::timeout(Duration::from_secs(5), writer.write_all(&pattern)).await;
    if !read {
        return reading.await.unwrap().reunite(writer).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    reading.abort();
    match reading.await {
        Ok(reader) => reader.reunite(writer).unwrap(),
        Err(_) => TcpStream::connect(addr).await.unwrap(),
    }
}

/// The patterns, by name.
fn patterns() -> Vec<(&'static str, BytesMut, bool)> {
    let head = call_head();
    let mut rapid_reset = BytesMut::new();
    for i in 0..5_000u32 {
        let id = 2 * i + 1;
        frame(&mut rapid_reset, HEADERS, END_HEADERS, id, &head);
        frame(&mut rapid_reset, RST_STREAM, 0, id, &8u32.to_be_bytes());
    }
    let mut abandoned = BytesMut::new();
    for i in 0..1_000u32 {
        // Request bodies that never end, on a connection that never reads its answers.
        frame(&mut abandoned, HEADERS, END_HEADERS, 2 * i + 1, &head);
        frame(&mut abandoned, DATA, 0, 2 * i + 1, &[0, 0, 0, 0, 0]);
    }
    let mut pings = BytesMut::new();
    for i in 0..100_000u64 {
        frame(&mut pings, PING, 0, 0, &i.to_be_bytes());
    }
    let mut settings = BytesMut::new();
    for _ in 0..50_000 {
        frame(&mut settings, SETTINGS, 0, 0, &[0, 0x4, 0, 0, 0xff, 0xff]);
    }
    let mut continuation = BytesMut::new();
    frame(&mut continuation, HEADERS, 0, 1, &head);
    let junk = hpack(&[("x-junk", &"j".repeat(100))]);
    for _ in 0..20_000 {
        frame(&mut continuation, CONTINUATION, 0, 1, &junk);
    }
    let mut huge = BytesMut::new();
    let mut block = head.clone();
    for i in 0..4_000 {
        block.extend(hpack(&[(&format!("x-h{i}"), &"v".repeat(100))]));
    }
    let (first, rest) = block.split_at(16_000);
    frame(&mut huge, HEADERS, 0, 1, first);
    let mut chunks = rest.chunks(16_000).peekable();
    while let Some(chunk) = chunks.next() {
        let flags = if chunks.peek().is_none() {
            END_HEADERS | END_STREAM
        } else {
            0
        };
        frame(&mut huge, CONTINUATION, flags, 1, chunk);
    }
    let mut overflow = BytesMut::new();
    frame(&mut overflow, HEADERS, END_HEADERS, 1, &head);
    frame(
        &mut overflow,
        WINDOW_UPDATE,
        0,
        1,
        &0x7fff_ffffu32.to_be_bytes(),
    );
    frame(
        &mut overflow,
        WINDOW_UPDATE,
        0,
        0,
        &0x7fff_ffffu32.to_be_bytes(),
    );
    vec![
        (
            "rapid reset (5000 streams opened and reset)",
            rapid_reset,
            true,
        ),
        (
            "1000 streams abandoned, answers never read",
            abandoned,
            false,
        ),
        ("PING flood (100 000), acks never read", pings, false),
        ("SETTINGS flood (50 000)", settings, true),
        (
            "CONTINUATION flood (2 MB, no END_HEADERS)",
            continuation,
            true,
        ),
        ("huge header block (420 KB)", huge, true),
        ("window overflow", overflow, true),
    ]
}

/// Runs every pattern against `addr`; after each, an ordinary call on a new connection must
/// be answered (checked by `serving`).
async fn recovers<F, Fut>(label: &str, addr: std::net::SocketAddr, serving: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for (name, pattern, read) in patterns() {
        let held = abuse(addr, pattern, read).await;
        let mut took = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            guard(&format!("{label}: a call after {name}"), serving()).await;
            took.push(format!("{:.1}", started.elapsed().as_secs_f64() * 1000.0));
        }
        eprintln!(
            "{label}: after {name}: calls on new connections answered in {} ms",
            took.join(", ")
        );
        drop(held);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_recovers_from_http2_abuse() {
    let server = TestServer::start().await;
    recovers("layer", server.addr, || async {
        let mut client = server.client(Proto::H2).await;
        let reply = client
            .unary(EMPTY_CALL, Mode::Binary, &weir_testservice::pb::Empty {})
            .await;
        assert_eq!(reply.code(), 0, "{:?}", reply.message());
    })
    .await;
    server.assert_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_recovers_from_http2_abuse() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(to_upstream(upstream.port())).await;
    recovers("gateway", gateway.addr, || async {
        let mut client = gateway.tonic().await;
        client
            .empty_call(weir_testservice::pb::Empty {})
            .await
            .unwrap();
    })
    .await;
}
