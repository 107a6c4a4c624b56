//! The proxy to an upstream over TLS (ALPN h2), found through a DNS name.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

mod support;

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use weir::proxy::{ClusterConfig, Proxy};
use weir_testservice::pb::Empty;

use support::gateway::*;
use support::*;

/// An upstream serving the interop TestService over TLS with this certificate; its port.
async fn tls_upstream(cert: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> u16 {
    let server_tls = weir::tls::server_config(vec![cert], key).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        weir::server::Server::new()
            .serve_tls(
                listener,
                server_tls,
                weir_testservice::service(),
                std::future::pending(),
            )
            .await;
    });
    port
}

/// The gateway's TLS client settings (ALPN h2) trusting `roots` only.
fn client_tls(roots: rustls::RootCertStore) -> Arc<rustls::ClientConfig> {
    let mut client_tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    client_tls.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(client_tls)
}

#[tokio::test]
async fn upstream_over_tls_by_host_name() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let port = tls_upstream(der.clone(), key).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let client_tls = client_tls(roots);

    // "localhost" may resolve to ::1 as well as 127.0.0.1; the upstream listens on the
    // latter only, and the balancer must still find a working address.
    let proxy = Proxy::builder()
        .cluster(
            ClusterConfig::new("tls")
                .address("localhost", port)
                .tls(client_tls),
        )
        .route("*", "tls");
    let gateway = Gateway::start(proxy).await;
    for proto in [Proto::H1, Proto::H2] {
        let mut client = gateway.client(proto).await;
        let reply = client.unary(EMPTY_CALL, Mode::Binary, &Empty {}).await;
        reply.assert_ok();
    }
}

/// An upstream whose certificate fails verification — expired, for another name, or from an
/// issuer the gateway does not trust — is UNAVAILABLE, with the reason in the message.
#[tokio::test]
async fn an_upstream_with_a_bad_certificate_is_unavailable_with_the_reason() {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut expired = rcgen::CertificateParams::new(vec!["127.0.0.1".into()]).unwrap();
    expired.not_before = rcgen::date_time_ymd(2020, 1, 1);
    expired.not_after = rcgen::date_time_ymd(2020, 2, 1);
    let other_name = rcgen::CertificateParams::new(vec!["other.example".into()]).unwrap();
    let cases = [
        (
            "expired",
            expired.self_signed(&key).unwrap(),
            true,
            "expired",
        ),
        (
            "another name",
            other_name.self_signed(&key).unwrap(),
            true,
            "not valid for name",
        ),
        (
            "an unknown issuer",
            rcgen::CertificateParams::new(vec!["127.0.0.1".into()])
                .unwrap()
                .self_signed(&key)
                .unwrap(),
            false,
            // rustls says "UnknownIssuer".
            "unknownissuer",
        ),
    ];
    for (what, cert, trusted, reason) in cases {
        let der = CertificateDer::from(cert.der().to_vec());
        let server_key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let port = tls_upstream(der.clone(), server_key).await;
        let mut roots = rustls::RootCertStore::empty();
        if trusted {
            roots.add(der).unwrap();
        }
        let proxy = Proxy::builder()
            .cluster(
                ClusterConfig::new("tls")
                    .address("127.0.0.1", port)
                    .tls(client_tls(roots)),
            )
            .route("*", "tls");
        let gateway = Gateway::start(proxy).await;
        let mut client = gateway.client(Proto::H2).await;
        let reply = client.unary(EMPTY_CALL, Mode::Binary, &Empty {}).await;
        assert_eq!(reply.code(), 14, "{what}: {}", reply.message());
        let message = reply.message().to_lowercase();
        assert!(
            message.contains("certificate") && message.contains(reason),
            "{what}: {message}"
        );
    }
}
