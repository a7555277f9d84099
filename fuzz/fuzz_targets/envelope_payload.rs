//! Seals arbitrary bytes with age as an envelope payload and opens it, so
//! the binary wire reader behind a valid age layer sees every shape: what
//! parses seals and opens back to the same contents.

#![forbid(unsafe_code)]
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkm_proto::envelope::{open, seal};
use rkm_proto_fuzz::fixture;

fuzz_target!(|data: &[u8]| {
    if data.len() > 1024 {
        return;
    }
    let identity = fixture().identities[0].age_identity();
    let sealed = age::encrypt(&identity.to_public(), data).unwrap();
    if let Ok(contents) = open(&sealed, identity) {
        let again = open(&seal(&contents, &identity.to_public()).unwrap(), identity).unwrap();
        assert_eq!(again.key_id, contents.key_id);
        assert_eq!(again.custodian, contents.custodian);
        assert_eq!(again.threshold, contents.threshold);
        assert_eq!(again.share.x(), contents.share.x());
        assert_eq!(again.share.expose_y(), contents.share.expose_y());
        assert_eq!(again.salt, contents.salt);
    }
});
