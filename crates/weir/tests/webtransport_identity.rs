//! Which certificates a discovery document may tell pages to pin by hash: browsers accept
//! `serverCertificateHashes` only for certificates valid at most 14 days, and then check
//! nothing else, so an ordinary certificate's hash must not be published.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use weir::webtransport::ServerIdentity;

async fn identity_valid_for(days: u8) -> ServerIdentity {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2026, 11, 1);
    params.not_after = rcgen::date_time_ymd(2026, 11, 1 + days);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let dir = std::env::temp_dir().join(format!("weir-identity-{}-{days}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let identity = ServerIdentity::from_pem_files(&cert_path, &key_path)
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    identity
}

#[tokio::test]
async fn only_short_lived_certificates_are_pinned() {
    assert!(ServerIdentity::development().unwrap().browsers_may_pin());
    assert!(identity_valid_for(13).await.browsers_may_pin());
    assert!(identity_valid_for(14).await.browsers_may_pin());
    assert!(!identity_valid_for(15).await.browsers_may_pin());
    assert!(!identity_valid_for(28).await.browsers_may_pin());
}
