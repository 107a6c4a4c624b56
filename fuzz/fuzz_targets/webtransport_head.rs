//! WebTransport request header blocks of any bytes: decoding never panics, and a block that
//! decodes re-encodes to a frame that decodes to the same head.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_codec::frame::HEADER_LEN;
use weir_codec::webtransport::RequestHead;

fuzz_target!(|data: &[u8]| {
    match RequestHead::decode(data) {
        Ok(head) => {
            let frame = head.encode();
            assert_eq!(frame[0], 0x80);
            let len = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
            assert_eq!(len, frame.len() - HEADER_LEN);
            assert_eq!(
                RequestHead::decode(&frame[HEADER_LEN..]).as_ref(),
                Ok(&head)
            );
            assert_eq!(
                RequestHead::new(head.path(), head.headers().clone()).as_ref(),
                Ok(&head)
            );
        }
        Err(e) => {
            let _ = e.to_status();
        }
    }
});
