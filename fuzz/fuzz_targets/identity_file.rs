//! Opens arbitrary bytes as an identity file (`CustodianIdentity::decrypt`),
//! skipping inputs that state a scrypt work factor above
//! `MAX_FUZZ_LOG_N` (age would spend seconds and gigabytes on them by
//! design): no panic.

#![forbid(unsafe_code)]
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkm_proto::identity::CustodianIdentity;
use rkm_proto_fuzz::{MAX_FUZZ_LOG_N, passphrase, stated_work_factor};

fuzz_target!(|data: &[u8]| {
    if stated_work_factor(data).is_some_and(|n| n > MAX_FUZZ_LOG_N) {
        return;
    }
    if let Ok(identity) = CustodianIdentity::decrypt(data, &passphrase()) {
        identity.card().validate().unwrap();
    }
});
