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
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use tower_service::Service;
use weir_codec::Code;
use weir_codec::frame::{FLAG_TRAILERS, Frame as WireFrame, FrameDecoder, FrameError};
use weir_codec::trailers;
use weir_codec::webtransport::RequestHead;
use wtransport::endpoint::IncomingSession;
use wtransport::{RecvStream, SendStream, VarInt};

use super::{PROTOCOL_VERSION, WebTransportConfig, codes};
use crate::Status;
use crate::body::BoxError;
use crate::call::CallFailure;
use crate::cors::OriginCheck;
use crate::edge::{Deadline, Door, Peer, ResponseBody};
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
    S: Service<Request<StreamBody>, Response = Response<ResponseBody>> + Clone + Send + 'static,
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
        let peer = Peer(connection.remote_address());
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
                        calls.spawn(call(send, recv, self.service.clone(), self.config.clone(), peer));
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
                () = until_instant(draining) => {
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

async fn until_instant(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Why reading the request header block stopped.
enum HeadFailure {
    /// The client reset its send side or the session is gone.
    Gone,
    Frame(FrameError),
    /// The first frame announces something other than a header block (its flags).
    NotHeaderBlock(u8),
    /// The first frame announces a header block over the limit (its length).
    TooLarge(usize),
}

/// Reads a call's receive stream: the request header block, then raw bytes for the edge.
struct StreamReader {
    recv: Option<RecvStream>,
    /// Frames the header block; after it, holds whatever arrived with it.
    decoder: FrameDecoder,
    buf: BytesMut,
}

impl StreamReader {
    /// Reads more of the stream into `buf`; `Ok(false)` at its end.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, ()>> {
        let Some(recv) = self.recv.as_mut() else {
            return Poll::Ready(Ok(false));
        };
        self.buf.reserve(16 * 1024);
        match ready!(tokio_util::io::poll_read_buf(
            Pin::new(recv),
            cx,
            &mut self.buf
        )) {
            Ok(0) => {
                self.recv = None;
                Poll::Ready(Ok(false))
            }
            Ok(_) => Poll::Ready(Ok(true)),
            Err(_) => {
                self.recv = None;
                Poll::Ready(Err(()))
            }
        }
    }

    /// The request header block (§3.1): the first frame, judged by its 5-byte prefix so a peer
    /// cannot make the server buffer a message-sized payload where a header block must come.
    async fn header_block(&mut self, limit: usize) -> Result<Option<WireFrame>, HeadFailure> {
        std::future::poll_fn(|cx| {
            loop {
                if let Some((flags, len)) = self.decoder.peek_header() {
                    if flags != FLAG_TRAILERS {
                        return Poll::Ready(Err(HeadFailure::NotHeaderBlock(flags)));
                    }
                    if len > limit {
                        return Poll::Ready(Err(HeadFailure::TooLarge(len)));
                    }
                }
                match self.decoder.decode() {
                    Ok(Some(frame)) => return Poll::Ready(Ok(Some(frame))),
                    Ok(None) => {}
                    Err(e) => return Poll::Ready(Err(HeadFailure::Frame(e))),
                }
                match ready!(self.poll_read(cx)) {
                    Ok(true) => self.decoder.push(self.buf.split().freeze()),
                    Ok(false) => {
                        return Poll::Ready(match self.decoder.finish() {
                            Ok(()) => Ok(None),
                            Err(e) => Err(HeadFailure::Frame(e)),
                        });
                    }
                    Err(()) => return Poll::Ready(Err(HeadFailure::Gone)),
                }
            }
        })
        .await
    }

    /// Asks the client to stop sending (STOP_SENDING) with `value`.
    fn stop(&mut self, value: u32) {
        if let Some(recv) = self.recv.take() {
            recv.stop(code(value));
        }
    }
}

/// The request body handed to the call edge: the stream's bytes after the header block, as
/// they arrive. The edge checks the frames; a violation it finds makes this body stop the
/// client's sending with `PROTOCOL_ERROR` (§5), an abandoned call with `CANCEL`.
pub(crate) struct StreamBody {
    reader: StreamReader,
    /// Bytes that arrived with the header block.
    early: Option<Bytes>,
    failure: CallFailure,
    cancelled: CancellationToken,
    done: bool,
}

impl Body for StreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(early) = this.early.take() {
            return Poll::Ready(Some(Ok(Frame::data(early))));
        }
        if this.done {
            return Poll::Ready(None);
        }
        match ready!(this.reader.poll_read(cx)) {
            Ok(true) => Poll::Ready(Some(Ok(Frame::data(this.reader.buf.split().freeze())))),
            Ok(false) => {
                this.done = true;
                Poll::Ready(None)
            }
            Err(()) => {
                this.done = true;
                this.cancelled.cancel();
                Poll::Ready(Some(Err("the client reset its request stream".into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.early.is_none()
    }
}

impl Drop for StreamBody {
    fn drop(&mut self) {
        let value = if self.failure.get().is_some() {
            codes::PROTOCOL_ERROR
        } else {
            codes::CANCEL
        };
        // Only while the client may still be sending; a finished stream needs no STOP_SENDING.
        self.reader.stop(value);
    }
}

/// The request head a header block describes (§3.1), parsed by the codec — the same code the
/// clients encode it with. Only its syntax is checked here; the call edge judges its content
/// (content type, metadata, timeout, size).
fn parse_request_head(block: &[u8]) -> Result<Request<()>, Status> {
    let head = RequestHead::decode(block).map_err(|e| e.to_status())?;
    let (path, mut headers) = head.into_parts();
    let uri: Uri = path.parse().map_err(|_| {
        Status::new(
            Code::Internal,
            format!(":path {path:?} is not a valid path"),
        )
    })?;
    // Not call metadata (§3.3).
    headers.remove(header::HOST);
    let mut request = Request::new(());
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = uri;
    *request.version_mut() = http::Version::HTTP_2;
    *request.headers_mut() = headers;
    Ok(request)
}

/// How long ending a call may wait for the client to acknowledge it.
const FINISH_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Writes response bytes unless the deadline passes or the call is cancelled first (a
/// client that stops reading must not hold the call, and its backend stream, forever):
/// then the stream is reset and `false` returned, as for a failed write.
async fn write(
    send: &mut SendStream,
    bytes: &[u8],
    deadline: Option<&mut Pin<Box<Sleep>>>,
    cancelled: &CancellationToken,
) -> bool {
    let outcome = tokio::select! {
        written = send.write_all(bytes) => return written.is_ok(),
        () = crate::edge::until(deadline) => "deadline",
        () = cancelled.cancelled() => "cancelled",
    };
    tracing::debug!(
        outcome,
        "WebTransport call ended while its client was not reading"
    );
    let _ = send.reset(code(codes::CANCEL));
    false
}

/// Ends the call with a trailer block (the edge settled its status) and FIN.
async fn end_with(send: &mut SendStream, trailers: &HeaderMap) {
    let ended = async {
        if send
            .write_all(&trailers::encode_frame(trailers))
            .await
            .is_ok()
        {
            let _ = send.finish().await;
        }
    };
    if tokio::time::timeout(FINISH_TIME, ended).await.is_err() {
        let _ = send.reset(code(codes::CANCEL));
    }
}

/// The client sent STOP_SENDING: the call is abandoned. The stream is reset with `CANCEL`
/// (§5) — not with the client's own code, which is what QUIC stacks do for a stopped stream
/// that is merely dropped.
fn stopped(send: &mut SendStream) {
    let _ = send.reset(code(codes::CANCEL));
}

/// Serves one call (§3, §4, §5).
async fn call<S>(
    mut send: SendStream,
    recv: RecvStream,
    service: S,
    config: Arc<WebTransportConfig>,
    peer: Peer,
) where
    S: Service<Request<StreamBody>, Response = Response<ResponseBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
{
    let limit = config.edge.max_header_list_size;
    let mut reader = StreamReader {
        recv: Some(recv),
        decoder: FrameDecoder::new(limit),
        buf: BytesMut::new(),
    };
    let head = tokio::time::timeout(config.header_timeout, reader.header_block(limit)).await;
    let refuse = |message: String, code: Code| Status::new(code, message).to_headers();
    let frame = match head {
        Err(_) => {
            tracing::info!("WebTransport call sent no request header block in time");
            reader.stop(codes::PROTOCOL_ERROR);
            let _ = send.reset(code(codes::PROTOCOL_ERROR));
            return;
        }
        Ok(Err(HeadFailure::Gone)) => return,
        Ok(Err(HeadFailure::Frame(e))) => {
            reader.stop(codes::PROTOCOL_ERROR);
            let status = Status::from_request_frame_error(&e);
            end_with(&mut send, &status.to_headers()).await;
            return;
        }
        Ok(Err(HeadFailure::NotHeaderBlock(flags))) => {
            reader.stop(codes::PROTOCOL_ERROR);
            let trailers = refuse(
                format!(
                    "the first frame must be the request header block (flags 0x80), not {flags:#04x}"
                ),
                Code::Internal,
            );
            end_with(&mut send, &trailers).await;
            return;
        }
        Ok(Err(HeadFailure::TooLarge(len))) => {
            reader.stop(codes::PROTOCOL_ERROR);
            let trailers = refuse(
                format!(
                    "request header block of {len} bytes exceeds the {limit}-byte limit (max_header_list_size)"
                ),
                Code::ResourceExhausted,
            );
            end_with(&mut send, &trailers).await;
            return;
        }
        Ok(Ok(None)) => {
            let trailers = refuse(
                "stream ended before the request header block".into(),
                Code::Internal,
            );
            end_with(&mut send, &trailers).await;
            return;
        }
        Ok(Ok(Some(frame))) => frame,
    };
    let head = match parse_request_head(frame.payload()) {
        Ok(head) => head,
        Err(status) => {
            tracing::info!(code = %status.code(), message = status.message(), "refused WebTransport call");
            reader.stop(codes::PROTOCOL_ERROR);
            end_with(&mut send, &status.to_headers()).await;
            return;
        }
    };
    // Whatever arrived behind the header block is the start of the request body.
    let early = Some(reader.decoder.take_buffered()).filter(|rest| !rest.is_empty());
    let failure = CallFailure::default();
    let cancelled = CancellationToken::new();
    let body = StreamBody {
        reader,
        early,
        failure: failure.clone(),
        cancelled: cancelled.clone(),
        done: false,
    };
    let (mut parts, ()) = head.into_parts();
    parts.extensions.insert(failure);
    parts.extensions.insert(Door::WebTransport);
    parts.extensions.insert(peer);
    let request = Request::from_parts(parts, body);

    let response = async {
        let mut ready = service.ready_oneshot().await.map_err(Into::into)?;
        ready.call(request).await.map_err(Into::into)
    };
    let response: Result<Response<ResponseBody>, BoxError> = tokio::select! {
        response = response => response,
        _ = send.stopped() => return stopped(&mut send),
        () = cancelled.cancelled() => {
            let _ = send.reset(code(codes::CANCEL));
            return;
        }
    };
    let response = match response {
        Ok(response) => response,
        Err(e) => {
            let status = crate::edge::service_error(e);
            end_with(&mut send, &status.to_headers()).await;
            return;
        }
    };
    let (parts, mut body) = response.into_parts();
    if body.is_done() {
        // Trailers-only: the edge settled the status in the headers.
        end_with(&mut send, &parts.headers).await;
        return;
    }
    // Bounds writes to a client that stopped reading; the edge's own timer ends the call
    // otherwise.
    let mut deadline = parts
        .extensions
        .get::<Deadline>()
        .map(|Deadline(at)| Box::pin(tokio::time::sleep_until(*at)));
    if !write(
        &mut send,
        &trailers::encode_frame(&parts.headers),
        deadline.as_mut(),
        &cancelled,
    )
    .await
    {
        return;
    }
    loop {
        let next = tokio::select! {
            next = body.frame() => next,
            _ = send.stopped() => return stopped(&mut send),
            () = cancelled.cancelled() => {
                let _ = send.reset(code(codes::CANCEL));
                return;
            }
        };
        match next {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    if !write(&mut send, &data, deadline.as_mut(), &cancelled).await {
                        return;
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        drop(body);
                        end_with(&mut send, &trailers).await;
                        return;
                    }
                }
            },
            Some(Err(e)) => {
                let status = crate::edge::service_error(e);
                end_with(&mut send, &status.to_headers()).await;
                return;
            }
            None => {
                let _ = send.finish().await;
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
        let block = b":path: /grpc.testing.TestService/UnaryCall\r\ncontent-type: application/grpc+proto\r\ngrpc-timeout: 1S\r\nx-a: b\r\nhost: evil\r\n";
        let request = parse_request_head(block).unwrap();
        assert_eq!(request.uri().path(), "/grpc.testing.TestService/UnaryCall");
        assert_eq!(request.headers()["x-a"], "b");
        assert_eq!(request.headers()["grpc-timeout"], "1S");
        assert!(!request.headers().contains_key("host"));
    }

    #[test]
    fn bad_request_heads() {
        let cases: &[&[u8]] = &[
            b"content-type: application/grpc\r\n",
            b":path: /nope\r\ncontent-type: application/grpc\r\n",
            b"garbage",
        ];
        for block in cases {
            let err = parse_request_head(block).unwrap_err();
            assert_eq!(
                err.code(),
                Code::Internal,
                "{}",
                String::from_utf8_lossy(block)
            );
        }
    }
}
