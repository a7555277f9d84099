//! The custodian card: the public half of a custodian identity (name, Ed25519
//! public key, age recipient, fingerprint) that `rkm custodian init` writes
//! and the operator enrols. Parsing is strict: every field is checked, and the
//! stated fingerprint must be the one the fields give.

use std::str::FromStr;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::encoding::fingerprint::fingerprint;
use crate::encoding::hex::decode_hex32;

/// Version tag of the card format.
pub const CARD_VERSION: u32 = 1;

/// Domain label of the fingerprint preimage.
pub const CUSTODIAN_FINGERPRINT_LABEL: &[u8] = b"rkm/v1/custodian\0";

/// Longest custodian name, in characters.
pub const MAX_NAME_LEN: usize = 64;

/// Largest card text accepted.
pub const MAX_CARD_LEN: usize = 16 * 1024;

/// Why a custodian card (or a custodian's public data) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardError {
    /// The card text is larger than [`MAX_CARD_LEN`].
    #[error("custodian card is {size} bytes, more than the {max} accepted")]
    TooLarge {
        /// Size of the input.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Not a JSON card object of the expected shape.
    #[error("custodian card is not valid: {0}")]
    Malformed(String),
    /// A card format version this build does not know.
    #[error("custodian card has version {found}; this rkm reads version {CARD_VERSION}")]
    UnsupportedVersion {
        /// The version found.
        found: u64,
    },
    /// The name breaks the naming rule.
    #[error("custodian name {name:?} is invalid: {reason}")]
    InvalidName {
        /// The name (at most 80 characters of it).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The Ed25519 public key is not usable.
    #[error("custodian Ed25519 public key is invalid: {reason}")]
    InvalidEd25519Key {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The age recipient does not parse or is not in canonical form.
    #[error("age recipient is invalid: {reason} (expected an X25519 recipient \"age1…\")")]
    InvalidAgeRecipient {
        /// What is wrong with it.
        reason: String,
    },
    /// The stated fingerprint is not the one the card's fields give.
    #[error(
        "custodian card fingerprint does not match its contents (stated {stated}, computed {computed}): the card was altered or damaged; ask the custodian for a fresh copy"
    )]
    FingerprintMismatch {
        /// Fingerprint written on the card.
        stated: String,
        /// Fingerprint computed from the fields.
        computed: String,
    },
}

/// Checks a custodian name: 1..=64 characters of `[a-z0-9._-]`, starting with
/// a letter or digit (so a name is never `..` or an option like `-x`).
///
/// # Errors
///
/// [`CardError::InvalidName`].
pub fn validate_custodian_name(name: &str) -> Result<(), CardError> {
    let invalid = |reason| CardError::InvalidName {
        name: name.chars().take(80).collect(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid("it is longer than 64 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(invalid(
            "only lowercase letters, digits, '.', '_' and '-' are allowed",
        ));
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(invalid("it must start with a letter or a digit"));
    }
    Ok(())
}

/// Checks that `key` is an Ed25519 public key usable for verification: it
/// decodes to a curve point that is not of small order.
///
/// # Errors
///
/// [`CardError::InvalidEd25519Key`].
pub fn validate_ed25519_public_key(key: &[u8; 32]) -> Result<VerifyingKey, CardError> {
    let key = VerifyingKey::from_bytes(key).map_err(|_| CardError::InvalidEd25519Key {
        reason: "it does not decode to a curve point",
    })?;
    if key.is_weak() {
        return Err(CardError::InvalidEd25519Key {
            reason: "it is a point of small order",
        });
    }
    Ok(key)
}

/// Parses an age X25519 recipient and requires it in canonical (lowercase
/// Bech32) form, so one key has one spelling everywhere.
///
/// # Errors
///
/// [`CardError::InvalidAgeRecipient`].
pub fn parse_age_recipient(recipient: &str) -> Result<age::x25519::Recipient, CardError> {
    let parsed = age::x25519::Recipient::from_str(recipient).map_err(|e| {
        CardError::InvalidAgeRecipient {
            reason: e.to_owned(),
        }
    })?;
    if parsed.to_string() != recipient {
        return Err(CardError::InvalidAgeRecipient {
            reason: "it is not in canonical lowercase form".to_owned(),
        });
    }
    Ok(parsed)
}

/// The public half of a custodian identity, handed to the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustodianCard {
    /// Custodian name ([`validate_custodian_name`]).
    pub name: String,
    /// Ed25519 key the custodian signs approvals and receipts with.
    pub ed25519_public_key: [u8; 32],
    /// age X25519 recipient (`age1…`) shares are sealed to.
    pub age_recipient: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CardJson {
    rkm_custodian_card: u64,
    name: String,
    ed25519_public_key: String,
    age_recipient: String,
    fingerprint: String,
}

impl CustodianCard {
    /// What two people compare by voice:
    /// [`fingerprint`] over `"rkm/v1/custodian\0"` ‖ name ‖ 0x00 ‖ Ed25519
    /// key ‖ 0x00 ‖ age recipient.
    pub fn fingerprint(&self) -> String {
        let mut preimage = Vec::with_capacity(
            CUSTODIAN_FINGERPRINT_LABEL.len() + self.name.len() + 34 + self.age_recipient.len(),
        );
        preimage.extend_from_slice(CUSTODIAN_FINGERPRINT_LABEL);
        preimage.extend_from_slice(self.name.as_bytes());
        preimage.push(0);
        preimage.extend_from_slice(&self.ed25519_public_key);
        preimage.push(0);
        preimage.extend_from_slice(self.age_recipient.as_bytes());
        fingerprint(&preimage)
    }

    /// Checks every field (name, Ed25519 key, age recipient).
    ///
    /// # Errors
    ///
    /// [`CardError::InvalidName`], [`CardError::InvalidEd25519Key`],
    /// [`CardError::InvalidAgeRecipient`].
    pub fn validate(&self) -> Result<(), CardError> {
        validate_custodian_name(&self.name)?;
        validate_ed25519_public_key(&self.ed25519_public_key)?;
        parse_age_recipient(&self.age_recipient)?;
        Ok(())
    }

    /// The card as pretty JSON with a trailing newline, fingerprint included:
    /// `{"rkm_custodian_card": 1, "name": …, "ed25519_public_key": "<hex>",
    /// "age_recipient": "age1…", "fingerprint": "xxxx xxxx …"}`.
    pub fn to_json(&self) -> String {
        let json = CardJson {
            rkm_custodian_card: u64::from(CARD_VERSION),
            name: self.name.clone(),
            ed25519_public_key: hex::encode(self.ed25519_public_key),
            age_recipient: self.age_recipient.clone(),
            fingerprint: self.fingerprint(),
        };
        let mut text = serde_json::to_string_pretty(&json).expect("card JSON serialises");
        text.push('\n');
        text
    }

    /// Parses and checks a card from untrusted text.
    ///
    /// # Errors
    ///
    /// [`CardError::TooLarge`], [`CardError::Malformed`],
    /// [`CardError::UnsupportedVersion`], the errors of
    /// [`CustodianCard::validate`], and [`CardError::FingerprintMismatch`].
    pub fn parse(text: &str) -> Result<Self, CardError> {
        if text.len() > MAX_CARD_LEN {
            return Err(CardError::TooLarge {
                size: text.len(),
                max: MAX_CARD_LEN,
            });
        }
        let json: CardJson =
            serde_json::from_str(text).map_err(|e| CardError::Malformed(e.to_string()))?;
        if json.rkm_custodian_card != u64::from(CARD_VERSION) {
            return Err(CardError::UnsupportedVersion {
                found: json.rkm_custodian_card,
            });
        }
        let ed25519_public_key =
            decode_hex32(&json.ed25519_public_key).ok_or(CardError::InvalidEd25519Key {
                reason: "it is not 64 lowercase hex digits",
            })?;
        let card = CustodianCard {
            name: json.name,
            ed25519_public_key,
            age_recipient: json.age_recipient,
        };
        card.validate()?;
        let computed = card.fingerprint();
        if computed != json.fingerprint {
            return Err(CardError::FingerprintMismatch {
                stated: json.fingerprint.chars().take(80).collect(),
                computed,
            });
        }
        Ok(card)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rule_accepts_and_refuses() {
        for ok in ["alice", "a", "bob.smith", "c_3-x", &"a".repeat(64)] {
            assert!(validate_custodian_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Alice",
            "a b",
            "..",
            "-x",
            ".hidden",
            "é",
            &"a".repeat(65),
            "a/b",
        ] {
            assert!(validate_custodian_name(bad).is_err(), "{bad}");
        }
    }
}
