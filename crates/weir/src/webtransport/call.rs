//! One call on one bidirectional stream (`docs/protocol/webtransport.md` §3–§5).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap};
use http::{Request, Response, Uri};
use http_body::{Body, Frame};
use http_body_util::BodyExt as _;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use tower_service::Service;
use weir_codec::Code;
use weir_codec::frame::{FLAG_TRAILERS, Frame as WireFrame, FrameDecoder, FrameError};
use weir_codec::trailers;
use weir_codec::webtransport::request::Scan;
use weir_codec::webtransport::{EndOfRequest, RequestHead, Version, codes, http3};

use super::WebTransportConfig;
use super::session::{app_code, h3_code};
use crate::Status;
use crate::body::BoxError;
use crate::call::CallFailure;
use crate::edge::{Deadline, Door, Peer, ResponseBody};
use crate::status::StatusExt as _;

/// A call's stream, as the session accepted it.
pub(super) struct CallStreams {
    pub(super) send: quinn::SendStream,
    pub(super) recv: quinn::RecvStream,
    /// The session the stream must name in its signal (§2.1).
    pub(super) session_id: u64,
    pub(super) version: Version,
}

/// How long ending a call may wait for the client to take the trailer block, and (version 2)
/// for the client's FIN after it (§5.4).
const FINISH_TIME: Duration = Duration::from_secs(5);

/// The response side of a call. Every way a call ends finishes or resets it explicitly; one
/// dropped while still open belongs to a call cancelled because its session ended, and is
/// reset with `WT_SESSION_GONE` (§2.4), not finished as QUIC streams are when dropped.
struct ResponseSide {
    send: quinn::SendStream,
    open: bool,
}

impl ResponseSide {
    async fn write_all(&mut self, bytes: &[u8]) -> bool {
        self.send.write_all(bytes).await.is_ok()
    }

    fn reset(&mut self, value: u32) {
        if std::mem::take(&mut self.open) {
            let _ = self.send.reset(app_code(value));
        }
    }

    fn reset_http3(&mut self, value: u64) {
        if std::mem::take(&mut self.open) {
            let _ = self.send.reset(h3_code(value));
        }
    }

    fn finish(&mut self) {
        if std::mem::take(&mut self.open) {
            let _ = self.send.finish();
        }
    }

    /// Completes when the client sends STOP_SENDING (or the connection is gone).
    fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let stopped = self.send.stopped();
        async move {
            // `Ok(None)` means the stream was finished and acknowledged: not a stop.
            if let Ok(None) = stopped.await {
                std::future::pending::<()>().await;
            }
        }
    }
}

impl Drop for ResponseSide {
    fn drop(&mut self) {
        self.reset_http3(http3::SESSION_GONE);
    }
}

/// The request side of a call. Stopped explicitly with the code §5 gives; one dropped while
/// the client may still be sending is stopped with `CANCEL` — a code of the mapping, where
/// QUIC stacks would send a bare 0.
struct RequestSide(Option<quinn::RecvStream>);

impl RequestSide {
    fn stop(&mut self, value: u32) {
        if let Some(mut recv) = self.0.take() {
            let _ = recv.stop(app_code(value));
        }
    }

    fn stop_http3(&mut self, value: u64) {
        if let Some(mut recv) = self.0.take() {
            let _ = recv.stop(h3_code(value));
        }
    }

    /// The stream, for a reader that keeps it; `None` once stopped or ended.
    fn take(&mut self) -> Option<quinn::RecvStream> {
        self.0.take()
    }
}

impl Drop for RequestSide {
    fn drop(&mut self) {
        self.stop(codes::CANCEL);
    }
}

/// What starts a call stream (§2.1): `0x41` and the session ID.
enum Signal {
    Session(u64),
    /// Another kind of request stream.
    Other,
    /// The client reset the stream, or the session is gone.
    Gone,
}

async fn read_signal(recv: &mut quinn::RecvStream) -> Signal {
    use web_transport_proto::VarInt;
    let Ok(kind) = VarInt::read(recv).await else {
        return Signal::Gone;
    };
    if web_transport_proto::Frame(kind) != web_transport_proto::Frame::WEBTRANSPORT {
        return Signal::Other;
    }
    match VarInt::read(recv).await {
        Ok(id) => Signal::Session(id.into_inner()),
        Err(_) => Signal::Gone,
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

/// Reads a call's request side: the request header block, then raw bytes for the edge.
struct StreamReader {
    recv: RequestSide,
    /// Frames the header block; after it, holds whatever arrived with it.
    decoder: FrameDecoder,
    buf: BytesMut,
}

impl StreamReader {
    /// Reads more of the stream into `buf`; `Ok(false)` at its end, `Err` when the client
    /// reset it.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, ()>> {
        let Some(recv) = self.recv.0.as_mut() else {
            return Poll::Ready(Ok(false));
        };
        self.buf.reserve(16 * 1024);
        match ready!(tokio_util::io::poll_read_buf(
            Pin::new(recv),
            cx,
            &mut self.buf
        )) {
            Ok(0) => {
                self.recv.take();
                Poll::Ready(Ok(false))
            }
            Ok(_) => Poll::Ready(Ok(true)),
            Err(_) => {
                self.recv.take();
                Poll::Ready(Err(()))
            }
        }
    }

    /// The request header block (§3.3): the first frame, judged by its 5-byte prefix so a
    /// peer cannot make the server buffer a message-sized payload where a header block must
    /// come.
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
}

/// What the response side learns from the request side: the client cancelled (a reset), or
/// broke the protocol after the point where the edge checks frames (version 2: a frame after
/// the end-of-request frame, §5.5).
#[derive(Clone, Default)]
struct RequestEvents {
    cancelled: CancellationToken,
    violated: CancellationToken,
    failure: CallFailure,
}

impl RequestEvents {
    fn violate(&self, message: &str) {
        self.failure.set(Status::new(Code::Internal, message));
        self.violated.cancel();
    }
}

/// The request body handed to the call edge: the stream's bytes after the header block, as
/// they arrive, up to the end of the request (FIN; in version 2 also the end-of-request
/// frame, which is not passed on). The edge checks the frames; a violation it finds makes
/// this body stop the client's sending with `PROTOCOL_ERROR` (§5.4), an abandoned call with
/// `CANCEL`.
pub(crate) struct StreamBody {
    reader: StreamReader,
    /// Bytes that arrived with the header block.
    early: Option<Bytes>,
    events: RequestEvents,
    /// Version 2: finds the end-of-request frame.
    end: Option<EndOfRequest>,
    /// Bytes that may start the end-of-request frame, held until the next read.
    held: BytesMut,
    /// Ends when the call ends: a request side watched after its end (version 2) is then
    /// let go.
    call_done: CancellationToken,
    done: bool,
}

impl StreamBody {
    /// The end-of-request frame came (version 2): the request side stays open for a reset
    /// (the client's cancel, §5.3) until the call ends.
    fn ended(&mut self, after: usize) {
        self.done = true;
        if after > 0 {
            self.events
                .violate("the client sent a frame after the end-of-request frame");
            self.reader.recv.stop(codes::PROTOCOL_ERROR);
        } else if let Some(recv) = self.reader.recv.take() {
            tokio::spawn(watch_after_end(
                recv,
                self.events.clone(),
                self.call_done.clone(),
            ));
        }
    }
}

impl Body for StreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let chunk = match this.early.take() {
                Some(early) => early,
                None => match ready!(this.reader.poll_read(cx)) {
                    Ok(true) => this.reader.buf.split().freeze(),
                    Ok(false) => {
                        this.done = true;
                        // An incomplete frame at FIN: the edge reports it.
                        let held = this.held.split().freeze();
                        return Poll::Ready((!held.is_empty()).then(|| Ok(Frame::data(held))));
                    }
                    Err(()) => {
                        this.done = true;
                        this.events.cancelled.cancel();
                        return Poll::Ready(Some(
                            Err("the client reset its request stream".into()),
                        ));
                    }
                },
            };
            let Some(end) = this.end.as_mut() else {
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            };
            let mut chunk = if this.held.is_empty() {
                chunk
            } else {
                this.held.extend_from_slice(&chunk);
                this.held.split().freeze()
            };
            match end.scan(&chunk) {
                Scan::Body { settled } => {
                    this.held.extend_from_slice(&chunk.split_off(settled));
                    if !chunk.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(chunk))));
                    }
                }
                Scan::End { body, after } => {
                    this.ended(after);
                    chunk.truncate(body);
                    return Poll::Ready((!chunk.is_empty()).then(|| Ok(Frame::data(chunk))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.early.is_none()
    }
}

impl Drop for StreamBody {
    fn drop(&mut self) {
        let value = if self.events.failure.get().is_some() {
            codes::PROTOCOL_ERROR
        } else {
            codes::CANCEL
        };
        // Only while the client may still be sending (§5.4); a request that ended needs no
        // STOP_SENDING.
        self.reader.recv.stop(value);
    }
}

/// Watches a version-2 request side after its end-of-request frame (§3.4, §5.3): a reset
/// cancels the call, anything but FIN is a protocol error. Once the call ended, waits a
/// little for the client's FIN and stops the side with `CANCEL` if none came (§5.4).
async fn watch_after_end(
    mut recv: quinn::RecvStream,
    events: RequestEvents,
    call_done: CancellationToken,
) {
    let mut scratch = [0u8; 64];
    let read = tokio::select! {
        read = recv.read(&mut scratch) => read,
        () = call_done.cancelled() => {
            match tokio::time::timeout(FINISH_TIME, recv.read(&mut scratch)).await {
                Ok(Ok(None)) | Ok(Err(_)) => {}
                Ok(Ok(Some(_))) => { let _ = recv.stop(app_code(codes::PROTOCOL_ERROR)); }
                Err(_) => { let _ = recv.stop(app_code(codes::CANCEL)); }
            }
            return;
        }
    };
    match read {
        // FIN: the request side is complete.
        Ok(None) => {}
        Ok(Some(_)) => {
            events.violate("the client sent a frame after the end-of-request frame");
            let _ = recv.stop(app_code(codes::PROTOCOL_ERROR));
        }
        Err(_) => events.cancelled.cancel(),
    }
}

/// The request head a header block describes (§3.3), parsed by the codec — the same code the
/// clients encode it with. The block as a whole is checked here (syntax, size, metadata
/// values: §3.2); the call edge judges the call it asks for (content type, timeout).
fn parse_request_head(block: &[u8], limit: usize) -> Result<Request<()>, Status> {
    let head = RequestHead::decode(block).map_err(|e| e.to_status())?;
    let (path, mut headers) = head.into_parts();
    // A header block is over the limit, or malformed, as a whole (§3.2): checked here, where
    // the client is told it broke the protocol, rather than left to the call edge.
    let size = crate::edge::head::header_list_size(&path, &headers);
    if size > limit {
        return Err(Status::new(
            Code::ResourceExhausted,
            format!(
                "request header block of {size} bytes exceeds the {limit}-byte limit (max_header_list_size)"
            ),
        ));
    }
    for (name, value) in &headers {
        weir_codec::metadata::validate(name, value)
            .map_err(|e| Status::new(Code::Internal, format!("request header block: {e}")))?;
    }
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

/// Writes response bytes unless the deadline passes or the call is cancelled first (a
/// client that stops reading must not hold the call, and its backend stream, forever):
/// then the stream is reset with `CANCEL` and `false` returned, as for a failed write.
async fn write(
    send: &mut ResponseSide,
    bytes: &[u8],
    deadline: Option<&mut Pin<Box<Sleep>>>,
    cancelled: &CancellationToken,
) -> bool {
    let outcome = tokio::select! {
        written = send.write_all(bytes) => return written,
        () = crate::edge::until(deadline) => "deadline",
        () = cancelled.cancelled() => "cancelled",
    };
    tracing::debug!(
        outcome,
        "WebTransport call ended while its client was not reading"
    );
    send.reset(codes::CANCEL);
    false
}

/// Ends the call with a trailer block (or trailers-only block: the edge settled its status)
/// and FIN — unless the client cancelled it, which wins (§5.2): then the stream is reset.
async fn end_with(send: &mut ResponseSide, trailers: &HeaderMap, cancelled: &CancellationToken) {
    if cancelled.is_cancelled() {
        send.reset(codes::CANCEL);
        return;
    }
    let block = trailers::encode_frame(trailers);
    match tokio::time::timeout(FINISH_TIME, send.write_all(&block)).await {
        Ok(true) => send.finish(),
        Ok(false) | Err(_) => send.reset(codes::CANCEL),
    }
}

/// Serves one call (§3, §4, §5).
pub(super) async fn call<S>(
    streams: CallStreams,
    service: S,
    config: Arc<WebTransportConfig>,
    peer: Peer,
) where
    S: Service<Request<StreamBody>, Response = Response<ResponseBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
{
    let CallStreams {
        send,
        mut recv,
        session_id,
        version,
    } = streams;
    let mut send = ResponseSide { send, open: true };
    let call_done = CancellationToken::new();
    let _call_done = call_done.clone().drop_guard();

    let signal = tokio::time::timeout(config.header_timeout, read_signal(&mut recv)).await;
    let mut recv = RequestSide(Some(recv));
    match signal {
        Ok(Signal::Session(id)) if id == session_id => {}
        Ok(Signal::Session(_) | Signal::Other) => {
            // Another session's stream or another HTTP/3 request: one session per
            // connection (§2.1).
            tracing::info!("refused a request stream beyond the connection's session");
            recv.stop_http3(http3::REQUEST_REJECTED);
            send.reset_http3(http3::REQUEST_REJECTED);
            return;
        }
        Ok(Signal::Gone) => {
            recv.stop(codes::CANCEL);
            send.reset(codes::CANCEL);
            return;
        }
        Err(_) => {
            tracing::info!("WebTransport call stream sent no signal in time");
            recv.stop(codes::PROTOCOL_ERROR);
            send.reset(codes::PROTOCOL_ERROR);
            return;
        }
    }

    let limit = config.edge.max_header_list_size;
    let mut reader = StreamReader {
        recv,
        decoder: FrameDecoder::new(limit),
        buf: BytesMut::new(),
    };
    let head = tokio::time::timeout(config.header_timeout, reader.header_block(limit)).await;
    let never = CancellationToken::new();
    let refuse = |message: String, code: Code| Status::new(code, message).to_headers();
    let frame = match head {
        Err(_) => {
            tracing::info!("WebTransport call sent no request header block in time");
            reader.recv.stop(codes::PROTOCOL_ERROR);
            send.reset(codes::PROTOCOL_ERROR);
            return;
        }
        Ok(Err(HeadFailure::Gone)) => {
            send.reset(codes::CANCEL);
            return;
        }
        Ok(Err(HeadFailure::Frame(e))) => {
            reader.recv.stop(codes::PROTOCOL_ERROR);
            let status = Status::from_request_frame_error(&e);
            end_with(&mut send, &status.to_headers(), &never).await;
            return;
        }
        Ok(Err(HeadFailure::NotHeaderBlock(flags))) => {
            reader.recv.stop(codes::PROTOCOL_ERROR);
            let trailers = refuse(
                format!(
                    "the first frame must be the request header block (flags 0x80), not {flags:#04x}"
                ),
                Code::Internal,
            );
            end_with(&mut send, &trailers, &never).await;
            return;
        }
        Ok(Err(HeadFailure::TooLarge(len))) => {
            reader.recv.stop(codes::PROTOCOL_ERROR);
            let trailers = refuse(
                format!(
                    "request header block of {len} bytes exceeds the {limit}-byte limit (max_header_list_size)"
                ),
                Code::ResourceExhausted,
            );
            end_with(&mut send, &trailers, &never).await;
            return;
        }
        Ok(Ok(None)) => {
            let trailers = refuse(
                "stream ended before the request header block".into(),
                Code::Internal,
            );
            end_with(&mut send, &trailers, &never).await;
            return;
        }
        Ok(Ok(Some(frame))) => frame,
    };
    let head = match parse_request_head(frame.payload(), limit) {
        Ok(head) => head,
        Err(status) => {
            tracing::info!(code = %status.code(), message = status.message(), "refused WebTransport call");
            reader.recv.stop(codes::PROTOCOL_ERROR);
            end_with(&mut send, &status.to_headers(), &never).await;
            return;
        }
    };
    // Whatever arrived behind the header block is the start of the request body.
    let early = Some(reader.decoder.take_buffered()).filter(|rest| !rest.is_empty());
    let events = RequestEvents::default();
    let body = StreamBody {
        reader,
        early,
        events: events.clone(),
        end: (version >= Version::V2).then(EndOfRequest::default),
        held: BytesMut::new(),
        call_done: call_done.clone(),
        done: false,
    };
    let (mut parts, ()) = head.into_parts();
    parts.extensions.insert(events.failure.clone());
    parts.extensions.insert(Door::WebTransport);
    parts.extensions.insert(peer);
    let request = Request::from_parts(parts, body);
    let cancelled = &events.cancelled;
    let mut stopped = std::pin::pin!(send.stopped());

    let response = async {
        let mut ready = service.ready_oneshot().await.map_err(Into::into)?;
        ready.call(request).await.map_err(Into::into)
    };
    let response: Result<Response<ResponseBody>, BoxError> = tokio::select! {
        response = response => response,
        () = &mut stopped => return send.reset(codes::CANCEL),
        () = cancelled.cancelled() => return send.reset(codes::CANCEL),
        () = events.violated.cancelled() => return violated(&mut send, &events, cancelled).await,
    };
    let response = match response {
        Ok(response) => response,
        Err(e) => {
            let status = crate::edge::service_error(e);
            end_with(&mut send, &status.to_headers(), cancelled).await;
            return;
        }
    };
    let (parts, mut body) = response.into_parts();
    if body.is_done() {
        // Trailers-only: the edge settled the status in the headers.
        end_with(&mut send, &parts.headers, cancelled).await;
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
        cancelled,
    )
    .await
    {
        return;
    }
    loop {
        let next = tokio::select! {
            next = body.frame() => next,
            () = &mut stopped => return send.reset(codes::CANCEL),
            () = cancelled.cancelled() => return send.reset(codes::CANCEL),
            () = events.violated.cancelled() => {
                drop(body);
                return violated(&mut send, &events, cancelled).await;
            }
        };
        match next {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    if !write(&mut send, &data, deadline.as_mut(), cancelled).await {
                        return;
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        drop(body);
                        end_with(&mut send, &trailers, cancelled).await;
                        return;
                    }
                }
            },
            Some(Err(e)) => {
                let status = crate::edge::service_error(e);
                end_with(&mut send, &status.to_headers(), cancelled).await;
                return;
            }
            None => {
                send.finish();
                return;
            }
        }
    }
}

/// Ends a call whose client broke the protocol after its request (§5.5) with the status the
/// violation set.
async fn violated(send: &mut ResponseSide, events: &RequestEvents, cancelled: &CancellationToken) {
    let status = events
        .failure
        .get()
        .unwrap_or_else(|| Status::new(Code::Internal, "protocol error"));
    end_with(send, &status.to_headers(), cancelled).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_head() {
        let block = b":path: /grpc.testing.TestService/UnaryCall\r\ncontent-type: application/grpc+proto\r\ngrpc-timeout: 1S\r\nx-a: b\r\nhost: evil\r\n";
        let request = parse_request_head(block, 16 * 1024).unwrap();
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
            let err = parse_request_head(block, 16 * 1024).unwrap_err();
            assert_eq!(
                err.code(),
                Code::Internal,
                "{}",
                String::from_utf8_lossy(block)
            );
        }
    }
}
