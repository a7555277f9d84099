//! Custodian side of the key generation ceremony with the pure code alone:
//! identity files (age scrypt), share envelopes opened and checked against
//! the signed key record, the quorum restoring the KEK from the custodians'
//! envelopes alone, and the signed custodian messages.

mod common;

use proptest::prelude::*;
use rkm_proto::envelope::{EnvelopeContents, EnvelopeError, open, seal};
use rkm_proto::identity::{CustodianIdentity, IdentityError};
use rkm_proto::kek_check::kek_matches;
use rkm_proto::messages::{
    SignatureError, envelope_fetch_message, notice_ack_message, share_receipt_message,
    verify_custodian_signature,
};
use rkm_proto::secret::Share;
use rkm_proto::shamir::combine;
use secrecy::SecretString;

use common::{ceremony, identity};

/// Low scrypt work factor so tests stay fast; production uses the default.
const TEST_LOG_N: u8 = 4;

fn passphrase(text: &str) -> SecretString {
    SecretString::from(text.to_owned())
}

#[test]
fn identity_generate_is_deterministic_per_seed() {
    let a = CustodianIdentity::generate("alice", &[1; 64]).unwrap();
    let b = CustodianIdentity::generate("alice", &[1; 64]).unwrap();
    let c = CustodianIdentity::generate("alice", &[2; 64]).unwrap();
    assert_eq!(a.card(), b.card());
    assert_ne!(a.card().ed25519_public_key, c.card().ed25519_public_key);
    assert_ne!(a.card().age_recipient, c.card().age_recipient);
    assert_eq!(a.name(), "alice");
    assert!(a.card().age_recipient.starts_with("age1"));
    a.card().validate().unwrap();
}

#[test]
fn identity_generate_refuses_bad_names() {
    for bad in ["", "Alice", "a b", "..", &"x".repeat(65)] {
        assert!(matches!(
            CustodianIdentity::generate(bad, &[1; 64]),
            Err(IdentityError::InvalidName(_))
        ));
    }
}

#[test]
fn identity_debug_shows_no_secret() {
    let seed = [0x6d; 64];
    let identity = CustodianIdentity::generate("alice", &seed).unwrap();
    let printed = format!("{identity:?}");
    assert!(printed.contains("alice") && printed.contains("[REDACTED]"));
    assert!(!printed.contains("6d6d") && !printed.contains("AGE-SECRET-KEY"));
}

#[test]
fn identity_file_round_trips_with_the_passphrase() {
    let identity = identity("alice", 3);
    let file = identity
        .encrypt_with_work_factor(&passphrase("correct horse"), TEST_LOG_N)
        .unwrap();
    assert!(file.starts_with(b"age-encryption.org/v1\n-> scrypt "));
    let opened = CustodianIdentity::decrypt(&file, &passphrase("correct horse")).unwrap();
    assert_eq!(opened.card(), identity.card());
    assert_eq!(opened.sign(b"hello"), identity.sign(b"hello"));
    // The file holds no key material in clear.
    let secret = identity.age_identity().to_string();
    use secrecy::ExposeSecret;
    let needle = secret.expose_secret().as_bytes();
    assert!(!file.windows(needle.len()).any(|w| w == needle));
}

#[test]
fn identity_file_wrong_passphrase_is_a_clear_error() {
    let file = identity("alice", 3)
        .encrypt_with_work_factor(&passphrase("correct horse"), TEST_LOG_N)
        .unwrap();
    let err = CustodianIdentity::decrypt(&file, &passphrase("battery staple")).unwrap_err();
    assert!(matches!(err, IdentityError::WrongPassphrase));
    assert_eq!(
        err.to_string(),
        "the passphrase does not open this identity file"
    );
}

#[test]
fn identity_file_tampered_or_foreign_is_refused() {
    let identity = identity("alice", 3);
    let file = identity
        .encrypt_with_work_factor(&passphrase("pw"), TEST_LOG_N)
        .unwrap();
    // Flip a byte of the payload (after the header).
    let mut tampered = file.clone();
    let last = tampered.len() - 5;
    tampered[last] ^= 1;
    assert!(matches!(
        CustodianIdentity::decrypt(&tampered, &passphrase("pw")),
        Err(IdentityError::Damaged { .. })
    ));
    assert!(matches!(
        CustodianIdentity::decrypt(b"hello", &passphrase("pw")),
        Err(IdentityError::NotAnIdentityFile { .. })
    ));
    // An envelope (age to an X25519 recipient) is not an identity file.
    let c = ceremony(2, 2);
    assert!(matches!(
        CustodianIdentity::decrypt(&c.envelopes[0], &passphrase("pw")),
        Err(IdentityError::NotPassphraseProtected)
    ));
    assert!(matches!(
        identity.encrypt_with_work_factor(&passphrase(""), TEST_LOG_N),
        Err(IdentityError::EmptyPassphrase)
    ));
    assert!(matches!(
        identity.encrypt_with_work_factor(&passphrase("pw"), 0),
        Err(IdentityError::InvalidWorkFactor { log_n: 0 })
    ));
}

#[test]
fn identity_file_truncations_are_errors_not_panics() {
    let file = identity("alice", 3)
        .encrypt_with_work_factor(&passphrase("pw"), TEST_LOG_N)
        .unwrap();
    for cut in (0..file.len()).step_by(7) {
        assert!(CustodianIdentity::decrypt(&file[..cut], &passphrase("pw")).is_err());
    }
}

#[test]
fn envelope_each_custodian_opens_and_verifies_their_share() {
    let c = ceremony(3, 5);
    let record = c.signed.verify(&c.audit_key).unwrap();
    for (i, identity) in c.identities.iter().enumerate() {
        let contents = open(&c.envelopes[i], identity.age_identity()).unwrap();
        assert_eq!(contents.custodian, identity.name());
        assert_eq!(contents.key_id, record.key_id);
        assert_eq!(contents.threshold, 3);
        assert_eq!(contents.share.expose_y(), c.shares[i].expose_y());
        let entry = contents
            .verify_against_record(&record, &identity.card())
            .unwrap();
        assert_eq!(entry.x, c.shares[i].x());
    }
}

/// The property the design rests on: any k custodians' envelopes plus any
/// copy of the key record restore the KEK, with no daemon; k−1 do not.
#[test]
fn envelope_every_quorum_restores_the_kek_from_envelopes_alone() {
    let c = ceremony(3, 5);
    let record = c.signed.verify(&c.audit_key).unwrap();
    let opened: Vec<EnvelopeContents> = c
        .identities
        .iter()
        .zip(&c.envelopes)
        .map(|(identity, envelope)| open(envelope, identity.age_identity()).unwrap())
        .collect();
    for mask in 0u32..32 {
        let chosen: Vec<Share> = (0..5)
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| Share::new(opened[i].share.x(), opened[i].share.expose_y()).unwrap())
            .collect();
        let k = chosen.len();
        if k == 0 {
            continue;
        }
        let kek = combine(&chosen, k as u8).unwrap();
        assert_eq!(
            kek_matches(&kek, &record.kek_check_value),
            k >= 3,
            "{k} shares (mask {mask:05b})"
        );
    }
}

#[test]
fn envelope_for_another_custodian_is_refused() {
    let c = ceremony(2, 3);
    let err = open(&c.envelopes[0], c.identities[1].age_identity()).unwrap_err();
    assert_eq!(err, EnvelopeError::NotForThisIdentity);
    // Sealed to bob but naming alice: refused by the record check.
    let record = c.signed.verify(&c.audit_key).unwrap();
    let alice = open(&c.envelopes[0], c.identities[0].age_identity()).unwrap();
    let resealed = seal(&alice, &c.identities[1].age_identity().to_public()).unwrap();
    let opened_by_bob = open(&resealed, c.identities[1].age_identity()).unwrap();
    assert!(matches!(
        opened_by_bob.verify_against_record(&record, &c.identities[1].card()),
        Err(EnvelopeError::WrongCustodian { .. })
    ));
}

#[test]
fn envelope_checks_against_record_name_the_mismatch() {
    let c = ceremony(2, 3);
    let record = c.signed.verify(&c.audit_key).unwrap();
    let me = c.identities[0].card();
    let base = || open(&c.envelopes[0], c.identities[0].age_identity()).unwrap();

    let mut wrong_key = base();
    wrong_key.key_id = "rk-ffffffffffffffff".into();
    assert!(matches!(
        wrong_key.verify_against_record(&record, &me),
        Err(EnvelopeError::WrongKey { .. })
    ));

    let mut wrong_threshold = base();
    wrong_threshold.threshold = 3;
    assert!(matches!(
        wrong_threshold.verify_against_record(&record, &me),
        Err(EnvelopeError::ThresholdMismatch {
            envelope: 3,
            record: 2
        })
    ));

    let mut wrong_x = base();
    wrong_x.share = Share::new(2, wrong_x.share.expose_y()).unwrap();
    assert!(matches!(
        wrong_x.verify_against_record(&record, &me),
        Err(EnvelopeError::XMismatch {
            envelope: 2,
            record: 1
        })
    ));

    let mut wrong_y = base();
    let mut y = *wrong_y.share.expose_y();
    y[0] ^= 1;
    wrong_y.share = Share::new(1, &y).unwrap();
    assert_eq!(
        wrong_y.verify_against_record(&record, &me).unwrap_err(),
        EnvelopeError::CommitmentMismatch
    );

    let mut wrong_salt = base();
    wrong_salt.salt[0] ^= 1;
    assert_eq!(
        wrong_salt.verify_against_record(&record, &me).unwrap_err(),
        EnvelopeError::CommitmentMismatch
    );

    let mut impostor = me.clone();
    impostor.ed25519_public_key = c.identities[1].card().ed25519_public_key;
    assert!(matches!(
        base().verify_against_record(&record, &impostor),
        Err(EnvelopeError::KeysDiffer { .. })
    ));

    let stranger = identity("zed", 9).card();
    let mut for_stranger = base();
    for_stranger.custodian = "zed".into();
    assert!(matches!(
        for_stranger.verify_against_record(&record, &stranger),
        Err(EnvelopeError::NotInRecord { .. })
    ));
}

#[test]
fn envelope_seal_refuses_invalid_contents() {
    let c = ceremony(2, 2);
    let recipient = c.identities[0].age_identity().to_public();
    let mut contents = open(&c.envelopes[0], c.identities[0].age_identity()).unwrap();
    contents.custodian = "Not Valid".into();
    assert!(matches!(
        seal(&contents, &recipient),
        Err(EnvelopeError::InvalidContents { .. })
    ));
    contents.custodian = "c1".into();
    contents.threshold = 0;
    assert!(matches!(
        seal(&contents, &recipient),
        Err(EnvelopeError::InvalidContents { .. })
    ));
    contents.threshold = 2;
    contents.key_id = "k".repeat(65);
    assert!(matches!(
        seal(&contents, &recipient),
        Err(EnvelopeError::InvalidContents { .. })
    ));
}

#[test]
fn envelope_open_refuses_garbage_and_passphrase_files() {
    let c = ceremony(2, 2);
    let identity = c.identities[0].age_identity();
    assert!(matches!(
        open(b"", identity),
        Err(EnvelopeError::Malformed { .. })
    ));
    assert!(matches!(
        open(b"RKMSHARE", identity),
        Err(EnvelopeError::Malformed { .. })
    ));
    assert!(matches!(
        open(&vec![0; 70_000], identity),
        Err(EnvelopeError::Malformed { .. })
    ));
    let pw_file = c.identities[0]
        .encrypt_with_work_factor(&passphrase("pw"), TEST_LOG_N)
        .unwrap();
    assert!(matches!(
        open(&pw_file, identity),
        Err(EnvelopeError::Malformed { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any flipped bit of an envelope is an error (never a different share),
    /// and no error message carries the share bytes.
    #[test]
    fn envelope_any_flipped_bit_is_refused(index in any::<prop::sample::Index>(), bit in 0u8..8) {
        let c = ceremony(2, 2);
        let mut envelope = c.envelopes[0].clone();
        let i = index.index(envelope.len());
        envelope[i] ^= 1 << bit;
        let err = open(&envelope, c.identities[0].age_identity()).unwrap_err();
        let message = err.to_string();
        let y_hex = hex::encode(c.shares[0].expose_y());
        prop_assert!(!message.contains(&y_hex[..8]));
    }

    /// Signed custodian messages verify with the signer's key only, and any
    /// change to the fields breaks them.
    #[test]
    fn messages_verify_only_unchanged_with_the_right_key(
        key_id in "[a-z0-9-]{1,24}",
        custodian in "[a-z0-9._-]{1,16}",
        x in 1u8..=255,
        commitment in any::<[u8; 32]>(),
        time in any::<u64>(),
    ) {
        let alice = identity("alice", 1);
        let bob = identity("bob", 2);
        let alice_key = alice.card().ed25519_public_key;
        let messages = [
            envelope_fetch_message(&key_id, &custodian, time),
            share_receipt_message(&key_id, &custodian, x, &commitment),
            notice_ack_message(&key_id, &custodian),
        ];
        for message in &messages {
            let signature = alice.sign(message);
            prop_assert_eq!(verify_custodian_signature(&alice_key, message, &signature), Ok(()));
            prop_assert_eq!(
                verify_custodian_signature(&bob.card().ed25519_public_key, message, &signature),
                Err(SignatureError::BadSignature)
            );
            let mut changed = message.clone();
            let last = changed.len() - 1;
            changed[last] ^= 1;
            prop_assert_eq!(
                verify_custodian_signature(&alice_key, &changed, &signature),
                Err(SignatureError::BadSignature)
            );
        }
        // The three kinds never coincide.
        prop_assert_ne!(&messages[0], &messages[1]);
        prop_assert_ne!(&messages[1], &messages[2]);
        prop_assert_ne!(&messages[0], &messages[2]);
        prop_assert_ne!(
            share_receipt_message(&key_id, &custodian, x, &commitment),
            share_receipt_message(&key_id, &custodian, x.wrapping_add(1).max(1), &commitment)
        );
    }
}

#[test]
fn verify_custodian_signature_refuses_bad_lengths_and_keys() {
    let alice = identity("alice", 1);
    let message = notice_ack_message("n-1", "alice");
    let signature = alice.sign(&message);
    let key = alice.card().ed25519_public_key;
    assert_eq!(
        verify_custodian_signature(&key, &message, &signature[..63]),
        Err(SignatureError::WrongLength { found: 63 })
    );
    let mut small_order = [0u8; 32];
    small_order[0] = 1;
    assert!(matches!(
        verify_custodian_signature(&small_order, &message, &signature),
        Err(SignatureError::InvalidPublicKey { .. })
    ));
}

/// Known answer of the possession-key derivation, computed outside rkm with
/// Python 3 `hashlib` and `cryptography` 48.0.0:
///
/// ```text
/// pre  = b"rkm/v1/share-possession\0" + b"rk-0123456789abcdef" + b"\0"
///        + bytes([5]) + bytes([0x11]*32) + bytes([0x22]*32)
/// seed = hashlib.sha256(pre).digest()
///      = 562b7759352b5ba4535258f5a9efe4dd040aa4a9186382491b4b6e6c0df0b59b
/// key  = Ed25519PrivateKey.from_private_bytes(seed)
/// key.public_key() (raw) and key.sign(b"receipt") as below
/// ```
///
/// Ed25519 signatures are deterministic (RFC 8032 §5.1.6), so the proof is a
/// known answer too.
#[test]
fn possession_key_derivation_matches_an_independent_computation() {
    let share = rkm_proto::secret::Share::new(5, &[0x11; 32]).unwrap();
    let key =
        rkm_proto::commitment::PossessionKey::derive("rk-0123456789abcdef", &share, &[0x22; 32]);
    assert_eq!(
        hex::encode(key.public_key()),
        "da2a2dcd2c90c2b92efad1bf4d2564f70595cd6982ef9a49bd76c8d031854b5b"
    );
    assert_eq!(
        hex::encode(key.prove(b"receipt")),
        "9afb5242d486261ac36b76bf715aa3b1f1cb3d1a150afbf67f921a366af5e275\
         4f52cff5a34d21add87a820fb6666e3de0ce60fd0723ab4079e63ff9aff13c01"
    );
}
