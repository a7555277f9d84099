//! Parses arbitrary text as a C2SP verifier key (`VerifierKey::parse`): what
//! parses formats to a key that parses the same, spelled as the input but
//! for the case of the key id's hex digits.

#![forbid(unsafe_code)]
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkm_proto::checkpoint::VerifierKey;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(key) = VerifierKey::parse(text) {
        let formatted = key.to_string();
        assert_eq!(VerifierKey::parse(&formatted), Ok(key));
        assert!(formatted.eq_ignore_ascii_case(text));
    }
});
