//! Decodes arbitrary bytes as an audit entry (`AuditEntry::decode`): what
//! decodes re-encodes to an entry that decodes the same.

#![forbid(unsafe_code)]
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkm_proto::audit_entry::AuditEntry;

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = AuditEntry::decode(data) {
        let encoded = entry.encode().unwrap();
        assert_eq!(AuditEntry::decode(&encoded), Ok(entry));
    }
});
