//! Certificates of the WebTransport listener, and the development identity that browsers
//! accept through `serverCertificateHashes` (`docs/protocol/webtransport.md` §7).

use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::body::BoxError;

/// Names a development certificate is valid for.
const DEVELOPMENT_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// How long a development certificate is valid: 13 days, a day under the 14 browsers accept
/// for pinning, from an hour before it was made, so that a client whose clock is somewhat off
/// still accepts it.
const DEVELOPMENT_VALIDITY: time::Duration = time::Duration::days(13);
const DEVELOPMENT_BACKDATE: time::Duration = time::Duration::hours(1);

/// The certificate a WebTransport listener presents.
#[derive(Clone)]
pub struct ServerIdentity {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    /// A self-signed ECDSA P-256 certificate valid for 13 days, made anew at start and at
    /// every rotation; browsers accept it only through `serverCertificateHashes`.
    Development { names: Vec<String> },
    /// A certificate chain and key from files.
    Fixed(Arc<Certified>),
}

/// A certificate chain and its private key.
pub(crate) struct Certified {
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
}

impl Clone for Certified {
    fn clone(&self) -> Self {
        Certified {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Development { names } => write!(f, "ServerIdentity::Development({names:?})"),
            Kind::Fixed(_) => f.write_str("ServerIdentity::Fixed"),
        }
    }
}

impl ServerIdentity {
    /// A development identity for `localhost`, `127.0.0.1` and `::1`, rotated before it
    /// expires.
    pub fn development() -> Result<Self, BoxError> {
        Self::development_for(DEVELOPMENT_NAMES)
    }

    /// A development identity valid for these host names and addresses.
    pub fn development_for<I, S>(names: I) -> Result<Self, BoxError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let identity = ServerIdentity {
            kind: Kind::Development {
                names: names.into_iter().map(Into::into).collect(),
            },
        };
        // Fail now, not at the first rotation, when a name cannot go in a certificate.
        identity.current()?;
        Ok(identity)
    }

    /// A certificate chain (PEM, leaf first) and private key (PEM: PKCS#8, PKCS#1 or SEC1)
    /// from files.
    pub async fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, BoxError> {
        let (cert, key) = (cert.to_owned(), key.to_owned());
        let certified = tokio::task::spawn_blocking(move || {
            let chain = CertificateDer::pem_file_iter(&cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("{}: {e}", cert.display()))?;
            if chain.is_empty() {
                return Err(format!("{}: no certificate found", cert.display()));
            }
            let key = PrivateKeyDer::from_pem_file(&key)
                .map_err(|e| format!("{}: {e}", key.display()))?;
            Ok(Certified { chain, key })
        })
        .await??;
        Ok(ServerIdentity {
            kind: Kind::Fixed(Arc::new(certified)),
        })
    }

    pub(crate) fn is_development(&self) -> bool {
        matches!(self.kind, Kind::Development { .. })
    }

    /// Whether browsers may be told this identity's certificate hashes: a page that passes
    /// `serverCertificateHashes` has the certificate checked against them *instead of* the Web
    /// PKI, and browsers accept that only for certificates valid at most 14 days. True for the
    /// development certificate and for a certificate file of that kind; false for an ordinary
    /// (CA-issued, longer-lived) certificate, which pages must verify the usual way.
    pub fn browsers_may_pin(&self) -> bool {
        match &self.kind {
            Kind::Development { .. } => true,
            Kind::Fixed(certified) => certified
                .chain
                .first()
                .is_some_and(|leaf| short_lived(leaf)),
        }
    }

    /// The identity to serve now: for development a fresh certificate.
    pub(crate) fn current(&self) -> Result<Certified, BoxError> {
        match &self.kind {
            Kind::Development { names } => development_certificate(names),
            Kind::Fixed(certified) => Ok(Certified::clone(certified)),
        }
    }
}

/// A self-signed ECDSA P-256 certificate, as `serverCertificateHashes` requires, valid for
/// [`DEVELOPMENT_VALIDITY`] from [`DEVELOPMENT_BACKDATE`] ago.
fn development_certificate(names: &[String]) -> Result<Certified, BoxError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::CommonName, "weir development certificate");
    params.distinguished_name = name;
    let not_before = time::OffsetDateTime::now_utc() - DEVELOPMENT_BACKDATE;
    params.not_before = not_before;
    params.not_after = not_before + DEVELOPMENT_VALIDITY;
    let cert = params.self_signed(&key)?;
    Ok(Certified {
        chain: vec![cert.der().clone()],
        key: PrivateKeyDer::try_from(key.serialize_der())?,
    })
}

/// Whether a DER certificate is valid for at most the 14 days `serverCertificateHashes` allows.
fn short_lived(der: &[u8]) -> bool {
    const FOURTEEN_DAYS: i64 = 14 * 24 * 60 * 60;
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => {
            let validity = cert.validity();
            validity.not_after.timestamp() - validity.not_before.timestamp() <= FOURTEEN_DAYS
        }
        Err(_) => false,
    }
}

/// SHA-256 hashes of the certificate a listener presents, shared with whoever publishes them
/// (the gateway serves them at `/.well-known/weir/webtransport`, with
/// [`DiscoveryService`](super::discovery::DiscoveryService)).
#[derive(Debug, Clone, Default)]
pub struct CertificateHashes(Arc<RwLock<Vec<[u8; 32]>>>);

impl CertificateHashes {
    pub(crate) fn new(identity: &Certified) -> Self {
        let hashes = CertificateHashes::default();
        hashes.set(identity);
        hashes
    }

    pub(crate) fn set(&self, identity: &Certified) {
        let leaf: Vec<[u8; 32]> = identity
            .chain
            .iter()
            .take(1)
            .filter_map(|cert| {
                <[u8; 32]>::try_from(ring::digest::digest(&ring::digest::SHA256, cert).as_ref())
                    .ok()
            })
            .collect();
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = leaf;
    }

    /// The hashes as raw bytes.
    pub fn get(&self) -> Vec<[u8; 32]> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The hashes as lowercase hex.
    pub fn hex(&self) -> Vec<String> {
        self.get()
            .iter()
            .map(|hash| hash.iter().map(|b| format!("{b:02x}")).collect())
            .collect()
    }

    /// The discovery document of `docs/protocol/webtransport.md` §7.
    /// The JSON is the codec's [`Discovery`](weir_codec::webtransport::Discovery) type, which
    /// clients parse with too.
    pub fn document(&self, url: &str) -> String {
        weir_codec::webtransport::Discovery::new(url, self.get()).to_json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_certificates_have_a_margin() {
        let certified = ServerIdentity::development()
            .and_then(|identity| identity.current())
            .unwrap_or_else(|e| panic!("{e}"));
        let (_, cert) = x509_parser::parse_x509_certificate(&certified.chain[0])
            .unwrap_or_else(|e| panic!("{e}"));
        let validity = cert.validity();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let length = validity.not_after.timestamp() - validity.not_before.timestamp();
        assert_eq!(length, 13 * 24 * 3600);
        let backdated = now - validity.not_before.timestamp();
        assert!((3590..=3610).contains(&backdated), "{backdated}");
        assert!(short_lived(&certified.chain[0]));
    }
}
