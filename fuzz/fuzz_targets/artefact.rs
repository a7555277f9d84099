//! Verifies arbitrary bytes as an artefact bundle
//! (`verify_artefact_on_threads`) against the fixture's key record and audit
//! key, and digests its header lines: no panic; nothing verifies, since the
//! fixture's keys sign no bundle here.

#![forbid(unsafe_code)]
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkm_proto::artefact::{header_lines_digest, verify_artefact_on_threads};
use rkm_proto_fuzz::fixture;

fuzz_target!(|data: &[u8]| {
    let fix = fixture();
    let _ = header_lines_digest(data);
    if let Ok(summary) = verify_artefact_on_threads(data, &fix.record, &fix.audit_key, 1, |_| {}) {
        panic!("an unsigned bundle verified: {summary:?}");
    }
});
