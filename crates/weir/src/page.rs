//! A static HTML page at `/` in front of a service: a landing page on a gateway's HTTP port
//! (`weir demo` serves its demo page this way).

use std::task::{Context, Poll};

use futures_util::future::Either;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use tower_service::Service;

use crate::body::BoxBody;

/// Answers `GET /` and `HEAD /` with an HTML page, and hands every other request to the inner
/// service.
///
/// ```
/// use weir::page::Page;
///
/// # fn wrap<S>(grpc_web_service: S) {
/// let service = Page::new(Some("<!doctype html><title>hello</title>"), grpc_web_service);
/// # let _ = service; }
/// ```
#[derive(Debug, Clone)]
pub struct Page<S> {
    html: Option<&'static str>,
    inner: S,
}

impl<S> Page<S> {
    /// Serves `html` at `/` in front of `inner`. With `None` every request goes to `inner`
    /// (the same service type either way, for a page that is optional).
    pub fn new(html: Option<&'static str>, inner: S) -> Self {
        Page { html, inner }
    }
}

impl<S, B> Service<Request<B>> for Page<S>
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
        let html = self.html.filter(|_| {
            matches!(*request.method(), Method::GET | Method::HEAD) && request.uri().path() == "/"
        });
        let Some(html) = html else {
            return Either::Left(self.inner.call(request));
        };
        let mut response = Response::new(if request.method() == Method::HEAD {
            BoxBody::empty()
        } else {
            BoxBody::full(html)
        });
        *response.status_mut() = StatusCode::OK;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
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

    async fn body_of(page: Option<&'static str>, method: Method, uri: &str) -> String {
        let inner = tower::service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(BoxBody::full("inner")))
        });
        let request = Request::builder().method(method).uri(uri).body(()).unwrap();
        let response = Page::new(page, inner).oneshot(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn the_page_is_at_the_root_only() {
        assert_eq!(body_of(Some("page"), Method::GET, "/").await, "page");
        assert_eq!(body_of(Some("page"), Method::HEAD, "/").await, "");
        assert_eq!(body_of(Some("page"), Method::POST, "/").await, "inner");
        assert_eq!(body_of(Some("page"), Method::GET, "/x").await, "inner");
        assert_eq!(body_of(None, Method::GET, "/").await, "inner");
    }
}
