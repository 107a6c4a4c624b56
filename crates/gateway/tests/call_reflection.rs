//! `weir call` and server reflection, through the `weir` binary against real servers: `weir
//! demo` (tonic-reflection behind the gateway), gRPC-Web servers without reflection or with
//! only `v1alpha`, and a reflection server that answers nonsense.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::pin::Pin;
use std::process::Stdio;
use std::time::Duration;

use futures_util::Stream;
use prost_types::{
    DescriptorProto, FieldDescriptorProto, FileDescriptorProto, MethodDescriptorProto,
    ServiceDescriptorProto, field_descriptor_proto,
};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::server_reflection_server::{
    ServerReflection, ServerReflectionServer,
};
use tonic_reflection::pb::v1::{
    ErrorResponse, FileDescriptorResponse, ServerReflectionRequest, ServerReflectionResponse,
};
use tower::Layer as _;

const WEIR: &str = env!("CARGO_BIN_EXE_weir");

struct Output {
    success: bool,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "success: {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.success, self.stdout, self.stderr
        )
    }
}

/// Runs `weir call ADDR ARGS...` to the end.
async fn call(addr: &str, args: &[&str]) -> Output {
    let output = tokio::process::Command::new(WEIR)
        .arg("call")
        .arg(addr)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    Output {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `weir demo` on a free port, killed when dropped.
struct Demo {
    _child: tokio::process::Child,
    url: String,
}

async fn demo() -> Demo {
    let mut child = tokio::process::Command::new(WEIR)
        .args(["demo", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let url = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some((_, url)) = line.split_once("listening on ") {
                return url.trim().trim_end_matches('/').to_owned();
            }
        }
        panic!("weir demo exited without listening");
    })
    .await
    .unwrap();
    // Keep reading stdout so the demo never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Demo { _child: child, url }
}

/// Serves `routes` with gRPC-Web (weir's layer) on a free port for the rest of the test.
async fn serve(routes: tonic::service::Routes) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = weir::grpc_web::GrpcWebLayer::new().layer(routes.prepare());
    tokio::spawn(async move {
        weir::server::Server::new()
            .serve(listener, service, std::future::pending())
            .await;
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn the_demo_offers_its_schema_by_reflection() {
    let demo = demo().await;
    for transport in [&[][..], &["--http1"][..], &["--http1", "--text"][..]] {
        let mut args = vec![
            "grpc.testing.TestService/UnaryCall",
            "-d",
            r#"{"responseSize": 3}"#,
            "-v",
        ];
        args.extend_from_slice(transport);
        let out = call(&demo.url, &args).await;
        assert!(out.success, "{out:?}");
        assert_eq!(out.stdout, "{\"payload\":{\"body\":\"AAAA\"}}\n", "{out:?}");
        assert!(
            out.stderr.contains(
                "schema: server reflection (grpc.reflection.v1.ServerReflection, 3 files)"
            ),
            "{out:?}"
        );
    }

    // The reflection service is not in the built-in schema: only reflection knows it.
    let out = call(
        &demo.url,
        &[
            "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "-d",
            r#"{"listServices": ""}"#,
        ],
    )
    .await;
    assert!(out.success, "{out:?}");
    assert!(
        out.stdout
            .contains(r#"{"name":"grpc.testing.TestService"}"#),
        "{out:?}"
    );

    // --no-reflection: the built-in schema, which does not have the reflection service.
    let out = call(
        &demo.url,
        &[
            "grpc.testing.TestService/EmptyCall",
            "-d",
            "{}",
            "-v",
            "--no-reflection",
        ],
    )
    .await;
    assert!(out.success, "{out:?}");
    assert!(
        out.stderr
            .contains("schema: built-in grpc.testing (--no-reflection)"),
        "{out:?}"
    );
    let out = call(
        &demo.url,
        &[
            "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "-d",
            "{}",
            "--no-reflection",
        ],
    )
    .await;
    assert!(!out.success, "{out:?}");
    assert!(
        out.stderr
            .contains("pass --descriptor-set or --proto, or --raw"),
        "{out:?}"
    );

    // A service the server does not reflect: said so.
    let out = call(&demo.url, &["nope.Service/Method", "-d", "{}"]).await;
    assert!(!out.success, "{out:?}");
    assert!(
        out.stderr.contains("does not know nope.Service")
            && out
                .stderr
                .contains("pass --descriptor-set or --proto, or --raw"),
        "{out:?}"
    );
}

#[tokio::test]
async fn without_reflection_the_builtin_schema_or_a_clear_error() {
    let url = serve(weir_testservice::routes()).await;
    let out = call(
        &url,
        &[
            "grpc.testing.TestService/UnaryCall",
            "-d",
            r#"{"responseSize": 2}"#,
            "-v",
        ],
    )
    .await;
    assert!(out.success, "{out:?}");
    assert_eq!(out.stdout, "{\"payload\":{\"body\":\"AAA=\"}}\n", "{out:?}");
    assert!(
        out.stderr
            .contains("schema: built-in grpc.testing (the server offers no reflection"),
        "{out:?}"
    );

    let out = call(&url, &["pkg.Other/Get", "-d", "{}"]).await;
    assert!(!out.success, "{out:?}");
    assert!(
        out.stderr
            .contains("no schema for pkg.Other: the server offers no reflection")
            && out
                .stderr
                .contains("pass --descriptor-set or --proto, or --raw"),
        "{out:?}"
    );
}

#[tokio::test]
async fn v1alpha_reflection_is_used_when_v1_is_not_offered() {
    let v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(weir_testservice::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .unwrap();
    let url = serve(weir_testservice::routes().add_service(v1alpha)).await;
    let out = call(
        &url,
        &[
            "grpc.testing.TestService/UnaryCall",
            "-d",
            r#"{"responseSize": 1}"#,
            "-v",
            "--http1",
        ],
    )
    .await;
    assert!(out.success, "{out:?}");
    assert_eq!(out.stdout, "{\"payload\":{\"body\":\"AA==\"}}\n", "{out:?}");
    assert!(
        out.stderr
            .contains("schema: server reflection (grpc.reflection.v1alpha.ServerReflection"),
        "{out:?}"
    );
}

// ---- a reflection server of its own making ---------------------------------------------

/// Reflection whose answers depend on what is asked: a sound schema spread over rounds
/// (`good.Svc`), and every kind of nonsense (`bad.*`).
struct Scripted;

fn file(name: &str, imports: &[&str]) -> FileDescriptorProto {
    FileDescriptorProto {
        name: Some(name.to_owned()),
        dependency: imports.iter().map(|s| (*s).to_owned()).collect(),
        syntax: Some("proto3".to_owned()),
        ..Default::default()
    }
}

fn field(name: &str, number: i32, type_name: Option<&str>) -> FieldDescriptorProto {
    FieldDescriptorProto {
        name: Some(name.to_owned()),
        json_name: None,
        number: Some(number),
        label: Some(field_descriptor_proto::Label::Optional as i32),
        r#type: Some(if type_name.is_some() {
            field_descriptor_proto::Type::Message
        } else {
            field_descriptor_proto::Type::Int32
        } as i32),
        type_name: type_name.map(str::to_owned),
        ..Default::default()
    }
}

/// `good.proto`: `good.Svc/Get(good.Request) returns (dep.Reply)`, where `good.Request`
/// holds a `dep.Reply` and a `google.protobuf.Timestamp` (a file the server never sends).
fn good_files(name: &str) -> Option<Vec<FileDescriptorProto>> {
    match name {
        "good.Svc" | "good.proto" => {
            let mut good = file(
                "good.proto",
                &["dep.proto", "google/protobuf/timestamp.proto"],
            );
            good.package = Some("good".to_owned());
            good.message_type = vec![DescriptorProto {
                name: Some("Request".to_owned()),
                field: vec![
                    field("dep", 1, Some(".dep.Reply")),
                    field("when", 2, Some(".google.protobuf.Timestamp")),
                ],
                ..Default::default()
            }];
            good.service = vec![ServiceDescriptorProto {
                name: Some("Svc".to_owned()),
                method: vec![MethodDescriptorProto {
                    name: Some("Get".to_owned()),
                    input_type: Some(".good.Request".to_owned()),
                    output_type: Some(".dep.Reply".to_owned()),
                    ..Default::default()
                }],
                ..Default::default()
            }];
            Some(vec![good])
        }
        "dep.proto" => {
            let mut dep = file("dep.proto", &[]);
            dep.package = Some("dep".to_owned());
            dep.message_type = vec![DescriptorProto {
                name: Some("Reply".to_owned()),
                field: vec![field("x", 1, None)],
                ..Default::default()
            }];
            Some(vec![dep])
        }
        _ => None,
    }
}

fn files_answer(files: Vec<Vec<u8>>) -> MessageResponse {
    MessageResponse::FileDescriptorResponse(FileDescriptorResponse {
        file_descriptor_proto: files,
    })
}

fn encoded(files: Vec<FileDescriptorProto>) -> MessageResponse {
    files_answer(files.iter().map(prost::Message::encode_to_vec).collect())
}

fn not_found(what: &str) -> MessageResponse {
    MessageResponse::ErrorResponse(ErrorResponse {
        error_code: 5,
        error_message: format!("{what} not found"),
    })
}

/// The answers to one request.
fn answer(request: &MessageRequest) -> Vec<MessageResponse> {
    let asked = match request {
        MessageRequest::FileContainingSymbol(s) | MessageRequest::FileByFilename(s) => s.as_str(),
        _ => return vec![not_found("that")],
    };
    if let Some(files) = good_files(asked) {
        return vec![encoded(files)];
    }
    let one = |name: &str, imports: &[&str]| encoded(vec![file(name, imports)]);
    match asked {
        "bad.Garbage" => vec![files_answer(vec![vec![0xff, 0xff, 0xff]])],
        "bad.Cycle" => vec![one("a.proto", &["b.proto"])],
        "b.proto" => vec![one("b.proto", &["a.proto"])],
        "bad.Missing" => vec![one("missing.proto", &["gone.proto"])],
        "bad.Liar" => vec![one("liar.proto", &["wanted.proto"])],
        "wanted.proto" => vec![one("other.proto", &[])],
        "bad.Chatty" => vec![one("chatty.proto", &[]), one("chatty.proto", &[])],
        "bad.Empty" => Vec::new(),
        "bad.Huge" => {
            let mut huge = file("huge.proto", &[]);
            huge.package = Some("x".repeat(5 << 20));
            vec![encoded(vec![huge])]
        }
        "bad.Endless" => vec![one("e0.proto", &["e1.proto"])],
        name => match name
            .strip_prefix('e')
            .and_then(|n| n.strip_suffix(".proto"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            Some(n) => vec![one(name, &[&format!("e{}.proto", n + 1)])],
            None => vec![not_found(name)],
        },
    }
}

type Answers = Pin<Box<dyn Stream<Item = Result<ServerReflectionResponse, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl ServerReflection for Scripted {
    type ServerReflectionInfoStream = Answers;

    async fn server_reflection_info(
        &self,
        request: tonic::Request<tonic::Streaming<ServerReflectionRequest>>,
    ) -> Result<tonic::Response<Answers>, tonic::Status> {
        let mut requests = request.into_inner();
        let mut answers = Vec::new();
        while let Some(request) = requests.message().await? {
            let Some(asked) = request.message_request.clone() else {
                return Err(tonic::Status::invalid_argument("no request"));
            };
            for message_response in answer(&asked) {
                answers.push(Ok(ServerReflectionResponse {
                    valid_host: String::new(),
                    original_request: Some(request.clone()),
                    message_response: Some(message_response),
                }));
            }
        }
        Ok(tonic::Response::new(Box::pin(futures_util::stream::iter(
            answers,
        ))))
    }
}

#[tokio::test]
async fn a_schema_over_several_rounds_with_well_known_types() {
    let url = serve(tonic::service::Routes::new(ServerReflectionServer::new(
        Scripted,
    )))
    .await;
    // The request must convert with the reflected schema; the server has no good.Svc to call.
    let out = call(
        &url,
        &[
            "good.Svc/Get",
            "-d",
            r#"{"dep": {"x": 7}, "when": "2020-01-01T00:00:00Z"}"#,
            "-v",
        ],
    )
    .await;
    assert!(!out.success, "{out:?}");
    assert!(
        out.stderr
            .contains("schema: server reflection (grpc.reflection.v1.ServerReflection, 2 files)"),
        "{out:?}"
    );
    assert!(out.stderr.contains("UNIMPLEMENTED"), "{out:?}");
    let out = call(&url, &["good.Svc/Get", "-d", r#"{"nope": 1}"#]).await;
    assert!(!out.success, "{out:?}");
    assert!(
        out.stderr
            .contains("request JSON does not fit good.Request"),
        "{out:?}"
    );

    // A grpc.testing service the server's reflection does not know: the built-in schema.
    let out = call(
        &url,
        &["grpc.testing.TestService/EmptyCall", "-d", "{}", "-v"],
    )
    .await;
    assert!(
        out.stderr.contains(
            "schema: built-in grpc.testing (the server's reflection (grpc.reflection.v1.ServerReflection) does not know grpc.testing.TestService"
        ),
        "{out:?}"
    );
}

#[tokio::test]
async fn nonsense_from_a_reflection_server_is_a_clear_error() {
    let url = serve(tonic::service::Routes::new(ServerReflectionServer::new(
        Scripted,
    )))
    .await;
    let cases = [
        ("bad.Garbage", "a file descriptor does not decode"),
        ("bad.Cycle", "import cycle among a.proto, b.proto"),
        (
            "bad.Missing",
            "error NOT_FOUND for \"gone.proto\": gone.proto not found",
        ),
        (
            "bad.Liar",
            "asked for \"wanted.proto\", which liar.proto imports, the server sent other files",
        ),
        ("bad.Chatty", "2 answers to 1 requests"),
        (
            "bad.Empty",
            "the server closed the stream without an answer",
        ),
        ("bad.Huge", "RESOURCE_EXHAUSTED"),
        ("bad.Endless", "imports still missing after 64 rounds"),
    ];
    for (service, expected) in cases {
        let method = format!("{service}/Get");
        let out = call(&url, &[&method, "-d", "{}"]).await;
        assert!(!out.success, "{service}: {out:?}");
        assert!(
            out.stderr
                .contains("server reflection (grpc.reflection.v1.ServerReflection)")
                && out.stderr.contains(expected)
                && out.stderr.contains("--no-reflection skips it"),
            "{service}: expected {expected:?}: {out:?}"
        );
    }
}
