//! The discovery document of `weir serve` with WebTransport: certificate hashes only for a
//! certificate pages may pin (the development one), none for an ordinary certificate; the
//! session URL names `[webtransport] advertise` when it is set.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

const WEIR: &str = env!("CARGO_BIN_EXE_weir");
const HANG_GUARD: Duration = Duration::from_secs(60);

/// Starts `weir serve` with `webtransport` as its `[webtransport]` table's extra keys and
/// returns its discovery document.
async fn discovery(name: &str, webtransport: &str) -> weir_codec::webtransport::Discovery {
    let dir = std::env::temp_dir().join(format!("weir-discovery-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("weir.toml");
    std::fs::write(
        &config,
        format!(
            "[[listener]]\naddress = \"127.0.0.1:0\"\n\
             [clusters.up]\naddresses = [\"http://127.0.0.1:9\"]\n\
             [routes]\n\"*\" = \"up\"\n\
             [timeouts]\ndrain_delay = \"0s\"\n\
             [webtransport]\naddress = \"127.0.0.1:0\"\n{webtransport}\n"
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(WEIR)
        .args(["serve", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(HANG_GUARD, async {
        loop {
            let line = lines.next_line().await.unwrap().expect("weir serve exited");
            if let Some((_, url)) = line.split_once("listening on http://") {
                return url.trim().to_owned();
            }
        }
    })
    .await
    .expect("hang guard: weir serve did not start");
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
    let _ = std::fs::remove_dir_all(&dir);
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
    assert_eq!(named.url, "https://wt1.example.com:9443/weir?v=1");
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
