//! Seals arbitrary bytes with age scrypt as an identity payload and opens
//! it with `CustodianIdentity::decrypt`: what parses re-encrypts and opens
//! to the same keys.

#![forbid(unsafe_code)]
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkm_proto::identity::CustodianIdentity;
use rkm_proto_fuzz::{LOG_N, passphrase};

fuzz_target!(|data: &[u8]| {
    if data.len() > 1024 {
        return;
    }
    let mut recipient = age::scrypt::Recipient::new(passphrase());
    recipient.set_work_factor(LOG_N);
    let file = age::encrypt(&recipient, data).unwrap();
    if let Ok(identity) = CustodianIdentity::decrypt(&file, &passphrase()) {
        let refile = identity
            .encrypt_with_work_factor(&passphrase(), LOG_N)
            .unwrap();
        let again = CustodianIdentity::decrypt(&refile, &passphrase()).unwrap();
        assert_eq!(again.card(), identity.card());
        assert_eq!(again.sign(b"m"), identity.sign(b"m"));
    }
});
