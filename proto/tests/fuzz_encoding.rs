//! Fuzz properties of the small shared parsers and checks that every record
//! leans on: RFC 3339 time (`unix_time_from_rfc3339`, `rfc3339_from_unix`),
//! the text rules (`check_shown_text`, `check_key_label`, `excerpt`), the
//! name and id rules (`validate_custodian_name`, `validate_device_id`), the
//! public key parsers (`parse_age_recipient`, `validate_ed25519_public_key`,
//! `CommandVerifier::from_spki`, `VerifierKey::parse`), the signature checks
//! (`normalize_signature`, `verify_digest`, `verify_custodian_signature`) and
//! fingerprints. (Hex and the binary wire reader are crate-private; they are
//! reached through the records in `fuzz_records.rs` and `fuzz_sharing.rs`.)
//!
//! Checked: no panic and no call slower than the budget on arbitrary input;
//! a time that parses formats back to the same instant, and agrees with
//! humantime where both apply; a key that parses has one spelling; an
//! excerpt is short and escapes what it quotes.

#[path = "common/fuzz.rs"]
mod fuzz;

use std::time::UNIX_EPOCH;

use p256::pkcs8::DecodePublicKey as _;
use proptest::prelude::*;
use rkm_proto::command::{CommandVerifier, command_digest, normalize_signature};
use rkm_proto::custodian_card::{
    parse_age_recipient, validate_custodian_name, validate_ed25519_public_key,
};
use rkm_proto::encoding::text::{EXCERPT_CHARS, check_key_label, check_shown_text, excerpt};
use rkm_proto::fingerprint::{fingerprint, signed_note_key_id, signed_note_verifier_key};
use rkm_proto::messages::verify_custodian_signature;
use rkm_proto::recovery_request::{rfc3339_from_unix, unix_time_from_rfc3339, validate_device_id};

use fuzz::{bytes, config, mutate, mutations, texty_bytes, timed};

/// Unix seconds of 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
const MIN_UNIX: i64 = -62_167_219_200;
const MAX_UNIX: i64 = 253_402_300_799;

fn check_time(text: &str) {
    let Some(unix) = timed("unix_time_from_rfc3339", text.len(), || {
        unix_time_from_rfc3339(text)
    }) else {
        return;
    };
    // A UTC offset may carry the instant up to a day outside 0000..=9999.
    assert!(
        (MIN_UNIX - 86_400..=MAX_UNIX + 86_400).contains(&unix),
        "{text}: {unix}"
    );
    if let Some(formatted) = rfc3339_from_unix(unix) {
        assert_eq!(unix_time_from_rfc3339(&formatted), Some(unix), "{text}");
    }
    // humantime reads `…Z` times from 1970 on, with or without a fraction;
    // it counts a leap second (:60) differently, so those are left out.
    if text.ends_with('Z')
        && text.get(17..19) != Some("60")
        && unix >= 0
        && let Ok(time) = humantime::parse_rfc3339(text)
    {
        let secs = time.duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs as i64, unix, "{text}");
    }
}

/// Text shaped like an RFC 3339 time, with the separators and digits
/// sometimes wrong.
fn time_like() -> impl Strategy<Value = String> {
    (
        "[0-9]{4}",
        "[0-9]{2}",
        "[0-9]{2}",
        "[Tt ]",
        "[0-9]{2}",
        "[0-9]{2}",
        "[0-9]{2}",
        "(\\.[0-9]{0,12})?",
        "[Zz]|[+-][0-9]{2}:[0-9]{2}|",
    )
        .prop_map(|(y, mo, d, t, h, mi, s, frac, off)| {
            format!("{y}-{mo}-{d}{t}{h}:{mi}:{s}{frac}{off}")
        })
}

fn check_text_rules(text: &str) {
    let quoted = timed("excerpt", text.len(), || excerpt(text));
    assert!(quoted.chars().count() <= EXCERPT_CHARS * 10 + 1);
    assert!(!quoted.chars().any(char::is_control), "{quoted:?}");
    let _ = check_shown_text(text, 64);
    let _ = check_key_label(text);
    if validate_custodian_name(text).is_ok() {
        assert!(!text.is_empty() && text.len() <= 64 && text.is_ascii());
    }
    if validate_device_id(text).is_ok() {
        assert!(!text.is_empty() && text.len() <= 128 && !text.contains(' '));
    }
    if let Ok(recipient) = timed("parse_age_recipient", text.len(), || {
        parse_age_recipient(text)
    }) {
        assert_eq!(recipient.to_string(), text);
    }
}

fn check_keys(raw: &[u8]) {
    if let Ok(key32) = <[u8; 32]>::try_from(raw.get(..32).unwrap_or_default()) {
        let _ = validate_ed25519_public_key(&key32);
        let _ = fingerprint(&key32);
        let _ = signed_note_key_id("k", &key32);
        let _ = signed_note_verifier_key("k", &key32);
    }
    if let Ok(verifier) = timed("CommandVerifier::from_spki", raw.len(), || {
        CommandVerifier::from_spki(raw)
    }) {
        let _ = verifier.verify_command(&[0; 32], 0, "d", &[1; 64]);
    }
    if let Ok(sig) = <[u8; 64]>::try_from(raw.get(..64).unwrap_or_default()) {
        if let Ok(low) = normalize_signature(&sig) {
            assert_eq!(normalize_signature(&low), Ok(low));
        }
        let _ = verify_custodian_signature(&[0x11; 32], b"m", &sig);
    }
    let _ = verify_custodian_signature(&[0x11; 32], b"m", raw);
}

/// A valid P-256 SPKI and a signature made with its key.
fn spki_and_signature() -> (Vec<u8>, [u8; 64]) {
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    use p256::pkcs8::EncodePublicKey;
    let key = p256::ecdsa::SigningKey::from_slice(&[3; 32]).unwrap();
    let spki = p256::PublicKey::from(key.verifying_key())
        .to_public_key_der()
        .unwrap()
        .as_bytes()
        .to_vec();
    let signature: p256::ecdsa::Signature =
        key.sign_prehash(&command_digest(&[0; 32], 0, "d")).unwrap();
    let signature = normalize_signature(&signature.to_bytes().into()).unwrap();
    (spki, signature)
}

#[test]
fn fuzz_encoding_seeds_are_valid() {
    check_time("2026-11-27T00:00:00Z");
    assert_eq!(unix_time_from_rfc3339("1970-01-01T00:00:00Z"), Some(0));
    let (spki, signature) = spki_and_signature();
    let verifier = CommandVerifier::from_spki(&spki).unwrap();
    verifier
        .verify_command(&[0; 32], 0, "d", &signature)
        .unwrap();
    check_keys(&spki);
}

proptest! {
    #![proptest_config(config(256))]

    /// Arbitrary text and time-shaped text: times that parse format back.
    #[test]
    fn fuzz_encoding_times(raw in texty_bytes(40), shaped in time_like(), m in mutations()) {
        check_time(&String::from_utf8_lossy(&raw));
        check_time(&shaped);
        check_time(&String::from_utf8_lossy(&mutate(shaped.as_bytes(), &m)));
    }

    /// Every Unix time in range formats to text that parses back to it.
    #[test]
    fn fuzz_encoding_unix_round_trip(unix in MIN_UNIX..=MAX_UNIX) {
        let text = rfc3339_from_unix(unix).unwrap();
        prop_assert_eq!(unix_time_from_rfc3339(&text), Some(unix));
    }

    /// The text rules never panic, and what they accept is in their rule.
    #[test]
    fn fuzz_encoding_text_rules(raw in bytes(300), text in "\\PC{0,100}", m in mutations()) {
        check_text_rules(&String::from_utf8_lossy(&raw));
        check_text_rules(&text);
        let recipient = "age1t7rxyev2z3rw82stdlrrepyc39nvn86l5078zqkf5uasdy86jp6svpy7pa";
        check_text_rules(&String::from_utf8_lossy(&mutate(recipient.as_bytes(), &m)));
    }

    /// Key and signature parsers take arbitrary bytes; a mutated signature
    /// or key never verifies the original command.
    #[test]
    fn fuzz_encoding_keys_and_signatures(raw in bytes(200), m in mutations(), which in any::<bool>()) {
        check_keys(&raw);
        let (spki, signature) = spki_and_signature();
        let (spki2, signature2) = if which {
            (mutate(&spki, &m), signature)
        } else {
            let mutated = mutate(&signature, &m);
            (spki.clone(), mutated.get(..64).and_then(|s| s.try_into().ok()).unwrap_or(signature))
        };
        check_keys(&spki2);
        if let Ok(verifier) = CommandVerifier::from_spki(&spki2)
            && verifier.verify_command(&[0; 32], 0, "d", &signature2).is_ok() {
                prop_assert_eq!(signature2, signature);
                let original = p256::PublicKey::from_public_key_der(&spki).unwrap();
                let parsed = p256::PublicKey::from_public_key_der(&spki2).unwrap();
                prop_assert_eq!(parsed, original);
            }
    }
}
