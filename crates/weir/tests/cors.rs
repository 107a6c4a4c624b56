//! CORS over real sockets: the default policy refuses cross-origin callers and accepts
//! same-origin and non-browser ones; an allow-listed origin gets preflights and readable
//! responses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use http::StatusCode;
use http::header::{self, HeaderMap};
use weir::Cors;
use weir::body::BoxBody;
use weir::grpc_web::GrpcWebLayer;
use weir_testservice::pb::{EchoStatus, Empty, SimpleRequest};

use support::*;

const VARIANTS: [(Proto, Mode); 4] = [
    (Proto::H1, Mode::Binary),
    (Proto::H1, Mode::Text),
    (Proto::H2, Mode::Binary),
    (Proto::H2, Mode::Text),
];

const APP: &str = "http://app.example";
const EVIL: &str = "http://evil.example";
const REQUEST_HEADERS: &str = "content-type,x-grpc-web,x-grpc-test-echo-initial";

async fn server_allowing_app() -> TestServer {
    TestServer::with_layer(GrpcWebLayer::new().cors(Cors::default().allow_origin(APP).unwrap()))
        .await
}

async fn call_from(
    client: &mut Client,
    mode: Mode,
    origin: Option<&str>,
    message: &SimpleRequest,
) -> Reply {
    let mut builder = client
        .request(UNARY_CALL, mode)
        .header("x-grpc-test-echo-initial", INITIAL_VALUE);
    if let Some(origin) = origin {
        builder = builder.header(header::ORIGIN, origin);
    }
    let request = builder
        .body(BoxBody::full(mode.body(std::slice::from_ref(message))))
        .unwrap();
    client.start(request, mode).await.finish().await
}

fn header_list(headers: &HeaderMap, name: header::HeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_policy_refuses_cross_origin_calls() {
    let server = TestServer::start().await;
    for (proto, mode) in VARIANTS {
        let mut client = server.client(proto).await;
        let request = client
            .request(EMPTY_CALL, mode)
            .header(header::ORIGIN, EVIL)
            .body(BoxBody::full(mode.body(&[Empty {}])))
            .unwrap();
        let (status, headers, _) = read_body(client.send(request).await).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{proto:?} {mode:?}");
        assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    }
    assert_eq!(server.observer.counts().started, 0);

    // Preflights from there are refused as well.
    for proto in [Proto::H1, Proto::H2] {
        let mut client = server.client(proto).await;
        let request = client
            .builder(EMPTY_CALL)
            .method("OPTIONS")
            .header(header::ORIGIN, EVIL)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, REQUEST_HEADERS)
            .body(BoxBody::empty())
            .unwrap();
        let (status, headers, _) = read_body(client.send(request).await).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    }
    server.assert_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_policy_accepts_same_origin_and_no_origin() {
    let server = TestServer::start().await;
    let same_origin = server.origin();
    for (proto, mode) in VARIANTS {
        let mut client = server.client(proto).await;
        for origin in [Some(same_origin.as_str()), None] {
            let reply = call_from(
                &mut client,
                mode,
                origin,
                &SimpleRequest {
                    response_size: 3,
                    ..Default::default()
                },
            )
            .await;
            reply.assert_ok();
            assert_eq!(reply.messages.len(), 1);
            // Nothing cross-origin about it: no CORS headers.
            assert!(
                !reply
                    .headers
                    .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN),
                "{origin:?}: {reply:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_origin_preflight() {
    let server = server_allowing_app().await;
    for proto in [Proto::H1, Proto::H2] {
        let mut client = server.client(proto).await;
        let request = client
            .builder(UNARY_CALL)
            .method("OPTIONS")
            .header(header::ORIGIN, APP)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, REQUEST_HEADERS)
            .body(BoxBody::empty())
            .unwrap();
        let (status, headers, _) = read_body(client.send(request).await).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{headers:?}");
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
        assert!(
            header_list(&headers, header::ACCESS_CONTROL_ALLOW_METHODS)
                .contains(&"post".to_owned()),
            "{headers:?}"
        );
        let allowed = header_list(&headers, header::ACCESS_CONTROL_ALLOW_HEADERS);
        for name in ["content-type", "x-grpc-web", "x-grpc-test-echo-initial"] {
            assert!(allowed.contains(&name.to_owned()), "{name}: {headers:?}");
        }
        assert!(
            header_list(&headers, header::VARY).contains(&"origin".to_owned()),
            "{headers:?}"
        );

        // Another origin is refused.
        let request = client
            .builder(UNARY_CALL)
            .method("OPTIONS")
            .header(header::ORIGIN, EVIL)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, REQUEST_HEADERS)
            .body(BoxBody::empty())
            .unwrap();
        let (status, headers, _) = read_body(client.send(request).await).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));

        // OPTIONS that is not a preflight (no Origin) is not allowed.
        let request = client
            .builder(UNARY_CALL)
            .method("OPTIONS")
            .body(BoxBody::empty())
            .unwrap();
        let (status, _, _) = read_body(client.send(request).await).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    }
    assert_eq!(server.observer.counts().started, 0);
    server.assert_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_origin_response_is_readable() {
    let server = server_allowing_app().await;
    for (proto, mode) in VARIANTS {
        let mut client = server.client(proto).await;

        // A successful call: status in the trailer frame.
        let reply = call_from(
            &mut client,
            mode,
            Some(APP),
            &SimpleRequest {
                response_size: 3,
                ..Default::default()
            },
        )
        .await;
        reply.assert_ok();
        assert_eq!(reply.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
        assert_eq!(reply.headers["x-grpc-test-echo-initial"], INITIAL_VALUE);
        let exposed = header_list(&reply.headers, header::ACCESS_CONTROL_EXPOSE_HEADERS);
        for name in ["grpc-status", "grpc-message", "x-grpc-test-echo-initial"] {
            assert!(exposed.contains(&name.to_owned()), "{name}: {reply:?}");
        }

        // A failed call, trailers-only: the status headers must be readable too.
        let reply = call_from(
            &mut client,
            mode,
            Some(APP),
            &SimpleRequest {
                response_status: Some(EchoStatus {
                    code: 2,
                    message: "test status message".to_owned(),
                }),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(reply.assert_code(2), "test status message");
        assert!(reply.is_trailers_only());
        assert_eq!(reply.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
        let exposed = header_list(&reply.headers, header::ACCESS_CONTROL_EXPOSE_HEADERS);
        for name in ["grpc-status", "grpc-message", "x-grpc-test-echo-initial"] {
            assert!(exposed.contains(&name.to_owned()), "{name}: {reply:?}");
        }

        // A call the layer itself refuses (bad grpc-timeout) is readable as well.
        let request = client
            .request(EMPTY_CALL, mode)
            .header(header::ORIGIN, APP)
            .header("grpc-timeout", "abc")
            .body(BoxBody::full(mode.body(&[Empty {}])))
            .unwrap();
        let reply = client.start(request, mode).await.finish().await;
        reply.assert_code(13);
        assert_eq!(reply.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
        assert!(
            header_list(&reply.headers, header::ACCESS_CONTROL_EXPOSE_HEADERS)
                .contains(&"grpc-status".to_owned())
        );
    }

    // Still refused: an origin not on the list.
    let mut client = server.client(Proto::H1).await;
    let request = client
        .request(EMPTY_CALL, Mode::Binary)
        .header(header::ORIGIN, EVIL)
        .body(BoxBody::full(Mode::Binary.body(&[Empty {}])))
        .unwrap();
    let (status, _, _) = read_body(client.send(request).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
