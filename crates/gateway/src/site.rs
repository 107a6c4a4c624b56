//! The gateway's own pages in front of the gRPC service: `GET /` says what this is.

use std::task::{Context, Poll};

use futures_util::future::Either;
use http::{Method, Request, Response, StatusCode, header};
use tower_service::Service;
use weir::body::BoxBody;

/// The demo's page.
pub(crate) const DEMO_PAGE: &str = include_str!("assets/index.html");

/// Serves a page at `GET /` (when there is one) and hands everything else to the inner
/// service.
#[derive(Debug, Clone)]
pub(crate) struct Site<S> {
    page: Option<&'static str>,
    inner: S,
}

impl<S> Site<S> {
    pub(crate) fn new(page: Option<&'static str>, inner: S) -> Self {
        Site { page, inner }
    }
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
