//! Reads and verifies arbitrary bytes as an audit file (`AuditFileReader`,
//! `verify_reopening`, `diagnose_range`) with the fixture's audit key: no
//! panic; nothing with entries verifies, since the key signs no checkpoint
//! here.

#![forbid(unsafe_code)]
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkm_proto::audit_file::{AuditFileReader, diagnose_range, verify_reopening};
use rkm_proto_fuzz::fixture;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut reader) = AuditFileReader::new(data) {
        while let Ok(Some(_)) = reader.next_record() {}
    }
    let key = &fixture().audit_key;
    if let Ok(summary) = verify_reopening(|| Ok(data), key, "rkm.example/test-log", |_| {}) {
        panic!(
            "an unsigned audit file verified: {} entries",
            summary.entries
        );
    }
    let _ = diagnose_range(data, 0, u64::MAX);
});
