//! Opens arbitrary bytes as a share envelope (`envelope::open`) with a
//! fixture custodian's identity: no panic; anything that opens is checked
//! against the key record without panicking.

#![forbid(unsafe_code)]
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkm_proto::envelope::open;
use rkm_proto_fuzz::fixture;

fuzz_target!(|data: &[u8]| {
    let fix = fixture();
    if let Ok(contents) = open(data, fix.identities[0].age_identity()) {
        let _ = contents.verify_against_record(&fix.record, &fix.identities[0].card());
    }
});
