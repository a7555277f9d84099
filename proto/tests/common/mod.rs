//! A key generation ceremony done with the pure code alone (no HSM, no
//! daemon), for the record, envelope and Shamir tests: custodian identities,
//! a KEK split k-of-n with salted commitments, a signed key record and one
//! sealed envelope per custodian.

#![allow(dead_code)]

use ed25519_dalek::{Signer, SigningKey};
use p256::pkcs8::EncodePublicKey;
use rkm_proto::checkpoint::VerifierKey;
use rkm_proto::commitment::share_commitment;
use rkm_proto::envelope::{EnvelopeContents, seal};
use rkm_proto::identity::CustodianIdentity;
use rkm_proto::kek_check::kek_check_value;
use rkm_proto::key_record::{
    ALGORITHM_ECDSA_P256_SHA256, KeyCustodian, KeyRecord, SignedKeyRecord, key_id_for,
};
use rkm_proto::secret::{Kek, Share};
use rkm_proto::shamir::{Threshold, split};

/// Name of the test audit key.
pub const AUDIT_KEY_NAME: &str = "rkm-test-audit";

/// SubjectPublicKeyInfo DER of the P-256 key whose scalar is `scalar` (1..).
pub fn p256_spki(scalar: u8) -> Vec<u8> {
    let mut bytes = [0u8; 32];
    bytes[31] = scalar.max(1);
    let secret = p256::SecretKey::from_slice(&bytes).unwrap();
    secret
        .public_key()
        .to_public_key_der()
        .unwrap()
        .as_bytes()
        .to_vec()
}

/// The test audit key: signing half and trusted verifier key.
pub fn audit_key(seed: u8) -> (SigningKey, VerifierKey) {
    let signing = SigningKey::from_bytes(&[seed; 32]);
    let verifier = VerifierKey::new(AUDIT_KEY_NAME, signing.verifying_key().as_bytes()).unwrap();
    (signing, verifier)
}

/// Signs an encoded record as rkmd does with the HSM's audit key.
pub fn sign_record(
    record: &KeyRecord,
    signing: &SigningKey,
    verifier: &VerifierKey,
) -> SignedKeyRecord {
    let encoded = record.encode();
    let signature = signing
        .sign(&KeyRecord::signing_message(&encoded))
        .to_bytes();
    SignedKeyRecord {
        record: encoded,
        signature,
        audit_verifier_key: verifier.to_string(),
    }
}

/// A deterministic custodian identity.
pub fn identity(name: &str, seed: u8) -> CustodianIdentity {
    CustodianIdentity::generate(name, &[seed; 64]).unwrap()
}

/// Everything a finished key generation ceremony leaves behind.
pub struct Ceremony {
    pub identities: Vec<CustodianIdentity>,
    pub kek: Kek,
    pub shares: Vec<Share>,
    pub salts: Vec<[u8; 32]>,
    pub record: KeyRecord,
    pub signed: SignedKeyRecord,
    pub audit_signing: SigningKey,
    pub audit_key: VerifierKey,
    pub envelopes: Vec<Vec<u8>>,
}

/// A k-of-n ceremony with custodians "c1".."cn".
pub fn ceremony(k: u8, n: u8) -> Ceremony {
    let identities: Vec<CustodianIdentity> =
        (1..=n).map(|i| identity(&format!("c{i}"), i)).collect();
    let kek = Kek::from_bytes(&[0x4b; 32]);
    let shares = split(
        &kek,
        Threshold::new_allowing_single(k, n).unwrap(),
        &[9; 32],
    )
    .unwrap();
    let spki = p256_spki(7);
    let key_id = key_id_for(&spki);
    let salts: Vec<[u8; 32]> = (1..=n).map(|i| [i.wrapping_mul(31); 32]).collect();
    let custodians = identities
        .iter()
        .zip(&shares)
        .zip(&salts)
        .map(|((identity, share), salt)| {
            let card = identity.card();
            KeyCustodian {
                name: card.name,
                ed25519_public_key: card.ed25519_public_key,
                age_recipient: card.age_recipient,
                x: share.x(),
                commitment: share_commitment(&key_id, share, salt),
            }
        })
        .collect();
    let record = KeyRecord {
        key_id: key_id.clone(),
        label: "fleet recovery key".to_owned(),
        algorithm: ALGORITHM_ECDSA_P256_SHA256.to_owned(),
        public_key_spki: spki,
        wrapped_key: vec![0xee; 48],
        kek_check_value: kek_check_value(&kek),
        threshold: k,
        custodians,
        ceremony_id: "cer-0001".to_owned(),
        created_at: "2025-03-01T10:00:00Z".to_owned(),
    };
    record.validate().unwrap();
    let (audit_signing, audit_key) = audit_key(0xa0);
    let signed = sign_record(&record, &audit_signing, &audit_key);
    let envelopes = identities
        .iter()
        .zip(&shares)
        .zip(&salts)
        .map(|((identity, share), salt)| {
            let contents = EnvelopeContents {
                key_id: key_id.clone(),
                custodian: identity.name().to_owned(),
                threshold: k,
                share: Share::new(share.x(), share.expose_y()).unwrap(),
                salt: *salt,
            };
            seal(&contents, &identity.age_identity().to_public()).unwrap()
        })
        .collect();
    Ceremony {
        identities,
        kek,
        shares,
        salts,
        record,
        signed,
        audit_signing,
        audit_key,
        envelopes,
    }
}
