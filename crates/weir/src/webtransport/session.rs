//! One QUIC connection and its one WebTransport session: the HTTP/3 side of
//! `docs/protocol/webtransport.md` §2 (SETTINGS, the extended CONNECT, the session's
//! capsules, closing) and the calls on it.
//!
//! The HTTP/3 encodings (SETTINGS, QPACK of the CONNECT request and response, capsules) are
//! `web-transport-proto`'s; the session's behaviour (one session per connection, which
//! streams are refused with which code, how a session ends) is weir's, as the specification
//! says.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut as _, BytesMut};
use http::{Request, Response, StatusCode};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_service::Service;
use web_transport_proto::{Capsule, ConnectRequest, ConnectResponse, Frame, StreamUni, VarInt};
use weir_codec::webtransport::{Version, codes, http3};

use super::WebTransportConfig;
use super::call::{self, StreamBody};
use crate::body::BoxError;
use crate::cors::OriginCheck;
use crate::edge::{Peer, ResponseBody};

/// Everything a session task needs.
pub(super) struct Session<S> {
    pub(super) service: S,
    pub(super) config: Arc<WebTransportConfig>,
    pub(super) sessions: Arc<Semaphore>,
    pub(super) per_client: PerClient,
    pub(super) origin_check: OriginCheck,
    pub(super) stop: CancellationToken,
}

/// A stream error code of the mapping, as HTTP/3 carries it (§5.1); browsers read it back as
/// the WebTransport code.
pub(super) fn app_code(value: u32) -> quinn::VarInt {
    h3_code(weir_codec::webtransport::to_http3(value))
}

/// An HTTP/3 error code.
pub(super) fn h3_code(value: u64) -> quinn::VarInt {
    quinn::VarInt::from_u64(value).unwrap_or(quinn::VarInt::MAX)
}

/// `CLOSE_WEBTRANSPORT_SESSION`'s reason when the server stops (§2.4).
const SHUTTING_DOWN: &str = "shutting down";
/// `DRAIN_WEBTRANSPORT_SESSION` (§2.4).
const DRAIN_CAPSULE: u32 = 0x78ae;
/// How long a closing server waits for the client to close the connection (§2.4).
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// Largest SETTINGS frame read from a client.
const MAX_SETTINGS: u64 = 16 * 1024;

/// Sessions per client address (§6), shared by a listener's sessions.
#[derive(Clone, Default)]
pub(super) struct PerClient(
    Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
);

impl PerClient {
    /// A slot for one more session from `client`, unless it has `limit` already.
    fn take(&self, client: std::net::IpAddr, limit: usize) -> Option<ClientSlot> {
        let mut counts = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = counts.entry(client).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            per_client: self.clone(),
            client,
        })
    }
}

/// One session's place in [`PerClient`], given back when dropped.
struct ClientSlot {
    per_client: PerClient,
    client: std::net::IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut counts = self
            .per_client
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

/// How the session ended.
enum Ended {
    /// The client closed it (a capsule, or FIN of the CONNECT stream).
    ByClient(Option<(u32, String)>),
    /// The server is stopping.
    Shutdown,
    /// The connection is gone.
    Lost,
}

impl<S> Session<S>
where
    S: Service<Request<StreamBody>, Response = Response<ResponseBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
{
    /// Establishes the session (§2.1, §2.2), then serves its calls until it ends (§2.4).
    pub(super) async fn run(self, incoming: quinn::Incoming) {
        // The session limit holds from the first packet: a client that completes QUIC
        // handshakes and never asks for a session still takes a slot, so it cannot pile up
        // connections beyond the limit.
        let Ok(_permit) = self.sessions.clone().try_acquire_owned() else {
            tracing::warn!("refused a WebTransport connection: at the session limit");
            incoming.refuse();
            return;
        };
        let client = incoming.remote_address().ip();
        let Some(_client_slot) = self
            .per_client
            .take(client, self.config.max_sessions_per_client)
        else {
            tracing::warn!(%client, "refused a WebTransport connection: the client is at its session limit");
            incoming.refuse();
            return;
        };
        let limit = self.config.header_timeout;
        let connecting = match incoming.accept() {
            Ok(connecting) => connecting,
            Err(e) => {
                tracing::debug!("WebTransport connection failed: {e}");
                return;
            }
        };
        let conn = match tokio::time::timeout(limit, connecting).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                tracing::debug!("WebTransport handshake failed: {e}");
                return;
            }
            Err(_) => {
                tracing::info!(?limit, "WebTransport handshake did not complete in time");
                return;
            }
        };
        // Our control stream lives as long as the connection: ending it would be a
        // connection error for the client.
        let _control = match open_control_stream(&conn).await {
            Ok(control) => control,
            Err(e) => {
                tracing::debug!("WebTransport connection failed before SETTINGS: {e}");
                return;
            }
        };
        let mut streams = JoinSet::new();
        streams.spawn(unidirectional_streams(conn.clone()));

        let (mut connect_send, connect_recv, request) =
            match tokio::time::timeout(limit, conn.accept_bi()).await {
                Err(_) => {
                    tracing::info!(
                        ?limit,
                        "WebTransport connection sent no session request in time"
                    );
                    conn.close(h3_code(http3::NO_ERROR), b"no session request");
                    return;
                }
                Ok(Err(e)) => {
                    tracing::debug!("WebTransport connection ended before a session request: {e}");
                    return;
                }
                Ok(Ok((send, mut recv))) => {
                    match tokio::time::timeout(limit, ConnectRequest::read(&mut recv)).await {
                        Ok(Ok(request)) => (send, recv, Ok(request)),
                        Ok(Err(e)) => (send, recv, Err(e.to_string())),
                        Err(_) => (send, recv, Err("incomplete".to_owned())),
                    }
                }
            };
        let judged = match request {
            Ok(request) => self.judge(&request),
            Err(e) => {
                tracing::info!("refused a malformed WebTransport session request: {e}");
                Err(StatusCode::BAD_REQUEST)
            }
        };
        let version = match judged {
            Ok(version) => version,
            Err(status) => {
                // Not read further: stopped with an HTTP/3 code when let go.
                let _request = ConnectRecv(connect_recv);
                refuse(&conn, connect_send, status, limit).await;
                return;
            }
        };
        if let Err(e) = ConnectResponse::OK.write(&mut connect_send).await {
            tracing::debug!("WebTransport session failed to open: {e}");
            return;
        }
        let session_id = u64::from(connect_send.id());
        let peer = Peer(conn.remote_address());

        let mut client_close = std::pin::pin!(read_close(connect_recv));
        let mut calls = JoinSet::new();
        // Once shutdown began with a grace period: when it ends.
        let mut draining: Option<Instant> = None;
        let ended = loop {
            tokio::select! {
                stream = conn.accept_bi() => match stream {
                    Ok((mut send, mut recv)) if draining.is_some() => {
                        // Not started: the client may retry elsewhere (§5.1).
                        let _ = send.reset(app_code(codes::REFUSED));
                        let _ = recv.stop(app_code(codes::REFUSED));
                    }
                    Ok((send, recv)) => {
                        calls.spawn(call::call(call::CallStreams {
                            send,
                            recv,
                            session_id,
                            version,
                        }, self.service.clone(), self.config.clone(), peer));
                    }
                    Err(e) => {
                        tracing::debug!("WebTransport session ended: {e}");
                        break Ended::Lost;
                    }
                },
                close = &mut client_close => break Ended::ByClient(close),
                () = self.stop.cancelled(), if draining.is_none() => {
                    let _ = connect_send.write_all(&capsule_frame(&Capsule::Unknown {
                        typ: VarInt::from_u32(DRAIN_CAPSULE),
                        payload: bytes::Bytes::new(),
                    })).await;
                    if self.config.shutdown_grace.is_zero() || calls.is_empty() {
                        break Ended::Shutdown;
                    }
                    draining = Some(Instant::now() + self.config.shutdown_grace);
                }
                () = until_instant(draining) => {
                    tracing::info!("WebTransport session closed at the end of the grace period");
                    break Ended::Shutdown;
                }
                Some(_) = calls.join_next(), if !calls.is_empty() => {
                    if draining.is_some() && calls.is_empty() {
                        break Ended::Shutdown;
                    }
                }
            }
        };
        if let Ended::Shutdown = ended {
            // The capsule first, so that the client learns why before its calls are reset.
            let close = capsule_frame(&Capsule::CloseWebTransportSession {
                code: 0,
                reason: SHUTTING_DOWN.to_owned(),
            });
            let _ = tokio::time::timeout(CLOSE_WAIT, connect_send.write_all(&close)).await;
        }
        let _ = connect_send.finish();
        // The session is gone: every call still running is cancelled, which drops its
        // backend stream (an upstream sees RST_STREAM(CANCEL)) and resets its stream with
        // WT_SESSION_GONE.
        calls.abort_all();
        while calls.join_next().await.is_some() {}
        match ended {
            Ended::Shutdown => {
                let _ = tokio::time::timeout(CLOSE_WAIT, conn.closed()).await;
                conn.close(h3_code(http3::NO_ERROR), SHUTTING_DOWN.as_bytes());
            }
            Ended::ByClient(close) => {
                tracing::debug!(?close, "WebTransport session closed by the client");
                let _ = tokio::time::timeout(limit, conn.closed()).await;
                conn.close(h3_code(http3::NO_ERROR), b"");
            }
            Ended::Lost => {}
        }
        streams.abort_all();
    }

    /// Judges a session request (§2.2): the version it asks for, or why it is refused.
    fn judge(&self, request: &ConnectRequest) -> Result<Version, StatusCode> {
        let url = &request.url;
        if url.path() != self.config.path {
            tracing::info!(
                path = url.path(),
                "refused WebTransport session for an unknown path"
            );
            return Err(StatusCode::NOT_FOUND);
        }
        let Some(version) = Version::from_query(url.query().unwrap_or("")) else {
            tracing::info!(
                query = url.query(),
                "refused WebTransport session for an unsupported protocol version"
            );
            return Err(StatusCode::NOT_FOUND);
        };
        let origin = request
            .headers
            .get(http::header::ORIGIN)
            .map(|o| o.to_str());
        let origin = match origin {
            Some(Ok(origin)) => Some(origin),
            Some(Err(_)) => return Err(StatusCode::FORBIDDEN),
            None => None,
        };
        let host = url.host_str().unwrap_or("");
        if !self.origin_check.allows(origin, host, url.port()) {
            tracing::info!(
                ?origin,
                "refused WebTransport session from an origin that is not allowed"
            );
            return Err(StatusCode::FORBIDDEN);
        }
        Ok(version)
    }
}

/// Answers a refused session request and ends the connection once the client closed it, or
/// after `limit` (§2.2).
async fn refuse(
    conn: &quinn::Connection,
    mut send: quinn::SendStream,
    status: StatusCode,
    limit: Duration,
) {
    if tokio::time::timeout(limit, ConnectResponse::new(status).write(&mut send))
        .await
        .is_ok_and(|written| written.is_ok())
    {
        let _ = send.finish();
        let _ = tokio::time::timeout(limit, conn.closed()).await;
    }
    conn.close(h3_code(http3::NO_ERROR), b"");
}

/// Opens the server's HTTP/3 control stream with its SETTINGS (§2.1).
async fn open_control_stream(conn: &quinn::Connection) -> Result<quinn::SendStream, BoxError> {
    let mut settings = web_transport_proto::Settings::default();
    // One session per connection.
    settings.enable_webtransport(1);
    let mut bytes = BytesMut::new();
    settings.encode(&mut bytes);
    let mut send = conn.open_uni().await?;
    send.write_all(&bytes).await?;
    Ok(send)
}

/// Serves the client's unidirectional streams (§2.1): reads SETTINGS from its control
/// stream, drains its QPACK streams, and stops the streams this mapping does not use.
async fn unidirectional_streams(conn: quinn::Connection) {
    let mut streams = JoinSet::new();
    loop {
        tokio::select! {
            stream = conn.accept_uni() => match stream {
                Ok(recv) => { streams.spawn(unidirectional(conn.clone(), recv)); }
                Err(_) => return,
            },
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
        }
    }
}

async fn unidirectional(conn: quinn::Connection, mut recv: quinn::RecvStream) {
    let Ok(kind) = VarInt::read(&mut recv).await else {
        return;
    };
    match StreamUni(kind) {
        StreamUni::CONTROL => {
            match read_settings(&mut recv).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::info!("WebTransport client's SETTINGS do not enable HTTP/3 datagrams");
                    conn.close(
                        h3_code(http3::SETTINGS_ERROR),
                        b"SETTINGS_H3_DATAGRAM missing",
                    );
                    return;
                }
                Err(e) => {
                    tracing::debug!("WebTransport client's control stream: {e}");
                    conn.close(h3_code(http3::SETTINGS_ERROR), b"malformed SETTINGS");
                    return;
                }
            }
            drain(recv).await;
        }
        StreamUni::QPACK_ENCODER | StreamUni::QPACK_DECODER => drain(recv).await,
        StreamUni::WEBTRANSPORT => {
            let _ = recv.stop(app_code(codes::PROTOCOL_ERROR));
        }
        _ => {
            let _ = recv.stop(h3_code(http3::STREAM_CREATION_ERROR));
        }
    }
}

/// Reads the SETTINGS frame that starts a control stream; whether it enables HTTP/3
/// datagrams, which WebTransport needs.
async fn read_settings(recv: &mut quinn::RecvStream) -> Result<bool, BoxError> {
    let frame = VarInt::read(recv)
        .await
        .map_err(|_| "ended before SETTINGS")?;
    if Frame(frame) != Frame::SETTINGS {
        return Err("the first frame is not SETTINGS".into());
    }
    let len = VarInt::read(recv)
        .await
        .map_err(|_| "ended inside SETTINGS")?;
    if len.into_inner() > MAX_SETTINGS {
        return Err("SETTINGS too large".into());
    }
    let mut payload = vec![0; usize::try_from(len.into_inner())?];
    recv.read_exact(&mut payload).await?;
    let mut rest = payload.as_slice();
    let mut datagrams = false;
    while !rest.is_empty() {
        let id = VarInt::decode(&mut rest).map_err(|_| "malformed SETTINGS")?;
        let value = VarInt::decode(&mut rest).map_err(|_| "malformed SETTINGS")?;
        let id = web_transport_proto::Setting(id);
        if (id == web_transport_proto::Setting::ENABLE_DATAGRAM
            || id == web_transport_proto::Setting::ENABLE_DATAGRAM_DEPRECATED)
            && value.into_inner() == 1
        {
            datagrams = true;
        }
    }
    Ok(datagrams)
}

/// Reads and discards a stream to its end, in bounded memory.
async fn drain(mut recv: quinn::RecvStream) {
    let mut scratch = [0u8; 1024];
    while let Ok(Some(_)) = recv.read(&mut scratch).await {}
}

/// Waits for the client to close the session on its CONNECT stream (§2.4): the capsule's
/// code and reason, or `None` for a FIN or a broken stream. After a capsule the stream is
/// read to its FIN, which the client sends next.
async fn read_close(recv: quinn::RecvStream) -> Option<(u32, String)> {
    let mut recv = ConnectRecv(recv);
    let close = {
        let mut reader = web_transport_proto::Http3CapsuleReader::new(&mut recv.0);
        loop {
            match reader.read().await {
                Ok(Some(Capsule::CloseWebTransportSession { code, reason })) => {
                    break Some((code, reason));
                }
                Ok(Some(_)) => {}
                Ok(None) => break None,
                Err(e) => {
                    tracing::debug!("WebTransport CONNECT stream: {e}");
                    break None;
                }
            }
        }
    };
    if close.is_some() {
        let mut scratch = [0u8; 256];
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while let Ok(Some(_)) = recv.0.read(&mut scratch).await {}
        })
        .await;
    }
    close
}

/// The receiving side of the CONNECT stream. If it has to be let go before its FIN, it is
/// stopped with `H3_NO_ERROR`, an HTTP/3 code, rather than QUIC's default 0.
struct ConnectRecv(quinn::RecvStream);

impl Drop for ConnectRecv {
    fn drop(&mut self) {
        let _ = self.0.stop(h3_code(http3::NO_ERROR));
    }
}

/// A capsule as it travels on the CONNECT stream: in an HTTP/3 DATA frame (RFC 9297 §3.2).
fn capsule_frame(capsule: &Capsule) -> Vec<u8> {
    let mut payload = BytesMut::new();
    capsule.encode(&mut payload);
    let mut frame = BytesMut::new();
    Frame::DATA.encode(&mut frame);
    VarInt::from_u32(u32::try_from(payload.len()).unwrap_or(u32::MAX)).encode(&mut frame);
    frame.put_slice(&payload);
    frame.to_vec()
}

async fn until_instant(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
