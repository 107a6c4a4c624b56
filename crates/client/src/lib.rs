//! A gRPC-Web client for Rust, on hyper.
//!
//! `weir-client` calls gRPC-Web servers (weir's layer and gateway, Envoy, tonic-web,
//! connect-go, connect-node, ...) the way a browser does, from Rust: binary
//! (`application/grpc-web+proto`) or text (`application/grpc-web-text+proto`) bodies, over
//! HTTP/1.1 or HTTP/2 (cleartext with prior knowledge, or TLS with ALPN), with every call type:
//!
//! | call type | HTTP/1.1 | HTTP/2 |
//! |---|---|---|
//! | unary, server streaming | yes | yes |
//! | client streaming | the request stream is gathered into one body | messages sent as they come |
//! | bidirectional | half duplex: the request stream is gathered first | full duplex |
//!
//! Messages are [`Bytes`]: the client never needs to know their schema. The `*_message`
//! helpers and [`Streaming::message_as`] encode and decode [`prost::Message`]s.
//!
//! Metadata (ASCII and `-bin`) and deadlines are set per call with [`CallOptions`]; a deadline
//! is sent as `grpc-timeout` and enforced by a local timer too. Dropping a call's future or its
//! [`Streaming`] aborts the call: HTTP/2 resets the stream, HTTP/1.1 closes the connection.
//!
//! Every failure is a [`Status`]: the server's status (from the trailer frame, or the headers
//! of a trailers-only response), or one the client made: an HTTP error status mapped as gRPC
//! specifies (404 → `UNIMPLEMENTED`, 503 → `UNAVAILABLE`, ...), a response without trailer
//! frame or with a malformed body (`INTERNAL`; a frame with flags gRPC-Web reserves included),
//! a message over the size limit
//! (`RESOURCE_EXHAUSTED`, checked on the length prefix before the message is buffered),
//! transport failures (`UNAVAILABLE`, "cannot connect to HOST:PORT: why" when no connection
//! could be made; or the HTTP/2 reset reason), the deadline
//! (`DEADLINE_EXCEEDED`). Response heads and bodies are read with `weir-codec`'s
//! [`grpc_web`](weir_codec::grpc_web) rules, the ones weir's servers are tested against, so the
//! same violation gets the same status everywhere. Heartbeat frames (weir's `0x40` extension,
//! `docs/protocol/heartbeat.md`) are skipped.
//!
//! With the cargo feature `webtransport`, `weir_client::webtransport` is a client of gRPC over
//! WebTransport (HTTP/3) as weir's gateway serves it: every call type in full duplex, many
//! calls on one session.
//!
//! # Example
//!
//! ```no_run
//! use bytes::Bytes;
//! use weir_client::{CallOptions, Client};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder("http://127.0.0.1:8080").http2().build()?;
//!
//! // Unary, raw bytes in and out (an empty grpc.testing.Empty).
//! let reply = client
//!     .unary("grpc.testing.TestService/EmptyCall", Bytes::new(), CallOptions::new())
//!     .await?;
//! assert!(reply.message().is_empty());
//!
//! // Server streaming, with metadata and a deadline.
//! let options = CallOptions::new()
//!     .metadata("x-user", "ada")
//!     .timeout(std::time::Duration::from_secs(5));
//! let mut stream = client
//!     .server_streaming("grpc.testing.TestService/StreamingOutputCall", Bytes::new(), options)
//!     .await?;
//! while let Some(message) = stream.message().await? {
//!     println!("{} bytes", message.len());
//! }
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod body;
mod options;
mod response;
mod status;
#[cfg(feature = "webtransport")]
pub mod webtransport;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt as _};
use http::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;

pub use body::RequestBody;
pub use options::CallOptions;
pub use response::{Response, Streaming};
pub use status::Status;
pub use weir_codec::Code;

/// Default limit on the size of one response message: 4 MiB, as gRPC's.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// The body encoding of gRPC-Web.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// `application/grpc-web+proto`: binary frames.
    #[default]
    Binary,
    /// `application/grpc-web-text+proto`: base64-encoded frames, as browsers without binary
    /// streaming use.
    Text,
}

impl Mode {
    fn content_type(self) -> HeaderValue {
        match self {
            Mode::Binary => HeaderValue::from_static("application/grpc-web+proto"),
            Mode::Text => HeaderValue::from_static("application/grpc-web-text+proto"),
        }
    }
}

/// The HTTP version the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HttpVersion {
    /// HTTP/1.1, one call per connection at a time (connections are pooled).
    #[default]
    Http1,
    /// HTTP/2: with prior knowledge over cleartext (h2c), by ALPN over TLS. One connection
    /// carries every call.
    Http2,
}

/// Why a [`Client`] could not be built.
#[derive(Debug)]
pub struct BuildError(String);

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BuildError {}

/// Configures a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    base: String,
    version: HttpVersion,
    mode: Mode,
    max_message_size: usize,
    timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl ClientBuilder {
    /// Speak HTTP/1.1 (the default).
    pub fn http1(mut self) -> Self {
        self.version = HttpVersion::Http1;
        self
    }

    /// Speak HTTP/2 (h2c with prior knowledge for `http://`, ALPN `h2` for `https://`).
    pub fn http2(mut self) -> Self {
        self.version = HttpVersion::Http2;
        self
    }

    /// Choose the HTTP version.
    pub fn http_version(mut self, version: HttpVersion) -> Self {
        self.version = version;
        self
    }

    /// Use `grpc-web-text` (base64 bodies).
    pub fn text(mut self) -> Self {
        self.mode = Mode::Text;
        self
    }

    /// Choose binary or text bodies.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Largest response message accepted; a larger one ends the call with
    /// `RESOURCE_EXHAUSTED` before it is buffered. Default [`DEFAULT_MAX_MESSAGE_SIZE`].
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Deadline of calls whose [`CallOptions`] set none.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Limit on establishing a TCP connection.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// TLS settings for `https://` (default: the system's roots). ALPN is set by the client.
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Builds the client. No connection is made until the first call.
    pub fn build(self) -> Result<Client, BuildError> {
        let uri: http::Uri = self
            .base
            .parse()
            .map_err(|e| BuildError(format!("invalid server URL {:?}: {e}", self.base)))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(BuildError(format!(
                    "server URL {:?} must start with http:// or https://",
                    self.base
                )));
            }
        };
        let Some(authority) = uri.authority().map(|a| a.as_str().into()) else {
            return Err(BuildError(format!(
                "server URL {:?} has no host",
                self.base
            )));
        };
        let prefix: Arc<str> = self.base.trim_end_matches('/').into();

        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        tcp.enforce_http(false);
        tcp.set_connect_timeout(self.connect_timeout);
        let tls = match self.tls {
            Some(config) => (*config).clone(),
            None => default_tls(https)?,
        };
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        let connector: HttpsConnector<HttpConnector> = match self.version {
            HttpVersion::Http1 => builder.enable_http1().wrap_connector(tcp),
            HttpVersion::Http2 => builder.enable_http2().wrap_connector(tcp),
        };
        let mut http = HttpClient::builder(TokioExecutor::new());
        http.timer(TokioTimer::new()).pool_timer(TokioTimer::new());
        if self.version == HttpVersion::Http2 {
            http.http2_only(true);
        }
        Ok(Client {
            inner: Arc::new(Inner {
                http: http.build(connector),
                prefix,
                authority,
                version: self.version,
                mode: self.mode,
                max_message_size: self.max_message_size,
                timeout: self.timeout,
            }),
        })
    }
}

fn default_tls(https: bool) -> Result<rustls::ClientConfig, BuildError> {
    let mut roots = rustls::RootCertStore::empty();
    if https {
        for cert in rustls_native_certs::load_native_certs().certs {
            // A system store may hold certificates rustls cannot use; skip those.
            let _ = roots.add(cert);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BuildError(format!("tls: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A gRPC-Web client for one server. Cheap to clone; clones share the connections.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: HttpClient<HttpsConnector<HttpConnector>, RequestBody>,
    prefix: Arc<str>,
    /// `host:port` of the server, for error messages.
    authority: Arc<str>,
    version: HttpVersion,
    mode: Mode,
    max_message_size: usize,
    timeout: Option<Duration>,
}

impl Client {
    /// A builder for a client of the server at `base_url` (`http://host:port` or
    /// `https://host:port`, optionally with a path prefix).
    pub fn builder(base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base: base_url.into(),
            version: HttpVersion::Http1,
            mode: Mode::Binary,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            timeout: None,
            connect_timeout: None,
            tls: None,
        }
    }

    /// The HTTP version this client speaks.
    pub fn http_version(&self) -> HttpVersion {
        self.inner.version
    }

    /// The body encoding this client uses.
    pub fn mode(&self) -> Mode {
        self.inner.mode
    }

    /// A unary call. `method` is `package.Service/Method` (a leading `/` is optional).
    pub async fn unary(
        &self,
        method: &str,
        message: Bytes,
        options: CallOptions,
    ) -> Result<Response<Bytes>, Status> {
        let deadline = self.deadline(&options);
        let call = self.start(method, self.single_body(&message), options, deadline);
        with_deadline(deadline, async { call.await?.single().await }).await
    }

    /// A server-streaming call: one request message, a stream of responses.
    pub async fn server_streaming(
        &self,
        method: &str,
        message: Bytes,
        options: CallOptions,
    ) -> Result<Streaming, Status> {
        let deadline = self.deadline(&options);
        self.start(method, self.single_body(&message), options, deadline)
            .await
    }

    /// A client-streaming call: a stream of request messages, one response. Over HTTP/1.1
    /// the stream is gathered into one request body before it is sent; over HTTP/2 each
    /// message is sent as it comes.
    pub async fn client_streaming(
        &self,
        method: &str,
        messages: impl Stream<Item = Bytes> + Send + 'static,
        options: CallOptions,
    ) -> Result<Response<Bytes>, Status> {
        let deadline = self.deadline(&options);
        with_deadline(deadline, async {
            let body = self.stream_body(messages).await;
            self.start(method, body, options, deadline)
                .await?
                .single()
                .await
        })
        .await
    }

    /// A bidirectional-streaming call. Over HTTP/2 it is full duplex: responses can be read
    /// while requests are still being sent. Over HTTP/1.1 it is half duplex: the request
    /// stream is gathered (so it must end) before the call starts.
    pub async fn streaming(
        &self,
        method: &str,
        messages: impl Stream<Item = Bytes> + Send + 'static,
        options: CallOptions,
    ) -> Result<Streaming, Status> {
        let deadline = self.deadline(&options);
        with_deadline(deadline, async {
            let body = self.stream_body(messages).await;
            self.start(method, body, options, deadline).await
        })
        .await
    }

    /// [`unary`](Self::unary) with protobuf messages.
    pub async fn unary_message<Req, Resp>(
        &self,
        method: &str,
        message: &Req,
        options: CallOptions,
    ) -> Result<Response<Resp>, Status>
    where
        Req: prost::Message,
        Resp: prost::Message + Default,
    {
        let reply = self
            .unary(method, message.encode_to_vec().into(), options)
            .await?;
        let decoded = Resp::decode(reply.message().clone()).map_err(|e| {
            Status::new(
                Code::Internal,
                format!("cannot decode response message: {e}"),
            )
        })?;
        Ok(reply.map(|_| decoded))
    }

    /// [`server_streaming`](Self::server_streaming) with a protobuf request; read the
    /// responses with [`Streaming::message_as`].
    pub async fn server_streaming_message<Req: prost::Message>(
        &self,
        method: &str,
        message: &Req,
        options: CallOptions,
    ) -> Result<Streaming, Status> {
        self.server_streaming(method, message.encode_to_vec().into(), options)
            .await
    }

    fn deadline(&self, options: &CallOptions) -> Option<Instant> {
        options
            .timeout
            .or(self.inner.timeout)
            .map(|timeout| Instant::now() + timeout)
    }

    fn single_body(&self, message: &[u8]) -> RequestBody {
        let mut out = BytesMut::with_capacity(message.len() + 5);
        body::push_frame(&mut out, message, self.inner.mode);
        RequestBody::full(out.freeze())
    }

    async fn stream_body(
        &self,
        messages: impl Stream<Item = Bytes> + Send + 'static,
    ) -> RequestBody {
        match self.inner.version {
            HttpVersion::Http2 => RequestBody::stream(messages, self.inner.mode),
            HttpVersion::Http1 => {
                let mut out = BytesMut::new();
                let mut messages = std::pin::pin!(messages);
                while let Some(message) = messages.next().await {
                    body::push_frame(&mut out, &message, self.inner.mode);
                }
                RequestBody::full(out.freeze())
            }
        }
    }

    async fn start(
        &self,
        method: &str,
        body: RequestBody,
        options: CallOptions,
        deadline: Option<Instant>,
    ) -> Result<Streaming, Status> {
        if let Some(error) = options.error() {
            return Err(Status::new(Code::Internal, error));
        }
        let slash = if method.starts_with('/') { "" } else { "/" };
        let uri = format!("{}{slash}{method}", self.inner.prefix);
        let mut request = http::Request::post(uri)
            .body(body)
            .map_err(|e| Status::new(Code::Internal, format!("invalid method {method:?}: {e}")))?;
        let headers = request.headers_mut();
        *headers = options.metadata;
        let content_type = self.inner.mode.content_type();
        headers.insert(CONTENT_TYPE, content_type.clone());
        headers.insert(ACCEPT, content_type);
        headers.insert("x-grpc-web", HeaderValue::from_static("1"));
        if let Some(at) = deadline {
            let left = at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(response::deadline_exceeded());
            }
            if let Ok(value) = HeaderValue::from_str(&weir_codec::timeout::format(left)) {
                headers.insert("grpc-timeout", value);
            }
        }
        let response = with_deadline(deadline, async {
            self.inner.http.request(request).await.map_err(|e| {
                if e.is_connect() {
                    status::connect_failed(&e, &self.inner.authority)
                } else {
                    status::from_transport(&e, "request")
                }
            })
        })
        .await?;
        Streaming::new(response, self.inner.max_message_size, deadline)
    }
}

async fn with_deadline<T>(
    deadline: Option<Instant>,
    call: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    match deadline {
        Some(at) => tokio::time::timeout_at(at, call)
            .await
            .unwrap_or_else(|_| Err(response::deadline_exceeded())),
        None => call.await,
    }
}
