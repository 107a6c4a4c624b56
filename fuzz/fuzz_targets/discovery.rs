//! WebTransport discovery documents of any text: parsing never panics, and a document that
//! parses writes back to JSON that parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_codec::webtransport::Discovery;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(doc) = Discovery::from_json(json) {
        for hash in &doc.certificate_hashes {
            assert!(hash.bytes().is_some());
        }
        assert_eq!(Discovery::from_json(&doc.to_json()), Ok(doc));
    }
});
