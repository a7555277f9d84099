//! Parses arbitrary bytes as the recovery key's SubjectPublicKeyInfo
//! (`CommandVerifier::from_spki`) and checks an arbitrary signature with it:
//! no panic.

#![forbid(unsafe_code)]
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkm_proto::command::{CommandVerifier, normalize_signature};

fuzz_target!(|data: &[u8]| {
    let (sig, spki) = data.split_at(data.len().min(64));
    if let Ok(sig) = <[u8; 64]>::try_from(sig) {
        if let Ok(low) = normalize_signature(&sig) {
            assert_eq!(normalize_signature(&low), Ok(low));
        }
        if let Ok(verifier) = CommandVerifier::from_spki(spki) {
            let _ = verifier.verify_command(&[0; 32], 0, "d", &sig);
        }
    }
});
