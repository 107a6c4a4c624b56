//! Server reflection for `weir call`: the schema of a method, asked of the server itself.
//!
//! The client asks `grpc.reflection.v1.ServerReflection/ServerReflectionInfo` (or, when the
//! server answers `UNIMPLEMENTED`, the older but wire-identical `grpc.reflection.v1alpha`) for
//! the file that defines the service (`file_containing_symbol`), then for the files it imports
//! that did not come with it (`file_by_filename`), round after round, until every import is
//! known. The reflection RPC is a bidirectional stream, but each round is its own call: all
//! its requests are sent, the request stream is closed, then the answers are read. That is
//! half duplex, so it works over HTTP/1.1 and HTTP/2 alike. The call's metadata (`-H`) and
//! deadline (`--timeout`, for each reflection call) go with the reflection calls too.
//!
//! A reflection server is a peer like any other: what it answers is checked and bounded
//! ([`Limits`]: files, bytes, rounds), import cycles and missing files are errors, and every
//! error says what the server did wrong. Well-known types (`google/protobuf/*.proto`) that the
//! server does not send are taken from prost-reflect's own copies.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use prost_reflect::DescriptorPool;
use prost_types::FileDescriptorProto;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};
use weir_client::{CallOptions, Client, Code, Status};

/// The reflection services, newest first. Their messages are the same on the wire.
const SERVICES: [&str; 2] = [
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// How long one reflection call may take when the user gave no `--timeout`, so a server that
/// never answers cannot hang `weir call`.
const ROUND_TIMEOUT: Duration = Duration::from_secs(60);

/// How much a reflection server may send before the client gives up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Files in the schema, the service's file and every file it imports, transitively.
    pub(crate) max_files: usize,
    /// Encoded bytes of all those files together.
    pub(crate) max_bytes: usize,
    /// Calls to the reflection service (the first, then one per level of imports).
    pub(crate) max_rounds: usize,
}

impl Limits {
    /// Generous for real APIs (Google's largest services import a few hundred files).
    pub(crate) const DEFAULT: Limits = Limits {
        max_files: 2_000,
        max_bytes: 64 << 20,
        max_rounds: 64,
    };
}

/// What server reflection found out.
#[derive(Debug)]
pub(crate) enum Reflection {
    /// The service's file and all its imports.
    Found {
        pool: DescriptorPool,
        /// The reflection service that answered.
        service: &'static str,
        /// Files the server sent.
        files: usize,
    },
    /// The server offers no reflection, or its reflection does not know the service: why.
    Unavailable(String),
}

/// The schema for `method_path` (`package.Service/Method`) when the user gave none: server
/// reflection's when the server offers it (unless `skip` gives a reason not to ask), else the
/// built-in `grpc.testing` one if it has the service, else an error that says what to pass.
/// With `verbose`, where the schema came from is printed on stderr.
pub(crate) async fn schema(
    client: &Client,
    options: &CallOptions,
    method_path: &str,
    skip: Option<&str>,
    verbose: bool,
) -> Result<DescriptorPool, String> {
    let service = method_path.rsplit_once('/').map_or(method_path, |(s, _)| s);
    let why = if let Some(reason) = skip {
        reason.to_owned()
    } else {
        match fetch(client, options, service, Limits::DEFAULT).await {
            Ok(Reflection::Found {
                pool,
                service: reflection,
                files,
            }) => {
                if verbose {
                    eprintln!("schema: server reflection ({reflection}, {files} files)");
                }
                return Ok(pool);
            }
            Ok(Reflection::Unavailable(why)) => why,
            // Nothing to do with reflection: the call itself would fail the same way.
            Err(FetchError::Server(status)) => return Err(crate::output::describe(&status)),
            Err(FetchError::Reflection(e)) => {
                return Err(format!(
                    "{e} (--no-reflection skips it; or pass --descriptor-set, --proto or --raw)"
                ));
            }
        }
    };
    let builtin =
        DescriptorPool::decode(weir_testservice::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string())?;
    if builtin.get_service_by_name(service).is_none() {
        return Err(format!(
            "no schema for {service}: {why}, and it is not a built-in grpc.testing service; \
             pass --descriptor-set or --proto, or --raw"
        ));
    }
    if verbose {
        eprintln!("schema: built-in grpc.testing ({why})");
    }
    Ok(builtin)
}

/// Why [`fetch`] failed.
#[derive(Debug)]
pub(crate) enum FetchError {
    /// The server could not be reached (`UNAVAILABLE`, such as a refused connection), or it
    /// is not a gRPC-Web server: not a matter of reflection, and the call would fail too.
    Server(Status),
    /// The reflection service failed or answered nonsense.
    Reflection(String),
}

impl From<String> for FetchError {
    fn from(e: String) -> Self {
        FetchError::Reflection(e)
    }
}

/// Asks the server for the schema of `service` (a fully qualified service name).
///
/// Errors are servers that cannot be reached or do not speak gRPC-Web, and reflection
/// servers that fail or answer nonsense.
pub(crate) async fn fetch(
    client: &Client,
    options: &CallOptions,
    service: &str,
    limits: Limits,
) -> Result<Reflection, FetchError> {
    let first = vec![MessageRequest::FileContainingSymbol(service.to_owned())];
    let mut unimplemented = Vec::new();
    for reflection in SERVICES {
        match round(client, options, reflection, &first, limits.max_bytes).await {
            Ok(answers) => {
                let mut files = Files::new(reflection, limits);
                match files.take(answers, true)? {
                    Taken::Files => {}
                    Taken::NotFound(message) => {
                        return Ok(Reflection::Unavailable(format!(
                            "the server's reflection ({reflection}) does not know {service}: {message}"
                        )));
                    }
                }
                return Ok(files.complete(client, options).await?);
            }
            Err(status) if status.code() == Code::Unimplemented => {
                unimplemented.push(format!("{reflection}: {}", status.message()));
            }
            Err(status) if status.code() == Code::NotFound => {
                return Ok(Reflection::Unavailable(format!(
                    "the server's reflection ({reflection}) does not know {service}: {}",
                    status.message()
                )));
            }
            Err(status)
                if status.code() == Code::Unavailable
                    || crate::output::native_grpc_hint(&status).is_some() =>
            {
                return Err(FetchError::Server(status));
            }
            Err(status) => {
                return Err(FetchError::Reflection(format!(
                    "server reflection ({reflection}) failed: {status}"
                )));
            }
        }
    }
    Ok(Reflection::Unavailable(format!(
        "the server offers no reflection (UNIMPLEMENTED: {})",
        unimplemented.join("; ")
    )))
}

/// One reflection call: every request sent, the stream closed, every answer read. The
/// answers may hold at most `budget` bytes, and may take at most [`ROUND_TIMEOUT`] (less when
/// the options have a shorter deadline).
async fn round(
    client: &Client,
    options: &CallOptions,
    reflection: &str,
    requests: &[MessageRequest],
    budget: usize,
) -> Result<Vec<ServerReflectionResponse>, Status> {
    tokio::time::timeout(
        ROUND_TIMEOUT,
        round_unbounded(client, options, reflection, requests, budget),
    )
    .await
    .unwrap_or_else(|_| {
        Err(Status::new(
            Code::DeadlineExceeded,
            format!("no complete answer within {}s", ROUND_TIMEOUT.as_secs()),
        ))
    })
}

async fn round_unbounded(
    client: &Client,
    options: &CallOptions,
    reflection: &str,
    requests: &[MessageRequest],
    budget: usize,
) -> Result<Vec<ServerReflectionResponse>, Status> {
    let messages: Vec<Bytes> = requests
        .iter()
        .map(|request| {
            Bytes::from(
                ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(request.clone()),
                }
                .encode_to_vec(),
            )
        })
        .collect();
    let path = format!("{reflection}/ServerReflectionInfo");
    let mut call = client
        .streaming(&path, futures_util::stream::iter(messages), options.clone())
        .await?;
    let mut answers = Vec::new();
    let mut received = 0usize;
    while let Some(bytes) = call.message().await? {
        received = received.saturating_add(bytes.len());
        if received > budget {
            return Err(Status::new(
                Code::ResourceExhausted,
                format!("the answers exceed the {budget} bytes of descriptors still allowed"),
            ));
        }
        let answer = ServerReflectionResponse::decode(bytes).map_err(|e| {
            Status::new(
                Code::Internal,
                format!("an answer is not a ServerReflectionResponse: {e}"),
            )
        })?;
        answers.push(answer);
        // A well-behaved server answers each request once.
        if answers.len() > requests.len() {
            return Err(Status::new(
                Code::Internal,
                format!("{} answers to {} requests", answers.len(), requests.len()),
            ));
        }
    }
    Ok(answers)
}

/// What [`Files::take`] made of a round's answers.
enum Taken {
    Files,
    /// The server's reflection has no such symbol (an in-stream `NOT_FOUND`).
    NotFound(String),
}

/// The files received so far, checked against the limits.
#[derive(Debug)]
struct Files {
    reflection: &'static str,
    limits: Limits,
    files: HashMap<String, FileDescriptorProto>,
    bytes: usize,
    rounds: usize,
    /// Every file name asked for by name, so a server that never sends one is caught.
    requested: HashSet<String>,
}

impl Files {
    fn new(reflection: &'static str, limits: Limits) -> Self {
        Files {
            reflection,
            limits,
            files: HashMap::new(),
            bytes: 0,
            rounds: 1,
            requested: HashSet::new(),
        }
    }

    fn error(&self, what: impl std::fmt::Display) -> String {
        format!("server reflection ({}): {what}", self.reflection)
    }

    /// Takes the files of a round's answers. `symbol`: the round asked for the service.
    fn take(
        &mut self,
        answers: Vec<ServerReflectionResponse>,
        symbol: bool,
    ) -> Result<Taken, String> {
        if answers.is_empty() {
            return Err(self.error("the server closed the stream without an answer"));
        }
        for answer in answers {
            match answer.message_response {
                Some(MessageResponse::FileDescriptorResponse(response)) => {
                    if response.file_descriptor_proto.is_empty() {
                        return Err(self.error("an answer holds no file descriptor"));
                    }
                    for encoded in response.file_descriptor_proto {
                        self.add(&encoded)?;
                    }
                }
                Some(MessageResponse::ErrorResponse(error)) => {
                    if symbol && error.error_code == Code::NotFound.as_i32() {
                        return Ok(Taken::NotFound(error.error_message));
                    }
                    let asked = match answer.original_request.and_then(|r| r.message_request) {
                        Some(MessageRequest::FileByFilename(name)) => format!(" for {name:?}"),
                        Some(MessageRequest::FileContainingSymbol(name)) => {
                            format!(" for symbol {name:?}")
                        }
                        _ => String::new(),
                    };
                    return Err(self.error(format_args!(
                        "error {}{asked}: {}",
                        Code::from_i32(error.error_code).name(),
                        error.error_message
                    )));
                }
                Some(_) => {
                    return Err(self.error("an answer of another kind than file descriptors"));
                }
                None => return Err(self.error("an answer without content")),
            }
        }
        Ok(Taken::Files)
    }

    fn add(&mut self, encoded: &[u8]) -> Result<(), String> {
        self.bytes = self.bytes.saturating_add(encoded.len());
        if self.bytes > self.limits.max_bytes {
            return Err(self.error(format_args!(
                "the descriptors exceed {} bytes",
                self.limits.max_bytes
            )));
        }
        let file = FileDescriptorProto::decode(encoded)
            .map_err(|e| self.error(format_args!("a file descriptor does not decode: {e}")))?;
        let name = file.name().to_owned();
        if name.is_empty() {
            return Err(self.error("a file descriptor has no name"));
        }
        if !self.files.contains_key(&name) {
            if self.files.len() >= self.limits.max_files {
                return Err(self.error(format_args!(
                    "the schema has more than {} files",
                    self.limits.max_files
                )));
            }
            self.files.insert(name, file);
        }
        Ok(())
    }

    /// Imports that are neither received nor well-known types, sorted.
    fn missing(&self) -> BTreeSet<String> {
        let builtin = DescriptorPool::global();
        self.files
            .values()
            .flat_map(|file| file.dependency.iter())
            .filter(|name| {
                !self.files.contains_key(name.as_str()) && builtin.get_file_by_name(name).is_none()
            })
            .cloned()
            .collect()
    }

    /// Asks for missing imports until there are none, then builds the pool.
    async fn complete(
        mut self,
        client: &Client,
        options: &CallOptions,
    ) -> Result<Reflection, String> {
        loop {
            let missing = self.missing();
            if missing.is_empty() {
                break;
            }
            if let Some(name) = missing.iter().find(|name| self.requested.contains(*name)) {
                return Err(self.error(format_args!(
                    "asked for {name:?}, which {} imports, the server sent other files",
                    self.importer_of(name)
                )));
            }
            // Every missing import is a file to come: a server that names millions of
            // imports is refused before anything is asked or built for them.
            if self.files.len() + missing.len() > self.limits.max_files {
                return Err(self.error(format_args!(
                    "the schema would need {} files, more than the limit of {}",
                    self.files.len() + missing.len(),
                    self.limits.max_files
                )));
            }
            if self.rounds >= self.limits.max_rounds {
                return Err(self.error(format_args!(
                    "imports still missing after {} rounds of requests",
                    self.rounds
                )));
            }
            self.rounds += 1;
            let requests: Vec<MessageRequest> = missing
                .iter()
                .map(|name| MessageRequest::FileByFilename(name.clone()))
                .collect();
            self.requested.extend(missing);
            let budget = self.limits.max_bytes.saturating_sub(self.bytes);
            let answers = round(client, options, self.reflection, &requests, budget)
                .await
                .map_err(|status| self.error(format_args!("asking for imports: {status}")))?;
            self.take(answers, false)?;
        }
        let files = self.files.len();
        let ordered = self.ordered()?;
        let mut pool = DescriptorPool::new();
        pool.add_file_descriptor_protos(ordered)
            .map_err(|e| self.error(format_args!("the descriptors do not fit together: {e}")))?;
        Ok(Reflection::Found {
            pool,
            service: self.reflection,
            files,
        })
    }

    fn importer_of(&self, name: &str) -> &str {
        self.files
            .values()
            .find(|file| file.dependency.iter().any(|d| d == name))
            .map_or("a file", |file| file.name())
    }

    /// The files, every one after its imports (well-known types the server did not send
    /// added); an import cycle is an error.
    fn ordered(&self) -> Result<Vec<FileDescriptorProto>, String> {
        let builtin = DescriptorPool::global();
        let mut files = self.files.clone();
        for file in self.files.values() {
            for name in &file.dependency {
                if !files.contains_key(name)
                    && let Some(known) = builtin.get_file_by_name(name)
                {
                    files.insert(name.clone(), known.file_descriptor_proto().clone());
                }
            }
        }
        // Kahn's algorithm: a file is ready once all it imports is placed.
        let mut waiting: HashMap<&str, usize> = HashMap::new();
        let mut importers: HashMap<&str, Vec<&str>> = HashMap::new();
        for (name, file) in &files {
            let imports: HashSet<&str> = file.dependency.iter().map(String::as_str).collect();
            waiting.insert(name.as_str(), imports.len());
            for import in imports {
                importers.entry(import).or_default().push(name.as_str());
            }
        }
        let mut ready: VecDeque<&str> = waiting
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(name, _)| *name)
            .collect();
        let mut order = Vec::with_capacity(files.len());
        while let Some(name) = ready.pop_front() {
            order.push(name);
            for importer in importers.get(name).into_iter().flatten() {
                if let Some(n) = waiting.get_mut(importer) {
                    *n -= 1;
                    if *n == 0 {
                        ready.push_back(importer);
                    }
                }
            }
        }
        if order.len() < files.len() {
            let mut cycle: Vec<&str> = waiting
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(name, _)| *name)
                .collect();
            cycle.sort_unstable();
            return Err(self.error(format_args!("import cycle among {}", cycle.join(", "))));
        }
        Ok(order
            .into_iter()
            .filter_map(|name| files.get(name).cloned())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, imports: &[&str]) -> Vec<u8> {
        FileDescriptorProto {
            name: Some(name.to_owned()),
            dependency: imports.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        }
        .encode_to_vec()
    }

    fn answer(files: Vec<Vec<u8>>) -> ServerReflectionResponse {
        ServerReflectionResponse {
            message_response: Some(MessageResponse::FileDescriptorResponse(
                tonic_reflection::pb::v1::FileDescriptorResponse {
                    file_descriptor_proto: files,
                },
            )),
            ..Default::default()
        }
    }

    fn files_of(answers: Vec<ServerReflectionResponse>) -> Result<Files, String> {
        let mut files = Files::new(SERVICES[0], Limits::DEFAULT);
        files.take(answers, true)?;
        Ok(files)
    }

    #[test]
    fn imports_are_ordered_and_well_known_types_filled_in() {
        let files = files_of(vec![answer(vec![
            file("a.proto", &["b.proto", "google/protobuf/empty.proto"]),
            file("b.proto", &["c.proto"]),
            file("c.proto", &[]),
        ])])
        .unwrap();
        assert!(files.missing().is_empty());
        let names: Vec<String> = files
            .ordered()
            .unwrap()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        let at = |n: &str| names.iter().position(|x| x == n).unwrap();
        assert_eq!(names.len(), 4);
        assert!(at("c.proto") < at("b.proto") && at("b.proto") < at("a.proto"));
        assert!(at("google/protobuf/empty.proto") < at("a.proto"));
    }

    #[test]
    fn missing_imports_are_listed() {
        let files = files_of(vec![answer(vec![file("a.proto", &["b.proto", "c.proto"])])]).unwrap();
        assert_eq!(
            files.missing().into_iter().collect::<Vec<_>>(),
            ["b.proto", "c.proto"]
        );
    }

    #[test]
    fn import_cycles_are_errors() {
        let files = files_of(vec![answer(vec![
            file("a.proto", &["b.proto"]),
            file("b.proto", &["a.proto"]),
            file("c.proto", &[]),
        ])])
        .unwrap();
        let error = files.ordered().unwrap_err();
        assert!(
            error.contains("import cycle among a.proto, b.proto"),
            "{error}"
        );
    }

    #[test]
    fn garbage_answers_are_errors() {
        let error = files_of(vec![answer(vec![vec![0xff, 0xff, 0xff]])]).unwrap_err();
        assert!(error.contains("does not decode"), "{error}");
        let error = files_of(vec![answer(vec![file("", &[])])]).unwrap_err();
        assert!(error.contains("no name"), "{error}");
        let error = files_of(vec![ServerReflectionResponse::default()]).unwrap_err();
        assert!(error.contains("without content"), "{error}");
        let error = files_of(Vec::new()).unwrap_err();
        assert!(error.contains("without an answer"), "{error}");
    }

    #[test]
    fn limits_hold() {
        let limits = Limits {
            max_files: 2,
            max_bytes: 1_000,
            max_rounds: 1,
        };
        let mut files = Files::new(SERVICES[0], limits);
        let error = files
            .take(
                vec![answer(vec![
                    file("a.proto", &[]),
                    file("b.proto", &[]),
                    file("c.proto", &[]),
                ])],
                true,
            )
            .err()
            .unwrap();
        assert!(error.contains("more than 2 files"), "{error}");
        let mut files = Files::new(SERVICES[0], limits);
        let big = FileDescriptorProto {
            name: Some("big.proto".into()),
            package: Some("x".repeat(2_000)),
            ..Default::default()
        };
        let error = files
            .take(vec![answer(vec![big.encode_to_vec()])], true)
            .err()
            .unwrap();
        assert!(error.contains("exceed 1000 bytes"), "{error}");
    }
}
