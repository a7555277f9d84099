//! Fuzz properties of the custodian's secret files, the two parsers of the
//! binary wire codec (`encoding::wire`): the share envelope
//! (`envelope::open`) and the identity file (`CustodianIdentity::decrypt`).
//! Each gets arbitrary bytes and mutated valid files, and its payload parser
//! gets arbitrary and mutated payloads sealed with age directly, so the
//! length-prefixed reader sees every shape behind a valid age layer.
//!
//! Checked: no panic, no parse slower than the budget; a payload that parses
//! is exactly the documented layout of what it parsed to (one spelling per
//! value) and seals and opens back to the same value; a mutated file (age
//! authenticates it) never opens to anything but the original.

mod common;
#[path = "common/fuzz.rs"]
mod fuzz;

use std::sync::LazyLock;

use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use rkm_proto::envelope::{EnvelopeContents, EnvelopeError, open, seal};
use rkm_proto::identity::{CustodianIdentity, IdentityError};
use rkm_proto::secret::Share;
use secrecy::{ExposeSecret, SecretString};

use common::Ceremony;
use fuzz::{bytes, config, mutate, mutations, texty_bytes, timed};

/// Work factor of the identity files made here (production calibrates).
const LOG_N: u8 = 2;

/// Highest scrypt work factor a mutated identity file may state and still be
/// opened by these tests: age accepts up to its calibrated target + 4
/// (16 × about a second, and 128 · 8 · 2^log_n bytes of memory), far beyond
/// what a fuzz case may cost. Files above it are only parsed up to the
/// work-factor check (see `identity_file_states_its_own_work_factor`).
const MAX_FUZZ_LOG_N: u8 = 12;

static CEREMONY: LazyLock<Ceremony> = LazyLock::new(|| common::ceremony(2, 3));

static IDENTITY_FILE: LazyLock<Vec<u8>> = LazyLock::new(|| {
    CEREMONY.identities[0]
        .encrypt_with_work_factor(&passphrase(), LOG_N)
        .unwrap()
});

fn passphrase() -> SecretString {
    SecretString::from("correct horse battery staple".to_owned())
}

/// The documented envelope payload of `contents` (envelope.rs module doc).
fn envelope_payload(contents: &EnvelopeContents) -> Vec<u8> {
    let mut out = b"RKMSHARE\x01".to_vec();
    for field in [contents.key_id.as_bytes(), contents.custodian.as_bytes()] {
        out.extend_from_slice(&u16::try_from(field.len()).unwrap().to_be_bytes());
        out.extend_from_slice(field);
    }
    out.push(contents.threshold);
    out.push(contents.share.x());
    out.extend_from_slice(contents.share.expose_y());
    out.extend_from_slice(&contents.salt);
    out
}

fn same_contents(a: &EnvelopeContents, b: &EnvelopeContents) -> bool {
    a.key_id == b.key_id
        && a.custodian == b.custodian
        && a.threshold == b.threshold
        && a.share.x() == b.share.x()
        && a.share.expose_y() == b.share.expose_y()
        && a.salt == b.salt
}

/// The valid payload of custodian `i`'s envelope, as rkmd seals it.
fn valid_envelope_payload(i: usize) -> Vec<u8> {
    let c = &*CEREMONY;
    envelope_payload(&EnvelopeContents {
        key_id: c.record.key_id.clone(),
        custodian: c.identities[i].name().to_owned(),
        threshold: c.record.threshold,
        share: Share::new(c.shares[i].x(), c.shares[i].expose_y()).unwrap(),
        salt: c.salts[i],
    })
}

/// The documented identity payload: magic, version, name, Ed25519 seed, age
/// secret key.
fn identity_payload(name: &str, seed: &[u8; 32], age_secret: &str) -> Vec<u8> {
    let mut out = b"RKMIDENT\x01".to_vec();
    out.extend_from_slice(&u16::try_from(name.len()).unwrap().to_be_bytes());
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(seed);
    out.extend_from_slice(&u16::try_from(age_secret.len()).unwrap().to_be_bytes());
    out.extend_from_slice(age_secret.as_bytes());
    out
}

/// The identity payload of custodian "c1" from seed `[1; 64]`.
fn valid_identity_payload() -> Vec<u8> {
    let identity = CustodianIdentity::generate("c1", &[1; 64]).unwrap();
    let age_secret = identity.age_identity().to_string();
    identity_payload("c1", &[1; 32], age_secret.expose_secret())
}

/// Seals `payload` with age's scrypt recipient at [`LOG_N`], as an identity
/// file is sealed, without going through `CustodianIdentity::encrypt`.
fn scrypt_seal(payload: &[u8]) -> Vec<u8> {
    let mut recipient = age::scrypt::Recipient::new(passphrase());
    recipient.set_work_factor(LOG_N);
    age::encrypt(&recipient, payload).unwrap()
}

/// The highest work factor any `-> scrypt <salt> <log_n>` line of an age
/// header states, or `None` if no such line has a decimal one.
fn stated_work_factor(file: &[u8]) -> Option<u32> {
    file.split(|&b| b == b'\n')
        .take_while(|line| !line.starts_with(b"---"))
        .filter_map(|line| line.strip_prefix(b"-> scrypt "))
        .filter_map(|args| {
            let last = args.rsplit(|&b| b == b' ').next()?;
            std::str::from_utf8(last).ok()?.parse::<u32>().ok()
        })
        .max()
}

fn check_identity_file(file: &[u8]) {
    if stated_work_factor(file).is_some_and(|n| n > u32::from(MAX_FUZZ_LOG_N)) {
        return;
    }
    let opened = timed("CustodianIdentity::decrypt", file.len(), || {
        CustodianIdentity::decrypt(file, &passphrase())
    });
    if let Ok(identity) = opened {
        let original = &CEREMONY.identities[0];
        assert_eq!(identity.card(), original.card(), "a mutated file opened");
        assert_eq!(identity.sign(b"m"), original.sign(b"m"));
    }
}

fn check_envelope(bytes: &[u8]) {
    let c = &*CEREMONY;
    let opened = timed("envelope::open", bytes.len(), || {
        open(bytes, c.identities[0].age_identity())
    });
    if let Ok(contents) = opened {
        let original = open(&c.envelopes[0], c.identities[0].age_identity()).unwrap();
        assert!(
            same_contents(&contents, &original),
            "a mutated envelope opened to other contents: {contents:?}"
        );
        contents
            .verify_against_record(&c.record, &c.identities[0].card())
            .unwrap();
    }
}

/// Seals an arbitrary payload with age to custodian 0 and opens it: the
/// payload parser behind a valid age layer.
fn check_envelope_payload(payload: &[u8]) {
    let c = &*CEREMONY;
    let identity = c.identities[0].age_identity();
    let sealed = age::encrypt(&identity.to_public(), payload).unwrap();
    let opened = timed("envelope::open (payload)", payload.len(), || {
        open(&sealed, identity)
    });
    match opened {
        Ok(contents) => {
            assert_eq!(
                envelope_payload(&contents),
                payload,
                "a payload parsed that is not the canonical layout of its value"
            );
            let again = open(&seal(&contents, &identity.to_public()).unwrap(), identity).unwrap();
            assert!(same_contents(&again, &contents));
            // Checking it against the record never panics; only the
            // original payload verifies.
            let verified = contents.verify_against_record(&c.record, &c.identities[0].card());
            if verified.is_ok() {
                assert_eq!(payload, valid_envelope_payload(0));
            }
        }
        Err(EnvelopeError::Malformed { .. } | EnvelopeError::UnsupportedVersion { .. }) => {}
        Err(other) => panic!("a well-sealed payload failed as {other:?}"),
    }
}

fn check_identity_payload(payload: &[u8]) {
    let file = scrypt_seal(payload);
    let opened = timed(
        "CustodianIdentity::decrypt (payload)",
        payload.len(),
        || CustodianIdentity::decrypt(&file, &passphrase()),
    );
    match opened {
        Ok(identity) => {
            // It parsed, so the seed stands after magic, version and name.
            let at = 11 + identity.name().len();
            let seed: [u8; 32] = payload[at..at + 32].try_into().unwrap();
            assert_eq!(
                identity.card().ed25519_public_key,
                SigningKey::from_bytes(&seed).verifying_key().to_bytes()
            );
            let age_secret = identity.age_identity().to_string();
            let canonical = identity_payload(identity.name(), &seed, age_secret.expose_secret());
            // The age secret key is Bech32, which has an all-lowercase and
            // an all-uppercase spelling; everything else is byte-exact.
            assert_eq!(canonical[..at + 32], payload[..at + 32]);
            assert!(
                canonical.eq_ignore_ascii_case(payload),
                "an identity payload parsed that is not the layout of its value"
            );
            let refile = identity
                .encrypt_with_work_factor(&passphrase(), LOG_N)
                .unwrap();
            let again = CustodianIdentity::decrypt(&refile, &passphrase()).unwrap();
            assert_eq!(again.card(), identity.card());
            assert_eq!(again.sign(b"m"), identity.sign(b"m"));
        }
        Err(
            IdentityError::Damaged { .. }
            | IdentityError::UnsupportedVersion { .. }
            | IdentityError::InvalidName(_),
        ) => {}
        Err(other) => panic!("a well-sealed payload failed as {other:?}"),
    }
}

/// A file that asks for more scrypt work than age's bound is refused before
/// any work, naming the bound; the bound is what a file may make `rkm` spend
/// (see the report of this test's run).
#[test]
fn identity_file_states_its_own_work_factor() {
    let text = IDENTITY_FILE.clone();
    let needle = format!(" {LOG_N}\n");
    let at = text
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .unwrap();
    let mut forged = text[..at].to_vec();
    forged.extend_from_slice(b" 40\n");
    forged.extend_from_slice(&text[at + needle.len()..]);
    match CustodianIdentity::decrypt(&forged, &passphrase()) {
        Err(IdentityError::WorkFactorTooHigh { required: 40, max }) => {
            eprintln!("age accepts identity files up to scrypt work factor {max} here");
            assert!(max < 40);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn valid_files_and_payloads_are_what_the_properties_start_from() {
    let c = &*CEREMONY;
    let opened = open(&c.envelopes[0], c.identities[0].age_identity()).unwrap();
    assert_eq!(envelope_payload(&opened), valid_envelope_payload(0));
    check_envelope(&c.envelopes[0]);
    check_envelope_payload(&valid_envelope_payload(0));
    check_identity_file(&IDENTITY_FILE);
    let payload = valid_identity_payload();
    check_identity_payload(&payload);
    assert!(CustodianIdentity::decrypt(&scrypt_seal(&payload), &passphrase()).is_ok());
}

proptest! {
    #![proptest_config(config(64))]

    /// Arbitrary bytes, and arbitrary bytes after an age header line, never
    /// open as an envelope or an identity.
    #[test]
    fn fuzz_sharing_arbitrary_bytes(raw in bytes(1024), text in texty_bytes(512)) {
        let mut with_header = b"age-encryption.org/v1\n-> ".to_vec();
        with_header.extend_from_slice(&text);
        for input in [&raw, &with_header] {
            check_envelope(input);
            check_identity_file(input);
        }
    }

    /// A mutated envelope fails or opens to exactly the original share.
    #[test]
    fn fuzz_sharing_mutated_envelope(m in mutations()) {
        let input = mutate(&CEREMONY.envelopes[0], &m);
        check_envelope(&input);
    }

    /// A mutated identity file fails or opens to exactly the original keys.
    #[test]
    fn fuzz_sharing_mutated_identity_file(m in mutations()) {
        let input = mutate(&IDENTITY_FILE, &m);
        check_identity_file(&input);
    }

    /// Mutated and arbitrary envelope payloads, sealed correctly: the wire
    /// reader parses only the canonical layout, and only the original
    /// verifies against the key record.
    #[test]
    fn fuzz_sharing_envelope_payload(m in mutations(), raw in bytes(256)) {
        let i = usize::from(m.len() as u8 % 3);
        check_envelope_payload(&mutate(&valid_envelope_payload(i), &m));
        check_envelope_payload(&raw);
    }

    /// Mutated and arbitrary identity payloads, sealed correctly.
    #[test]
    fn fuzz_sharing_identity_payload(m in mutations(), raw in bytes(256)) {
        let payload = valid_identity_payload();
        check_identity_payload(&mutate(&payload, &m));
        check_identity_payload(&raw);
    }
}
