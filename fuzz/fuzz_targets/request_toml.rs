//! Parses arbitrary text as a recovery request file
//! (`RecoveryRequest::from_toml`): what parses validates.

#![forbid(unsafe_code)]
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkm_proto::recovery_request::RecoveryRequest;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(request) = RecoveryRequest::from_toml(text) {
        request.validate().unwrap();
    }
});
