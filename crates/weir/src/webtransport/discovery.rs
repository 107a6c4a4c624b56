//! The WebTransport discovery document (`docs/protocol/webtransport.md` §7), served on the
//! HTTP listeners: how a page learns the session URL, and the hashes of a development
//! certificate to pass as `serverCertificateHashes`.
//!
//! [`DiscoveryService`] answers `GET` [`DISCOVERY_PATH`] in front of any service, and hands
//! every other request to it:
//!
//! ```no_run
//! use weir::webtransport::discovery::{Discovery, DiscoveryService};
//! use weir::webtransport::{ServerIdentity, WebTransportConfig, WebTransportServer};
//!
//! # async fn run(http_service: weir::proxy::Proxy) -> Result<(), weir::body::BoxError> {
//! let server = WebTransportServer::bind(
//!     "127.0.0.1:4433".parse()?,
//!     ServerIdentity::development()?,
//!     WebTransportConfig::default(),
//! )?;
//! let discovery = Discovery::new(
//!     server.certificate_hashes(),
//!     server.local_addr().port(),
//!     "/weir",
//! );
//! let http_service = DiscoveryService::new(Some(discovery), http_service);
//! # let _ = http_service; Ok(()) }
//! ```

use std::task::{Context, Poll};

use futures_util::future::Either;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use tower_service::Service;

use super::{CertificateHashes, PROTOCOL_VERSION};
use crate::body::BoxBody;

/// Where the discovery document lives on the HTTP listeners.
pub const DISCOVERY_PATH: &str = "/.well-known/weir/webtransport";

/// What the discovery document says: the session URL (on the host the client reached, the
/// WebTransport listener's port) and the certificate hashes.
#[derive(Debug, Clone)]
pub struct Discovery {
    hashes: CertificateHashes,
    port: u16,
    path: String,
    advertise: Option<String>,
}

impl Discovery {
    /// The document of a WebTransport listener on UDP `port` with session path `path`, whose
    /// certificate has `hashes` (kept current across rotations of a development certificate).
    pub fn new(hashes: CertificateHashes, port: u16, path: impl Into<String>) -> Self {
        Discovery {
            hashes,
            port,
            path: path.into(),
            advertise: None,
        }
    }

    /// Names this listener as `authority` (`host` or `host:port`, the port defaulting to the
    /// listener's) in every document, instead of the host the client reached. Behind a load
    /// balancer, where each instance has its own development certificate, this sends a page
    /// to the very instance whose certificate hashes it was given.
    pub fn advertise(mut self, authority: impl Into<String>) -> Self {
        self.advertise = Some(authority.into());
        self
    }

    /// The document (JSON) for a client that reached the HTTP listener as `host`: the
    /// WebTransport listener is on the same host, another port (or where
    /// [`advertise`](Self::advertise) says).
    pub fn document(&self, host: &str) -> String {
        let authority = match &self.advertise {
            Some(authority)
                if authority
                    .parse::<http::uri::Authority>()
                    .is_ok_and(|a| a.port().is_some()) =>
            {
                authority.clone()
            }
            Some(host) => format!("{host}:{}", self.port),
            None => format!("{host}:{}", self.port),
        };
        let url = format!("https://{authority}{}?v={PROTOCOL_VERSION}", self.path);
        self.hashes.document(&url)
    }
}

/// Serves the discovery document at `GET` [`DISCOVERY_PATH`] and hands everything else to the
/// inner service.
///
/// Without a [`Discovery`] (no WebTransport listener), the path answers `404` with a line that
/// says so. The document is public (it only says which certificate to expect): it is served
/// with `access-control-allow-origin: *` and `cache-control: no-store`, since a development
/// certificate rotates.
#[derive(Debug, Clone)]
pub struct DiscoveryService<S> {
    discovery: Option<Discovery>,
    inner: S,
}

impl<S> DiscoveryService<S> {
    /// Puts `discovery` (if any) in front of `inner`.
    pub fn new(discovery: Option<Discovery>, inner: S) -> Self {
        DiscoveryService { discovery, inner }
    }
}

/// The host part of the request's authority (or `Host` header), without the port.
fn request_host<B>(request: &Request<B>) -> String {
    let authority = request
        .uri()
        .authority()
        .map(|a| a.host().to_owned())
        .or_else(|| {
            request
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.parse::<http::uri::Authority>().ok())
                .map(|a| a.host().to_owned())
        });
    authority.unwrap_or_else(|| "127.0.0.1".to_owned())
}

impl<S, B> Service<Request<B>> for DiscoveryService<S>
where
    S: Service<Request<B>, Response = Response<BoxBody>>,
{
    type Response = Response<BoxBody>;
    type Error = S::Error;
    type Future = Either<S::Future, std::future::Ready<Result<Response<BoxBody>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if request.method() != Method::GET || request.uri().path() != DISCOVERY_PATH {
            return Either::Left(self.inner.call(request));
        }
        let (status, content_type, body) = match &self.discovery {
            Some(discovery) => (
                StatusCode::OK,
                "application/json",
                discovery.document(&request_host(&request)),
            ),
            None => (
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "this server has no WebTransport listener\n".to_owned(),
            ),
        };
        let mut response = Response::new(BoxBody::full(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        // Nothing secret: it only says which certificate to expect.
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        if self.discovery.is_some() {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        Either::Right(std::future::ready(Ok(response)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::convert::Infallible;

    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::*;

    fn inner() -> impl Service<Request<()>, Response = Response<BoxBody>, Error = Infallible> + Clone
    {
        tower::service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(BoxBody::full("inner")))
        })
    }

    async fn get(
        service: impl Service<Request<()>, Response = Response<BoxBody>, Error = Infallible>,
        uri: &str,
        host: Option<&str>,
    ) -> Response<String> {
        let mut request = Request::builder().uri(uri);
        if let Some(host) = host {
            request = request.header(header::HOST, host);
        }
        let response = service.oneshot(request.body(()).unwrap()).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Response::from_parts(parts, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn the_document_names_the_host_the_client_reached() {
        let service = DiscoveryService::new(
            Some(Discovery::new(CertificateHashes::default(), 4433, "/weir")),
            inner(),
        );
        let response = get(service.clone(), DISCOVERY_PATH, Some("example.test:8080")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        let document = weir_codec::webtransport::Discovery::from_json(response.body()).unwrap();
        assert_eq!(document.url, "https://example.test:4433/weir?v=2");
        assert_eq!(get(service, "/other", None).await.body(), "inner");
    }

    #[tokio::test]
    async fn without_webtransport_the_path_says_so() {
        let service = DiscoveryService::new(None, inner());
        let response = get(service, DISCOVERY_PATH, None).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert!(response.body().contains("no WebTransport listener"));
    }

    #[test]
    fn the_url_names_the_host_reached_or_the_advertised_one() {
        let url = |doc: String| {
            weir_codec::webtransport::Discovery::from_json(&doc)
                .unwrap()
                .url
        };
        let discovery = Discovery::new(CertificateHashes::default(), 4433, "/weir");
        assert_eq!(
            url(discovery.document("lb.example.com")),
            "https://lb.example.com:4433/weir?v=2"
        );
        let named = discovery.clone().advertise("wt1.example.com");
        assert_eq!(
            url(named.document("lb.example.com")),
            "https://wt1.example.com:4433/weir?v=2"
        );
        let ported = discovery.advertise("10.0.0.7:9443");
        assert_eq!(
            url(ported.document("lb.example.com")),
            "https://10.0.0.7:9443/weir?v=2"
        );
    }
}
