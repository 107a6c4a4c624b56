//! How `weir call` writes what comes back: each response message on a line of stdout (JSON,
//! hex or base64), and with `-v` the header blocks and the status on stderr.

use std::io::Write as _;

use base64::Engine as _;
use bytes::Bytes;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use weir_client::webtransport::CallReceiver;
use weir_client::{Code, Status, Streaming};

use crate::RawEncoding;

/// What the response messages are.
pub(crate) enum OutputSchema {
    Raw(RawEncoding),
    Typed(MessageDescriptor),
}

/// Prints the responses of a gRPC-Web call, then (with `verbose`) its trailers and status.
pub(crate) async fn print_responses(
    call: &mut Streaming,
    output: &OutputSchema,
    verbose: bool,
) -> Result<(), String> {
    loop {
        match call.message().await {
            Ok(Some(bytes)) => print_message(bytes, output)?,
            Ok(None) => {
                if verbose {
                    if let Some(trailers) = call.trailers() {
                        eprint_block("trailers", trailers);
                    }
                    eprintln!("status: OK");
                }
                return Ok(());
            }
            Err(status) => return Err(status_error(&status, verbose)),
        }
    }
}

/// Prints the responses of a call over WebTransport, with (given `verbose`) its header
/// block first and its trailers and status last.
pub(crate) async fn print_wt_responses(
    receiver: &mut CallReceiver,
    output: &OutputSchema,
    verbose: bool,
) -> Result<(), String> {
    if verbose && let Ok(headers) = receiver.headers().await {
        eprint_block("headers", headers);
    }
    loop {
        match receiver.next_message().await {
            Ok(Some(message)) => print_message(message, output)?,
            Ok(None) => {
                if verbose {
                    if let Some(trailers) = receiver.trailers() {
                        eprint_block("trailers", trailers);
                    }
                    eprintln!("status: OK");
                }
                return Ok(());
            }
            Err(status) => return Err(call_failed(&status, receiver.trailers(), verbose)),
        }
    }
}

/// Writes one response message on stdout, as JSON or raw, on a line of its own.
pub(crate) fn print_message(bytes: Bytes, output: &OutputSchema) -> Result<(), String> {
    let line = match output {
        OutputSchema::Raw(RawEncoding::Hex) => hex(&bytes),
        OutputSchema::Raw(RawEncoding::Base64) => {
            base64::engine::general_purpose::STANDARD.encode(&bytes)
        }
        OutputSchema::Typed(desc) => {
            let message = DynamicMessage::decode(desc.clone(), bytes)
                .map_err(|e| format!("cannot decode a response message: {e}"))?;
            serde_json::to_string(&message).map_err(|e| e.to_string())?
        }
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("stdout: {e}"))
}

/// The error of a gRPC-Web call that ended with `status`: its metadata are the trailers.
pub(crate) fn status_error(status: &Status, verbose: bool) -> String {
    call_failed(status, Some(status.metadata()), verbose)
}

/// The error of a call that ended with `status` (printed on stderr, exit status 1), after
/// its `trailers` with -v.
pub(crate) fn call_failed(
    status: &Status,
    trailers: Option<&http::HeaderMap>,
    verbose: bool,
) -> String {
    if verbose {
        eprint_block("trailers", trailers.unwrap_or(&http::HeaderMap::new()));
    }
    format!("call failed: {}", describe(status))
}

/// A status as `weir call` tells it: `CODE: message`, the details when the server sent
/// some, and what to do when the status alone does not say it.
pub(crate) fn describe(status: &Status) -> String {
    let mut text = status.to_string();
    if status.code() == Code::Unimplemented && status.message().is_empty() {
        text.push_str(
            " (the server sent no message; servers answer so for a service or method they \
             do not have: check SERVICE/METHOD)",
        );
    }
    if let Some(hint) = native_grpc_hint(status) {
        text.push_str(&hint);
    }
    if let Some(details) = status.details() {
        text.push_str(&describe_details(details));
    }
    text
}

/// When `status` says a native gRPC server answered (its metadata holds the response
/// headers, `content-type: application/grpc…`): how to call it with weir.
pub(crate) fn native_grpc_hint(status: &Status) -> Option<String> {
    let content_type = status.metadata().get(http::header::CONTENT_TYPE)?;
    let ct = weir_codec::content_type::ContentType::from_header(content_type)?;
    (ct.protocol() == weir_codec::content_type::Protocol::Grpc).then(|| {
        ". weir call speaks gRPC-Web (and gRPC over WebTransport): put the gateway in front \
         of this server, `weir serve --listen 127.0.0.1:8080 --upstream http://HOST:PORT` \
         (https:// for TLS), and call 127.0.0.1:8080"
            .to_owned()
    })
}

/// `google.rpc.Status`, the message `grpc-status-details-bin` carries.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

/// The status details, one line each: a `google.rpc.Status`'s details as type and value
/// (JSON when the type is a well-known one, else hex); bytes that are no `google.rpc.Status`
/// in hex.
fn describe_details(bytes: &[u8]) -> String {
    use prost::Message as _;
    let Ok(status) = RpcStatus::decode(bytes) else {
        return format!(
            "\n  details ({} bytes, not a google.rpc.Status): {}",
            bytes.len(),
            hex(bytes)
        );
    };
    if status.details.is_empty() {
        return "\n  details: a google.rpc.Status without details".to_owned();
    }
    let pool = prost_reflect::DescriptorPool::global();
    status
        .details
        .iter()
        .map(|any| {
            let name = any.type_url.rsplit('/').next().unwrap_or_default();
            let json = pool
                .get_message_by_name(name)
                .and_then(|desc| {
                    prost_reflect::DynamicMessage::decode(desc, any.value.as_slice()).ok()
                })
                .and_then(|message| serde_json::to_string(&message).ok());
            match json {
                Some(json) => format!("\n  details: {}: {json}", any.type_url),
                None => format!("\n  details: {}: {}", any.type_url, hex(&any.value)),
            }
        })
        .collect()
}

/// Prints a header block on stderr, one `name: value` per line.
pub(crate) fn eprint_block(what: &str, block: &http::HeaderMap) {
    eprintln!("{what}:");
    for (name, value) in block {
        eprintln!("  {name}: {}", String::from_utf8_lossy(value.as_bytes()));
    }
}

/// Lowercase hex digits of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
