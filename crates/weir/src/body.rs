//! The body type at weir's edges.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt as _;
use http_body_util::combinators::UnsyncBoxBody;

/// The error type of weir's bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A type-erased body, as weir hands requests to inner services and responses to servers.
///
/// A named type rather than an alias, so that service bounds naming it stay simple for the
/// compiler's `Send` analysis of futures.
pub struct BoxBody(UnsyncBoxBody<Bytes, BoxError>);

impl BoxBody {
    /// Boxes any body with `Bytes` data. A body that already is a [`BoxBody`] is returned as
    /// it is, not boxed again: layers that each erase their body type pay for one box, not
    /// one per layer.
    pub fn new<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        match already_boxed(body) {
            Ok(boxed) => boxed,
            Err(body) => BoxBody(body.map_err(Into::into).boxed_unsync()),
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        BoxBody::new(http_body_util::Empty::<Bytes>::new())
    }

    /// A body of one chunk.
    pub fn full(data: impl Into<Bytes>) -> Self {
        BoxBody::new(http_body_util::Full::new(data.into()))
    }
}

/// `body` itself when it is a [`BoxBody`] (found by downcasting, as `B` is `'static`).
fn already_boxed<B: 'static>(body: B) -> Result<BoxBody, B> {
    let mut slot = Some(body);
    if let Some(boxed) = (&mut slot as &mut dyn std::any::Any)
        .downcast_mut::<Option<BoxBody>>()
        .and_then(Option::take)
    {
        return Ok(boxed);
    }
    // The slot is only emptied by a successful downcast, which returned above.
    slot.map_or_else(|| Ok(BoxBody::empty()), Err)
}

impl Default for BoxBody {
    fn default() -> Self {
        BoxBody::empty()
    }
}

impl std::fmt::Debug for BoxBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BoxBody")
    }
}

impl http_body::Body for BoxBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

/// Boxes any body with `Bytes` data.
pub fn boxed<B>(body: B) -> BoxBody
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    BoxBody::new(body)
}

/// An empty body.
pub fn empty() -> BoxBody {
    BoxBody::empty()
}

/// A body of one chunk.
pub fn full(data: impl Into<Bytes>) -> BoxBody {
    BoxBody::full(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;

    #[test]
    fn a_box_is_not_boxed_again() {
        assert!(already_boxed(BoxBody::full("abc")).is_ok());
        assert!(already_boxed(http_body_util::Full::new(Bytes::from_static(b"abc"))).is_err());
        assert_eq!(
            BoxBody::new(BoxBody::full("abc")).size_hint().exact(),
            Some(3)
        );
    }
}
