//! Decodes arbitrary bytes as a canonical request
//! (`CanonicalRequest::decode`): what decodes is its own encoding,
//! validates and describes itself.

#![forbid(unsafe_code)]
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkm_proto::recovery_request::CanonicalRequest;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = CanonicalRequest::decode(data) {
        assert_eq!(request.encode(), data);
        request.validate().unwrap();
        let _ = request.describe();
    }
});
