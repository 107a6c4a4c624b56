//! The WebTransport discovery document (`docs/protocol/webtransport.md` §7).
//!
//! A server with a development certificate publishes, on its ordinary HTTP listener at
//! [`DISCOVERY_PATH`], where its WebTransport endpoint is and which certificate hashes to
//! accept. The JSON, with the field names browsers' clients read:
//!
//! ```json
//! {"version": 1,
//!  "url": "https://127.0.0.1:4433/weir?v=2",
//!  "certificateHashes": [{"algorithm": "sha-256", "value": "<64 lowercase hex digits>"}]}
//! ```
//!
//! [`Discovery`] is that document. With the `serde` feature it is `Serialize` and
//! `Deserialize` with exactly these field names, and `Discovery::to_json` and
//! `Discovery::from_json` write and read it.

use std::fmt;

/// Where servers publish the discovery document.
pub const DISCOVERY_PATH: &str = "/.well-known/weir/webtransport";

/// The version of weir's WebTransport mapping: the document's `version`, and the `v` query
/// parameter of the session URL.
pub const VERSION: u32 = 1;

/// The algorithm of the hashes weir publishes, the only one browsers accept.
pub const SHA_256: &str = "sha-256";

/// The discovery document.
///
/// ```
/// use weir_codec::webtransport::Discovery;
///
/// let doc = Discovery::new("https://localhost:4433/weir?v=2", [[0xab; 32]]);
/// assert_eq!(doc.certificate_hashes[0].algorithm, "sha-256");
/// assert_eq!(doc.certificate_hashes[0].value, "ab".repeat(32));
/// assert_eq!(doc.certificate_hashes[0].bytes(), Some(vec![0xab; 32]));
/// # #[cfg(feature = "serde")]
/// assert_eq!(Discovery::from_json(&doc.to_json()).unwrap(), doc);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "camelCase")
)]
pub struct Discovery {
    /// The mapping version, [`VERSION`].
    pub version: u32,
    /// The URL to open the session with, `https://host:port/path?v=2`.
    pub url: String,
    /// The hashes of the certificates to accept (JSON `certificateHashes`; absent reads as
    /// none).
    #[cfg_attr(feature = "serde", serde(default))]
    pub certificate_hashes: Vec<CertificateHash>,
}

/// One certificate hash of the document, as the WebTransport API's
/// `serverCertificateHashes` takes it, with the value in hex.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct CertificateHash {
    /// The hash algorithm, [`SHA_256`].
    pub algorithm: String,
    /// The hash, in lowercase hex (readers accept either case).
    pub value: String,
}

impl CertificateHash {
    /// The SHA-256 hash of a certificate (its DER bytes).
    pub fn sha256(hash: &[u8; 32]) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut value = String::with_capacity(64);
        for b in hash {
            value.push(char::from(HEX[usize::from(b >> 4)]));
            value.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        CertificateHash {
            algorithm: SHA_256.to_owned(),
            value,
        }
    }

    /// The hash as bytes; `None` when the value is not hex.
    pub fn bytes(&self) -> Option<Vec<u8>> {
        let hex = self.value.as_bytes();
        if !hex.len().is_multiple_of(2) {
            return None;
        }
        hex.chunks_exact(2)
            .map(|pair| {
                let digit = |b: u8| char::from(b).to_digit(16);
                Some(u8::try_from(digit(pair[0])? << 4 | digit(pair[1])?).unwrap_or(0))
            })
            .collect()
    }
}

impl Discovery {
    /// The document of this mapping's [`VERSION`] for a session at `url`, accepting
    /// certificates with these SHA-256 hashes.
    pub fn new(url: impl Into<String>, sha256: impl IntoIterator<Item = [u8; 32]>) -> Self {
        Discovery {
            version: VERSION,
            url: url.into(),
            certificate_hashes: sha256
                .into_iter()
                .map(|h| CertificateHash::sha256(&h))
                .collect(),
        }
    }

    /// Checks what a client relies on: the version is [`VERSION`] and every hash is hex.
    pub fn check(&self) -> Result<(), DiscoveryError> {
        if self.version != VERSION {
            return Err(DiscoveryError::Version(self.version));
        }
        if let Some(index) = self
            .certificate_hashes
            .iter()
            .position(|h| h.bytes().is_none())
        {
            return Err(DiscoveryError::Hash(index));
        }
        Ok(())
    }

    /// The document as JSON.
    #[cfg(feature = "serde")]
    pub fn to_json(&self) -> String {
        // Strings, numbers and lists only: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a document and [`check`](Self::check)s it. Unknown fields are ignored.
    #[cfg(feature = "serde")]
    pub fn from_json(json: &str) -> Result<Self, DiscoveryError> {
        let doc: Discovery =
            serde_json::from_str(json).map_err(|e| DiscoveryError::Json(e.to_string()))?;
        doc.check()?;
        Ok(doc)
    }
}

/// Why a discovery document is not usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryError {
    /// Not JSON, or not the document's shape.
    Json(String),
    /// A version this code does not speak.
    Version(u32),
    /// The certificate hash at this index is not hex.
    Hash(usize),
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscoveryError::Json(e) => write!(f, "discovery document: {e}"),
            DiscoveryError::Version(v) => write!(
                f,
                "discovery document has version {v}, this client speaks {VERSION}"
            ),
            DiscoveryError::Hash(i) => {
                write!(f, "discovery document: certificate hash {i} is not hex")
            }
        }
    }
}

impl std::error::Error for DiscoveryError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes() {
        let mut hash = [0u8; 32];
        hash[0] = 0x0f;
        hash[31] = 0xf0;
        let h = CertificateHash::sha256(&hash);
        assert_eq!(h.value.len(), 64);
        assert!(h.value.starts_with("0f00") && h.value.ends_with("00f0"));
        assert_eq!(h.bytes(), Some(hash.to_vec()));
        let upper = CertificateHash {
            algorithm: SHA_256.into(),
            value: "AB0c".into(),
        };
        assert_eq!(upper.bytes(), Some(vec![0xab, 0x0c]));
        for bad in ["abc", "zz", "+1", "é0"] {
            let h = CertificateHash {
                algorithm: SHA_256.into(),
                value: bad.into(),
            };
            assert_eq!(h.bytes(), None, "{bad}");
        }
        let mut doc = Discovery::new("https://h:1/weir?v=1", [hash]);
        assert_eq!(doc.check(), Ok(()));
        doc.certificate_hashes[0].value.push('x');
        assert_eq!(doc.check(), Err(DiscoveryError::Hash(0)));
        doc.version = 2;
        assert_eq!(doc.check(), Err(DiscoveryError::Version(2)));
    }

    #[cfg(feature = "serde")]
    #[test]
    fn json() {
        let doc = Discovery::new("https://127.0.0.1:4433/weir?v=1", [[0xab; 32], [0x01; 32]]);
        let json = doc.to_json();
        assert_eq!(
            json,
            format!(
                r#"{{"version":1,"url":"https://127.0.0.1:4433/weir?v=1","certificateHashes":[{{"algorithm":"sha-256","value":"{}"}},{{"algorithm":"sha-256","value":"{}"}}]}}"#,
                "ab".repeat(32),
                "01".repeat(32)
            )
        );
        assert_eq!(Discovery::from_json(&json), Ok(doc));

        // What weir's servers wrote before this type existed reads the same.
        let old = format!(
            r#"{{"version": 1, "url": "https://h:4433/weir?v=1", "certificateHashes": [{{"algorithm": "sha-256", "value": "{}"}}]}}"#,
            "ab".repeat(32)
        );
        assert_eq!(
            Discovery::from_json(&old),
            Ok(Discovery::new("https://h:4433/weir?v=1", [[0xab; 32]]))
        );
        // Unknown fields are ignored, a missing hash list is empty; a URL is escaped.
        let doc =
            Discovery::from_json(r#"{"version":1,"url":"https://h/\"x","later":true}"#).unwrap();
        assert_eq!(doc.url, "https://h/\"x");
        assert!(doc.certificate_hashes.is_empty());
        assert_eq!(Discovery::from_json(&doc.to_json()), Ok(doc));

        assert!(matches!(
            Discovery::from_json(r#"{"version":2,"url":"u"}"#),
            Err(DiscoveryError::Version(2))
        ));
        assert!(matches!(
            Discovery::from_json(r#"{"url":"u"}"#),
            Err(DiscoveryError::Json(_))
        ));
        assert!(matches!(
            Discovery::from_json("[]"),
            Err(DiscoveryError::Json(_))
        ));
    }
}
