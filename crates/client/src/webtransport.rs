//! A gRPC client over WebTransport (`docs/protocol/webtransport.md`), for tests, tools and
//! benchmarks (cargo feature `webtransport`).
//!
//! One [`WebTransportClient`] is one WebTransport session; each [`Call`] is one bidirectional
//! stream on it, which [`Call::split`] divides into a [`CallSender`] and a [`CallReceiver`] to
//! send and read from two tasks at once (full duplex). Messages are raw [`Bytes`] (encode them
//! with any protobuf library), so the client serves every service and call type:
//!
//! ```no_run
//! use bytes::Bytes;
//! use http::HeaderMap;
//! use weir_client::webtransport::WebTransportClient;
//!
//! # async fn run(hashes: Vec<[u8; 32]>) -> Result<(), Box<dyn std::error::Error>> {
//! let client = WebTransportClient::connect("https://127.0.0.1:4433/weir?v=2", &hashes).await?;
//! let mut call = client
//!     .call("/grpc.testing.TestService/FullDuplexCall", HeaderMap::new())
//!     .await?;
//! call.send(Bytes::from_static(b"")).await?;
//! let reply = call.next_message().await?;
//! call.finish();
//! let status = call.status().await;
//! # let _ = (reply, status); Ok(()) }
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weir_codec::Code;
use weir_codec::frame::{FLAG_TRAILERS, FrameDecoder, FrameError, encode_header};
use weir_codec::timeout;
use wtransport::endpoint::ConnectOptions;
use wtransport::endpoint::endpoint_side;
use wtransport::error::ConnectingError;
use wtransport::quinn::{self, ReadError, WriteError};
use wtransport::{ClientConfig, Connection, Endpoint, VarInt};

use weir_codec::status::GRPC_STATUS;
use weir_codec::webtransport::{
    END_OF_REQUEST, RequestHead, Version, codes, decode_block, status_for_stream_code,
};

use crate::Status;

/// The `grpc-timeout` request header.
const GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");

pub use crate::DEFAULT_MAX_MESSAGE_SIZE;

/// Why a session could not be opened.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The server answered the session request with a non-2xx status (wrong path or version
    /// `404`, origin not allowed `403`, at its session limit `429`). The WebTransport client
    /// library does not report which.
    Rejected,
    /// The local UDP socket could not be bound.
    Io(std::io::Error),
    /// The connection failed: unreachable server, TLS (certificate hash) failure, bad URL, ….
    Connecting(ConnectingError),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Rejected => f.write_str("the server rejected the WebTransport session"),
            ConnectError::Io(e) => write!(f, "cannot bind the client socket: {e}"),
            ConnectError::Connecting(e) => write!(f, "WebTransport connection failed: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Rejected => None,
            ConnectError::Io(e) => Some(e),
            ConnectError::Connecting(e) => Some(e),
        }
    }
}

/// A WebTransport session to a weir server, carrying any number of concurrent calls.
///
/// Cloning is cheap and shares the session. Dropping every clone does not close the session
/// gracefully; call [`close`](Self::close) for that.
#[derive(Clone)]
pub struct WebTransportClient {
    // The endpoint (and its socket) lives as long as the session.
    endpoint: Arc<Endpoint<endpoint_side::Client>>,
    connection: Connection,
    closed_locally: Arc<AtomicBool>,
    max_message_size: usize,
    /// The version of the mapping the session speaks (its URL's `v`, §8).
    version: Version,
}

impl std::fmt::Debug for WebTransportClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebTransportClient")
            .field("remote", &self.connection.remote_address())
            .finish_non_exhaustive()
    }
}

/// The local address to bind for a session to `url`: IPv4 for an IPv4 literal, so the client
/// also works where IPv6 is disabled; a dual-stack IPv6 socket otherwise.
fn bind_for(
    url: &str,
) -> wtransport::config::ClientConfigBuilder<wtransport::config::states::WantsRootStore> {
    let host = url
        .parse::<http::Uri>()
        .ok()
        .and_then(|uri| uri.host().map(str::to_owned));
    let v4 = host
        .and_then(|host| host.parse::<IpAddr>().ok())
        .is_some_and(|ip| ip.is_ipv4());
    if v4 {
        ClientConfig::builder()
            .with_bind_address(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0))
    } else {
        ClientConfig::builder().with_bind_default()
    }
}

impl WebTransportClient {
    /// Opens a session to `url` (`https://host:port/path?v=2`), accepting only a server
    /// certificate whose SHA-256 hash is one of `hashes` (a development certificate, as
    /// `weir::webtransport::CertificateHashes` publishes them).
    pub async fn connect(url: &str, hashes: &[[u8; 32]]) -> Result<Self, ConnectError> {
        Self::connect_with(ConnectOptions::builder(url).build(), hashes).await
    }

    /// Like [`connect`](Self::connect) with extra session request headers (for instance the
    /// `origin` a browser would send).
    pub async fn connect_with(
        options: ConnectOptions,
        hashes: &[[u8; 32]],
    ) -> Result<Self, ConnectError> {
        let config = bind_for(options.url())
            .with_server_certificate_hashes(hashes.iter().copied().map(Into::into))
            .keep_alive_interval(Some(Duration::from_secs(10)))
            .build();
        Self::open(config, options).await
    }

    /// Opens a session to `url` validating the server's certificate with the system's roots.
    pub async fn connect_native(url: &str) -> Result<Self, ConnectError> {
        let config = bind_for(url)
            .with_native_certs()
            .keep_alive_interval(Some(Duration::from_secs(10)))
            .build();
        Self::open(config, ConnectOptions::builder(url).build()).await
    }

    /// Opens a session with a fully custom `wtransport` configuration. The session speaks the
    /// version of the mapping its URL names (`v=1` or `v=2`; version 1 for any other, which
    /// a server refuses anyway).
    pub async fn open(config: ClientConfig, options: ConnectOptions) -> Result<Self, ConnectError> {
        let version = options
            .url()
            .split_once('?')
            .and_then(|(_, query)| Version::from_query(query))
            .unwrap_or(Version::V1);
        let endpoint = Endpoint::client(config).map_err(ConnectError::Io)?;
        let connection = endpoint.connect(options).await.map_err(|e| match e {
            ConnectingError::SessionRejected => ConnectError::Rejected,
            e => ConnectError::Connecting(e),
        })?;
        Ok(WebTransportClient {
            endpoint: Arc::new(endpoint),
            connection,
            closed_locally: Arc::new(AtomicBool::new(false)),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            version,
        })
    }

    /// Sets the largest response message (and header block) this client accepts on later
    /// calls (default 4 MiB); a larger one fails the call with `RESOURCE_EXHAUSTED`.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// The underlying session, for raw streams.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Closes the session with code 0: every open call fails with `CANCELLED` and the server
    /// cancels them all (§2.3).
    pub fn close(&self) {
        self.closed_locally.store(true, Ordering::SeqCst);
        self.connection
            .close(VarInt::from_u32(0), b"closed by the client");
    }

    /// Closes the session like [`close`](Self::close), and waits until the server was told
    /// (or the connection timed out): for a process that exits right after its calls.
    pub async fn shutdown(&self) {
        self.close();
        self.endpoint.wait_idle().await;
    }

    /// Starts a call to `path` (`/package.Service/Method`) with request `metadata`.
    ///
    /// `metadata` goes into the request header block as is: values of `-bin` names must
    /// already be base64 ([`weir_codec::metadata::encode_binary`]); `content-type` defaults to
    /// `application/grpc+proto`; a `grpc-timeout` entry is sent to the server, which enforces
    /// it. Waits while the session has no stream credit (the server's per-session call limit).
    pub async fn call(&self, path: &str, metadata: HeaderMap) -> Result<Call, Status> {
        self.start(path, metadata, None).await
    }

    /// Like [`call`](Self::call) with a deadline: `grpc-timeout` is sent, and the client also
    /// cancels the call itself and reports `DEADLINE_EXCEEDED` when it expires — including
    /// while the call still waits for stream credit.
    pub async fn call_with_timeout(
        &self,
        path: &str,
        mut metadata: HeaderMap,
        timeout: Duration,
    ) -> Result<Call, Status> {
        if let Ok(value) = HeaderValue::try_from(timeout::format(timeout)) {
            metadata.insert(GRPC_TIMEOUT, value);
        }
        self.start(path, metadata, Some(Instant::now() + timeout))
            .await
    }

    /// A unary call: one request message, the response's single message.
    pub async fn unary(
        &self,
        path: &str,
        metadata: HeaderMap,
        message: Bytes,
    ) -> Result<Bytes, Status> {
        let mut call = self.call(path, metadata).await?;
        call.send(message).await?;
        call.finish();
        let reply = call.next_message().await?;
        let status = call.status().await;
        match (status.code(), reply) {
            (Code::Ok, Some(reply)) => Ok(reply),
            (Code::Ok, None) => Err(Status::new(
                Code::Internal,
                "unary call ended without a response message",
            )),
            _ => Err(status),
        }
    }

    async fn start(
        &self,
        path: &str,
        mut metadata: HeaderMap,
        deadline: Option<Instant>,
    ) -> Result<Call, Status> {
        if !metadata.contains_key(header::CONTENT_TYPE) {
            metadata.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc+proto"),
            );
        }
        // The codec's header block, the one the server decodes with; a malformed method path
        // fails here, before a stream is opened.
        let head = RequestHead::new(path, metadata).map_err(|e| e.to_status())?;
        let lost = |e: &dyn std::fmt::Display| {
            session_status(&self.closed_locally, format!("cannot open a stream: {e}"))
        };
        // Waits for stream credit (the server's per-session call limit): bounded by the
        // deadline too.
        let open = async {
            self.connection
                .open_bi()
                .await
                .map_err(|e| lost(&e))?
                .await
                .map_err(|e| lost(&e))
        };
        let (send, recv) = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, open)
                .await
                .map_err(|_| {
                    Status::new(
                        Code::DeadlineExceeded,
                        "deadline exceeded waiting for stream credit (client timer)",
                    )
                })??,
            None => open.await?,
        };
        let shared = Arc::new(Shared {
            aborted: OnceLock::new(),
            wake: CancellationToken::new(),
            idle: Mutex::new(Some(send)),
            closed_locally: self.closed_locally.clone(),
            deadline,
            version: self.version,
            request_ended: AtomicBool::new(false),
        });
        let mut call = Call {
            receiver: CallReceiver {
                recv: Some(recv),
                decoder: FrameDecoder::new(self.max_message_size),
                headers: None,
                trailers: None,
                status: None,
                shared: shared.clone(),
            },
            sender: CallSender { shared },
        };
        call.sender.write(&mut [head.encode()]).await?;
        Ok(call)
    }
}

/// The status of a call whose session is gone: `CANCELLED` when this client closed it,
/// `UNAVAILABLE` otherwise (§2.3, §5).
fn session_status(closed_locally: &AtomicBool, message: String) -> Status {
    if closed_locally.load(Ordering::SeqCst) {
        Status::new(Code::Cancelled, "the client closed the session")
    } else {
        Status::new(Code::Unavailable, format!("session lost: {message}"))
    }
}

/// A stream error code as HTTP/3 carries it.
fn wire_code(value: u32) -> VarInt {
    VarInt::try_from_u64(weir_codec::webtransport::to_http3(value))
        .unwrap_or(VarInt::from_u32(value))
}

/// What both halves of a call share: how it was aborted, if it was.
#[derive(Debug)]
struct Shared {
    /// Set once, by whichever half ends the call abnormally first.
    aborted: OnceLock<Abort>,
    /// Cancelled when `aborted` is set, to wake the other half.
    wake: CancellationToken,
    /// The request side while no write is in progress (`None` once finished or reset, and
    /// during a write): kept here so that an abort resets it at once, even when its
    /// [`CallSender`] is idle or was dropped.
    idle: Mutex<Option<wtransport::SendStream>>,
    closed_locally: Arc<AtomicBool>,
    deadline: Option<Instant>,
    version: Version,
    /// Set by [`CallSender::finish`]: no message may follow.
    request_ended: AtomicBool,
}

/// An abnormal end of a call: its status, and the stream error code both sides of the stream
/// are abandoned with.
#[derive(Debug)]
struct Abort {
    status: Status,
    code: u32,
}

impl Shared {
    /// Ends the call abnormally unless it was already; returns the abort in force.
    fn abort(&self, status: Status, code: u32) -> &Abort {
        let abort = self.aborted.get_or_init(|| Abort { status, code });
        self.wake.cancel();
        // A write in progress sees the abort when it puts the stream back (or is woken).
        if let Some(mut send) = self.idle_stream().take() {
            let _ = send.reset(wire_code(abort.code));
        }
        abort
    }

    fn idle_stream(&self) -> std::sync::MutexGuard<'_, Option<wtransport::SendStream>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The status of a call whose connection is gone. Only [`WebTransportClient::close`]
    /// makes it `CANCELLED`: a connection closed locally otherwise is wtransport's answer to
    /// the server's `CLOSE_WEBTRANSPORT_SESSION` (§2.4), a session the server ended.
    fn lost(&self, e: &quinn::ConnectionError) -> Status {
        session_status(&self.closed_locally, e.to_string())
    }

    fn expire(&self) -> &Abort {
        self.abort(
            Status::new(Code::DeadlineExceeded, "deadline exceeded (client timer)"),
            codes::CANCEL,
        )
    }
}

/// Waits until `deadline`, or forever without one.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// One call: a bidirectional stream carrying a request and its response, in full duplex.
///
/// A `Call` sends and reads from one task. To send and read at the same time — a
/// bidirectional call whose requests depend on its responses, or that streams both ways at
/// once — [`split`](Self::split) it into a [`CallSender`] and a [`CallReceiver`].
///
/// Dropping a call that has not ended cancels it.
#[derive(Debug)]
pub struct Call {
    receiver: CallReceiver,
    sender: CallSender,
}

impl Call {
    /// Sends one request message (an uncompressed message frame).
    ///
    /// Fails when the call already ended, when the request side was finished or cancelled, or
    /// when the server stopped reading (the call's status then usually follows from
    /// [`status`](Self::status)).
    ///
    /// Dropping the future before it completed (a timeout, a `select!`, an aborted task)
    /// cancels the call, since part of the message may already be out: the call then ends
    /// with `CANCELLED`.
    pub async fn send(&mut self, message: Bytes) -> Result<(), Status> {
        self.sender.send(message).await
    }

    /// Half-closes the call: ends the request after the messages written so far (version 2:
    /// the end-of-request frame, the request side staying open so that the call can still be
    /// cancelled; version 1: FIN). See [`CallSender::finish`].
    pub fn finish(&mut self) {
        self.sender.finish();
    }

    /// Cancels the call (§5): resets the request side and stops the response side with
    /// `CANCEL`. The call then ends with `CANCELLED` unless it had ended already.
    pub fn cancel(&mut self) {
        self.sender.cancel();
        self.receiver.apply_abort();
    }

    /// Waits for the response header block. Fails with the call's status when the call ended
    /// without one (a trailers-only answer, a reset, a lost session).
    pub async fn headers(&mut self) -> Result<&HeaderMap, Status> {
        self.receiver.headers().await
    }

    /// The next response message; `Ok(None)` once the call ended with `OK`, `Err` with the
    /// status once it ended otherwise (the trailers, if any, are in
    /// [`trailers`](Self::trailers)).
    pub async fn next_message(&mut self) -> Result<Option<Bytes>, Status> {
        self.receiver.next_message().await
    }

    /// Reads (and discards) the remaining messages, and returns the final status.
    pub async fn status(&mut self) -> Status {
        self.receiver.status().await
    }

    /// The trailer block, once the call ended with one (for a trailers-only answer, the only
    /// header block).
    pub fn trailers(&self) -> Option<&HeaderMap> {
        self.receiver.trailers()
    }

    /// The final status, once the call ended.
    pub fn ended(&self) -> Option<&Status> {
        self.receiver.ended()
    }

    /// Splits the call into its request and response halves, to use from two tasks at once
    /// (full duplex).
    ///
    /// The halves stay linked: cancelling from the [`CallSender`] ends the
    /// [`CallReceiver`] with `CANCELLED`; a call that fails (deadline, reset, error status)
    /// makes the sender's next or pending [`send`](CallSender::send) fail with its status.
    /// Dropping the receiver before the call ended cancels the call, so dropping both halves
    /// of an unfinished call cancels it. Dropping the sender alone does not half-close the
    /// call: call [`finish`](CallSender::finish) for that.
    ///
    /// A ping-pong where each request is sent from one task once the previous response was
    /// read in another:
    ///
    /// ```no_run
    /// use bytes::Bytes;
    /// use http::HeaderMap;
    /// use weir_client::webtransport::WebTransportClient;
    ///
    /// # async fn run(client: WebTransportClient) -> Result<(), weir_client::Status> {
    /// let call = client
    ///     .call("/grpc.testing.TestService/FullDuplexCall", HeaderMap::new())
    ///     .await?;
    /// let (mut sender, mut receiver) = call.split();
    /// let (read_tx, mut read_rx) = tokio::sync::mpsc::channel::<()>(1);
    /// let requests = tokio::spawn(async move {
    ///     for _ in 0..3 {
    ///         sender.send(Bytes::new()).await?;
    ///         // Wait until the reader saw the answer.
    ///         if read_rx.recv().await.is_none() {
    ///             break;
    ///         }
    ///     }
    ///     sender.finish();
    ///     Ok::<_, weir_client::Status>(())
    /// });
    /// while let Some(message) = receiver.next_message().await? {
    ///     println!("{} bytes", message.len());
    ///     let _ = read_tx.send(()).await;
    /// }
    /// # let _ = requests.await; Ok(()) }
    /// ```
    pub fn split(self) -> (CallSender, CallReceiver) {
        (self.sender, self.receiver)
    }
}

/// The request half of a [`Call`] (see [`Call::split`]): sends messages, finishes or cancels.
///
/// Dropping it without [`finish`](Self::finish) does not half-close the call: a request cut
/// short must not pass for a complete one. The request side then stays open until the call
/// ends, and is reset if the call is cancelled or fails (dropping the [`CallReceiver`] of an
/// unfinished call cancels it). Likewise a [`send`](Self::send) abandoned before it
/// completed cancels the call rather than finishing the request.
#[derive(Debug)]
pub struct CallSender {
    shared: Arc<Shared>,
}

/// The request stream while a write is in progress, taken out of [`Shared::idle`].
///
/// If the write does not end normally — its future is dropped half way (a timeout, a
/// `select!`, an aborted task) — the guard still holds the stream when dropped: part of a
/// frame may already be out, so the stream can be neither put back nor finished (quinn would
/// finish a dropped stream, and a request cut short would pass for a complete one). The call
/// is cancelled instead: the stream is reset with `CANCEL`, and the call ends with
/// `CANCELLED` (unless it had ended already).
struct Writing<'a> {
    shared: &'a Shared,
    send: Option<wtransport::SendStream>,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        let Some(mut send) = self.send.take() else {
            return;
        };
        let abort = self.shared.abort(
            Status::new(
                Code::Cancelled,
                "cancelled by the client: a send was abandoned before it completed",
            ),
            codes::CANCEL,
        );
        let _ = send.reset(wire_code(abort.code));
    }
}

/// How a write ended.
enum Written {
    Done(Result<(), WriteError>),
    Aborted,
    Expired,
}

impl CallSender {
    /// Sends one request message (an uncompressed message frame).
    ///
    /// Fails when the call already failed or was cancelled (with its status), when the
    /// request side was finished, or when the server stopped reading. A pending send is
    /// interrupted when the call fails meanwhile.
    ///
    /// Dropping the future before it completed (a timeout, a `select!`, an aborted task)
    /// cancels the call, since part of the message may already be out: the request side is
    /// reset, and the [`CallReceiver`] ends with `CANCELLED`.
    pub async fn send(&mut self, message: Bytes) -> Result<(), Status> {
        let mut head = BytesMut::with_capacity(5);
        encode_header(0, message.len(), &mut head);
        self.write(&mut [head.freeze(), message]).await
    }

    fn aborted(&self) -> Option<Status> {
        self.shared.aborted.get().map(|abort| abort.status.clone())
    }

    async fn write(&mut self, chunks: &mut [Bytes]) -> Result<(), Status> {
        if self.shared.request_ended.load(Ordering::SeqCst) {
            return Err(self.aborted().unwrap_or_else(|| {
                Status::new(Code::FailedPrecondition, "the request stream is finished")
            }));
        }
        write(&self.shared, chunks).await
    }
    /// Half-closes the call: ends the request after the messages written so far (§3.4).
    ///
    /// Version 2 writes the end-of-request frame (in a task of its own; it needs no stream
    /// credit the session may lack) and keeps the request side open, so that a
    /// [`cancel`](Self::cancel) can still reset it; the side is finished once the response
    /// ended. Version 1 finishes the side (FIN). Outside a Tokio runtime both finish it.
    pub fn finish(&mut self) {
        if self.shared.request_ended.swap(true, Ordering::SeqCst) {
            return;
        }
        if self.shared.version >= Version::V2
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let shared = self.shared.clone();
            runtime.spawn(async move {
                let _ = write(&shared, &mut [Bytes::from_static(&END_OF_REQUEST)]).await;
            });
            return;
        }
        if let Some(mut send) = self.shared.idle_stream().take() {
            let _ = send.quic_stream_mut().finish();
        }
    }

    /// Cancels the call (§5): resets the request side, and the [`CallReceiver`] stops the
    /// response side and ends with `CANCELLED` (unless the call had ended already).
    pub fn cancel(&mut self) {
        self.shared.abort(
            Status::new(Code::Cancelled, "cancelled by the client"),
            codes::CANCEL,
        );
    }
}

/// Writes whole frames on a call's request side (see [`CallSender::send`]).
async fn write(shared: &Shared, chunks: &mut [Bytes]) -> Result<(), Status> {
    let aborted = || shared.aborted.get().map(|abort| abort.status.clone());
    let taken = shared.idle_stream().take();
    let Some(send) = taken else {
        return Err(aborted().unwrap_or_else(|| {
            Status::new(Code::FailedPrecondition, "the request stream is finished")
        }));
    };
    // Until the write ends here, the guard holds the stream: a write abandoned half way
    // (its future dropped) cancels the call instead of finishing the request.
    let mut writing = Writing {
        shared,
        send: Some(send),
    };
    let written = match writing.send.as_mut() {
        Some(send) => tokio::select! {
            biased;
            () = shared.wake.cancelled() => Written::Aborted,
            () = until(shared.deadline) => Written::Expired,
            written = send.quic_stream_mut().write_all_chunks(chunks) => Written::Done(written),
        },
        None => Written::Aborted,
    };
    let send = writing.send.take();
    let failed = match written {
        Written::Done(Ok(())) => {
            let mut idle = shared.idle_stream();
            match shared.aborted.get() {
                // Aborted meanwhile: the abort found no stream to reset.
                Some(abort) => {
                    if let Some(mut send) = send {
                        let _ = send.reset(wire_code(abort.code));
                    }
                }
                None => *idle = send,
            }
            return Ok(());
        }
        Written::Done(Err(e)) => {
            // The stream is unusable; it is dropped.
            return Err(match e {
                WriteError::Stopped(code) => Status::new(
                    status_for_stream_code(code.into_inner()),
                    format!("the server stopped reading the request (code {code})"),
                ),
                WriteError::ConnectionLost(e) => shared.lost(&e),
                e => Status::new(Code::Cancelled, format!("request stream closed: {e}")),
            });
        }
        Written::Aborted => shared.aborted.get(),
        Written::Expired => Some(shared.expire()),
    };
    match failed {
        Some(abort) => {
            if let Some(mut send) = send {
                let _ = send.reset(wire_code(abort.code));
            }
            Err(abort.status.clone())
        }
        None => Err(Status::new(Code::Internal, "the call was aborted")),
    }
}

/// The response half of a [`Call`] (see [`Call::split`]): reads the header block, the
/// messages, the status and the trailers.
///
/// Dropping it before the call ended cancels the call.
#[derive(Debug)]
pub struct CallReceiver {
    recv: Option<wtransport::RecvStream>,
    decoder: FrameDecoder,
    headers: Option<HeaderMap>,
    trailers: Option<HeaderMap>,
    status: Option<Status>,
    shared: Arc<Shared>,
}

/// What reading the response produced.
enum Event {
    /// The response header block arrived; it is stored.
    Headers,
    Message(Bytes),
    /// The call ended; its status is stored.
    End,
}

/// How a read ended.
enum Read {
    Done(Result<Option<wtransport::quinn::Chunk>, ReadError>),
    Aborted,
    Expired,
}

impl CallReceiver {
    /// Ends the call with `status` unless it ended already: aborts it (the sender resets the
    /// request side) and stops the response side with `code`.
    fn fail(&mut self, status: Status, code: u32) {
        if self.status.is_some() {
            return;
        }
        self.shared.abort(status, code);
        self.apply_abort();
    }

    /// Takes over the call's abort, if any, as the end of the response.
    fn apply_abort(&mut self) -> bool {
        if self.status.is_some() {
            return true;
        }
        let Some(abort) = self.shared.aborted.get() else {
            return false;
        };
        if let Some(recv) = self.recv.take() {
            recv.stop(wire_code(abort.code));
        }
        self.status = Some(abort.status.clone());
        true
    }

    /// A protocol violation by the server: the call fails with `INTERNAL`.
    fn violation(&mut self, what: impl std::fmt::Display) {
        self.fail(
            Status::new(Code::Internal, format!("protocol error: {what}")),
            codes::PROTOCOL_ERROR,
        );
    }

    /// Reads the next frame, handling header blocks; ends the call on any failure.
    async fn read_event(&mut self) -> Event {
        if self.apply_abort() {
            return Event::End;
        }
        loop {
            match self.decoder.decode() {
                Ok(Some(frame)) => match frame.flags() {
                    FLAG_TRAILERS => {
                        // Names must be lowercase and there are no pseudo-headers (§3.2).
                        let block = match decode_block(frame.payload()) {
                            Ok(block) => block,
                            Err(e) => {
                                self.violation(format!("response {e}"));
                                return Event::End;
                            }
                        };
                        if self.headers.is_some() || block.contains_key(&GRPC_STATUS) {
                            if self.headers.is_none() {
                                // Trailers-only.
                                self.headers = Some(HeaderMap::new());
                            }
                            self.end_with_trailers(block);
                            return Event::End;
                        }
                        self.headers = Some(block);
                        return Event::Headers;
                    }
                    0 if self.headers.is_some() => return Event::Message(frame.into_payload()),
                    0 => {
                        self.violation("a message before the response header block");
                        return Event::End;
                    }
                    flags => {
                        self.violation(format!(
                            "a response frame with flags {flags:#04x} (compression is not supported)"
                        ));
                        return Event::End;
                    }
                },
                Ok(None) => {}
                Err(e @ FrameError::TooLarge { .. }) => {
                    self.fail(
                        Status::new(Code::ResourceExhausted, format!("response {e}")),
                        codes::CANCEL,
                    );
                    return Event::End;
                }
                Err(e) => {
                    self.violation(e);
                    return Event::End;
                }
            }
            let shared = self.shared.clone();
            let Some(recv) = self.recv.as_mut() else {
                self.fail(
                    Status::new(Code::Cancelled, "the response stream was closed"),
                    codes::CANCEL,
                );
                return Event::End;
            };
            let read = tokio::select! {
                biased;
                () = shared.wake.cancelled() => Read::Aborted,
                () = until(shared.deadline) => Read::Expired,
                read = recv.quic_stream_mut().read_chunk(64 * 1024, true) => Read::Done(read),
            };
            let read = match read {
                Read::Done(read) => read,
                Read::Aborted => {
                    self.apply_abort();
                    return Event::End;
                }
                Read::Expired => {
                    shared.expire();
                    self.apply_abort();
                    return Event::End;
                }
            };
            match read {
                Ok(Some(chunk)) => self.decoder.push(chunk.bytes),
                Ok(None) => {
                    self.recv = None;
                    let status = match self.decoder.finish() {
                        Err(e) => Status::new(Code::Internal, format!("protocol error: {e}")),
                        Ok(()) => Status::new(
                            Code::Internal,
                            "the response stream ended without a trailer block",
                        ),
                    };
                    self.fail(status, codes::CANCEL);
                    return Event::End;
                }
                Err(ReadError::Reset(code)) => {
                    self.recv = None;
                    self.fail(
                        Status::new(
                            status_for_stream_code(code.into_inner()),
                            format!("the server reset the call (code {code})"),
                        ),
                        codes::CANCEL,
                    );
                    return Event::End;
                }
                Err(ReadError::ConnectionLost(e)) => {
                    self.recv = None;
                    let status = shared.lost(&e);
                    self.fail(status, codes::CANCEL);
                    return Event::End;
                }
                Err(e) => {
                    self.fail(
                        Status::new(Code::Internal, format!("response stream: {e}")),
                        codes::CANCEL,
                    );
                    return Event::End;
                }
            }
        }
    }

    fn end_with_trailers(&mut self, block: HeaderMap) {
        let status =
            Status::from_headers(&block).unwrap_or_else(|| match block.get(&GRPC_STATUS) {
                Some(value) => Status::new(
                    Code::Internal,
                    format!("invalid grpc-status {value:?} in the trailer block"),
                ),
                None => Status::new(Code::Internal, "trailer block without grpc-status"),
            });
        self.trailers = Some(block);
        // Version 2: the response is complete, so the request side, kept open for a
        // cancellation, is finished (§3.4).
        if self.shared.version >= Version::V2
            && let Some(mut send) = self.shared.idle_stream().take()
        {
            let _ = send.quic_stream_mut().finish();
        }
        // The response is complete: nothing more to read. On an error status the request
        // side, if still open (version 1), is of no use to the server any more: the sender
        // resets it.
        if let Some(recv) = self.recv.take() {
            recv.stop(wire_code(codes::CANCEL));
        }
        if status.code() == Code::Ok {
            self.status = Some(status);
        } else {
            self.fail(status, codes::CANCEL);
        }
    }

    /// Waits for the response header block. Fails with the call's status when the call ended
    /// without one (a trailers-only answer, a reset, a lost session).
    pub async fn headers(&mut self) -> Result<&HeaderMap, Status> {
        // The header block comes first: no message is read (and lost) here.
        while self.headers.is_none() && self.status.is_none() {
            self.read_event().await;
        }
        match (&self.headers, &self.status) {
            (Some(headers), None) => Ok(headers),
            (Some(headers), Some(status)) if status.code() == Code::Ok => Ok(headers),
            (_, Some(status)) => Err(status.clone()),
            (None, None) => Err(Status::new(Code::Internal, "no response header block")),
        }
    }

    /// The next response message; `Ok(None)` once the call ended with `OK`, `Err` with the
    /// status once it ended otherwise (the trailers, if any, are in
    /// [`trailers`](Self::trailers)).
    pub async fn next_message(&mut self) -> Result<Option<Bytes>, Status> {
        let event = loop {
            match self.read_event().await {
                Event::Headers => {}
                event => break event,
            }
        };
        match event {
            Event::Message(message) => Ok(Some(message)),
            Event::Headers | Event::End => match &self.status {
                Some(status) if status.code() == Code::Ok => Ok(None),
                Some(status) => Err(status.clone()),
                None => Err(Status::new(Code::Internal, "call ended without a status")),
            },
        }
    }

    /// Reads (and discards) the remaining messages, and returns the final status.
    pub async fn status(&mut self) -> Status {
        while !matches!(self.read_event().await, Event::End) {}
        self.status
            .clone()
            .unwrap_or_else(|| Status::new(Code::Internal, "call ended without a status"))
    }

    /// The trailer block, once the call ended with one (for a trailers-only answer, the only
    /// header block).
    pub fn trailers(&self) -> Option<&HeaderMap> {
        self.trailers.as_ref()
    }

    /// The final status, once the call ended (including by a cancellation from the
    /// [`CallSender`] not read yet).
    pub fn ended(&self) -> Option<&Status> {
        self.status
            .as_ref()
            .or_else(|| self.shared.aborted.get().map(|abort| &abort.status))
    }
}

impl Drop for CallReceiver {
    fn drop(&mut self) {
        self.fail(
            Status::new(Code::Cancelled, "the response receiver was dropped"),
            codes::CANCEL,
        );
    }
}
