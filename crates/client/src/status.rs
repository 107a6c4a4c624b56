//! The outcome of a call: [`Status`], the codec's type that weir's servers use too, and the
//! status of a failed HTTP exchange.

use weir_codec::Code;

pub use weir_codec::Status;

/// The status for a failure of the HTTP exchange itself.
pub(crate) fn from_transport(error: &(dyn std::error::Error + 'static), context: &str) -> Status {
    match Code::from_h2_error(error) {
        Some(code) => Status::new(code, format!("{context}: stream failed: {error}")),
        // The connection failed: the call may be retried.
        None => Status::new(Code::Unavailable, format!("{context}: {error}")),
    }
}
