//! Key records and custodian cards: canonical encoding round trips, strict
//! decoding of untrusted input, the audit key's signature, and property tests
//! that any change to a signed record is refused.

mod common;

use proptest::prelude::*;
use rkm_proto::custodian_card::{CardError, CustodianCard};
use rkm_proto::key_record::{
    KeyRecord, KeyRecordError, MAX_RECORD_LEN, SignedKeyRecord, key_id_for,
};

use common::{audit_key, ceremony, identity, p256_spki, sign_record};

fn record(k: u8, n: u8) -> KeyRecord {
    ceremony(k, n).record
}

#[test]
fn key_record_encode_decode_round_trips() {
    let record = record(3, 5);
    let encoded = record.encode();
    let decoded = KeyRecord::decode(&encoded).unwrap();
    assert_eq!(decoded, record);
    assert_eq!(decoded.encode(), encoded);
}

#[test]
fn key_record_encoding_is_fixed_compact_json() {
    let record = record(2, 2);
    let text = String::from_utf8(record.encode()).unwrap();
    assert!(text.starts_with(&format!(
        "{{\"rkm_key_record\":1,\"key_id\":\"{}\",\"label\":\"fleet recovery key\",\"algorithm\":\"ECDSA-P256-SHA256\",\"public_key_spki\":\"3059",
        record.key_id
    )));
    assert!(
        text.contains("\"threshold\":2,\"custodians\":[{\"name\":\"c1\",\"ed25519_public_key\":\"")
    );
    assert!(
        text.ends_with("\"ceremony_id\":\"cer-0001\",\"created_at\":\"2025-03-01T10:00:00Z\"}")
    );
    assert!(!text.contains('\n'));
}

#[test]
fn key_record_encode_sorts_custodians_by_x() {
    let mut record = record(2, 3);
    let sorted = record.encode();
    record.custodians.reverse();
    assert_eq!(record.encode(), sorted);
}

#[test]
fn key_record_decode_refuses_non_canonical_spelling() {
    let encoded = String::from_utf8(record(2, 3).encode()).unwrap();
    let spaced = encoded.replacen("\"threshold\":2", "\"threshold\": 2", 1);
    assert_eq!(
        KeyRecord::decode(spaced.as_bytes()).unwrap_err(),
        KeyRecordError::NotCanonical
    );
    let escaped = encoded.replacen("fleet recovery key", "fleet recovery \\u006bey", 1);
    assert_eq!(
        KeyRecord::decode(escaped.as_bytes()).unwrap_err(),
        KeyRecordError::NotCanonical
    );
    let upper = encoded.replacen("\"kek_check_value\":\"", "\"kek_check_value\":\"A", 1);
    assert!(KeyRecord::decode(upper.as_bytes()).is_err());
}

#[test]
fn key_record_decode_refuses_unknown_duplicate_and_missing_fields() {
    let encoded = String::from_utf8(record(2, 3).encode()).unwrap();
    let unknown = encoded.replacen(
        "{\"rkm_key_record\":1,",
        "{\"rkm_key_record\":1,\"extra\":0,",
        1,
    );
    assert!(matches!(
        KeyRecord::decode(unknown.as_bytes()),
        Err(KeyRecordError::Malformed(_))
    ));
    let duplicate = encoded.replacen(
        "{\"rkm_key_record\":1,",
        "{\"rkm_key_record\":1,\"rkm_key_record\":1,",
        1,
    );
    assert!(matches!(
        KeyRecord::decode(duplicate.as_bytes()),
        Err(KeyRecordError::Malformed(_))
    ));
    let missing = encoded.replacen("\"label\":\"fleet recovery key\",", "", 1);
    assert!(matches!(
        KeyRecord::decode(missing.as_bytes()),
        Err(KeyRecordError::Malformed(_))
    ));
    let version = encoded.replacen("{\"rkm_key_record\":1,", "{\"rkm_key_record\":2,", 1);
    assert_eq!(
        KeyRecord::decode(version.as_bytes()).unwrap_err(),
        KeyRecordError::UnsupportedVersion { found: 2 }
    );
}

#[test]
fn key_record_decode_refuses_oversized_input_first() {
    let big = vec![b' '; MAX_RECORD_LEN + 1];
    assert_eq!(
        KeyRecord::decode(&big).unwrap_err(),
        KeyRecordError::TooLarge {
            size: MAX_RECORD_LEN + 1,
            max: MAX_RECORD_LEN
        }
    );
}

#[test]
fn key_record_validate_names_each_broken_rule() {
    let good = record(3, 5);
    let check = |change: &dyn Fn(&mut KeyRecord)| {
        let mut r = good.clone();
        change(&mut r);
        let err = r.validate().unwrap_err();
        // The same record must not decode either.
        assert!(KeyRecord::decode(&r.encode()).is_err());
        err
    };
    assert!(matches!(
        check(&|r| r.key_id = "rk-0000000000000000".into()),
        KeyRecordError::KeyIdMismatch { .. }
    ));
    assert!(matches!(
        check(&|r| r.algorithm = "RSA".into()),
        KeyRecordError::UnsupportedAlgorithm(_)
    ));
    assert!(matches!(
        check(&|r| {
            r.public_key_spki = vec![0x30, 0x00];
            r.key_id = key_id_for(&r.public_key_spki);
        }),
        KeyRecordError::InvalidField {
            field: "public_key_spki",
            ..
        }
    ));
    assert!(matches!(
        check(&|r| r.wrapped_key = vec![1; 20]),
        KeyRecordError::InvalidField {
            field: "wrapped_key",
            ..
        }
    ));
    assert!(matches!(
        check(&|r| r.label = String::new()),
        KeyRecordError::InvalidField { field: "label", .. }
    ));
    assert!(matches!(
        check(&|r| r.label = "a\nb".into()),
        KeyRecordError::InvalidField { field: "label", .. }
    ));
    assert!(matches!(
        check(&|r| r.ceremony_id = "x".repeat(129)),
        KeyRecordError::InvalidField {
            field: "ceremony_id",
            ..
        }
    ));
    assert!(matches!(
        check(&|r| r.created_at = "yesterday".into()),
        KeyRecordError::InvalidField {
            field: "created_at",
            ..
        }
    ));
    assert!(matches!(
        check(&|r| r.threshold = 6),
        KeyRecordError::InvalidThreshold {
            threshold: 6,
            custodians: 5,
            ..
        }
    ));
    assert!(matches!(
        check(&|r| r.threshold = 0),
        KeyRecordError::InvalidThreshold { .. }
    ));
    assert!(matches!(
        check(&|r| r.custodians.clear()),
        KeyRecordError::InvalidThreshold { .. }
    ));
    assert!(matches!(
        check(&|r| r.custodians[1].x = r.custodians[0].x),
        KeyRecordError::InvalidCustodian { .. }
    ));
    assert!(matches!(
        check(&|r| r.custodians[1].x = 0),
        KeyRecordError::InvalidCustodian { .. }
    ));
    assert!(matches!(
        check(&|r| r.custodians[1].name = "c1".into()),
        KeyRecordError::InvalidCustodian { .. }
    ));
    assert!(matches!(
        check(&|r| r.custodians[1].name = "C2".into()),
        KeyRecordError::InvalidCustodian { .. }
    ));
    assert!(matches!(
        check(&|r| r.custodians[1].ed25519_public_key = r.custodians[0].ed25519_public_key),
        KeyRecordError::InvalidCustodian { .. }
    ));
    assert!(matches!(
        check(&|r| r.custodians[1].age_recipient = r.custodians[0].age_recipient.clone()),
        KeyRecordError::InvalidCustodian { .. }
    ));
    assert!(matches!(
        check(&|r| r.custodians[1].ed25519_public_key = [0; 32]),
        KeyRecordError::InvalidCustodian { .. }
    ));
    assert!(matches!(
        check(&|r| r.custodians[1].age_recipient = "age1notarecipient".into()),
        KeyRecordError::InvalidCustodian { .. }
    ));
}

#[test]
fn key_record_custodian_finds_by_name() {
    let record = record(2, 3);
    assert_eq!(record.custodian("c2").unwrap().x, 2);
    assert!(record.custodian("c9").is_none());
}

#[test]
fn key_id_for_differs_per_key() {
    let a = key_id_for(&p256_spki(1));
    let b = key_id_for(&p256_spki(2));
    assert_ne!(a, b);
    assert_eq!(a.len(), 19);
    assert!(a.starts_with("rk-"));
}

#[test]
fn signing_message_is_label_then_encoding() {
    let encoded = record(2, 2).encode();
    let message = KeyRecord::signing_message(&encoded);
    assert_eq!(&message[..18], b"rkm/v1/key-record\0");
    assert_eq!(&message[18..], encoded.as_slice());
}

#[test]
fn signed_record_file_round_trips_and_verifies() {
    let c = ceremony(3, 5);
    let text = c.signed.to_file();
    assert!(text.contains("\"rkm_signed_key_record\": 1"));
    assert!(text.ends_with("}\n"));
    let parsed = SignedKeyRecord::from_file(&text).unwrap();
    assert_eq!(parsed, c.signed);
    assert_eq!(parsed.verify(&c.audit_key).unwrap(), c.record);
}

#[test]
fn signed_record_bad_signature_is_refused() {
    let c = ceremony(2, 3);
    let mut signed = c.signed.clone();
    signed.signature[10] ^= 1;
    assert!(matches!(
        signed.verify(&c.audit_key).unwrap_err(),
        KeyRecordError::BadSignature { .. }
    ));
    // Signed over the record without the domain label: refused too.
    use ed25519_dalek::Signer;
    let mut unlabelled = c.signed.clone();
    unlabelled.signature = c.audit_signing.sign(&c.signed.record).to_bytes();
    assert!(matches!(
        unlabelled.verify(&c.audit_key).unwrap_err(),
        KeyRecordError::BadSignature { .. }
    ));
}

#[test]
fn signed_record_by_another_audit_key_is_refused() {
    let c = ceremony(2, 3);
    let (other_signing, other_key) = audit_key(0xb0);
    let forged = sign_record(&c.record, &other_signing, &other_key);
    assert!(matches!(
        forged.verify(&c.audit_key).unwrap_err(),
        KeyRecordError::WrongAuditKey { .. }
    ));
    // Claiming the trusted key while signed by another: bad signature.
    let mut claimed = forged.clone();
    claimed.audit_verifier_key = c.audit_key.to_string();
    assert!(matches!(
        claimed.verify(&c.audit_key).unwrap_err(),
        KeyRecordError::BadSignature { .. }
    ));
}

#[test]
fn signed_record_from_file_refuses_malformed_files() {
    let c = ceremony(2, 2);
    let text = c.signed.to_file();
    assert!(matches!(
        SignedKeyRecord::from_file("{}"),
        Err(KeyRecordError::Malformed(_))
    ));
    assert!(matches!(
        SignedKeyRecord::from_file("not json"),
        Err(KeyRecordError::Malformed(_))
    ));
    let short_sig = text.replacen("\"signature\": \"", "\"signature\": \"00", 1);
    assert!(matches!(
        SignedKeyRecord::from_file(&short_sig),
        Err(KeyRecordError::InvalidField {
            field: "signature",
            ..
        })
    ));
    let bad_key = text.replacen(
        "\"audit_key\": \"rkm-test-audit+",
        "\"audit_key\": \"rkm-test-audit+0",
        1,
    );
    assert!(matches!(
        SignedKeyRecord::from_file(&bad_key),
        Err(KeyRecordError::InvalidAuditKey(_))
    ));
    let version = text.replacen(
        "\"rkm_signed_key_record\": 1",
        "\"rkm_signed_key_record\": 7",
        1,
    );
    assert_eq!(
        SignedKeyRecord::from_file(&version).unwrap_err(),
        KeyRecordError::UnsupportedVersion { found: 7 }
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any single changed byte of a signed record is refused, by the
    /// signature or before it.
    #[test]
    fn signed_record_any_flipped_byte_is_refused(index in any::<prop::sample::Index>(), bit in 0u8..8) {
        let c = ceremony(2, 3);
        let mut signed = c.signed.clone();
        let i = index.index(signed.record.len());
        signed.record[i] ^= 1 << bit;
        prop_assert!(signed.verify(&c.audit_key).is_err());
    }

    /// Arbitrary bytes never panic the decoder.
    #[test]
    fn key_record_decode_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = KeyRecord::decode(&bytes);
        let _ = SignedKeyRecord::from_file(&String::from_utf8_lossy(&bytes));
        let _ = CustodianCard::parse(&String::from_utf8_lossy(&bytes));
    }

    /// Changing any character of an encoded record either fails to decode or
    /// decodes to a different record (never silently the same one).
    #[test]
    fn key_record_decode_mutated_text_is_refused_or_different(index in any::<prop::sample::Index>(), replacement in any::<u8>()) {
        let record = record(2, 2);
        let mut encoded = record.encode();
        let i = index.index(encoded.len());
        prop_assume!(encoded[i] != replacement);
        encoded[i] = replacement;
        if let Ok(decoded) = KeyRecord::decode(&encoded) {
            prop_assert_ne!(decoded, record);
        }
    }
}

#[test]
fn custodian_card_round_trips_with_fingerprint() {
    let card = identity("alice", 1).card();
    let text = card.to_json();
    assert!(text.contains("\"rkm_custodian_card\": 1"));
    assert!(text.contains(&format!("\"fingerprint\": \"{}\"", card.fingerprint())));
    assert_eq!(CustodianCard::parse(&text).unwrap(), card);
    let fingerprint = card.fingerprint();
    assert_eq!(fingerprint.len(), 64 + 15);
    assert!(fingerprint.split(' ').all(|group| group.len() == 4));
}

#[test]
fn custodian_card_fingerprint_binds_every_field() {
    let card = identity("alice", 1).card();
    let other_keys = identity("alice", 2).card();
    let mut renamed = card.clone();
    renamed.name = "alicf".into();
    let mut mixed = card.clone();
    mixed.age_recipient = other_keys.age_recipient.clone();
    let mut mixed_ed = card.clone();
    mixed_ed.ed25519_public_key = other_keys.ed25519_public_key;
    let prints = [
        card.fingerprint(),
        renamed.fingerprint(),
        mixed.fingerprint(),
        mixed_ed.fingerprint(),
    ];
    for i in 0..prints.len() {
        for j in i + 1..prints.len() {
            assert_ne!(prints[i], prints[j]);
        }
    }
}

#[test]
fn custodian_card_parse_refuses_altered_or_invalid_cards() {
    let card = identity("alice", 1).card();
    let text = card.to_json();
    let renamed = text.replacen("\"name\": \"alice\"", "\"name\": \"mallory\"", 1);
    assert!(matches!(
        CustodianCard::parse(&renamed),
        Err(CardError::FingerprintMismatch { .. })
    ));
    let other = identity("alice", 2).card();
    let swapped = text.replacen(&card.age_recipient, &other.age_recipient, 1);
    assert!(matches!(
        CustodianCard::parse(&swapped),
        Err(CardError::FingerprintMismatch { .. })
    ));
    let bad_name = text.replacen("\"name\": \"alice\"", "\"name\": \"../etc\"", 1);
    assert!(matches!(
        CustodianCard::parse(&bad_name),
        Err(CardError::InvalidName { .. })
    ));
    let hex = hex::encode(card.ed25519_public_key);
    let upper = text.replacen(&hex, &hex.to_uppercase(), 1);
    assert!(matches!(
        CustodianCard::parse(&upper),
        Err(CardError::InvalidEd25519Key { .. })
    ));
    // The identity point is of small order.
    let mut small = [0u8; 32];
    small[0] = 1;
    let weak = text.replacen(&hex, &hex::encode(small), 1);
    assert!(matches!(
        CustodianCard::parse(&weak),
        Err(CardError::InvalidEd25519Key { .. })
    ));
    let upper_recipient = text.replacen(&card.age_recipient, &card.age_recipient.to_uppercase(), 1);
    assert!(matches!(
        CustodianCard::parse(&upper_recipient),
        Err(CardError::InvalidAgeRecipient { .. })
    ));
    let not_recipient = text.replacen(&card.age_recipient, "age1xyz", 1);
    assert!(matches!(
        CustodianCard::parse(&not_recipient),
        Err(CardError::InvalidAgeRecipient { .. })
    ));
    let extra = text.replacen("{", "{\"admin\": true,", 1);
    assert!(matches!(
        CustodianCard::parse(&extra),
        Err(CardError::Malformed(_))
    ));
    let version = text.replacen("\"rkm_custodian_card\": 1", "\"rkm_custodian_card\": 2", 1);
    assert!(matches!(
        CustodianCard::parse(&version),
        Err(CardError::UnsupportedVersion { found: 2 })
    ));
    assert!(matches!(
        CustodianCard::parse(&" ".repeat(20_000)),
        Err(CardError::TooLarge { .. })
    ));
}

/// The hiding characters of the one text rule: a right-to-left override and
/// a zero-width space.
const HIDING: [char; 2] = ['\u{202e}', '\u{200b}'];

#[test]
fn key_record_shown_fields_refuse_bidi_override_and_zero_width_space() {
    for c in HIDING {
        let hidden = format!("fleet{c}-rk");
        for (field, set) in [
            (
                "label",
                (|r: &mut KeyRecord, v: &str| r.label = v.into()) as fn(&mut KeyRecord, &str),
            ),
            ("ceremony_id", |r, v| r.ceremony_id = v.into()),
        ] {
            let mut r = record(3, 5);
            set(&mut r, &hidden);
            match r.validate() {
                Err(KeyRecordError::InvalidField { field: f, reason }) => {
                    assert_eq!(f, field);
                    assert!(
                        reason.contains(&format!("U+{:04X}", u32::from(c))),
                        "{reason}"
                    );
                }
                other => panic!("{field} U+{:04X}: {other:?}", u32::from(c)),
            }
        }
        let mut r = record(3, 5);
        r.custodians[0].name = format!("ali{c}ce");
        let error = r.validate().unwrap_err().to_string();
        assert!(error.contains("name"), "{error}");
    }
}

#[test]
fn custodian_card_name_refuses_bidi_override_and_zero_width_space() {
    for c in HIDING {
        assert!(matches!(
            rkm_proto::custodian_card::validate_custodian_name(&format!("ali{c}ce")),
            Err(CardError::InvalidName { .. })
        ));
    }
}
