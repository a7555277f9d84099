//! Parses arbitrary text as a signed key record file
//! (`SignedKeyRecord::from_file`) and verifies it with the fixture's audit
//! key: what parses round-trips through `to_file`; only the fixture's own
//! record could verify, and an input that is not it must not.

#![forbid(unsafe_code)]
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkm_proto::key_record::SignedKeyRecord;
use rkm_proto_fuzz::fixture;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(signed) = SignedKeyRecord::from_file(text) else {
        return;
    };
    assert_eq!(
        SignedKeyRecord::from_file(&signed.to_file()),
        Ok(signed.clone())
    );
    if let Ok(record) = signed.verify(&fixture().audit_key) {
        // The fixture never signs a key record, so nothing may verify
        // unless the fuzzer forged an Ed25519 signature.
        panic!("an unsigned key record verified: {record:?}");
    }
});
