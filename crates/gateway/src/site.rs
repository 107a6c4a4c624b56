//! The gateway's own pages in front of the gRPC service: `GET /` says what this is.

use std::task::{Context, Poll};

use futures_util::future::Either;
use http::{Method, Request, Response, StatusCode, header};
use tower_service::Service;
use weir::body::BoxBody;
use weir::webtransport::CertificateHashes;

/// The demo's page.
pub(crate) const DEMO_PAGE: &str = include_str!("assets/index.html");

/// Where the WebTransport discovery document lives (`docs/protocol/webtransport.md` §7).
pub(crate) const DISCOVERY_PATH: &str = "/.well-known/weir/webtransport";

/// What the discovery document says: the session URL and the certificate hashes.
#[derive(Debug, Clone)]
pub(crate) struct Discovery {
    hashes: CertificateHashes,
    port: u16,
    path: String,
}

impl Discovery {
    pub(crate) fn new(hashes: CertificateHashes, port: u16, path: String) -> Self {
        Discovery { hashes, port, path }
    }

    /// The document for a client that reached us as `host` (the WebTransport listener is on
    /// the same host, another port).
    fn document(&self, host: &str) -> String {
        let url = format!(
            "https://{host}:{}{}?v={}",
            self.port,
            self.path,
            weir::webtransport::PROTOCOL_VERSION
        );
        self.hashes.document(&url)
    }
}

/// Serves a page at `GET /` (when there is one) and the WebTransport discovery document (when
/// WebTransport is on), and hands everything else to the inner service.
#[derive(Debug, Clone)]
pub(crate) struct Site<S> {
    page: Option<&'static str>,
    discovery: Option<Discovery>,
    inner: S,
}

impl<S> Site<S> {
    pub(crate) fn new(page: Option<&'static str>, discovery: Option<Discovery>, inner: S) -> Self {
        Site {
            page,
            discovery,
            inner,
        }
    }
}

/// The host part of the request's authority, without the port.
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

impl<S, B> Service<Request<B>> for Site<S>
where
    S: Service<Request<B>, Response = Response<BoxBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<BoxBody>;
    type Error = S::Error;
    type Future = Either<S::Future, std::future::Ready<Result<Response<BoxBody>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if request.method() == Method::GET && request.uri().path() == DISCOVERY_PATH {
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
            headers.insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static(content_type),
            );
            // Nothing secret: it only says which certificate to expect.
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                http::HeaderValue::from_static("*"),
            );
            if self.discovery.is_some() {
                headers.insert(
                    header::CACHE_CONTROL,
                    http::HeaderValue::from_static("no-store"),
                );
            }
            return Either::Right(std::future::ready(Ok(response)));
        }
        let page = self.page.filter(|_| {
            matches!(*request.method(), Method::GET | Method::HEAD) && request.uri().path() == "/"
        });
        let Some(page) = page else {
            return Either::Left(self.inner.call(request));
        };
        let mut response = Response::new(if request.method() == Method::HEAD {
            BoxBody::empty()
        } else {
            BoxBody::full(page)
        });
        *response.status_mut() = StatusCode::OK;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/html; charset=utf-8"),
        );
        Either::Right(std::future::ready(Ok(response)))
    }
}
