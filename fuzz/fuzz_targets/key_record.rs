//! Decodes arbitrary bytes as a key record (`KeyRecord::decode`): what
//! decodes is exactly its own canonical encoding.

#![forbid(unsafe_code)]
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkm_proto::key_record::KeyRecord;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = KeyRecord::decode(data) {
        assert_eq!(record.encode(), data);
        record.validate().unwrap();
    }
});
