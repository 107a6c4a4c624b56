use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use tower_service::Service;
use weir_codec::content_type::{ContentType, Protocol};
use weir_codec::timeout;

use super::layer::Config;
use super::request::WebRequestBody;
use super::response::{self, Encoding};
use crate::body::{self, BoxBody, BoxError};
use crate::call::Leftover;
use crate::cors::Verdict;
use crate::edge::{Door, Edge};

/// The service made by [`GrpcWebLayer`](super::GrpcWebLayer): gRPC-Web and native gRPC in,
/// through the call edge ([`crate::edge`]), native gRPC to the inner service.
#[derive(Debug, Clone)]
pub struct GrpcWebService<S> {
    edge: Edge<S>,
    config: Arc<Config>,
}

impl<S> GrpcWebService<S> {
    pub(crate) fn new(edge: Edge<S>, config: Arc<Config>) -> Self {
        GrpcWebService { edge, config }
    }
}

/// What kind of request arrived.
enum Kind {
    Native,
    GrpcWeb(ContentType),
    Preflight,
    /// Not a call at all; answered with this HTTP status and explanation.
    Refused(StatusCode, &'static str),
}

fn classify<B>(request: &Request<B>) -> Kind {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(ContentType::from_header);
    match (request.method(), content_type) {
        (&Method::OPTIONS, _) => {
            if request.headers().contains_key(header::ORIGIN)
                && request
                    .headers()
                    .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
            {
                Kind::Preflight
            } else {
                Kind::Refused(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "gRPC calls use POST; OPTIONS is only for CORS preflight requests",
                )
            }
        }
        (_, Some(ct)) if ct.protocol() == Protocol::Grpc => Kind::Native,
        (&Method::POST, Some(ct)) => Kind::GrpcWeb(ct),
        (_, Some(_)) => Kind::Refused(
            StatusCode::METHOD_NOT_ALLOWED,
            "gRPC-Web calls must use POST",
        ),
        (&Method::POST, None) => Kind::Refused(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported content-type: expected application/grpc-web, application/grpc-web-text or application/grpc (each optionally +proto or +json)",
        ),
        (_, None) => Kind::Refused(
            StatusCode::METHOD_NOT_ALLOWED,
            "this endpoint serves gRPC and gRPC-Web calls, which use POST",
        ),
    }
}

fn http_error(status: StatusCode, message: &str) -> Response<BoxBody> {
    let mut response = Response::new(body::full(format!("{message}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if status == StatusCode::METHOD_NOT_ALLOWED {
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
    }
    response
}

/// The heartbeat interval a call asked for, clamped to the configured bounds. An invalid
/// value is ignored, as the specification requires.
fn parts_heartbeat(headers: &http::HeaderMap, config: &Config) -> Option<Duration> {
    let asked = timeout::parse(headers.get(&crate::names::WEIR_HEARTBEAT)?.as_bytes()).ok()?;
    Some(asked.clamp(config.heartbeat_min, config.heartbeat_max))
}

/// Answers without reading the request body; over HTTP/1.1 the body is drained first (see
/// [`crate::call::linger`]).
fn answer_unread<B, E>(
    request: Request<B>,
    response: Response<BoxBody>,
) -> BoxFuture<Response<BoxBody>, E>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    E: Send + 'static,
{
    let http1 = request.version() <= http::Version::HTTP_11;
    let body = body::boxed(request.into_body());
    Box::pin(async move {
        if http1 {
            crate::call::linger(body).await;
        }
        Ok(response)
    })
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'static>>;

impl<S, B, ResBody> Service<Request<B>> for GrpcWebService<S>
where
    S: Service<Request<BoxBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<BoxBody>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<Request<B>>::poll_ready(&mut self.edge, cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let config = self.config.clone();

        match classify(&request) {
            Kind::Native => {
                request.extensions_mut().insert(Door::Grpc);
                // Native gRPC gets the same edge as every other door: a gateway protects its
                // upstreams whatever protocol the client spoke.
                let future = self.edge.call(request);
                Box::pin(async move { Ok(future.await?.map(BoxBody::new)) })
            }
            Kind::Preflight => {
                let response = match config.cors.verdict(&request) {
                    Verdict::Allowed(origin) => {
                        let mut response = Response::new(body::empty());
                        *response.status_mut() = StatusCode::NO_CONTENT;
                        *response.headers_mut() =
                            config.cors.preflight_headers(origin, request.headers());
                        response
                    }
                    Verdict::SameOrigin => {
                        let mut response = Response::new(body::empty());
                        *response.status_mut() = StatusCode::NO_CONTENT;
                        response
                    }
                    Verdict::Denied(origin) => {
                        tracing::info!(
                            ?origin,
                            "refused CORS preflight from an origin that is not allowed"
                        );
                        http_error(StatusCode::FORBIDDEN, "origin not allowed")
                    }
                };
                answer_unread(request, response)
            }
            Kind::Refused(status, message) => {
                tracing::info!(method = %request.method(), path = request.uri().path(), %status, message, "refused non-gRPC request");
                let response = http_error(status, message);
                answer_unread(request, response)
            }
            Kind::GrpcWeb(content_type) => {
                request.extensions_mut().insert(if content_type.is_text() {
                    Door::GrpcWebText
                } else {
                    Door::GrpcWeb
                });
                let verdict = config.cors.verdict(&request);
                if let Verdict::Denied(origin) = &verdict {
                    tracing::info!(
                        ?origin,
                        path = request.uri().path(),
                        "refused gRPC-Web call from an origin that is not allowed"
                    );
                    let response = http_error(
                        StatusCode::FORBIDDEN,
                        "cross-origin gRPC-Web calls from this origin are not allowed",
                    );
                    return answer_unread(request, response);
                }
                let cors_origin = match verdict {
                    Verdict::Allowed(origin) => Some(origin),
                    _ => None,
                };
                // The policy is shared (an allowlist is a set; cloning it per call would cost).
                let policy = config.clone();
                let decorate = move |mut response: Response<BoxBody>| {
                    if let Some(origin) = cors_origin {
                        policy
                            .cors
                            .decorate_response(origin, response.headers_mut());
                    }
                    response
                };
                let encoding = Encoding::new(content_type.clone());
                let heartbeat = parts_heartbeat(request.headers(), &config);
                let (mut parts, body) = request.into_parts();
                parts.headers.remove(&crate::names::WEIR_HEARTBEAT);
                parts.headers.insert(
                    header::CONTENT_TYPE,
                    content_type.with_protocol(Protocol::Grpc).to_header_value(),
                );
                let leftover = Leftover::default();
                let http1 = parts.version <= http::Version::HTTP_11;
                let body = WebRequestBody::new(
                    BoxBody::new(body),
                    content_type.is_text(),
                    leftover.clone(),
                );
                let future = self.edge.call(Request::from_parts(parts, body));
                Box::pin(async move {
                    let mut future = future;
                    // With heartbeats asked for, waiting longer than one interval for the
                    // service's headers would leave the connection silent: answer early.
                    let mut early =
                        heartbeat.map(|interval| Box::pin(tokio::time::sleep(interval)));
                    let response = tokio::select! {
                        response = &mut future => response?,
                        () = crate::edge::until(early.as_mut()) => {
                            let pending: response::PendingResponse =
                                Box::pin(async move { future.await.map_err(Into::into) });
                            let interval = heartbeat.unwrap_or_default();
                            return Ok(decorate(response::early(pending, encoding, interval)));
                        }
                    };
                    let response = response::translate(response, encoding, heartbeat, false);
                    if http1
                        && response.headers().contains_key(&crate::names::GRPC_STATUS)
                        && let Some(unread) = leftover.take()
                    {
                        crate::call::linger(unread).await;
                    }
                    Ok(decorate(response))
                })
            }
        }
    }
}
