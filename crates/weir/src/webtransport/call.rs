//! One session, and one call on one bidirectional stream.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap};
use http::{Request, Response, Uri};
use http_body::{Body, Frame};
use http_body_util::BodyExt as _;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use tower_service::Service;
use weir_codec::Code;
use weir_codec::content_type::{ContentType, Protocol};
use weir_codec::frame::{
    FLAG_COMPRESSED, FLAG_TRAILERS, Frame as WireFrame, FrameDecoder, FrameError,
};
use weir_codec::{metadata, timeout, trailers};
use wtransport::endpoint::IncomingSession;
use wtransport::{RecvStream, SendStream, VarInt};

use super::{PROTOCOL_VERSION, WebTransportConfig, codes};
use crate::Status;
use crate::body::{BoxBody, BoxError};
use crate::cors::OriginCheck;
use crate::grpc_web::{CallFailure, Spliced};
use crate::status::StatusExt as _;

/// Everything a session task needs.
pub(super) struct Session<S> {
    pub(super) service: S,
    pub(super) config: Arc<WebTransportConfig>,
    pub(super) sessions: Arc<Semaphore>,
    pub(super) origin_check: OriginCheck,
    pub(super) stop: CancellationToken,
}

/// A stream error code of the mapping, as HTTP/3 carries it (see
/// [`weir_codec::webtransport`]); browsers read it back as the WebTransport code.
fn code(value: u32) -> VarInt {
    VarInt::try_from_u64(weir_codec::webtransport::to_http3(value))
        .unwrap_or(VarInt::from_u32(value))
}

impl<S> Session<S>
where
    S: Service<Request<BoxBody>, Response = Response<BoxBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
{
    /// Checks the session request (§2.1), then serves its calls until it ends.
    pub(super) async fn run(self, incoming: IncomingSession) {
        // The session limit holds from the first packet: a client that completes QUIC
        // handshakes and never asks for a session still takes a slot, so it cannot pile up
        // connections beyond the limit.
        let Ok(_permit) = self.sessions.clone().try_acquire_owned() else {
            tracing::warn!("refused a WebTransport connection: at the session limit");
            incoming.refuse();
            return;
        };
        let limit = self.config.header_timeout;
        let request = match tokio::time::timeout(limit, incoming.into_future()).await {
            Ok(Ok(request)) => request,
            Ok(Err(e)) => {
                tracing::debug!("WebTransport handshake failed: {e}");
                return;
            }
            Err(_) => {
                tracing::info!(
                    ?limit,
                    "WebTransport connection sent no session request in time"
                );
                return;
            }
        };
        let (path, query) = request
            .path()
            .split_once('?')
            .unwrap_or((request.path(), ""));
        // Refusals wait for the peer to acknowledge them; a peer that never does is dropped.
        if path != self.config.path {
            tracing::info!(path, "refused WebTransport session for an unknown path");
            let _ = tokio::time::timeout(limit, request.not_found()).await;
            return;
        }
        let version = query.split('&').find_map(|pair| pair.strip_prefix("v="));
        if version != Some(PROTOCOL_VERSION) {
            tracing::info!(
                ?version,
                "refused WebTransport session for an unsupported protocol version"
            );
            let _ = tokio::time::timeout(limit, request.not_found()).await;
            return;
        }
        if !self
            .origin_check
            .allows(request.origin(), request.authority())
        {
            tracing::info!(origin = ?request.origin(), "refused WebTransport session from an origin that is not allowed");
            let _ = tokio::time::timeout(limit, request.forbidden()).await;
            return;
        }
        let connection = match tokio::time::timeout(limit, request.accept()).await {
            Ok(accepted) => accepted,
            Err(_) => {
                tracing::info!("WebTransport session did not open in time");
                return;
            }
        };
        let connection = match connection {
            Ok(connection) => connection,
            Err(e) => {
                tracing::debug!("WebTransport session failed to open: {e}");
                return;
            }
        };
        let mut calls = JoinSet::new();
        // Once shutdown began with a grace period: when it ends.
        let mut draining: Option<Instant> = None;
        loop {
            tokio::select! {
                stream = connection.accept_bi() => match stream {
                    Ok((mut send, recv)) if draining.is_some() => {
                        // Not started: the client may retry elsewhere (§5).
                        let _ = send.reset(code(codes::REFUSED));
                        recv.stop(code(codes::REFUSED));
                    }
                    Ok((send, recv)) => {
                        calls.spawn(call(send, recv, self.service.clone(), self.config.clone()));
                    }
                    Err(e) => {
                        tracing::debug!("WebTransport session ended: {e}");
                        break;
                    }
                },
                () = self.stop.cancelled(), if draining.is_none() => {
                    if self.config.shutdown_grace.is_zero() || calls.is_empty() {
                        connection.close(VarInt::from_u32(0), b"shutting down");
                        break;
                    }
                    draining = Some(Instant::now() + self.config.shutdown_grace);
                }
                () = until(draining) => {
                    tracing::info!("WebTransport session closed at the end of the grace period");
                    connection.close(VarInt::from_u32(0), b"shutting down");
                    break;
                }
                Some(_) = calls.join_next(), if !calls.is_empty() => {
                    if draining.is_some() && calls.is_empty() {
                        connection.close(VarInt::from_u32(0), b"shutting down");
                        break;
                    }
                }
            }
        }
        // The session is gone: every call still running is cancelled, which drops its
        // backend stream (an upstream sees RST_STREAM(CANCEL)).
        calls.abort_all();
        while calls.join_next().await.is_some() {}
    }
}

/// Why reading a call's stream stopped.
enum ReadFailure {
    /// The client reset its send side or the session is gone.
    Gone,
    Frame(FrameError),
    /// The first frame announces something other than a header block (its flags).
    NotHeaderBlock(u8),
    /// The first frame announces a header block over the limit (its length).
    HeaderBlockTooLarge(usize),
}

/// Reads frames off a call's receive stream.
struct FrameReader {
    recv: Option<RecvStream>,
    decoder: FrameDecoder,
    buf: BytesMut,
    /// While the request header block is awaited: its size limit. The first frame is then
    /// judged by its 5-byte header, so a peer cannot make the server buffer a message-sized
    /// payload where at most a header block may come.
    head_limit: Option<usize>,
}

impl FrameReader {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<WireFrame>, ReadFailure>> {
        loop {
            if let Some(limit) = self.head_limit
                && let Some((flags, len)) = self.decoder.peek_header()
            {
                if flags != FLAG_TRAILERS {
                    return Poll::Ready(Err(ReadFailure::NotHeaderBlock(flags)));
                }
                if len > limit {
                    return Poll::Ready(Err(ReadFailure::HeaderBlockTooLarge(len)));
                }
            }
            match self.decoder.decode() {
                Ok(Some(frame)) => return Poll::Ready(Ok(Some(frame))),
                Ok(None) => {}
                Err(e) => return Poll::Ready(Err(ReadFailure::Frame(e))),
            }
            let Some(recv) = self.recv.as_mut() else {
                return Poll::Ready(Ok(None));
            };
            self.buf.reserve(16 * 1024);
            match ready!(tokio_util::io::poll_read_buf(
                Pin::new(recv),
                cx,
                &mut self.buf
            )) {
                Ok(0) => {
                    self.recv = None;
                    return Poll::Ready(match self.decoder.finish() {
                        Ok(()) => Ok(None),
                        Err(e) => Err(ReadFailure::Frame(e)),
                    });
                }
                Ok(_) => self.decoder.push(self.buf.split().freeze()),
                Err(_) => {
                    self.recv = None;
                    return Poll::Ready(Err(ReadFailure::Gone));
                }
            }
        }
    }

    async fn next_frame(&mut self) -> Result<Option<WireFrame>, ReadFailure> {
        std::future::poll_fn(|cx| self.poll_frame(cx)).await
    }

    /// Asks the client to stop sending (STOP_SENDING) with `code`.
    fn stop(&mut self, value: u32) {
        if let Some(recv) = self.recv.take() {
            recv.stop(code(value));
        }
    }
}

/// The request body handed to the service: the message frames after the header block.
struct RecvBody {
    reader: FrameReader,
    max_message_size: usize,
    failure: CallFailure,
    cancelled: CancellationToken,
    done: bool,
}

impl RecvBody {
    fn fail(&mut self, status: Status, stop: bool) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if status.code() != Code::Cancelled {
            tracing::info!(code = %status.code(), message = status.message(), "rejected WebTransport request stream");
        }
        if stop {
            self.reader.stop(codes::PROTOCOL_ERROR);
        }
        self.failure.set(status.clone());
        self.done = true;
        Poll::Ready(Some(Err(crate::call::request_body_error(status))))
    }
}

impl Body for RecvBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let mut spliced = Spliced::default();
        let mut taken = 0usize;
        let mut pending = false;
        // Take the frames that have arrived, so a burst of small messages moves as one chunk;
        // at most 64 KiB at a time, so a fast sender cannot grow one chunk without bound.
        while taken < 64 * 1024 {
            match this.reader.poll_frame(cx) {
                Poll::Pending => {
                    pending = true;
                    break;
                }
                Poll::Ready(Ok(Some(frame))) => {
                    if frame.flags() & !FLAG_COMPRESSED != 0 {
                        let what = if frame.flags() == FLAG_TRAILERS {
                            "a second request header block"
                        } else {
                            "a frame with reserved flags"
                        };
                        return this.fail(
                            Status::new(Code::Internal, format!("request stream carried {what}")),
                            true,
                        );
                    }
                    if frame.payload().len() > this.max_message_size {
                        let e = FrameError::TooLarge {
                            len: frame.payload().len(),
                            limit: this.max_message_size,
                        };
                        return this.fail(Status::from_request_frame_error(&e), true);
                    }
                    taken += frame.payload().len() + weir_codec::frame::HEADER_LEN;
                    spliced.push(frame.into_wire());
                }
                Poll::Ready(Ok(None)) => {
                    this.done = true;
                    break;
                }
                Poll::Ready(Err(ReadFailure::Gone)) => {
                    this.cancelled.cancel();
                    return this.fail(
                        Status::new(Code::Cancelled, "the client reset its request stream"),
                        false,
                    );
                }
                Poll::Ready(Err(ReadFailure::Frame(e))) => {
                    let status = match e {
                        FrameError::TooLarge { .. } => Status::from_request_frame_error(&e),
                        FrameError::Truncated { .. } => Status::new(
                            Code::Internal,
                            format!("request stream ended inside a frame: {e}"),
                        ),
                    };
                    return this.fail(status, true);
                }
                // Only while the header block is awaited, which is over here.
                Poll::Ready(Err(
                    ReadFailure::NotHeaderBlock(_) | ReadFailure::HeaderBlockTooLarge(_),
                )) => {
                    return this.fail(
                        Status::new(Code::Internal, "unexpected request header check"),
                        true,
                    );
                }
            }
        }
        match spliced.into_bytes() {
            Some(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
            None if pending => Poll::Pending,
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

/// Splits `:path` out of a header block, since `http::HeaderName` cannot hold a pseudo-header.
fn split_path(block: &[u8]) -> (Option<String>, Vec<u8>) {
    let mut path = None;
    let mut rest = Vec::with_capacity(block.len());
    for line in block.split_inclusive(|&b| b == b'\n') {
        let trimmed = line.trim_ascii_start();
        if let Some(value) = trimmed.strip_prefix(b":path:") {
            path = Some(String::from_utf8_lossy(value.trim_ascii()).into_owned());
        } else {
            rest.extend_from_slice(line);
        }
    }
    (path, rest)
}

fn parse_request_head(
    block: &[u8],
    max_header_block: usize,
) -> Result<(Request<()>, Option<std::time::Duration>), Status> {
    if block.len() > max_header_block {
        return Err(Status::new(
            Code::ResourceExhausted,
            format!(
                "request header block of {} bytes exceeds the {max_header_block}-byte limit",
                block.len()
            ),
        ));
    }
    let (path, rest) = split_path(block);
    let path =
        path.ok_or_else(|| Status::new(Code::Internal, "request header block has no :path"))?;
    let valid_path = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .is_some_and(|(service, method)| {
            !service.is_empty() && !method.is_empty() && !method.contains('/')
        });
    if !valid_path {
        return Err(Status::new(
            Code::Internal,
            format!(":path {path:?} is not /package.Service/Method"),
        ));
    }
    let uri: Uri = path.parse().map_err(|_| {
        Status::new(
            Code::Internal,
            format!(":path {path:?} is not a valid path"),
        )
    })?;
    let mut headers = trailers::decode(&rest)
        .map_err(|e| Status::new(Code::Internal, format!("request header block: {e}")))?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(ContentType::from_header)
        .filter(|ct| ct.protocol() == Protocol::Grpc)
        .ok_or_else(|| {
            Status::new(
                Code::Internal,
                "request header block needs content-type application/grpc[+proto|+json]",
            )
        })?;
    // Not call metadata (§3.3): the hop-by-hop and reserved headers an HTTP call loses too,
    // and `host`.
    headers.remove(header::HOST);
    crate::hop::strip_request(&mut headers);
    for (name, value) in &headers {
        metadata::validate(name, value).map_err(|e| Status::new(Code::Internal, e.to_string()))?;
    }
    let timeout = headers
        .get(&crate::names::GRPC_TIMEOUT)
        .map(|value| timeout::parse(value.as_bytes()))
        .transpose()
        .map_err(|e| Status::new(Code::Internal, e.to_string()))?;
    headers.insert(header::CONTENT_TYPE, content_type.to_header_value());
    let mut request = Request::new(());
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = uri;
    *request.version_mut() = http::Version::HTTP_2;
    *request.headers_mut() = headers;
    Ok((request, timeout))
}

/// Writes a header block frame.
async fn write_block(send: &mut SendStream, headers: &HeaderMap) -> bool {
    send.write_all(&trailers::encode_frame(headers))
        .await
        .is_ok()
}

/// How long ending a call may wait for the client to acknowledge it.
const FINISH_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Writes response bytes unless the deadline passes or the call is cancelled first (a
/// client that stops reading must not hold the call, and its backend stream, forever):
/// then the stream is reset and `false` returned, as for a failed write.
async fn write(
    send: &mut SendStream,
    bytes: &[u8],
    deadline: Option<Instant>,
    cancelled: &CancellationToken,
) -> bool {
    let outcome = tokio::select! {
        written = send.write_all(bytes) => return written.is_ok(),
        () = until(deadline) => "deadline",
        () = cancelled.cancelled() => "cancelled",
    };
    tracing::debug!(
        outcome,
        "WebTransport call ended while its client was not reading"
    );
    let _ = send.reset(code(codes::CANCEL));
    false
}

/// Ends the call with a status and FIN.
async fn end_with(send: &mut SendStream, mut trailers: HeaderMap, failure: &CallFailure) {
    if let Some(status) = failure.get() {
        status.write_headers(&mut trailers);
    }
    Status::ensure_in(&mut trailers);
    let ended = async {
        if write_block(send, &trailers).await {
            let _ = send.finish().await;
        }
    };
    if tokio::time::timeout(FINISH_TIME, ended).await.is_err() {
        let _ = send.reset(code(codes::CANCEL));
    }
}

async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Serves one call (§3, §4, §5).
async fn call<S>(
    mut send: SendStream,
    recv: RecvStream,
    service: S,
    config: Arc<WebTransportConfig>,
) where
    S: Service<Request<BoxBody>, Response = Response<BoxBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
{
    let started = Instant::now();
    let failure = CallFailure::default();
    let mut reader = FrameReader {
        recv: Some(recv),
        decoder: FrameDecoder::new(config.max_header_block.max(config.max_message_size)),
        buf: BytesMut::new(),
        head_limit: Some(config.max_header_block),
    };

    let head = tokio::time::timeout(config.header_timeout, reader.next_frame()).await;
    let refuse = |message: String, code: Code| Status::new(code, message).to_headers();
    let frame = match head {
        Err(_) => {
            tracing::info!("WebTransport call sent no request header block in time");
            reader.stop(codes::PROTOCOL_ERROR);
            let _ = send.reset(code(codes::PROTOCOL_ERROR));
            return;
        }
        Ok(Err(ReadFailure::Gone)) => return,
        Ok(Err(ReadFailure::Frame(e))) => {
            reader.stop(codes::PROTOCOL_ERROR);
            let status = Status::from_request_frame_error(&e);
            end_with(&mut send, status.to_headers(), &failure).await;
            return;
        }
        Ok(Err(ReadFailure::NotHeaderBlock(flags))) => {
            reader.stop(codes::PROTOCOL_ERROR);
            let trailers = refuse(
                format!(
                    "the first frame must be the request header block (flags 0x80), not {flags:#04x}"
                ),
                Code::Internal,
            );
            end_with(&mut send, trailers, &failure).await;
            return;
        }
        Ok(Err(ReadFailure::HeaderBlockTooLarge(len))) => {
            reader.stop(codes::PROTOCOL_ERROR);
            let trailers = refuse(
                format!(
                    "request header block of {len} bytes exceeds the {}-byte limit",
                    config.max_header_block
                ),
                Code::ResourceExhausted,
            );
            end_with(&mut send, trailers, &failure).await;
            return;
        }
        Ok(Ok(None)) => {
            let trailers = refuse(
                "stream ended before the request header block".into(),
                Code::Internal,
            );
            end_with(&mut send, trailers, &failure).await;
            return;
        }
        Ok(Ok(Some(frame))) => frame,
    };
    if frame.flags() != FLAG_TRAILERS {
        reader.stop(codes::PROTOCOL_ERROR);
        let trailers = refuse(
            format!(
                "the first frame must be the request header block (flags 0x80), not {:#04x}",
                frame.flags()
            ),
            Code::Internal,
        );
        end_with(&mut send, trailers, &failure).await;
        return;
    }
    let (head, timeout) = match parse_request_head(frame.payload(), config.max_header_block) {
        Ok(parsed) => parsed,
        Err(status) => {
            tracing::info!(code = %status.code(), message = status.message(), "refused WebTransport call");
            reader.stop(codes::PROTOCOL_ERROR);
            end_with(&mut send, status.to_headers(), &failure).await;
            return;
        }
    };
    let deadline = timeout.map(|t| started + t);
    reader.head_limit = None;
    let cancelled = CancellationToken::new();
    let body = RecvBody {
        reader,
        max_message_size: config.max_message_size,
        failure: failure.clone(),
        cancelled: cancelled.clone(),
        done: false,
    };
    let (parts, ()) = head.into_parts();
    let request = Request::from_parts(parts, crate::body::boxed(body));

    let response = async {
        let ready = service.ready_oneshot().await.map_err(Into::into)?;
        let mut ready = ready;
        ready.call(request).await.map_err(Into::into)
    };
    let response: Result<Response<BoxBody>, BoxError> = tokio::select! {
        response = response => response,
        _ = send.stopped() => return,
        () = cancelled.cancelled() => {
            let _ = send.reset(code(codes::CANCEL));
            return;
        }
        () = until(deadline) => {
            let status = Status::new(Code::DeadlineExceeded, "deadline (grpc-timeout) exceeded before the service answered");
            end_with(&mut send, status.to_headers(), &failure).await;
            return;
        }
    };
    let response = match response {
        Ok(response) => response,
        Err(e) => {
            let status = Status::new(Code::Unavailable, format!("the service failed: {e}"));
            end_with(&mut send, status.to_headers(), &failure).await;
            return;
        }
    };
    let (parts, mut body) = response.into_parts();
    if !Status::is_grpc_response(parts.status, &parts.headers) {
        // Not a gRPC answer (an HTTP router's 404, an error page): map it as gRPC clients do.
        drop(body);
        let status = Status::from_headers(&parts.headers).unwrap_or_else(|| {
            Status::new(
                Code::from_http_status(parts.status.as_u16()),
                format!(
                    "the service answered HTTP {} without a gRPC status",
                    parts.status
                ),
            )
        });
        end_with(&mut send, status.to_headers(), &failure).await;
        return;
    }
    let mut headers = parts.headers;
    for name in [
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::CONNECTION,
    ] {
        headers.remove(name);
    }
    if headers.contains_key(&crate::names::GRPC_STATUS) {
        // Trailers-only.
        end_with(&mut send, headers, &failure).await;
        return;
    }
    if !write(
        &mut send,
        &trailers::encode_frame(&headers),
        deadline,
        &cancelled,
    )
    .await
    {
        return;
    }
    let mut frames = FrameDecoder::new(config.max_message_size);
    loop {
        let next = tokio::select! {
            next = body.frame() => next,
            _ = send.stopped() => return,
            () = cancelled.cancelled() => {
                let _ = send.reset(code(codes::CANCEL));
                return;
            }
            () = until(deadline) => {
                let status = Status::new(Code::DeadlineExceeded, "deadline (grpc-timeout) exceeded");
                end_with(&mut send, status.to_headers(), &failure).await;
                return;
            }
        };
        match next {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    frames.push(data);
                    let mut spliced = Spliced::default();
                    loop {
                        match frames.decode() {
                            Ok(Some(frame)) => spliced.push(frame.into_wire()),
                            Ok(None) => break,
                            Err(e) => {
                                if let Some(wire) = spliced.into_bytes()
                                    && !write(&mut send, &wire, deadline, &cancelled).await
                                {
                                    return;
                                }
                                let status = Status::from_response_frame_error(&e);
                                end_with(&mut send, status.to_headers(), &failure).await;
                                return;
                            }
                        }
                    }
                    if let Some(wire) = spliced.into_bytes()
                        && !write(&mut send, &wire, deadline, &cancelled).await
                    {
                        return;
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        drop(body);
                        let trailers = match frames.finish() {
                            Ok(()) => trailers,
                            Err(e) => Status::from_response_frame_error(&e).to_headers(),
                        };
                        end_with(&mut send, trailers, &failure).await;
                        return;
                    }
                }
            },
            Some(Err(e)) => {
                let status = Status::from_response_body_error(&e);
                end_with(&mut send, status.to_headers(), &failure).await;
                return;
            }
            None => {
                let status = Status::new(
                    Code::Internal,
                    "the service ended its response without a status (no grpc-status trailer)",
                );
                end_with(&mut send, status.to_headers(), &failure).await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_head() {
        let block = b":path: /grpc.testing.TestService/UnaryCall\r\ncontent-type: application/grpc+proto\r\ngrpc-timeout: 1S\r\nx-a: b\r\nte: gzip\r\nhost: evil\r\n";
        let (request, timeout) = parse_request_head(block, 1024).unwrap();
        assert_eq!(request.uri().path(), "/grpc.testing.TestService/UnaryCall");
        assert_eq!(timeout, Some(std::time::Duration::from_secs(1)));
        assert_eq!(request.headers()["x-a"], "b");
        assert_eq!(request.headers()["te"], "trailers");
        assert!(!request.headers().contains_key("host"));
    }

    #[test]
    fn bad_request_heads() {
        let cases: &[(&[u8], Code)] = &[
            (b"content-type: application/grpc\r\n", Code::Internal),
            (
                b":path: /nope\r\ncontent-type: application/grpc\r\n",
                Code::Internal,
            ),
            (b":path: /a.B/C\r\n", Code::Internal),
            (
                b":path: /a.B/C\r\ncontent-type: application/grpc-web\r\n",
                Code::Internal,
            ),
            (
                b":path: /a.B/C\r\ncontent-type: application/grpc\r\ngrpc-timeout: x\r\n",
                Code::Internal,
            ),
            (
                b":path: /a.B/C\r\ncontent-type: application/grpc\r\nx-a-bin: !!\r\n",
                Code::Internal,
            ),
            (b"garbage", Code::Internal),
        ];
        for (block, code) in cases {
            let err = parse_request_head(block, 1024).unwrap_err();
            assert_eq!(err.code(), *code, "{}", String::from_utf8_lossy(block));
        }
        let big = vec![b'a'; 2000];
        assert_eq!(
            parse_request_head(&big, 1024).unwrap_err().code(),
            Code::ResourceExhausted
        );
    }
}
