//! `grpc-timeout`: an ASCII integer of at most 8 digits followed by a unit
//! (`H`ours, `M`inutes, `S`econds, `m`illiseconds, `u`microseconds, `n`anoseconds)
//! ([gRPC over HTTP/2][spec]).
//!
//! [spec]: https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md

use std::fmt;
use std::time::Duration;

/// Most digits a `grpc-timeout` value may have.
pub const MAX_DIGITS: usize = 8;
const MAX_VALUE: u64 = 99_999_999;

/// The header value is not a valid `grpc-timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeoutError(String);

impl fmt::Display for TimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid grpc-timeout {:?}: expected 1 to {MAX_DIGITS} digits and a unit of H, M, S, m, u or n",
            self.0
        )
    }
}

impl std::error::Error for TimeoutError {}

/// Parses a `grpc-timeout` value.
pub fn parse(value: &[u8]) -> Result<Duration, TimeoutError> {
    let err = || TimeoutError(String::from_utf8_lossy(value).into_owned());
    let (&unit, digits) = value.split_last().ok_or_else(err)?;
    if digits.is_empty() || digits.len() > MAX_DIGITS || !digits.iter().all(u8::is_ascii_digit) {
        return Err(err());
    }
    let n = digits
        .iter()
        .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
    Ok(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return Err(err()),
    })
}

/// Formats a duration as a `grpc-timeout` value, in the finest unit that fits 8 digits.
///
/// Finer units are rounded up so that the receiver never sees a shorter deadline than meant;
/// durations beyond the range of hours are capped at `99999999H`.
pub fn format(timeout: Duration) -> String {
    let nanos = timeout.as_nanos();
    let units: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    for (scale, unit) in units {
        let value = nanos.div_ceil(scale);
        if value <= u128::from(MAX_VALUE) {
            return format!("{value}{unit}");
        }
    }
    format!("{MAX_VALUE}H")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse(b"2H"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse(b"3M"), Ok(Duration::from_secs(180)));
        assert_eq!(parse(b"10S"), Ok(Duration::from_secs(10)));
        assert_eq!(parse(b"250m"), Ok(Duration::from_millis(250)));
        assert_eq!(parse(b"7u"), Ok(Duration::from_micros(7)));
        assert_eq!(parse(b"99999999n"), Ok(Duration::from_nanos(99_999_999)));
        assert_eq!(parse(b"0m"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_invalid() {
        for bad in [
            &b""[..],
            b"m",
            b"100",
            b"123456789S",
            b"-1S",
            b"1s",
            b"1 S",
            b"1.5S",
            b"\xffS",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn formats_in_finest_unit() {
        assert_eq!(format(Duration::from_millis(1500)), "1500000u");
        assert_eq!(format(Duration::from_nanos(5)), "5n");
        assert_eq!(format(Duration::from_secs(86_400 * 365)), "31536000S");
        assert_eq!(format(Duration::from_secs(86_400 * 3650)), "5256000M");
        assert_eq!(format(Duration::MAX), "99999999H");
    }

    proptest! {
        #[test]
        fn round_trip_never_shortens(nanos in any::<u64>()) {
            let d = Duration::from_nanos(nanos);
            let text = format(d);
            let back = parse(text.as_bytes()).unwrap();
            prop_assert!(back >= d);
            prop_assert!(text.len() <= MAX_DIGITS + 1);
        }
    }
}
