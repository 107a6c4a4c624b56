//! How `weir call` writes what comes back: each response message on a line of stdout (JSON,
//! hex or base64), and with `-v` the header blocks and the status on stderr.

use std::io::Write as _;

use base64::Engine as _;
use bytes::Bytes;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use weir_client::webtransport::CallReceiver;
use weir_client::{Status, Streaming};

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
    status: &dyn std::fmt::Display,
    trailers: Option<&http::HeaderMap>,
    verbose: bool,
) -> String {
    if verbose {
        eprint_block("trailers", trailers.unwrap_or(&http::HeaderMap::new()));
    }
    format!("call failed: {status}")
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
