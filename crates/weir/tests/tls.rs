//! gRPC-Web over TLS: ALPN picks HTTP/2 or HTTP/1.1 on the same listener.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tower_layer::Layer as _;
use weir::grpc_web::GrpcWebLayer;
use weir_codec::frame::{FrameDecoder, FrameKind, encode_message};

struct Tls {
    server: Arc<rustls::ServerConfig>,
    roots: rustls::RootCertStore,
}

fn identity() -> Tls {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der.clone()).unwrap();
    Tls {
        server: weir::tls::server_config(vec![der], key).unwrap(),
        roots,
    }
}

async fn connect(
    addr: std::net::SocketAddr,
    roots: rustls::RootCertStore,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let stream = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(alpn));
    stream
}

fn empty_call() -> http::Request<Full<Bytes>> {
    http::Request::post("https://localhost/grpc.testing.TestService/EmptyCall")
        .header("content-type", "application/grpc-web+proto")
        .body(Full::new(encode_message(b"")))
        .unwrap()
}

async fn assert_ok(response: http::Response<hyper::body::Incoming>) {
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/grpc-web+proto"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let mut decoder = FrameDecoder::new(1 << 20);
    decoder.push(body);
    let message = decoder.decode().unwrap().unwrap();
    assert_eq!(message.kind(), FrameKind::Message);
    let trailer = decoder.decode().unwrap().unwrap();
    assert_eq!(trailer.kind(), FrameKind::Trailers);
    let trailers = weir_codec::trailers::decode(trailer.payload()).unwrap();
    assert_eq!(trailers["grpc-status"], "0");
}

#[tokio::test]
async fn grpc_web_over_tls_with_h2_and_http1() {
    let tls = identity();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = GrpcWebLayer::new().layer(weir_testservice::service());
    let server_config = tls.server.clone();
    tokio::spawn(async move {
        weir::server::Server::new()
            .serve_tls(listener, server_config, service, std::future::pending())
            .await;
    });

    let stream = connect(addr, tls.roots.clone(), b"h2").await;
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let response = h2.send_request(empty_call()).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_ok(response).await;

    let stream = connect(addr, tls.roots, b"http/1.1").await;
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let response = h1.send_request(empty_call()).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_11);
    assert_ok(response).await;
}
