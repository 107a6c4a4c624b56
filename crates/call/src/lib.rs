//! `weir call` as a library: call a gRPC-Web method, or one over gRPC over WebTransport, from
//! the command line, JSON (or raw bytes) in and out.
//!
//! This crate holds the whole command behind the `weir call` subcommand of the `weir` binary:
//! its arguments ([`CallArgs`], a [`clap::Args`]), the call itself (gRPC-Web through
//! [`weir_client`], or with `--webtransport` through [`weir_client::webtransport`]), the
//! output on stdout and stderr, and a server reflection client. A binary embeds it as a
//! subcommand and hands the parsed arguments to [`run`]; `weir call --help` documents every
//! flag.
//!
//! Messages are converted between JSON (the protobuf JSON mapping) and protobuf with
//! `prost-reflect`, from the first schema that is there:
//!
//! 1. a descriptor set (`--descriptor-set`, as `protoc --descriptor_set_out
//!    --include_imports` writes it) or `.proto` files compiled in-process (`--proto`, with
//!    protox);
//! 2. server reflection (`grpc.reflection.v1`, or `v1alpha`), when the server offers it and
//!    knows the service: the server's own truth, so it wins over the built-in schema even
//!    for `grpc.testing` (`--no-reflection` skips it);
//! 3. the built-in descriptors of the interop `grpc.testing` services, so `weir call` talks
//!    to any interop server out of the box. For other services, without reflection, the
//!    user is told to pass a schema or `--raw`.
//!
//! `--raw` skips schemas: messages are hex or base64 in and out. With `-v` the schema's
//! origin is printed on stderr.
//!
//! Requests come from `--data`, or from stdin as they are read; each response message is
//! printed on a line of stdout as it arrives; a status other than `OK` is the [`Error`].
//!
//! # Example
//!
//! A `call` subcommand in another command line tool:
//!
//! ```no_run
//! use clap::Parser as _;
//!
//! #[derive(clap::Parser)]
//! enum Cli {
//!     /// Call a gRPC-Web method.
//!     Call(weir_call::CallArgs),
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     let Cli::Call(args) = Cli::parse();
//!     match weir_call::run(args).await {
//!         Ok(()) => std::process::ExitCode::SUCCESS,
//!         Err(e) => {
//!             eprintln!("{e}");
//!             std::process::ExitCode::FAILURE
//!         }
//!     }
//! }
//! ```
//!
//! Or arguments built in code, the way a user types them:
//!
//! ```no_run
//! # async fn call() -> Result<(), Box<dyn std::error::Error>> {
//! let args = weir_call::CallArgs::try_parse_from([
//!     "weir call",
//!     "127.0.0.1:8080",
//!     "grpc.testing.TestService/UnaryCall",
//!     "--data",
//!     r#"{"responseSize": 3}"#,
//! ])?;
//! weir_call::run(args).await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

use std::io::{BufRead as _, IsTerminal as _};
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt as _;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, MethodDescriptor};
use weir_client::{CallOptions, Client, HttpVersion, Mode};

use output::{OutputSchema, eprint_block, print_responses, status_error};

mod output;
mod reflection;
mod wt;

const EXAMPLES: &str = "\
Examples:
  weir demo --listen 127.0.0.1:8080 &
  weir call 127.0.0.1:8080 grpc.testing.TestService/UnaryCall -d '{\"responseSize\": 3}'
  weir call http://127.0.0.1:8080 grpc.testing.TestService/StreamingOutputCall \\
      -d '{\"responseParameters\": [{\"size\": 1}, {\"size\": 2}]}' -H x-user:ada --timeout 5s
  printf '{\"payload\":{\"body\":\"AAAA\"}}\\n{}\\n' | \\
      weir call 127.0.0.1:8080 grpc.testing.TestService/StreamingInputCall --http1
  weir call 127.0.0.1:8080 grpc.testing.TestService/EmptyCall --raw -d ''   # one empty message
  weir call https://api.example.com pkg.Svc/Get --proto api.proto -I protos -d '{}'
  weir call 127.0.0.1:8080 grpc.reflection.v1.ServerReflection/ServerReflectionInfo \\
      -d '{\"listServices\": \"\"}'     # the demo lists its services

Schema: --descriptor-set or --proto when given; else server reflection when the server
offers it; else the built-in grpc.testing schema. -v tells which was used.

Over WebTransport (HTTP/3), to a gateway with a WebTransport listener:
  weir demo --listen 127.0.0.1:8080 --webtransport-listen 127.0.0.1:4433 &
  # session URL and development certificate hash from http://127.0.0.1:8080/.well-known/weir/webtransport
  weir call http://127.0.0.1:8080 grpc.testing.TestService/FullDuplexCall --webtransport --discover
  # or given directly (the path defaults to /weir, ?v=2 is added)
  weir call https://127.0.0.1:4433 grpc.testing.TestService/UnaryCall --webtransport \\
      --cert-hash 93335362d368f5bb... -d '{\"responseSize\": 3}'
  weir call https://wt.example.com/weir pkg.Svc/Get --webtransport -d '{}'   # system roots

Input: --data, or standard input; several JSON messages (one per line, or any whitespace
between them) make a client stream. Over HTTP/2 and WebTransport a bidi call sends each line
as it is read and prints each response as it arrives.
Output: one JSON message per line on stdout; with -v the response headers and trailers on
stderr. A status other than OK is printed on stderr and the exit status is 1.";

/// Call a gRPC-Web method (or, with --webtransport, a gRPC over WebTransport one): JSON (or raw
/// bytes) in, JSON (or raw bytes) out.
///
/// Parsed by clap as `weir call` takes them: embed it as a subcommand
/// (`Call(weir_call::CallArgs)`) or flatten it into a parser, or use
/// [`try_parse_from`](Self::try_parse_from).
#[derive(Debug, clap::Args)]
#[command(after_long_help = EXAMPLES)]
pub struct CallArgs {
    /// Server: http://HOST:PORT, https://HOST:PORT, or HOST:PORT (cleartext). With
    /// --webtransport, the session URL (or with --discover, the gateway's HTTP address).
    #[arg(value_name = "ADDR")]
    addr: String,

    /// Method to call: package.Service/Method.
    #[arg(value_name = "SERVICE/METHOD")]
    method: String,

    /// Request message(s) as JSON (with --raw: hex or base64). Without it, read from stdin.
    #[arg(long, short = 'd', value_name = "JSON")]
    data: Option<String>,

    /// Encoded FileDescriptorSet holding the method and its messages (repeatable).
    #[arg(long = "descriptor-set", value_name = "FILE")]
    descriptor_sets: Vec<PathBuf>,

    /// .proto file defining the method, compiled in-process (repeatable).
    #[arg(long = "proto", value_name = "FILE")]
    protos: Vec<PathBuf>,

    /// Import path for --proto (repeatable). Default: for each file, the nearest directory
    /// (its own or one above) from which all it imports is found.
    #[arg(long = "import-path", short = 'I', value_name = "DIR")]
    import_paths: Vec<PathBuf>,

    /// Don't ask the server for the schema (server reflection): without --descriptor-set or
    /// --proto, only the built-in grpc.testing schema is known.
    #[arg(long)]
    no_reflection: bool,

    /// No schema: messages are raw protobuf bytes, written in hex (default) or base64, one
    /// per line, in and out.
    #[arg(long, value_name = "ENCODING", num_args = 0..=1, default_missing_value = "hex")]
    raw: Option<RawEncoding>,

    /// Metadata to send, KEY:VALUE (repeatable). Keys ending in -bin take base64 values.
    #[arg(short = 'H', long = "header", value_name = "KEY:VALUE")]
    headers: Vec<String>,

    /// Deadline of the call, e.g. 500ms or 10s (sent as grpc-timeout and enforced locally).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,

    /// Use grpc-web-text (base64 bodies) instead of binary.
    #[arg(long)]
    text: bool,

    /// Use HTTP/1.1 instead of HTTP/2 (client and bidi streams are then sent as one body).
    #[arg(long)]
    http1: bool,

    /// Print response headers and trailers on stderr.
    #[arg(long, short = 'v')]
    verbose: bool,

    /// Call over WebTransport (HTTP/3) instead of gRPC-Web: ADDR is the session URL,
    /// https://HOST:PORT[/PATH] (default path /weir; ?v=2 is added), or HOST:PORT. The
    /// server's certificate is checked against the system's roots unless --cert-hash or
    /// --discover is given.
    #[arg(long, conflicts_with_all = ["text", "http1"])]
    webtransport: bool,

    /// With --webtransport: accept the server certificate whose SHA-256 hash is HEX (64 hex
    /// digits, colons allowed; repeatable), as for a development certificate.
    #[arg(long = "cert-hash", value_name = "HEX", requires = "webtransport")]
    cert_hashes: Vec<String>,

    /// With --webtransport: ADDR is the gateway's HTTP address (http://HOST:PORT or
    /// https://HOST:PORT); the session URL and the certificate hashes are read from its
    /// /.well-known/weir/webtransport (as `weir demo --webtransport-listen` publishes).
    #[arg(long, requires = "webtransport", conflicts_with = "cert_hashes")]
    discover: bool,
}

/// How raw messages are written.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RawEncoding {
    Hex,
    Base64,
}

/// What the messages are.
enum Schema {
    Raw(RawEncoding),
    Typed(MethodDescriptor),
}

impl CallArgs {
    /// Parses `weir call`'s arguments; the first item is the program's name, as in
    /// [`std::env::args_os`]. The error, on bad arguments or `--help`, prints itself with
    /// [`clap::Error::exit`] or [`clap::Error::print`].
    pub fn try_parse_from<I, T>(args: I) -> Result<CallArgs, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        #[derive(clap::Parser)]
        #[command(name = "weir call")]
        struct Command {
            #[command(flatten)]
            args: CallArgs,
        }
        <Command as clap::Parser>::try_parse_from(args).map(|command| command.args)
    }
}

/// Why `weir call` failed: bad arguments or input, no schema, an unreachable server, or a
/// call that ended with a status other than `OK` (`call failed: CODE: message`).
///
/// With `-v`, what the call returned (trailers) was printed on stderr already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// Runs `weir call` with `args`: makes the call, reading requests from `--data` or stdin and
/// printing responses on stdout (and with `-v` headers, trailers and the status on stderr)
/// as they come.
///
/// Must run within a Tokio runtime (with time and I/O enabled). `Ok` means the call ended
/// with `OK`.
pub async fn run(args: CallArgs) -> Result<(), Error> {
    call(args).await.map_err(Error)
}

async fn call(args: CallArgs) -> Result<(), String> {
    let method_path = args.method.trim_start_matches('/').to_owned();
    let options = call_options(&args)?;
    // The gRPC-Web client: for the call, and for server reflection (which, with
    // --webtransport, is asked over gRPC-Web when --discover names the gateway's HTTP address).
    let base = if args.addr.contains("://") {
        args.addr.clone()
    } else {
        format!("http://{}", args.addr)
    };
    let client = Client::builder(base)
        .http_version(if args.http1 {
            HttpVersion::Http1
        } else {
            HttpVersion::Http2
        })
        .mode(if args.text { Mode::Text } else { Mode::Binary })
        .build()
        .map_err(|e| e.to_string())?;
    // The WebTransport session's address first: with --discover, an unreachable gateway is
    // reported as such rather than as a failed reflection call.
    let wt_target = match args.webtransport {
        true => Some(wt::Target::resolve(&args).await?),
        false => None,
    };
    let schema = match args.raw {
        Some(encoding) => Schema::Raw(encoding),
        None => Schema::Typed(find_method(
            &load_pool(&args, &client, &options, &method_path).await?,
            &method_path,
        )?),
    };
    // Requests: from --data at once, or from stdin as they are read.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, String>>(16);
    let single = match &schema {
        Schema::Typed(method) => !method.is_client_streaming(),
        Schema::Raw(_) => false,
    };
    let input_schema = match &schema {
        Schema::Raw(e) => InputSchema::Raw(*e),
        Schema::Typed(m) => InputSchema::Typed(m.input()),
    };
    match args.data.as_deref() {
        Some(data) => {
            let mut messages = parse_messages(data, &input_schema);
            if messages.is_empty() {
                // `-d ''`: one empty message (the default message of any type).
                messages.push(Ok(Bytes::new()));
            }
            tokio::spawn(async move {
                for message in messages {
                    if tx.send(message).await.is_err() {
                        break;
                    }
                }
            });
        }
        None => {
            // At a terminal, a silent wait looks like a hang: say what is read.
            if std::io::stdin().is_terminal() {
                eprintln!("{}", stdin_prompt(&input_schema, single));
            }
            std::thread::spawn(move || read_stdin(&input_schema, &tx));
        }
    }
    let mut rx = tokio_stream_from(rx);
    let output = match &schema {
        Schema::Typed(m) => OutputSchema::Typed(m.output()),
        Schema::Raw(e) => OutputSchema::Raw(*e),
    };

    if let Some(target) = wt_target {
        return wt::run(
            target,
            &method_path,
            single,
            rx,
            &output,
            &options,
            args.verbose,
        )
        .await;
    }
    let mut call = if single {
        let message = single_request(&mut rx, &method_path).await?;
        client
            .server_streaming(&method_path, message, options)
            .await
            .map_err(|s| status_error(&s, args.verbose))?
    } else {
        let (errors_tx, mut errors_rx) = tokio::sync::oneshot::channel::<String>();
        let mut errors_tx = Some(errors_tx);
        let requests = rx.filter_map(move |item| {
            let item = match item {
                Ok(bytes) => Some(bytes),
                Err(e) => {
                    if let Some(tx) = errors_tx.take() {
                        let _ = tx.send(e);
                    }
                    None
                }
            };
            std::future::ready(item)
        });
        let call = client.streaming(&method_path, requests, options).await;
        if let Ok(e) = errors_rx.try_recv() {
            return Err(e);
        }
        call.map_err(|s| status_error(&s, args.verbose))?
    };
    if args.verbose {
        eprint_block("headers", call.headers());
    }
    print_responses(&mut call, &output, args.verbose).await
}

/// The metadata (`-H`) and deadline of the call.
fn call_options(args: &CallArgs) -> Result<CallOptions, String> {
    let mut options = CallOptions::new();
    for header in &args.headers {
        let (key, value) = header
            .split_once(':')
            .ok_or_else(|| format!("-H {header:?}: expected KEY:VALUE"))?;
        let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
        options = if key.ends_with("-bin") {
            let bytes = decode_base64(value).map_err(|e| format!("-H {key}: {e}"))?;
            options.binary_metadata(&key, &bytes)
        } else {
            options.metadata(&key, value)
        };
    }
    if let Some(timeout) = args.timeout {
        options = options.timeout(timeout);
    }
    Ok(options)
}

/// The one request of a unary or server-streaming call (an empty input is the default
/// message).
async fn single_request(
    rx: &mut futures_util::stream::BoxStream<'static, Result<Bytes, String>>,
    method_path: &str,
) -> Result<Bytes, String> {
    let message = match rx.next().await {
        Some(message) => message?,
        None => Bytes::new(),
    };
    if rx.next().await.is_some() {
        return Err(format!(
            "{method_path} takes one request message, but more were given"
        ));
    }
    Ok(message)
}

enum InputSchema {
    Raw(RawEncoding),
    Typed(MessageDescriptor),
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> futures_util::stream::BoxStream<'static, T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

/// What `weir call` prints on stderr when it reads requests from a terminal.
fn stdin_prompt(schema: &InputSchema, single: bool) -> String {
    let format = match schema {
        InputSchema::Typed(desc) => format!("JSON ({})", desc.full_name()),
        InputSchema::Raw(RawEncoding::Hex) => "hex".to_owned(),
        InputSchema::Raw(RawEncoding::Base64) => "base64".to_owned(),
    };
    if single {
        format!(
            "weir call: reading the request message from stdin as {format}; end the input with \
             Ctrl-D (nothing at all sends the default message)"
        )
    } else {
        format!(
            "weir call: reading request messages from stdin as {format}, one per line, each \
             sent as it is read; Ctrl-D ends the request stream"
        )
    }
}

/// Reads request messages from stdin as they come, until EOF.
fn read_stdin(schema: &InputSchema, tx: &tokio::sync::mpsc::Sender<Result<Bytes, String>>) {
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                let _ = tx.blocking_send(Err(format!("stdin: {e}")));
                return;
            }
        };
        for message in parse_messages(&line, schema) {
            if tx.blocking_send(message).is_err() {
                return;
            }
        }
    }
}

/// Every message in `text`: JSON values (or raw tokens) separated by whitespace.
fn parse_messages(text: &str, schema: &InputSchema) -> Vec<Result<Bytes, String>> {
    match schema {
        InputSchema::Raw(encoding) => text
            .split_whitespace()
            .map(|token| {
                match encoding {
                    RawEncoding::Hex => unhex(token),
                    RawEncoding::Base64 => decode_base64(token),
                }
                .map(Bytes::from)
            })
            .collect(),
        InputSchema::Typed(desc) => serde_json::Deserializer::from_str(text)
            .into_iter::<serde_json::Value>()
            .map(|value| {
                let value = value.map_err(|e| format!("request JSON: {e}"))?;
                let message = DynamicMessage::deserialize(desc.clone(), value)
                    .map_err(|e| format!("request JSON does not fit {}: {e}", desc.full_name()))?;
                Ok(Bytes::from(message.encode_to_vec()))
            })
            .collect(),
    }
}

async fn load_pool(
    args: &CallArgs,
    client: &Client,
    options: &CallOptions,
    method_path: &str,
) -> Result<DescriptorPool, String> {
    if args.descriptor_sets.is_empty() && args.protos.is_empty() {
        let skip = if args.no_reflection {
            Some("--no-reflection")
        } else if args.webtransport && !args.discover {
            Some("not asked over WebTransport; --discover names an HTTP address to ask")
        } else {
            None
        };
        return reflection::schema(client, options, method_path, skip, args.verbose).await;
    }
    let mut pool = DescriptorPool::new();
    for path in &args.descriptor_sets {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        pool.decode_file_descriptor_set(bytes.as_slice())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if !args.protos.is_empty() {
        let guessed = args.import_paths.is_empty();
        let includes: Vec<PathBuf> = if guessed {
            let mut dirs: Vec<PathBuf> = Vec::new();
            for proto in &args.protos {
                let root = import_root(proto);
                if !dirs.contains(&root) {
                    dirs.push(root);
                }
            }
            dirs
        } else {
            args.import_paths.clone()
        };
        let hint = |e: protox::Error| {
            if guessed && e.is_file_not_found() {
                let shown: Vec<String> = includes.iter().map(|d| d.display().to_string()).collect();
                format!(
                    "{e} (looked in {}: give -I DIR, the directory that import paths start \
                     from, such as -I proto for `import \"grpc/testing/empty.proto\"` in \
                     proto/grpc/testing/test.proto)",
                    shown.join(", ")
                )
            } else {
                e.to_string()
            }
        };
        let mut compiler = protox::Compiler::new(&includes).map_err(hint)?;
        compiler.include_imports(true);
        for proto in &args.protos {
            compiler.open_file(proto).map_err(hint)?;
        }
        let set = compiler.encode_file_descriptor_set();
        pool.decode_file_descriptor_set(set.as_slice())
            .map_err(|e| e.to_string())?;
    }
    Ok(pool)
}

/// The import path for a `.proto` file when no `-I` is given: the nearest directory, from
/// the file's own up, from which every file it imports exists (the usual layout:
/// `proto/grpc/testing/test.proto` importing `"grpc/testing/empty.proto"` has its root in
/// `proto`). Well-known types (`google/protobuf/…`) are built in and need no directory. A
/// file that does not parse, or whose imports are nowhere, gets its own directory: the
/// compiler then says what is wrong.
fn import_root(proto: &std::path::Path) -> PathBuf {
    let dir = match proto.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Ok(text) = std::fs::read_to_string(proto) else {
        return dir;
    };
    let name = proto
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let Ok(file) = protox_parse::parse(&name, &text) else {
        return dir;
    };
    let imports: Vec<&String> = file
        .dependency
        .iter()
        .filter(|import| !import.starts_with("google/protobuf/"))
        .collect();
    if imports.is_empty() {
        return dir;
    }
    // For a relative path, up to the current directory (whose path is empty).
    let candidates = dir.ancestors().map(|d| {
        if d.as_os_str().is_empty() {
            std::path::Path::new(".")
        } else {
            d
        }
    });
    for candidate in candidates {
        if imports
            .iter()
            .all(|import| candidate.join(import).is_file())
        {
            return candidate.to_path_buf();
        }
    }
    dir
}

fn find_method(pool: &DescriptorPool, path: &str) -> Result<MethodDescriptor, String> {
    let (service, method) = path
        .rsplit_once('/')
        .ok_or_else(|| format!("{path:?}: expected package.Service/Method"))?;
    let service = pool.get_service_by_name(service).ok_or_else(|| {
        let known: Vec<String> = pool.services().map(|s| s.full_name().to_owned()).collect();
        format!(
            "service {service:?} is not in the descriptors (known: {}); give --descriptor-set or --proto, or --raw",
            known.join(", ")
        )
    })?;
    service
        .methods()
        .find(|m| m.name() == method)
        .ok_or_else(|| format!("service {} has no method {method:?}", service.full_name()))
}

fn unhex(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err(format!("hex {text:?} has an odd number of digits"));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| format!("{text:?} is not hex"))
        })
        .collect()
}

fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    let trimmed = text.trim_end_matches('=');
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(trimmed)
        .map_err(|e| format!("{text:?} is not base64: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::hex;

    #[test]
    fn arguments_parse_as_weir_call_takes_them() {
        let args = CallArgs::try_parse_from([
            "weir call",
            "127.0.0.1:8080",
            "grpc.testing.TestService/UnaryCall",
            "-d",
            "{}",
            "--timeout",
            "2s",
        ])
        .unwrap();
        assert_eq!(args.addr, "127.0.0.1:8080");
        assert_eq!(args.timeout, Some(Duration::from_secs(2)));
        // --webtransport conflicts with --http1; --cert-hash needs --webtransport.
        assert!(
            CallArgs::try_parse_from(["weir call", "a", "b/c", "--webtransport", "--http1"])
                .is_err()
        );
        assert!(CallArgs::try_parse_from(["weir call", "a", "b/c", "--cert-hash", "00"]).is_err());
    }

    #[test]
    fn the_stdin_prompt_says_what_is_read_and_how_to_end() {
        let pool = DescriptorPool::decode(weir_testservice::FILE_DESCRIPTOR_SET).unwrap();
        let method = find_method(&pool, "grpc.testing.TestService/FullDuplexCall").unwrap();
        let prompt = stdin_prompt(&InputSchema::Typed(method.input()), false);
        assert!(
            prompt.contains("JSON (grpc.testing.StreamingOutputCallRequest), one per line")
                && prompt.contains("Ctrl-D ends the request stream"),
            "{prompt}"
        );
        let prompt = stdin_prompt(&InputSchema::Raw(RawEncoding::Hex), true);
        assert!(
            prompt.contains("the request message from stdin as hex") && prompt.contains("Ctrl-D"),
            "{prompt}"
        );
    }

    #[test]
    fn the_import_root_is_where_the_imports_are() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
        // test.proto imports "grpc/testing/empty.proto": its root is proto/.
        assert_eq!(
            import_root(&root.join("grpc/testing/test.proto")),
            root.as_path()
        );
        // empty.proto imports nothing: its own directory.
        assert_eq!(
            import_root(&root.join("grpc/testing/empty.proto")),
            root.join("grpc/testing")
        );
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
        assert_eq!(unhex("00ab10").unwrap(), [0, 0xab, 0x10]);
        assert!(unhex("abc").is_err());
        assert!(unhex("zz").is_err());
        assert!(unhex("é1").is_err());
    }

    #[test]
    fn json_messages_of_the_builtin_schema() {
        let pool = DescriptorPool::decode(weir_testservice::FILE_DESCRIPTOR_SET).unwrap();
        let method = find_method(&pool, "grpc.testing.TestService/UnaryCall").unwrap();
        let schema = InputSchema::Typed(method.input());
        let messages = parse_messages("{\"responseSize\": 3}\n{}", &schema);
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].as_ref().unwrap()[..], [0x10, 3]);
        assert!(parse_messages("{\"nope\": 1}", &schema)[0].is_err());
        assert!(find_method(&pool, "grpc.testing.TestService/Nope").is_err());
        assert!(find_method(&pool, "x.Y/Z").is_err());
    }
}
