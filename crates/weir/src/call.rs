//! Pieces shared by every front door's calls: the failure slot and frame splicing.

use std::sync::{Arc, Mutex, PoisonError};

use crate::Status;

/// The first failure of a call that the layer itself detected (for example an oversize
/// request message), which overrides whatever status the inner service reports once it sees
/// the broken request body: the layer knows the precise reason, the service only saw an
/// error from its body.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallFailure(Arc<Mutex<Option<Status>>>);

impl CallFailure {
    pub(crate) fn set(&self, status: Status) {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(status);
        }
    }

    pub(crate) fn get(&self) -> Option<Status> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Whole frames taken out of a [`weir_codec::frame::FrameDecoder`] in one go, joined into one
/// chunk. A single frame is passed on as the slice it arrived in, without copying.
#[derive(Debug, Default)]
pub(crate) struct Spliced {
    first: Option<bytes::Bytes>,
    joined: Option<bytes::BytesMut>,
}

impl Spliced {
    pub(crate) fn push(&mut self, wire: bytes::Bytes) {
        if let Some(joined) = &mut self.joined {
            joined.extend_from_slice(&wire);
        } else if let Some(first) = self.first.take() {
            let mut joined = bytes::BytesMut::with_capacity(first.len() + wire.len());
            joined.extend_from_slice(&first);
            joined.extend_from_slice(&wire);
            self.joined = Some(joined);
        } else {
            self.first = Some(wire);
        }
    }

    pub(crate) fn into_bytes(self) -> Option<bytes::Bytes> {
        self.joined.map(bytes::BytesMut::freeze).or(self.first)
    }
}

/// Where a request body goes when the service drops it unread, so that the front door can
/// still drain it (see [`linger`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct Leftover(Arc<Mutex<Option<crate::body::BoxBody>>>);

impl Leftover {
    pub(crate) fn put(&self, body: crate::body::BoxBody) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(body);
    }

    pub(crate) fn take(&self) -> Option<crate::body::BoxBody> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// Most bytes of an unread HTTP/1.1 request body read and discarded before answering.
const LINGER_BYTES: usize = 1024 * 1024;
/// Longest wait for them.
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// Reads and discards what is left of an HTTP/1.1 request body, within bounds, before an
/// answer that did not need it goes out.
///
/// HTTP/1.1 cannot tell where an unread body ends, so hyper closes the connection after such
/// an answer; a client still writing its body then fails with EPIPE instead of reading the
/// status (seen with Node's HTTP/1.1 client on "upstream unavailable" answers). Reading the
/// rest first, as servers' "lingering close" does, lets the client see the status.
pub(crate) async fn linger<B>(body: B)
where
    B: http_body::Body + Unpin,
{
    use http_body_util::BodyExt as _;
    let mut body = body;
    let mut read = 0usize;
    let drain = async {
        while read < LINGER_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        read += bytes::Buf::remaining(data);
                    }
                }
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

/// A request body that failed because the client gave up.
///
/// Forwarded upstream, it makes hyper reset the upstream stream with `INTERNAL_ERROR`, not
/// `CANCEL`: tonic reads a `CANCEL` reset of a request stream as its clean end, so an aborted
/// upload would look complete to the handler. The proxy recognises this error to report the
/// call as cancelled rather than failed.
#[derive(Debug)]
pub(crate) struct Abandoned {
    status: Status,
}

impl std::fmt::Display for Abandoned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.status.fmt(f)
    }
}

impl std::error::Error for Abandoned {}

/// The error a request body returns for `status`: a client that gave up is [`Abandoned`].
pub(crate) fn request_body_error(status: Status) -> crate::body::BoxError {
    if status.code() == weir_codec::Code::Cancelled {
        Box::new(Abandoned { status })
    } else {
        Box::new(status)
    }
}
