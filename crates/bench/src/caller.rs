//! One way of calling the TestService: gRPC-Web through weir-client, gRPC over WebTransport
//! through its WebTransport client (one session, calls multiplexed on it), or native gRPC
//! through tonic. All exchange raw message bytes, so no side pays for protobuf decoding.

use std::time::Duration;

use bytes::{Buf as _, BufMut as _, Bytes};
use http::uri::PathAndQuery;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use weir_client::webtransport::{Call, WebTransportClient};
use weir_client::{CallOptions, HttpVersion};

pub const UNARY: &str = "/grpc.testing.TestService/UnaryCall";
pub const STREAM: &str = "/grpc.testing.TestService/StreamingOutputCall";

/// A tonic codec that passes message bytes through untouched.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// A client of one contender, over one HTTP version.
#[derive(Clone)]
pub enum Caller {
    Web(weir_client::Client),
    WebTransport(WebTransportClient),
    Native(tonic::client::Grpc<Channel>),
}

/// An open server stream.
pub enum Stream {
    Web(weir_client::Streaming),
    WebTransport(Call),
    Native(tonic::codec::Streaming<Bytes>),
}

impl Caller {
    pub async fn web(url: &str, version: HttpVersion) -> Result<Caller, String> {
        weir_client::Client::builder(url)
            .http_version(version)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map(Caller::Web)
            .map_err(|e| e.to_string())
    }

    /// One WebTransport session to `url`, trusting the development certificate `hashes`.
    pub async fn webtransport(url: &str, hashes: &[[u8; 32]]) -> Result<Caller, String> {
        WebTransportClient::connect(url, hashes)
            .await
            .map(Caller::WebTransport)
            .map_err(|e| format!("{url}: {e}"))
    }

    pub async fn native(url: &str) -> Result<Caller, String> {
        let channel = Channel::from_shared(url.to_owned())
            .map_err(|e| e.to_string())?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        Ok(Caller::Native(tonic::client::Grpc::new(channel)))
    }

    pub async fn unary(&self, message: Bytes) -> Result<Bytes, String> {
        match self {
            Caller::Web(client) => client
                .unary(UNARY, message, CallOptions::new())
                .await
                .map(weir_client::Response::into_message)
                .map_err(|e| e.to_string()),
            Caller::WebTransport(client) => client
                .unary(UNARY, http::HeaderMap::new(), message)
                .await
                .map_err(|e| e.to_string()),
            Caller::Native(grpc) => {
                let mut grpc = grpc.clone();
                grpc.ready().await.map_err(|e| e.to_string())?;
                grpc.unary(
                    tonic::Request::new(message),
                    PathAndQuery::from_static(UNARY),
                    RawCodec,
                )
                .await
                .map(tonic::Response::into_inner)
                .map_err(|e| e.to_string())
            }
        }
    }

    /// Starts a server stream; returns once the response headers arrived.
    pub async fn server_stream(&self, message: Bytes) -> Result<Stream, String> {
        match self {
            Caller::Web(client) => client
                .server_streaming(STREAM, message, CallOptions::new())
                .await
                .map(Stream::Web)
                .map_err(|e| e.to_string()),
            Caller::WebTransport(client) => {
                let mut call = client
                    .call(STREAM, http::HeaderMap::new())
                    .await
                    .map_err(|e| e.to_string())?;
                call.send(message).await.map_err(|e| e.to_string())?;
                call.finish();
                call.headers().await.map_err(|e| e.to_string())?;
                Ok(Stream::WebTransport(call))
            }
            Caller::Native(grpc) => {
                let mut grpc = grpc.clone();
                grpc.ready().await.map_err(|e| e.to_string())?;
                grpc.server_streaming(
                    tonic::Request::new(message),
                    PathAndQuery::from_static(STREAM),
                    RawCodec,
                )
                .await
                .map(|r| Stream::Native(r.into_inner()))
                .map_err(|e| e.to_string())
            }
        }
    }
}

impl Stream {
    pub async fn next(&mut self) -> Result<Option<Bytes>, String> {
        match self {
            Stream::Web(s) => s.message().await.map_err(|e| e.to_string()),
            Stream::WebTransport(call) => call.next_message().await.map_err(|e| e.to_string()),
            Stream::Native(s) => s.message().await.map_err(|e| e.to_string()),
        }
    }
}
