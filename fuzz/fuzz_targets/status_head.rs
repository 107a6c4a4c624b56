//! What a client reads a call's outcome from, for any header or trailer block (as the
//! trailer-block parser reads it), any HTTP status and any stream error code: the status in a
//! block (`Status::from_headers`, `grpc_web::trailer_status`), the classification of a
//! gRPC-Web response head (`ResponseHead::classify`), and the status of a WebTransport stream
//! reset (`status_for_stream_code`). No panic; a status read from a block writes back to a
//! block that reads the same; a trailers-only head carries the block's status; a head with a
//! body is an HTTP 200 gRPC-Web one; a code inside WebTransport's range maps back and forth.
//!
//! Input: the HTTP status (two bytes), a stream error code (eight bytes), the block.
#![no_main]

use http::StatusCode;
use http::header::CONTENT_TYPE;
use libfuzzer_sys::fuzz_target;
use weir_codec::content_type::{ContentType, Protocol};
use weir_codec::grpc_web::{Mode, ResponseHead, trailer_status};
use weir_codec::webtransport::{FIRST_HTTP3_CODE, LAST_HTTP3_CODE, from_http3, to_http3};
use weir_codec::webtransport::{status_for_app_code, status_for_stream_code};
use weir_codec::{Code, Status, trailers};

fuzz_target!(|input: (u16, u64, &[u8])| {
    let (http_status, code, block) = input;

    // Stream error codes: half of them inside the WebTransport range.
    let code = if code & 1 == 0 {
        code
    } else {
        FIRST_HTTP3_CODE + (code >> 1) % (LAST_HTTP3_CODE - FIRST_HTTP3_CODE + 1)
    };
    let _ = status_for_stream_code(code);
    if let Some(app) = from_http3(code) {
        assert_eq!(to_http3(app), code);
        assert_eq!(status_for_app_code(Some(app)), status_for_stream_code(code));
    }
    let app = code as u32;
    assert_eq!(from_http3(to_http3(app)), Some(app));
    let _ = Code::from_h2_reset(app);
    let _ = Code::from_http_status(http_status);

    let Ok(block) = trailers::decode(block) else {
        return;
    };
    let status = Status::from_headers(&block);
    if let Some(status) = &status {
        assert_eq!(
            Status::from_headers(&status.to_headers()).as_ref(),
            Some(status)
        );
        let _ = status.to_string();
        let _ = format!("{status:?}");
        assert_eq!(&trailer_status(&block), status);
    } else {
        assert_eq!(trailer_status(&block).code(), Code::Internal);
    }

    let http_status = StatusCode::from_u16(http_status).unwrap_or(StatusCode::OK);
    match ResponseHead::classify(http_status, &block) {
        ResponseHead::TrailersOnly(s) => assert_eq!(Some(s), status),
        ResponseHead::Body(mode) => {
            assert_eq!(http_status, StatusCode::OK);
            assert!(status.is_none());
            let ct = block
                .get(CONTENT_TYPE)
                .and_then(ContentType::from_header)
                .expect("a body needs a gRPC-Web content type");
            assert_ne!(ct.protocol(), Protocol::Grpc);
            assert_eq!(mode == Mode::Text, ct.is_text());
        }
        ResponseHead::Failed(s) => assert!(!s.is_ok()),
    }
});
