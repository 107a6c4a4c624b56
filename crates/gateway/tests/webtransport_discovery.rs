//! The discovery document of `weir serve` with WebTransport: certificate hashes only for a
//! certificate pages may pin (the development one), none for an ordinary certificate; the
//! session URL names `[webtransport] advertise` when it is set.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

mod support;

use std::process::Stdio;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use support::{HANG_GUARD, serve, wait_for_lines};

/// Starts `weir serve` with `webtransport` as its `[webtransport]` table's extra keys and
/// returns its discovery document.
async fn discovery(name: &str, webtransport: &str) -> weir_codec::webtransport::Discovery {
    let mut gateway = serve(
        &format!("discovery-{name}"),
        &format!(
            "[[listener]]\naddress = \"127.0.0.1:0\"\n\
             [clusters.up]\naddresses = [\"http://127.0.0.1:9\"]\n\
             [routes]\n\"*\" = \"up\"\n\
             [timeouts]\ndrain_delay = \"0s\"\n\
             [webtransport]\naddress = \"127.0.0.1:0\"\n{webtransport}\n"
        ),
        Stdio::inherit(),
    );
    let addr = wait_for_lines(&mut gateway.lines, &["listening on http://"])
        .await
        .remove(0);
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(
            b"GET /.well-known/weir/webtransport HTTP/1.1\r\nhost: page.example.com\r\nconnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(HANG_GUARD, stream.read_to_string(&mut response))
        .await
        .expect("hang guard: discovery")
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    weir_codec::webtransport::Discovery::from_json(body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn development_certificates_are_pinned_and_advertise_names_the_instance() {
    let plain = discovery("plain", "").await;
    assert!(
        plain.url.starts_with("https://page.example.com:"),
        "{}",
        plain.url
    );
    assert_eq!(plain.certificate_hashes.len(), 1);

    let named = discovery("advertise", "advertise = \"wt1.example.com:9443\"").await;
    assert_eq!(named.url, "https://wt1.example.com:9443/weir?v=2");
    assert_eq!(named.certificate_hashes.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordinary_certificate_is_not_pinned() {
    // rcgen's default validity runs for decades, like no certificate a page may pin.
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = std::env::temp_dir().join(format!("weir-discovery-cert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let document = discovery(
        "ordinary",
        &format!("cert = {cert_path:?}\nkey = {key_path:?}"),
    )
    .await;
    assert!(document.certificate_hashes.is_empty(), "{document:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
