//! Decodes arbitrary bytes as an artefact header (`ArtefactHeader::decode`,
//! with its approvals, audit proof and canonical request) and verifies it
//! against the fixture: what decodes is its own encoding; nothing verifies.

#![forbid(unsafe_code)]
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkm_proto::artefact::ArtefactHeader;
use rkm_proto_fuzz::fixture;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = ArtefactHeader::decode(data) else {
        return;
    };
    assert_eq!(header.encode(), data);
    let fix = fixture();
    if header.verify(&fix.record, &fix.audit_key).is_ok() {
        panic!("an unsigned header verified");
    }
});
