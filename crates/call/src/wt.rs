//! `weir call --webtransport`: the call over gRPC over WebTransport
//! (`docs/protocol/webtransport.md`), with the Rust client of `weir_client::webtransport`.
//!
//! Requests and responses go in full duplex: the call is split, requests are sent from one
//! task as they are read, and responses are printed as they arrive.
//!
//! Without `--cert-hash`, the session's certificate is checked against the system's roots;
//! with `--discover`, the session URL and certificate hashes come from the gateway's discovery
//! document.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use http_body_util::BodyExt as _;
use weir_client::CallOptions;
use weir_client::webtransport::WebTransportClient;
use weir_codec::webtransport::Discovery;
use weir_codec::webtransport::discovery::SHA_256;

use crate::output::{OutputSchema, call_failed, print_wt_responses};
use crate::{CallArgs, single_request, unhex};

/// Where the gateway publishes its WebTransport URL and certificate hashes.
const DISCOVERY_PATH: &str = "/.well-known/weir/webtransport";

/// How long fetching the discovery document may take.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long opening the session may take without `--timeout` (with it, the session must be
/// open within the call's deadline).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest discovery document read.
const DISCOVERY_LIMIT: usize = 64 * 1024;

/// Where the session goes, and which certificates it accepts (none: the system's roots).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Target {
    url: String,
    hashes: Vec<[u8; 32]>,
}

impl Target {
    /// The target that `ADDR`, `--cert-hash` and `--discover` name.
    pub(crate) async fn resolve(args: &CallArgs) -> Result<Target, String> {
        if args.discover {
            return discover(&args.addr).await;
        }
        let hashes = args
            .cert_hashes
            .iter()
            .map(|hash| parse_hash(hash).map_err(|e| format!("--cert-hash: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Target {
            url: session_url(&args.addr)?,
            hashes,
        })
    }
}

/// The session URL for `addr`: `https://` is the default scheme, `/weir` the default path,
/// and `v=2`, the newest version of the mapping, is added to a query that names no version
/// (§2.2, §8).
fn session_url(addr: &str) -> Result<String, String> {
    let full = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("https://{addr}")
    };
    let uri: http::Uri = full
        .parse()
        .map_err(|e| format!("{addr:?} is not a URL: {e}"))?;
    let Some(authority) = uri
        .authority()
        .filter(|_| uri.scheme_str() == Some("https"))
    else {
        return Err(format!(
            "{addr:?}: a WebTransport session URL is https://HOST:PORT[/PATH] (or HOST:PORT)"
        ));
    };
    let path = match uri.path() {
        "" | "/" => "/weir",
        path => path,
    };
    let query = match uri.query() {
        None | Some("") => "v=2".to_owned(),
        Some(query)
            if query
                .split('&')
                .any(|pair| pair.split('=').next() == Some("v")) =>
        {
            query.to_owned()
        }
        Some(query) => format!("{query}&v=2"),
    };
    Ok(format!("https://{authority}{path}?{query}"))
}

/// A SHA-256 hash in hex, colons between the bytes allowed.
fn parse_hash(text: &str) -> Result<[u8; 32], String> {
    let digits: String = text.chars().filter(|c| *c != ':').collect();
    let bytes = unhex(&digits)?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("{text:?} is not a SHA-256 hash (64 hex digits)"))
}

/// Reads the session URL and the certificate hashes from the discovery document of the
/// gateway at `addr` (an HTTP base URL, or HOST:PORT for cleartext).
async fn discover(addr: &str) -> Result<Target, String> {
    let base = if addr.contains("://") {
        addr.trim_end_matches('/').to_owned()
    } else {
        format!("http://{}", addr.trim_end_matches('/'))
    };
    let url = format!("{base}{DISCOVERY_PATH}");
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("--discover {addr:?}: not a URL: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    if uri.scheme_str() == Some("https") {
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, http_body_util::Empty<Bytes>>(connector);
    let fetch = async {
        let response = client.get(uri).await.map_err(|e| e.to_string())?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("{status} (does the gateway serve WebTransport?)"));
        }
        http_body_util::Limited::new(response.into_body(), DISCOVERY_LIMIT)
            .collect()
            .await
            .map(|body| body.to_bytes())
            .map_err(|e| e.to_string())
    };
    let body = tokio::time::timeout(DISCOVERY_TIMEOUT, fetch)
        .await
        .map_err(|_| format!("{url}: no answer within {DISCOVERY_TIMEOUT:?}"))?
        .map_err(|e| format!("{url}: {e}"))?;
    parse_discovery(&body).map_err(|e| format!("{url}: {e}"))
}

/// The target a discovery document names, read with the codec's
/// [`Discovery`](weir_codec::webtransport::Discovery) (the type the gateway writes it with):
/// the session URL and its SHA-256 certificate hashes (hashes of other algorithms are
/// skipped).
fn parse_discovery(body: &[u8]) -> Result<Target, String> {
    let text = std::str::from_utf8(body).map_err(|_| "not a discovery document: not UTF-8")?;
    let document = Discovery::from_json(text).map_err(|e| e.to_string())?;
    let mut hashes = Vec::new();
    for hash in &document.certificate_hashes {
        if hash.algorithm != SHA_256 {
            continue;
        }
        hashes.push(parse_hash(&hash.value)?);
    }
    Ok(Target {
        url: document.url,
        hashes,
    })
}

/// Makes the call over WebTransport and prints its responses.
pub(crate) async fn run(
    target: Target,
    method_path: &str,
    single: bool,
    mut requests: BoxStream<'static, Result<Bytes, String>>,
    output: &OutputSchema,
    options: &CallOptions,
    verbose: bool,
) -> Result<(), String> {
    if let Some(e) = options.error() {
        return Err(e.to_owned());
    }
    // A unary or server-streaming call reads its request before the session opens.
    let first = if single {
        Some(single_request(&mut requests, method_path).await?)
    } else {
        None
    };
    // The deadline (--timeout) runs from the connection attempt: the session must be open
    // within it, and the call has what is left of it.
    let started = tokio::time::Instant::now();
    let connecting = async {
        if target.hashes.is_empty() {
            WebTransportClient::connect_native(&target.url).await
        } else {
            WebTransportClient::connect(&target.url, &target.hashes).await
        }
    };
    let client = tokio::time::timeout(options.deadline().unwrap_or(CONNECT_TIMEOUT), connecting)
        .await
        .map_err(|_| match options.deadline() {
            Some(timeout) => format!(
                "{}: DEADLINE_EXCEEDED: no WebTransport session within --timeout {}",
                target.url,
                humantime::format_duration(timeout)
            ),
            None => format!(
                "{}: no WebTransport session within {} (is the server up, and UDP to it allowed?)",
                target.url,
                humantime::format_duration(CONNECT_TIMEOUT)
            ),
        })?
        .map_err(|e| format!("{}: {e}", target.url))?;
    let mut options = options.clone();
    if let Some(timeout) = options.deadline() {
        options = options.timeout(timeout.saturating_sub(started.elapsed()));
    }
    let result = call(
        &client,
        method_path,
        first,
        requests,
        output,
        &options,
        verbose,
    )
    .await;
    client.shutdown().await;
    result
}

async fn call(
    client: &WebTransportClient,
    method_path: &str,
    first: Option<Bytes>,
    mut requests: BoxStream<'static, Result<Bytes, String>>,
    output: &OutputSchema,
    options: &CallOptions,
    verbose: bool,
) -> Result<(), String> {
    let path = format!("/{method_path}");
    let metadata = options.metadata_map().clone();
    let started = match options.deadline() {
        Some(timeout) => client.call_with_timeout(&path, metadata, timeout).await,
        None => client.call(&path, metadata).await,
    };
    let (mut sender, mut receiver) = started
        .map_err(|status| call_failed(&status, None, verbose))?
        .split();

    // Requests go from their own task, each as soon as it is read, while responses print.
    let (input_error_tx, input_error_rx) = tokio::sync::oneshot::channel::<String>();
    let sending = tokio::spawn(async move {
        if let Some(message) = first {
            let _ = sender.send(message).await;
            sender.finish();
            return;
        }
        while let Some(request) = requests.next().await {
            match request {
                // A failed send means the call ended: the receiver reports how.
                Ok(message) => {
                    if sender.send(message).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    // Reported before the cancellation, which the receiver then sees.
                    let _ = input_error_tx.send(e);
                    sender.cancel();
                    return;
                }
            }
        }
        sender.finish();
    });
    let result = print_wt_responses(&mut receiver, output, verbose).await;
    // The call has ended (or printing failed): a send still pending is abandoned, which
    // resets the request side with CANCEL rather than finishing it; the call's status, if
    // it ended, stays the one received.
    sending.abort();
    let mut input_error_rx = input_error_rx;
    match input_error_rx.try_recv() {
        Ok(e) => Err(e),
        Err(_) => result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_urls() {
        for (addr, url) in [
            ("127.0.0.1:4433", "https://127.0.0.1:4433/weir?v=2"),
            ("https://127.0.0.1:4433", "https://127.0.0.1:4433/weir?v=2"),
            ("https://127.0.0.1:4433/", "https://127.0.0.1:4433/weir?v=2"),
            ("https://h.example/grpc", "https://h.example/grpc?v=2"),
            ("https://h.example/grpc?v=1", "https://h.example/grpc?v=1"),
            (
                "https://h.example/grpc?a=b",
                "https://h.example/grpc?a=b&v=2",
            ),
            ("https://[::1]:4433/weir?v=2", "https://[::1]:4433/weir?v=2"),
        ] {
            assert_eq!(session_url(addr).unwrap(), url, "{addr}");
        }
        assert!(session_url("http://127.0.0.1:4433").is_err());
        assert!(session_url("https://").is_err());
    }

    #[test]
    fn certificate_hashes() {
        let hex = "ab".repeat(32);
        assert_eq!(parse_hash(&hex).unwrap(), [0xab; 32]);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(parse_hash(&colons).unwrap(), [0xab; 32]);
        assert!(parse_hash("abab").is_err());
        assert!(parse_hash(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn discovery_documents() {
        let hex = "01".repeat(32);
        let document = format!(
            r#"{{"version": 1, "url": "https://127.0.0.1:4433/weir?v=1",
                "certificateHashes": [{{"algorithm": "sha-256", "value": "{hex}"}},
                                      {{"algorithm": "sha-512", "value": "00"}}]}}"#
        );
        assert_eq!(
            parse_discovery(document.as_bytes()).unwrap(),
            Target {
                url: "https://127.0.0.1:4433/weir?v=1".to_owned(),
                hashes: vec![[1; 32]],
            }
        );
        assert!(parse_discovery(br#"{"version": 2, "url": "https://a/"}"#).is_err());
        assert!(parse_discovery(br#"{"version": 1}"#).is_err());
        assert!(parse_discovery(b"<html>").is_err());
        let bad = r#"{"url": "https://a/", "certificateHashes": [{"algorithm": "sha-256", "value": "0"}]}"#;
        assert!(parse_discovery(bad.as_bytes()).is_err());
    }
}
