//! The header-value parsers never panic: trailer blocks, timeouts, content types, statuses,
//! percent-decoding; and what parses re-encodes to something that parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_codec::{Code, content_type::ContentType, status, timeout, trailers};

fuzz_target!(|data: &[u8]| {
    if let Ok(map) = trailers::decode(data) {
        assert_eq!(trailers::decode(&trailers::encode(&map)).ok(), Some(map));
    }
    if let Ok(duration) = timeout::parse(data) {
        assert!(timeout::parse(timeout::format(duration).as_bytes()).is_ok());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(ct) = ContentType::parse(text) {
            assert_eq!(ContentType::from_header(&ct.to_header_value()), Some(ct));
        }
        assert_eq!(
            status::decode_message(status::encode_message(text).as_bytes()),
            text
        );
    }
    let _ = Code::from_header(data);
    let _ = status::decode_message(data);
});
