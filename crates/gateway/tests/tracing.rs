//! `weir serve` with `[tracing]`: a call's span reaches an in-process OTLP receiver, child of
//! the client's `traceparent`, and the upstream gets the gateway's span as its parent;
//! `grpc-trace-bin` passes untouched. With `[log] access = true`, one JSON line per call.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.
#![cfg(unix)]

mod support;

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::io::{AsyncBufReadExt as _, BufReader};

use support::{HANG_GUARD, WEIR, serve, terminate, wait_for_lines};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute(span: &Span, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone()?.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_span_continues_the_client_trace_and_reaches_the_collector() {
    // The OTLP receiver.
    let receiver = Receiver::default();
    let otlp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp_addr = otlp.local_addr().unwrap();
    tokio::spawn({
        let receiver = receiver.clone();
        async move {
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(receiver))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(otlp))
                .await
                .unwrap();
        }
    });

    // The upstream: the interop TestService, recording the headers it receives.
    let seen: Arc<Mutex<Vec<(String, http::HeaderMap)>>> = Arc::default();
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    let service = tower::ServiceBuilder::new()
        .map_request({
            let seen = seen.clone();
            move |request: http::Request<hyper::body::Incoming>| {
                let path = request.uri().path().to_owned();
                seen.lock().unwrap().push((path, request.headers().clone()));
                request
            }
        })
        .service(weir_testservice::service());
    tokio::spawn(async move {
        weir::server::Server::new()
            .serve(upstream, service, std::future::pending())
            .await;
    });

    let mut gateway = serve(
        "tracing",
        &format!(
            "[[listener]]\naddress = \"127.0.0.1:0\"\n\
             [clusters.up]\naddresses = [\"http://{upstream_addr}\"]\n\
             [routes]\n\"*\" = \"up\"\n\
             [timeouts]\ndrain_delay = \"0s\"\n\
             [log]\nformat = \"json\"\naccess = true\n\
             [tracing]\notlp_endpoint = \"http://{otlp_addr}\"\nservice_name = \"weir-under-test\"\n"
        ),
        Stdio::piped(),
    );
    let url = wait_for_lines(&mut gateway.lines, &["listening on "])
        .await
        .remove(0);
    let stderr = tokio::spawn({
        let mut err = BufReader::new(gateway.child.stderr.take().unwrap()).lines();
        async move {
            let mut all = Vec::new();
            while let Ok(Some(line)) = err.next_line().await {
                all.push(line);
            }
            all
        }
    });

    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let call = tokio::process::Command::new(WEIR)
        .args([
            "call",
            &url,
            "grpc.testing.TestService/EmptyCall",
            "-d",
            "{}",
            "-H",
            &format!("traceparent:{traceparent}"),
            "-H",
            "grpc-trace-bin:AAECAw",
        ])
        .stdin(Stdio::null())
        .output();
    let call = tokio::time::timeout(HANG_GUARD, call)
        .await
        .expect("hang guard: weir call")
        .unwrap();
    assert!(
        call.status.success(),
        "weir call: {}",
        String::from_utf8_lossy(&call.stderr)
    );

    // A stop exports what is still buffered.
    terminate(&gateway.child).await;
    let status = tokio::time::timeout(HANG_GUARD, gateway.child.wait())
        .await
        .expect("hang guard: weir serve did not stop")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let log = stderr.await.unwrap();

    // The upstream got the gateway's span as parent, in the same trace.
    let headers = seen
        .lock()
        .unwrap()
        .iter()
        .find(|(path, _)| path.ends_with("/EmptyCall"))
        .map(|(_, headers)| headers.clone())
        .expect("the upstream saw the call");
    assert_eq!(headers["grpc-trace-bin"], "AAECAw", "passed untouched");
    let upstream_parent = headers["traceparent"].to_str().unwrap().to_owned();
    let fields: Vec<&str> = upstream_parent.split('-').collect();
    assert_eq!(fields.len(), 4, "{upstream_parent}");
    assert_eq!(fields[1], TRACE_ID, "the same trace");
    assert_ne!(
        fields[2], CLIENT_SPAN,
        "the gateway's span, not the client's"
    );
    let gateway_span = fields[2].to_owned();

    // The collector got that span, child of the client's.
    let spans = receiver.0.lock().unwrap().clone();
    let span = spans
        .iter()
        .find(|s| hex(&s.trace_id) == TRACE_ID && s.name.ends_with("/EmptyCall"))
        .unwrap_or_else(|| panic!("no EmptyCall span of the trace among {spans:#?}"));
    assert_eq!(hex(&span.span_id), gateway_span);
    assert_eq!(hex(&span.parent_span_id), CLIENT_SPAN);
    assert_eq!(span.name, "grpc.testing.TestService/EmptyCall");
    assert_eq!(span.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(
        attribute(span, "rpc.system"),
        Some(Value::StringValue("grpc".into()))
    );
    assert_eq!(
        attribute(span, "rpc.method"),
        Some(Value::StringValue("EmptyCall".into()))
    );
    assert_eq!(
        attribute(span, "rpc.grpc.status_code"),
        Some(Value::IntValue(0))
    );
    assert_eq!(
        attribute(span, "weir.door"),
        Some(Value::StringValue("grpc-web".into()))
    );
    assert_eq!(
        attribute(span, "server.address"),
        Some(Value::StringValue(upstream_addr.to_string()))
    );

    // The access log: one JSON line for the call.
    let access: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("\"weir::access\"") && l.contains("EmptyCall"))
        .collect();
    assert_eq!(access.len(), 1, "{log:#?}");
    for field in [
        "\"status\":\"OK\"",
        "\"door\":\"grpc-web\"",
        "\"bytes_in\":5",
        "\"bytes_out\":5",
        &format!("\"upstream\":\"{upstream_addr}\""),
    ] {
        assert!(access[0].contains(field), "{field} in {}", access[0]);
    }
}
