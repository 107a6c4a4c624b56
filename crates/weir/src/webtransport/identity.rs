//! Certificates of the WebTransport listener, and the development identity that browsers
//! accept through `serverCertificateHashes`.

use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use tokio_util::sync::CancellationToken;
use wtransport::Identity;

use super::WebTransportConfig;
use crate::body::BoxError;

/// Names a development certificate is valid for.
const DEVELOPMENT_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The certificate a WebTransport listener presents.
#[derive(Clone)]
pub struct ServerIdentity {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    /// A self-signed ECDSA P-256 certificate valid for 14 days, made anew at start and at
    /// every rotation; browsers accept it only through `serverCertificateHashes`.
    Development { names: Vec<String> },
    /// A certificate chain and key from files.
    Fixed(Arc<Identity>),
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

    /// A certificate chain (PEM, leaf first) and private key (PEM) from files.
    pub async fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, BoxError> {
        let identity = Identity::load_pemfiles(cert, key)
            .await
            .map_err(|e| format!("{} / {}: {e}", cert.display(), key.display()))?;
        Ok(ServerIdentity {
            kind: Kind::Fixed(Arc::new(identity)),
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
            Kind::Fixed(identity) => identity
                .certificate_chain()
                .as_slice()
                .first()
                .is_some_and(|leaf| short_lived(leaf.der())),
        }
    }

    /// The identity to serve now: for development a fresh certificate (wtransport makes
    /// ECDSA P-256 certificates valid for 14 days, as `serverCertificateHashes` requires).
    pub(crate) fn current(&self) -> Result<Identity, BoxError> {
        match &self.kind {
            Kind::Development { names } => Ok(Identity::self_signed(names)?),
            Kind::Fixed(identity) => Ok(identity.clone_identity()),
        }
    }
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
    pub(crate) fn new(identity: &Identity) -> Self {
        let hashes = CertificateHashes::default();
        hashes.set(identity);
        hashes
    }

    pub(crate) fn set(&self, identity: &Identity) {
        let leaf: Vec<[u8; 32]> = identity
            .certificate_chain()
            .as_slice()
            .iter()
            .take(1)
            .map(|cert| *cert.hash().as_ref())
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

/// Replaces a development certificate before it expires. Sessions already open keep theirs.
pub(super) async fn rotate(
    endpoint: Arc<wtransport::Endpoint<wtransport::endpoint::endpoint_side::Server>>,
    identity: ServerIdentity,
    hashes: CertificateHashes,
    config: Arc<WebTransportConfig>,
    addr: std::net::SocketAddr,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(config.rotate_every) => {}
            () = stop.cancelled() => return,
        }
        let rotated = identity.current().and_then(|next| {
            let server = super::server_config_for(addr, &next, &config)?;
            endpoint.reload_config(server, false)?;
            Ok(next)
        });
        match rotated {
            Ok(next) => {
                hashes.set(&next);
                tracing::info!(hashes = ?hashes.hex(), "rotated the WebTransport development certificate");
            }
            Err(e) => tracing::warn!("cannot rotate the WebTransport development certificate: {e}"),
        }
    }
}
