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

/// The status for a connection that could not be made (refused, no such host, TLS handshake
/// failed): `UNAVAILABLE`, saying so with the server's address and the root cause, such as
/// "cannot connect to 127.0.0.1:1: Connection refused (os error 111)".
pub(crate) fn connect_failed(error: &(dyn std::error::Error + 'static), authority: &str) -> Status {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    Status::new(
        Code::Unavailable,
        format!("cannot connect to {authority}: {cause}"),
    )
}
