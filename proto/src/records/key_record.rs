//! The key record: everything needed to restore a recovery key into any
//! PKCS#11 HSM from a quorum of shares, with no daemon database — the RK
//! public key, the RK wrapped under the KEK (RFC 5649), the KEK check value,
//! the threshold and each custodian's public keys, x and share commitment.
//! rkmd signs it with the audit key; every custodian keeps a copy
//! ([`SignedKeyRecord::to_file`]) and checks it offline.
//!
//! The encoding is canonical JSON: fixed field order, no whitespace,
//! lowercase hex for bytes, custodians sorted by x. [`KeyRecord::decode`]
//! accepts only that form, so the bytes that were signed are the only
//! spelling of a record.

use std::collections::HashSet;

use ed25519_dalek::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::encoding::field::{FieldError, invalid};
use crate::encoding::hex::{decode_hex32, decode_lower_hex};
use crate::encoding::text::check_text;
use crate::encoding::time::unix_time_from_rfc3339;
use crate::log::checkpoint::{CheckpointError, VerifierKey};
use crate::records::custodian_card::{
    CardError, parse_age_recipient, validate_custodian_name, validate_ed25519_public_key,
};

/// Version tag of the key record encoding.
pub const KEY_RECORD_VERSION: u64 = 1;

/// Version tag of the signed key record file.
pub const SIGNED_KEY_RECORD_VERSION: u64 = 1;

/// The one algorithm of recovery keys: ECDSA over P-256 with SHA-256.
pub const ALGORITHM_ECDSA_P256_SHA256: &str = "ECDSA-P256-SHA256";

/// Domain label of the message the audit key signs.
pub const KEY_RECORD_SIGNING_LABEL: &[u8] = b"rkm/v1/key-record\0";

/// Largest encoded key record accepted, 1 MiB.
pub const MAX_RECORD_LEN: usize = 1 << 20;

/// Largest signed key record file accepted: the record escaped as a JSON
/// string (at most six bytes per byte) plus the envelope.
pub const MAX_SIGNED_RECORD_FILE_LEN: usize = 6 * MAX_RECORD_LEN + 4096;

/// Longest key id accepted anywhere (real ones are 19 characters).
pub const MAX_KEY_ID_LEN: usize = 64;

/// Longest label and ceremony id, in bytes.
pub const MAX_LABEL_LEN: usize = 128;

/// Why a key record (or signed key record file) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRecordError {
    /// The input is larger than the limit; nothing else was looked at.
    #[error("key record is {size} bytes, more than the {max} accepted")]
    TooLarge {
        /// Size of the input.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Not JSON of the expected shape.
    #[error("key record is not valid: {0}")]
    Malformed(String),
    /// A format version this build does not know.
    #[error("key record has version {found}; this rkm reads version 1")]
    UnsupportedVersion {
        /// The version found.
        found: u64,
    },
    /// Valid JSON, but not the canonical encoding of the record it holds.
    #[error(
        "key record is not in canonical form (field order, spacing, escapes or custodian order differ); it was not produced by rkm"
    )]
    NotCanonical,
    /// A field breaks a rule.
    #[error("key record field {field} is invalid: {reason}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The key id is not the one the public key gives.
    #[error("key id {stated:?} does not match the public key, which gives {computed:?}")]
    KeyIdMismatch {
        /// Key id in the record.
        stated: String,
        /// Key id computed from the SPKI.
        computed: String,
    },
    /// An algorithm other than [`ALGORITHM_ECDSA_P256_SHA256`].
    #[error("key record algorithm {0:?} is not supported (only ECDSA-P256-SHA256)")]
    UnsupportedAlgorithm(String),
    /// Threshold out of range for the custodian list.
    #[error("threshold {threshold} is invalid for {custodians} custodians: {reason}")]
    InvalidThreshold {
        /// k.
        threshold: u8,
        /// Number of custodians.
        custodians: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A custodian entry breaks a rule.
    #[error("custodian {name:?} in the key record is invalid: {reason}")]
    InvalidCustodian {
        /// The custodian's name (at most 80 characters).
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The signed key record file states another audit key than the trusted one.
    #[error(
        "key record is signed by audit key {found:?}, but the trusted audit key is {trusted:?}; check which rkmd issued it"
    )]
    WrongAuditKey {
        /// Verifier key stated in the file.
        found: String,
        /// The trusted verifier key.
        trusted: String,
    },
    /// The signature does not verify with the trusted audit key.
    #[error(
        "key record signature does not verify with audit key {key}: the record was altered or not signed by this rkmd"
    )]
    BadSignature {
        /// The trusted verifier key's name.
        key: String,
    },
    /// The audit key stated in the file is not a valid verifier key.
    #[error("key record names an invalid audit key: {0}")]
    InvalidAuditKey(CheckpointError),
}

/// One custodian of a key, as the key record lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCustodian {
    /// Custodian name.
    pub name: String,
    /// The custodian's Ed25519 public key.
    pub ed25519_public_key: [u8; 32],
    /// The custodian's age recipient (`age1…`).
    pub age_recipient: String,
    /// x-coordinate of the custodian's share.
    pub x: u8,
    /// [`crate::sharing::commitment::share_commitment`] of the custodian's share.
    pub commitment: [u8; 32],
}

/// A recovery key's public record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// `rk-` and the first 16 hex digits of SHA-256(SPKI) ([`key_id_for`]).
    pub key_id: String,
    /// Operator's label.
    pub label: String,
    /// [`ALGORITHM_ECDSA_P256_SHA256`].
    pub algorithm: String,
    /// RK public key, SubjectPublicKeyInfo DER.
    pub public_key_spki: Vec<u8>,
    /// RK private key (PKCS#8) wrapped with CKM_AES_KEY_WRAP_PAD (RFC 5649)
    /// under the KEK.
    pub wrapped_key: Vec<u8>,
    /// [`crate::sharing::kek_check::kek_check_value`] of the KEK.
    pub kek_check_value: [u8; 32],
    /// Shares needed, k.
    pub threshold: u8,
    /// The custodians; encoded sorted by x.
    pub custodians: Vec<KeyCustodian>,
    /// The key generation ceremony that made the key.
    pub ceremony_id: String,
    /// RFC 3339 time of creation.
    pub created_at: String,
}

/// `rk-` and the first 16 lowercase hex digits of SHA-256(`spki`).
pub fn key_id_for(spki: &[u8]) -> String {
    let digest = Sha256::digest(spki);
    format!("rk-{}", hex::encode(&digest[..8]))
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordJson {
    rkm_key_record: u64,
    key_id: String,
    label: String,
    algorithm: String,
    public_key_spki: String,
    wrapped_key: String,
    kek_check_value: String,
    threshold: u8,
    custodians: Vec<CustodianJson>,
    ceremony_id: String,
    created_at: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CustodianJson {
    name: String,
    ed25519_public_key: String,
    age_recipient: String,
    x: u8,
    commitment: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignedJson {
    rkm_signed_key_record: u64,
    record: String,
    signature: String,
    audit_key: String,
}

impl FieldError for KeyRecordError {
    fn invalid_field(field: &'static str, reason: String) -> Self {
        KeyRecordError::InvalidField { field, reason }
    }
    fn not_canonical() -> Self {
        KeyRecordError::NotCanonical
    }
}

fn hex32(field: &'static str, value: &str) -> Result<[u8; 32], KeyRecordError> {
    decode_hex32(value).ok_or_else(|| invalid(field, "it is not 64 lowercase hex digits"))
}

fn hex_bytes(field: &'static str, value: &str) -> Result<Vec<u8>, KeyRecordError> {
    decode_lower_hex(value).ok_or_else(|| invalid(field, "it is not lowercase hex"))
}

impl KeyRecord {
    /// The canonical encoding: compact JSON
    /// `{"rkm_key_record":1,"key_id":…,"label":…,"algorithm":…,
    /// "public_key_spki":"<hex>","wrapped_key":"<hex>","kek_check_value":"<hex>",
    /// "threshold":k,"custodians":[{"name":…,"ed25519_public_key":"<hex>",
    /// "age_recipient":…,"x":x,"commitment":"<hex>"},…],"ceremony_id":…,
    /// "created_at":…}` with custodians sorted by x.
    ///
    /// Call [`KeyRecord::validate`] before signing: an invalid record encodes,
    /// but [`KeyRecord::decode`] refuses it.
    pub fn encode(&self) -> Vec<u8> {
        let mut custodians: Vec<&KeyCustodian> = self.custodians.iter().collect();
        custodians.sort_by_key(|c| c.x);
        let json = RecordJson {
            rkm_key_record: KEY_RECORD_VERSION,
            key_id: self.key_id.clone(),
            label: self.label.clone(),
            algorithm: self.algorithm.clone(),
            public_key_spki: hex::encode(&self.public_key_spki),
            wrapped_key: hex::encode(&self.wrapped_key),
            kek_check_value: hex::encode(self.kek_check_value),
            threshold: self.threshold,
            custodians: custodians
                .into_iter()
                .map(|c| CustodianJson {
                    name: c.name.clone(),
                    ed25519_public_key: hex::encode(c.ed25519_public_key),
                    age_recipient: c.age_recipient.clone(),
                    x: c.x,
                    commitment: hex::encode(c.commitment),
                })
                .collect(),
            ceremony_id: self.ceremony_id.clone(),
            created_at: self.created_at.clone(),
        };
        serde_json::to_vec(&json).expect("key record JSON serialises")
    }

    /// Parses an untrusted encoded record: size first, then strict JSON (no
    /// unknown or duplicate fields), then [`KeyRecord::validate`], then that
    /// the input is exactly [`KeyRecord::encode`] of the result.
    ///
    /// # Errors
    ///
    /// [`KeyRecordError::TooLarge`], [`KeyRecordError::Malformed`],
    /// [`KeyRecordError::UnsupportedVersion`], every error of
    /// [`KeyRecord::validate`], and [`KeyRecordError::NotCanonical`].
    pub fn decode(bytes: &[u8]) -> Result<Self, KeyRecordError> {
        if bytes.len() > MAX_RECORD_LEN {
            return Err(KeyRecordError::TooLarge {
                size: bytes.len(),
                max: MAX_RECORD_LEN,
            });
        }
        let json: RecordJson =
            serde_json::from_slice(bytes).map_err(|e| KeyRecordError::Malformed(e.to_string()))?;
        if json.rkm_key_record != KEY_RECORD_VERSION {
            return Err(KeyRecordError::UnsupportedVersion {
                found: json.rkm_key_record,
            });
        }
        let custodians = json
            .custodians
            .into_iter()
            .map(|c| {
                let bad = |reason: &str| KeyRecordError::InvalidCustodian {
                    name: c.name.chars().take(80).collect(),
                    reason: reason.to_owned(),
                };
                Ok(KeyCustodian {
                    ed25519_public_key: decode_hex32(&c.ed25519_public_key).ok_or_else(|| {
                        bad("its Ed25519 public key is not 64 lowercase hex digits")
                    })?,
                    commitment: decode_hex32(&c.commitment)
                        .ok_or_else(|| bad("its commitment is not 64 lowercase hex digits"))?,
                    name: c.name,
                    age_recipient: c.age_recipient,
                    x: c.x,
                })
            })
            .collect::<Result<Vec<_>, KeyRecordError>>()?;
        let record = KeyRecord {
            key_id: json.key_id,
            label: json.label,
            algorithm: json.algorithm,
            public_key_spki: hex_bytes("public_key_spki", &json.public_key_spki)?,
            wrapped_key: hex_bytes("wrapped_key", &json.wrapped_key)?,
            kek_check_value: hex32("kek_check_value", &json.kek_check_value)?,
            threshold: json.threshold,
            custodians,
            ceremony_id: json.ceremony_id,
            created_at: json.created_at,
        };
        // Order is part of the canonical form: check it before validate() so
        // the error says what is wrong.
        if record.custodians.windows(2).any(|w| w[0].x >= w[1].x) {
            return Err(invalid(
                "custodians",
                "custodians are not in strictly increasing order of x",
            ));
        }
        record.validate()?;
        if record.encode() != bytes {
            return Err(KeyRecordError::NotCanonical);
        }
        Ok(record)
    }

    /// Checks every rule of a record: the key id is the SPKI's, the algorithm
    /// is ECDSA-P256-SHA256 and the SPKI a P-256 public key, the wrapped key
    /// has an RFC 5649 length, 1 ≤ k ≤ custodians ≤ 255, each custodian valid
    /// (name, Ed25519 key, age recipient, x ≠ 0), and no two share a name, an
    /// x, an Ed25519 key or an age recipient; label and ceremony id are short
    /// text; created_at is RFC 3339.
    ///
    /// # Errors
    ///
    /// [`KeyRecordError::InvalidField`], [`KeyRecordError::KeyIdMismatch`],
    /// [`KeyRecordError::UnsupportedAlgorithm`],
    /// [`KeyRecordError::InvalidThreshold`],
    /// [`KeyRecordError::InvalidCustodian`].
    pub fn validate(&self) -> Result<(), KeyRecordError> {
        let computed = key_id_for(&self.public_key_spki);
        if self.key_id != computed {
            return Err(KeyRecordError::KeyIdMismatch {
                stated: self.key_id.chars().take(80).collect(),
                computed,
            });
        }
        check_text("label", &self.label, MAX_LABEL_LEN)?;
        if self.algorithm != ALGORITHM_ECDSA_P256_SHA256 {
            return Err(KeyRecordError::UnsupportedAlgorithm(
                self.algorithm.chars().take(80).collect(),
            ));
        }
        p256::PublicKey::from_public_key_der(&self.public_key_spki).map_err(|_| {
            invalid(
                "public_key_spki",
                "it is not a DER SubjectPublicKeyInfo of a P-256 public key",
            )
        })?;
        if self.wrapped_key.len() < 16 || !self.wrapped_key.len().is_multiple_of(8) {
            return Err(invalid(
                "wrapped_key",
                "an RFC 5649 wrapped key is a multiple of 8 bytes and at least 16",
            ));
        }
        self.validate_custodians()?;
        check_text("ceremony_id", &self.ceremony_id, MAX_LABEL_LEN)?;
        if unix_time_from_rfc3339(&self.created_at).is_none() {
            return Err(invalid(
                "created_at",
                "it is not an RFC 3339 time such as 2025-01-31T12:00:00Z",
            ));
        }
        Ok(())
    }

    fn validate_custodians(&self) -> Result<(), KeyRecordError> {
        let count = self.custodians.len();
        let threshold_error = |reason| KeyRecordError::InvalidThreshold {
            threshold: self.threshold,
            custodians: count,
            reason,
        };
        if count == 0 {
            return Err(threshold_error("a key needs at least one custodian"));
        }
        if count > 255 {
            return Err(threshold_error(
                "GF(256) sharing allows at most 255 custodians",
            ));
        }
        if self.threshold == 0 {
            return Err(threshold_error("k must be at least 1"));
        }
        if usize::from(self.threshold) > count {
            return Err(threshold_error("k exceeds the number of custodians"));
        }
        let (mut names, mut xs, mut eds, mut ages) = (
            HashSet::new(),
            HashSet::new(),
            HashSet::new(),
            HashSet::new(),
        );
        for c in &self.custodians {
            let bad = |reason: String| KeyRecordError::InvalidCustodian {
                name: c.name.chars().take(80).collect(),
                reason,
            };
            let card_error = |e: CardError| bad(e.to_string());
            validate_custodian_name(&c.name).map_err(card_error)?;
            validate_ed25519_public_key(&c.ed25519_public_key).map_err(card_error)?;
            parse_age_recipient(&c.age_recipient).map_err(card_error)?;
            if c.x == 0 {
                return Err(bad("share x-coordinate is 0".to_owned()));
            }
            if !names.insert(c.name.as_str()) {
                return Err(bad("the name appears twice".to_owned()));
            }
            if !xs.insert(c.x) {
                return Err(bad(format!("x-coordinate {} appears twice", c.x)));
            }
            if !eds.insert(c.ed25519_public_key) {
                return Err(bad("its Ed25519 key is another custodian's too".to_owned()));
            }
            if !ages.insert(c.age_recipient.as_str()) {
                return Err(bad(
                    "its age recipient is another custodian's too".to_owned()
                ));
            }
        }
        Ok(())
    }

    /// What the audit key signs: `"rkm/v1/key-record\0"` ‖ `encoded`.
    pub fn signing_message(encoded: &[u8]) -> Vec<u8> {
        let mut message = Vec::with_capacity(KEY_RECORD_SIGNING_LABEL.len() + encoded.len());
        message.extend_from_slice(KEY_RECORD_SIGNING_LABEL);
        message.extend_from_slice(encoded);
        message
    }

    /// The custodian of this name, if the record lists one.
    pub fn custodian(&self, name: &str) -> Option<&KeyCustodian> {
        self.custodians.iter().find(|c| c.name == name)
    }
}

/// A key record as stored, handed to custodians and carried to another HSM:
/// the encoded record verbatim, the audit key's Ed25519 signature over
/// [`KeyRecord::signing_message`], and the audit key's C2SP verifier key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedKeyRecord {
    /// [`KeyRecord::encode`] output, exactly as signed.
    pub record: Vec<u8>,
    /// Ed25519 signature by the audit key.
    pub signature: [u8; 64],
    /// The audit key's verifier key string (`<name>+<id>+<base64>`).
    pub audit_verifier_key: String,
}

impl SignedKeyRecord {
    /// The file: pretty JSON with a trailing newline,
    /// `{"rkm_signed_key_record": 1, "record": "<record JSON as a string>",
    /// "signature": "<hex>", "audit_key": "<verifier key>"}`.
    ///
    /// A record that is not UTF-8 (never one from [`KeyRecord::encode`]) is
    /// written lossily and will not verify.
    pub fn to_file(&self) -> String {
        let json = SignedJson {
            rkm_signed_key_record: SIGNED_KEY_RECORD_VERSION,
            record: String::from_utf8_lossy(&self.record).into_owned(),
            signature: hex::encode(self.signature),
            audit_key: self.audit_verifier_key.clone(),
        };
        let mut text = serde_json::to_string_pretty(&json).expect("signed record serialises");
        text.push('\n');
        text
    }

    /// Parses a signed key record file. Nothing in it is trusted until
    /// [`SignedKeyRecord::verify`] succeeds.
    ///
    /// # Errors
    ///
    /// [`KeyRecordError::TooLarge`], [`KeyRecordError::Malformed`],
    /// [`KeyRecordError::UnsupportedVersion`],
    /// [`KeyRecordError::InvalidField`] (signature),
    /// [`KeyRecordError::InvalidAuditKey`].
    pub fn from_file(text: &str) -> Result<Self, KeyRecordError> {
        if text.len() > MAX_SIGNED_RECORD_FILE_LEN {
            return Err(KeyRecordError::TooLarge {
                size: text.len(),
                max: MAX_SIGNED_RECORD_FILE_LEN,
            });
        }
        let json: SignedJson =
            serde_json::from_str(text).map_err(|e| KeyRecordError::Malformed(e.to_string()))?;
        if json.rkm_signed_key_record != SIGNED_KEY_RECORD_VERSION {
            return Err(KeyRecordError::UnsupportedVersion {
                found: json.rkm_signed_key_record,
            });
        }
        if json.record.len() > MAX_RECORD_LEN {
            return Err(KeyRecordError::TooLarge {
                size: json.record.len(),
                max: MAX_RECORD_LEN,
            });
        }
        let signature: [u8; 64] = decode_lower_hex(&json.signature)
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| invalid("signature", "it is not 128 lowercase hex digits"))?;
        VerifierKey::parse(&json.audit_key).map_err(KeyRecordError::InvalidAuditKey)?;
        Ok(SignedKeyRecord {
            record: json.record.into_bytes(),
            signature,
            audit_verifier_key: json.audit_key,
        })
    }

    /// Verifies the signature with the trusted `audit_key` (the key stated
    /// in the file must be that one), then decodes the record.
    ///
    /// # Errors
    ///
    /// [`KeyRecordError::WrongAuditKey`], [`KeyRecordError::BadSignature`],
    /// then every error of [`KeyRecord::decode`].
    pub fn verify(&self, audit_key: &VerifierKey) -> Result<KeyRecord, KeyRecordError> {
        let trusted = audit_key.to_string();
        if self.audit_verifier_key != trusted {
            return Err(KeyRecordError::WrongAuditKey {
                found: self.audit_verifier_key.chars().take(200).collect(),
                trusted,
            });
        }
        let bad_signature = || KeyRecordError::BadSignature {
            key: audit_key.name().to_owned(),
        };
        let key = VerifyingKey::from_bytes(&audit_key.public_key()).map_err(|_| bad_signature())?;
        key.verify_strict(
            &KeyRecord::signing_message(&self.record),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| bad_signature())?;
        KeyRecord::decode(&self.record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_is_prefix_of_spki_digest() {
        // SHA-256("") = e3b0c44298fc1c14…
        assert_eq!(key_id_for(b""), "rk-e3b0c44298fc1c14");
    }
}
