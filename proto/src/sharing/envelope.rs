//! Share envelopes: one custodian's share, sealed by rkmd with age to that
//! custodian's X25519 recipient at key generation, and opened and checked
//! against the signed key record by the custodian's client (`rkm share fetch`,
//! `rkm share verify`).
//!
//! Plaintext payload (binary, built in a zeroizing buffer): magic
//! `RKMSHARE` ‖ version 1 ‖ key id (u16 BE length ‖ UTF-8) ‖ custodian name
//! (u16 BE length ‖ UTF-8) ‖ threshold k ‖ x ‖ y\[32\] ‖ salt\[32\].

use std::fmt;
use std::io::Read;

use zeroize::Zeroizing;

use crate::records::custodian_card::{CustodianCard, validate_custodian_name};
use crate::records::key_record::{KeyCustodian, KeyRecord, MAX_KEY_ID_LEN};
use crate::sharing::commitment::commitment_matches;
use crate::sharing::secret::Share;

use crate::encoding::wire::{Reader, Writer};

/// Magic bytes that open an envelope payload.
const ENVELOPE_MAGIC: &[u8; 8] = b"RKMSHARE";

/// Version of the envelope payload.
pub const ENVELOPE_VERSION: u8 = 1;

/// Largest envelope ciphertext accepted (a real one is about 400 bytes).
pub const MAX_ENVELOPE_LEN: usize = 64 * 1024;

/// Largest payload: magic, version, two length-prefixed strings, k, x, y, salt.
const MAX_PAYLOAD_LEN: usize = 8 + 1 + 2 + MAX_KEY_ID_LEN + 2 + 64 + 1 + 1 + 32 + 32;

/// Why an envelope could not be sealed, opened, or matched to its key record.
/// Never carries share bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The contents to seal are not valid.
    #[error("envelope contents are invalid: {reason}")]
    InvalidContents {
        /// What is wrong.
        reason: String,
    },
    /// age could not encrypt.
    #[error("could not seal the envelope: {0}")]
    Seal(String),
    /// The input is not an age file, or its plaintext is not a share payload.
    #[error("this is not an rkm share envelope: {reason}")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
    },
    /// No recipient stanza opens with this identity.
    #[error(
        "this envelope is not sealed to this custodian identity (it is for another custodian, or its header was altered)"
    )]
    NotForThisIdentity,
    /// The envelope opened partly but does not authenticate.
    #[error("the envelope was altered or damaged: {reason}; fetch it again")]
    Tampered {
        /// What failed.
        reason: &'static str,
    },
    /// An envelope payload version this build does not know.
    #[error("envelope has version {found}; this rkm reads version {ENVELOPE_VERSION}")]
    UnsupportedVersion {
        /// The version found.
        found: u8,
    },
    /// The envelope names another custodian than the one opening it.
    #[error("the envelope is for custodian {envelope:?}, not for {expected:?}")]
    WrongCustodian {
        /// Name in the envelope.
        envelope: String,
        /// Name of the identity that opened it.
        expected: String,
    },
    /// The envelope is for another key than the record.
    #[error("the envelope is for key {envelope:?}, but the key record is for {record:?}")]
    WrongKey {
        /// Key id in the envelope.
        envelope: String,
        /// Key id of the record.
        record: String,
    },
    /// The key record has no custodian of this name.
    #[error("the key record does not list custodian {custodian:?}")]
    NotInRecord {
        /// The custodian name.
        custodian: String,
    },
    /// The key record lists this custodian with other public keys.
    #[error(
        "the key record lists custodian {custodian:?} with a different {which} than this identity's"
    )]
    KeysDiffer {
        /// The custodian name.
        custodian: String,
        /// Which key differs.
        which: &'static str,
    },
    /// The share's x is not the one recorded for this custodian.
    #[error("the share has x-coordinate {envelope}, but the key record gives {record}")]
    XMismatch {
        /// x in the envelope.
        envelope: u8,
        /// x in the record.
        record: u8,
    },
    /// The envelope's threshold is not the record's.
    #[error("the envelope says threshold {envelope}, but the key record says {record}")]
    ThresholdMismatch {
        /// k in the envelope.
        envelope: u8,
        /// k in the record.
        record: u8,
    },
    /// The share does not match the commitment in the key record.
    #[error(
        "the share does not match its commitment in the key record: it is not the share this key was split into"
    )]
    CommitmentMismatch,
}

/// What one envelope carries.
///
/// # Security
///
/// `share` is secret and zeroizing; `Debug` prints neither y nor the salt.
pub struct EnvelopeContents {
    /// Key id of the record the share belongs to.
    pub key_id: String,
    /// Name of the custodian the share is for.
    pub custodian: String,
    /// Threshold k of the key.
    pub threshold: u8,
    /// The share.
    pub share: Share,
    /// Per-share salt of the commitment.
    pub salt: [u8; 32],
}

impl fmt::Debug for EnvelopeContents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvelopeContents")
            .field("key_id", &self.key_id)
            .field("custodian", &self.custodian)
            .field("threshold", &self.threshold)
            .field("x", &self.share.x())
            .field("y", &"[REDACTED]")
            .field("salt", &"[REDACTED]")
            .finish()
    }
}

impl EnvelopeContents {
    fn validate(&self) -> Result<(), EnvelopeError> {
        let invalid = |reason: String| EnvelopeError::InvalidContents { reason };
        if self.key_id.is_empty() || self.key_id.len() > MAX_KEY_ID_LEN {
            return Err(invalid(format!(
                "key id must be 1..={MAX_KEY_ID_LEN} bytes"
            )));
        }
        validate_custodian_name(&self.custodian).map_err(|e| invalid(e.to_string()))?;
        if self.threshold == 0 {
            return Err(invalid("threshold must be at least 1".to_owned()));
        }
        Ok(())
    }

    fn payload(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Writer::with_capacity(MAX_PAYLOAD_LEN);
        out.bytes(ENVELOPE_MAGIC);
        out.u8(ENVELOPE_VERSION);
        out.str16(&self.key_id);
        out.str16(&self.custodian);
        out.u8(self.threshold);
        out.u8(self.share.x());
        out.bytes(self.share.expose_y());
        out.bytes(&self.salt);
        out.finish()
    }

    fn from_payload(payload: &[u8]) -> Result<Self, EnvelopeError> {
        let malformed = |reason| EnvelopeError::Malformed { reason };
        let mut reader = Reader::new(payload);
        if reader.array::<8>() != Some(*ENVELOPE_MAGIC) {
            return Err(malformed("its contents are not a share payload"));
        }
        let version = reader.u8().ok_or(malformed("it is truncated"))?;
        if version != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnsupportedVersion { found: version });
        }
        let key_id = reader
            .str16()
            .ok_or(malformed("its key id is truncated or not UTF-8"))?
            .to_owned();
        let custodian = reader
            .str16()
            .ok_or(malformed("its custodian name is truncated or not UTF-8"))?
            .to_owned();
        let threshold = reader.u8().ok_or(malformed("it is truncated"))?;
        let x = reader.u8().ok_or(malformed("it is truncated"))?;
        let share = {
            let y = reader
                .slice(32)
                .ok_or(malformed("its share is truncated"))?;
            Share::try_from_slice(x, y).map_err(|_| malformed("its share has x-coordinate 0"))?
        };
        let salt = reader
            .array::<32>()
            .ok_or(malformed("its salt is truncated"))?;
        if !reader.is_empty() {
            return Err(malformed("it has trailing bytes"));
        }
        let contents = EnvelopeContents {
            key_id,
            custodian,
            threshold,
            share,
            salt,
        };
        contents
            .validate()
            .map_err(|_| malformed("its key id, custodian name or threshold is invalid"))?;
        Ok(contents)
    }

    /// Checks the opened share against a key record the caller has already
    /// verified ([`crate::records::key_record::SignedKeyRecord::verify`]) and the
    /// opening custodian's own card: same custodian, same key, the record
    /// lists this custodian with these public keys, same x, same threshold,
    /// and the share matches its commitment. Returns the record's entry for
    /// the custodian.
    ///
    /// # Errors
    ///
    /// [`EnvelopeError::WrongCustodian`], [`EnvelopeError::WrongKey`],
    /// [`EnvelopeError::NotInRecord`], [`EnvelopeError::KeysDiffer`],
    /// [`EnvelopeError::XMismatch`], [`EnvelopeError::ThresholdMismatch`],
    /// [`EnvelopeError::CommitmentMismatch`], in that order.
    pub fn verify_against_record<'r>(
        &self,
        record: &'r KeyRecord,
        me: &CustodianCard,
    ) -> Result<&'r KeyCustodian, EnvelopeError> {
        if self.custodian != me.name {
            return Err(EnvelopeError::WrongCustodian {
                envelope: self.custodian.clone(),
                expected: me.name.clone(),
            });
        }
        if self.key_id != record.key_id {
            return Err(EnvelopeError::WrongKey {
                envelope: self.key_id.clone(),
                record: record.key_id.clone(),
            });
        }
        let entry = record
            .custodian(&me.name)
            .ok_or_else(|| EnvelopeError::NotInRecord {
                custodian: me.name.clone(),
            })?;
        let differs = |which| EnvelopeError::KeysDiffer {
            custodian: me.name.clone(),
            which,
        };
        if entry.ed25519_public_key != me.ed25519_public_key {
            return Err(differs("Ed25519 public key"));
        }
        if entry.age_recipient != me.age_recipient {
            return Err(differs("age recipient"));
        }
        if self.share.x() != entry.x {
            return Err(EnvelopeError::XMismatch {
                envelope: self.share.x(),
                record: entry.x,
            });
        }
        if self.threshold != record.threshold {
            return Err(EnvelopeError::ThresholdMismatch {
                envelope: self.threshold,
                record: record.threshold,
            });
        }
        if !commitment_matches(&record.key_id, &self.share, &self.salt, &entry.commitment) {
            return Err(EnvelopeError::CommitmentMismatch);
        }
        Ok(entry)
    }
}

/// Seals `contents` to `recipient` as a binary age file.
///
/// # Errors
///
/// [`EnvelopeError::InvalidContents`], [`EnvelopeError::Seal`].
///
/// # Security
///
/// The payload is built in a zeroizing buffer. age's stream writer copies it
/// into an internal chunk buffer that age 0.12 does not wipe; that copy is
/// outside this crate's reach.
pub fn seal(
    contents: &EnvelopeContents,
    recipient: &age::x25519::Recipient,
) -> Result<Vec<u8>, EnvelopeError> {
    contents.validate()?;
    let payload = contents.payload();
    age::encrypt(recipient, &payload).map_err(|e| EnvelopeError::Seal(e.to_string()))
}

/// Opens an envelope with the custodian's age identity and parses it. The
/// caller then checks it with [`EnvelopeContents::verify_against_record`].
///
/// # Errors
///
/// [`EnvelopeError::Malformed`], [`EnvelopeError::NotForThisIdentity`],
/// [`EnvelopeError::Tampered`], [`EnvelopeError::UnsupportedVersion`].
pub fn open(
    ciphertext: &[u8],
    identity: &age::x25519::Identity,
) -> Result<EnvelopeContents, EnvelopeError> {
    if ciphertext.len() > MAX_ENVELOPE_LEN {
        return Err(EnvelopeError::Malformed {
            reason: "it is larger than 64 KiB",
        });
    }
    let decryptor =
        age::Decryptor::new_buffered(ciphertext).map_err(|_| EnvelopeError::Malformed {
            reason: "it is not an age-encrypted file",
        })?;
    if decryptor.is_scrypt() {
        return Err(EnvelopeError::Malformed {
            reason: "it is passphrase-encrypted, not sealed to a custodian",
        });
    }
    let reader = decryptor
        .decrypt(std::iter::once(identity as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => EnvelopeError::NotForThisIdentity,
            age::DecryptError::InvalidMac => EnvelopeError::Tampered {
                reason: "its header MAC does not verify",
            },
            _ => EnvelopeError::Tampered {
                reason: "its header does not decrypt",
            },
        })?;
    let mut payload = Zeroizing::new(Vec::with_capacity(MAX_PAYLOAD_LEN + 1));
    reader
        .take(MAX_PAYLOAD_LEN as u64 + 1)
        .read_to_end(&mut payload)
        .map_err(|_| EnvelopeError::Tampered {
            reason: "its contents do not authenticate",
        })?;
    if payload.len() > MAX_PAYLOAD_LEN {
        return Err(EnvelopeError::Malformed {
            reason: "its contents are too large",
        });
    }
    EnvelopeContents::from_payload(&payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents() -> EnvelopeContents {
        EnvelopeContents {
            key_id: "rk-0011223344556677".to_owned(),
            custodian: "alice".to_owned(),
            threshold: 3,
            share: Share::new(2, &[0x5a; 32]).unwrap(),
            salt: [0x33; 32],
        }
    }

    #[test]
    fn payload_layout_is_as_documented() {
        let payload = contents().payload();
        let mut expected = b"RKMSHARE\x01".to_vec();
        expected.extend_from_slice(&[0, 19]);
        expected.extend_from_slice(b"rk-0011223344556677");
        expected.extend_from_slice(&[0, 5]);
        expected.extend_from_slice(b"alice");
        expected.extend_from_slice(&[3, 2]);
        expected.extend_from_slice(&[0x5a; 32]);
        expected.extend_from_slice(&[0x33; 32]);
        assert_eq!(payload.as_slice(), expected.as_slice());
        assert!(payload.len() <= MAX_PAYLOAD_LEN);
    }

    #[test]
    fn every_truncation_of_a_payload_is_an_error() {
        let payload = contents().payload();
        for cut in 0..payload.len() {
            assert!(EnvelopeContents::from_payload(&payload[..cut]).is_err());
        }
        let mut longer = payload.to_vec();
        longer.push(0);
        assert!(EnvelopeContents::from_payload(&longer).is_err());
        let back = EnvelopeContents::from_payload(&payload).unwrap();
        assert_eq!(back.share.expose_y(), &[0x5a; 32]);
    }

    #[test]
    fn debug_hides_share_and_salt() {
        let printed = format!("{:?}", contents());
        assert!(printed.contains("alice") && printed.contains("x: 2"));
        assert!(!printed.contains("90") && !printed.contains("5a"));
        assert!(!printed.contains("51") && !printed.contains("33,"));
    }
}
