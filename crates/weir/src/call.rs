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
