//! Splits arbitrary bytes as a target manifest (`ManifestSplitter`), the
//! first byte choosing the chunk size: the result never depends on the
//! chunking, and every id it yields is a valid device id.

#![forbid(unsafe_code)]
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkm_proto::recovery_request::validate_device_id;
use rkm_proto_fuzz::split_manifest;

fuzz_target!(|data: &[u8]| {
    let chunked = split_manifest(data);
    let mut whole = vec![u8::MAX];
    whole.extend_from_slice(data.get(1..).unwrap_or_default());
    if data.len() <= 256 {
        assert_eq!(chunked, split_manifest(&whole));
    }
    for id in chunked.iter().flatten() {
        validate_device_id(id).unwrap();
    }
});
