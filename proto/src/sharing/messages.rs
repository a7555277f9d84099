//! The messages custodians sign with their Ed25519 identity key (fetching an
//! envelope, the share receipt, a notice acknowledgement) and the one check
//! of those signatures. Each message is a domain label followed by every
//! field as a u32 big-endian length and its bytes, so no message of one kind
//! is a message of another and no two field lists encode alike.

use ed25519_dalek::{Signature, VerifyingKey};

/// Label of [`envelope_fetch_message`].
pub const ENVELOPE_FETCH_LABEL: &[u8] = b"rkm/v1/envelope-fetch\0";
/// Label of [`share_receipt_message`].
pub const SHARE_RECEIPT_LABEL: &[u8] = b"rkm/v1/share-receipt\0";
/// Label of [`notice_ack_message`].
pub const NOTICE_ACK_LABEL: &[u8] = b"rkm/v1/notice-ack\0";
/// Label of [`share_attestation_message`].
pub const SHARE_ATTESTATION_LABEL: &[u8] = b"rkm/v1/share-attestation\0";

/// Why a custodian signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The signature is not 64 bytes long.
    #[error("signature is {found} bytes long, expected 64 (Ed25519)")]
    WrongLength {
        /// Length given.
        found: usize,
    },
    /// The public key is not a usable Ed25519 key.
    #[error("custodian public key is invalid: {reason}")]
    InvalidPublicKey {
        /// What is wrong.
        reason: &'static str,
    },
    /// The signature does not verify.
    #[error(
        "signature does not verify with the custodian's enrolled key: signed with another identity, or over other data"
    )]
    BadSignature,
}

pub(crate) fn message(label: &[u8], fields: &[&[u8]]) -> Vec<u8> {
    let len = label.len() + fields.iter().map(|f| 4 + f.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(label);
    for field in fields {
        let field_len = u32::try_from(field.len()).expect("message fields are short");
        out.extend_from_slice(&field_len.to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

/// What a custodian signs to fetch their envelope of `key_id` at `unix_time`
/// (seconds; the daemon bounds the clock skew it accepts).
pub fn envelope_fetch_message(key_id: &str, custodian: &str, unix_time: u64) -> Vec<u8> {
    message(
        ENVELOPE_FETCH_LABEL,
        &[
            key_id.as_bytes(),
            custodian.as_bytes(),
            &unix_time.to_be_bytes(),
        ],
    )
}

/// What a custodian signs once their share of `key_id` (at `x`, with
/// `commitment`) is verified against the key record and stored.
pub fn share_receipt_message(
    key_id: &str,
    custodian: &str,
    x: u8,
    commitment: &[u8; 32],
) -> Vec<u8> {
    message(
        SHARE_RECEIPT_LABEL,
        &[key_id.as_bytes(), custodian.as_bytes(), &[x], commitment],
    )
}

/// What a custodian signs to acknowledge a ceremony notice.
/// What a custodian signs to attest, between ceremonies, that they checked
/// their share of `key_id` (share `x`, committed to by `commitment` in the
/// key record) and still hold it, at `unix_time`.
pub fn share_attestation_message(
    key_id: &str,
    custodian: &str,
    x: u8,
    commitment: &[u8; 32],
    unix_time: u64,
) -> Vec<u8> {
    message(
        SHARE_ATTESTATION_LABEL,
        &[
            key_id.as_bytes(),
            custodian.as_bytes(),
            &[x],
            commitment,
            &unix_time.to_be_bytes(),
        ],
    )
}

pub fn notice_ack_message(notice_id: &str, custodian: &str) -> Vec<u8> {
    message(
        NOTICE_ACK_LABEL,
        &[notice_id.as_bytes(), custodian.as_bytes()],
    )
}

/// Verifies a custodian's Ed25519 signature over `message` with RFC 8032
/// strict verification (`verify_strict`: no small-order keys, canonical S).
///
/// # Errors
///
/// [`SignatureError::WrongLength`], [`SignatureError::InvalidPublicKey`],
/// [`SignatureError::BadSignature`].
pub fn verify_custodian_signature(
    public_key: &[u8; 32],
    message: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    let signature: &[u8; 64] = signature
        .try_into()
        .map_err(|_| SignatureError::WrongLength {
            found: signature.len(),
        })?;
    let key =
        VerifyingKey::from_bytes(public_key).map_err(|_| SignatureError::InvalidPublicKey {
            reason: "it does not decode to a curve point",
        })?;
    if key.is_weak() {
        return Err(SignatureError::InvalidPublicKey {
            reason: "it is a point of small order",
        });
    }
    key.verify_strict(message, &Signature::from_bytes(signature))
        .map_err(|_| SignatureError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_receipt_layout_is_length_prefixed() {
        let message = share_receipt_message("rk-1", "al", 3, &[7; 32]);
        let mut expected = b"rkm/v1/share-receipt\0".to_vec();
        expected.extend_from_slice(&[0, 0, 0, 4]);
        expected.extend_from_slice(b"rk-1");
        expected.extend_from_slice(&[0, 0, 0, 2]);
        expected.extend_from_slice(b"al");
        expected.extend_from_slice(&[0, 0, 0, 1, 3]);
        expected.extend_from_slice(&[0, 0, 0, 32]);
        expected.extend_from_slice(&[7; 32]);
        assert_eq!(message, expected);
    }

    #[test]
    fn field_boundaries_cannot_shift() {
        assert_ne!(notice_ack_message("ab", "c"), notice_ack_message("a", "bc"));
        assert_ne!(
            share_attestation_message("k", "alice", 1, &[7; 32], 1),
            share_attestation_message("k", "alice", 1, &[7; 32], 2)
        );
        assert!(
            !share_attestation_message("k", "al", 1, &[7; 32], 1).starts_with(SHARE_RECEIPT_LABEL)
        );
        assert_ne!(
            envelope_fetch_message("k", "alice", 1),
            envelope_fetch_message("k", "alice", 2)
        );
    }
}
