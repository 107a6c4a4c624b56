//! A static HTML page at `/` in front of a service: a landing page on a gateway's HTTP port
//! (`weir demo` serves its demo page this way).

use std::task::{Context, Poll};

use futures_util::future::Either;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use tower_service::Service;

use crate::body::BoxBody;

/// Answers `GET /` and `HEAD /` with an HTML page, `GET /favicon.ico` and `HEAD /favicon.ico`
/// with `204 No Content`, and hands every other request to the inner service.
///
/// Browsers ask for `/favicon.ico` with every page they load (unless the page names an icon);
/// passed on, the request would reach a gRPC service, which refuses a `GET` with `405` and logs
/// it, so each visit of the page would show a failed request in the browser and a refusal in the
/// server's log.
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
        let get = matches!(*request.method(), Method::GET | Method::HEAD);
        let response = match (self.html, request.uri().path()) {
            (Some(html), "/") if get => {
                let mut response = Response::new(if request.method() == Method::HEAD {
                    BoxBody::empty()
                } else {
                    BoxBody::full(html)
                });
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                response
            }
            (Some(_), "/favicon.ico") if get => {
                let mut response = Response::new(BoxBody::empty());
                *response.status_mut() = StatusCode::NO_CONTENT;
                response
            }
            _ => return Either::Left(self.inner.call(request)),
        };
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

    async fn response_of(
        page: Option<&'static str>,
        method: Method,
        uri: &str,
    ) -> (StatusCode, String) {
        let inner = tower::service_fn(|_: Request<()>| async {
            let mut response = Response::new(BoxBody::full("inner"));
            *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            Ok::<_, Infallible>(response)
        });
        let request = Request::builder().method(method).uri(uri).body(()).unwrap();
        let response = Page::new(page, inner).oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    async fn body_of(page: Option<&'static str>, method: Method, uri: &str) -> String {
        response_of(page, method, uri).await.1
    }

    #[tokio::test]
    async fn the_page_is_at_the_root_only() {
        assert_eq!(body_of(Some("page"), Method::GET, "/").await, "page");
        assert_eq!(body_of(Some("page"), Method::HEAD, "/").await, "");
        assert_eq!(body_of(Some("page"), Method::POST, "/").await, "inner");
        assert_eq!(body_of(Some("page"), Method::GET, "/x").await, "inner");
        assert_eq!(body_of(None, Method::GET, "/").await, "inner");
    }

    #[tokio::test]
    async fn the_favicon_is_no_content_beside_a_page() {
        let no_content = (StatusCode::NO_CONTENT, String::new());
        let inner = (StatusCode::METHOD_NOT_ALLOWED, "inner".to_owned());
        let favicon = "/favicon.ico";
        assert_eq!(
            response_of(Some("p"), Method::GET, favicon).await,
            no_content
        );
        assert_eq!(
            response_of(Some("p"), Method::HEAD, favicon).await,
            no_content
        );
        assert_eq!(response_of(Some("p"), Method::POST, favicon).await, inner);
        assert_eq!(response_of(None, Method::GET, favicon).await, inner);
    }
}
