//! Custodian approvals of a recovery or drill request: the message a
//! custodian signs with their Ed25519 identity key (domain label, ceremony
//! id, request digest, the daemon's single-use nonce, their share
//! commitment), and the quorum check that rkmd runs on each submission and
//! `rkm artefact verify` runs on the approvals in a bundle.

use std::collections::HashSet;

use sha2::{Digest, Sha256};

use crate::encoding::text::excerpt;
use crate::encoding::time::unix_time_from_rfc3339;
use crate::records::key_record::{KeyCustodian, KeyRecord};
use crate::sharing::messages::{SignatureError, verify_custodian_signature};

/// Label of [`approval_message`].
pub const APPROVAL_LABEL: &[u8] = b"rkm/v1/recovery-approval\0";

/// Label of [`approvals_digest`].
pub const APPROVALS_DIGEST_LABEL: &[u8] = b"rkm/v1/recovery-approvals\0";

/// Longest `approved_at` accepted, in bytes.
pub const MAX_APPROVED_AT_LEN: usize = 64;

/// Why approvals were refused. Every variant but [`ApprovalError::TooFew`]
/// names the custodian (escaped, at most 80 characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    /// The key record lists no custodian of this name.
    #[error("approval by {custodian:?}: not a custodian of this key")]
    UnknownCustodian {
        /// The name in the approval.
        custodian: String,
    },
    /// A second approval by the same custodian.
    #[error("approval by {custodian:?}: this custodian has already approved")]
    DuplicateCustodian {
        /// The custodian.
        custodian: String,
    },
    /// The approval names another share commitment than the key record's.
    #[error(
        "approval by {custodian:?}: share commitment {found} is not the one in the key record ({expected})"
    )]
    CommitmentMismatch {
        /// The custodian.
        custodian: String,
        /// The record's commitment, hex.
        expected: String,
        /// The approval's commitment, hex.
        found: String,
    },
    /// The signature does not verify over this ceremony, digest, nonce and
    /// commitment with the custodian's key from the record.
    #[error("approval by {custodian:?}: {source}")]
    BadSignature {
        /// The custodian.
        custodian: String,
        /// Why.
        source: SignatureError,
    },
    /// `approved_at` is not an RFC 3339 time.
    #[error("approval by {custodian:?}: approved_at {approved_at:?} is not an RFC 3339 time")]
    InvalidTime {
        /// The custodian.
        custodian: String,
        /// Excerpt of the value.
        approved_at: String,
    },
    /// Fewer valid approvals than the key's threshold.
    #[error("{found} valid approval(s), but the key needs {threshold}")]
    TooFew {
        /// Approvals given (all valid).
        found: usize,
        /// The key record's threshold k.
        threshold: u8,
    },
}

/// What a custodian signs to approve `request_digest` in ceremony
/// `ceremony_id`: [`APPROVAL_LABEL`], then `ceremony_id`, `request_digest`,
/// `nonce` and `commitment`, each as a u32 big-endian length and its bytes.
pub fn approval_message(
    ceremony_id: &str,
    request_digest: &[u8; 32],
    nonce: &[u8; 32],
    commitment: &[u8; 32],
) -> Vec<u8> {
    let fields: [&[u8]; 4] = [ceremony_id.as_bytes(), request_digest, nonce, commitment];
    let mut out = Vec::with_capacity(APPROVAL_LABEL.len() + 4 * 4 + ceremony_id.len() + 3 * 32);
    out.extend_from_slice(APPROVAL_LABEL);
    for field in fields {
        push_field(&mut out, field);
    }
    out
}

fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    let len = u32::try_from(field.len()).expect("approval fields are short");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(field);
}

/// One custodian's approval as rkmd accepted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// The custodian's name in the key record.
    pub custodian: String,
    /// The daemon's single-use nonce.
    pub nonce: [u8; 32],
    /// The custodian's share commitment, as in the key record.
    pub commitment: [u8; 32],
    /// Ed25519 over [`approval_message`].
    pub signature: [u8; 64],
    /// RFC 3339 time at which rkmd accepted the approval (not signed by the
    /// custodian; an artefact bundle binds it through
    /// [`approvals_digest`] in the audit entry).
    pub approved_at: String,
}

/// Verifies one approval against the key record: the custodian is in the
/// record, the commitment is theirs, the signature verifies (RFC 8032 strict)
/// over [`approval_message`] with their Ed25519 key, and `approved_at` is RFC
/// 3339. Returns the record's entry for the custodian.
///
/// rkmd runs this on each submission (it also checks the nonce is fresh and
/// the custodian has not approved before); [`verify_approvals`] runs it on
/// every approval of a quorum.
///
/// # Errors
///
/// [`ApprovalError::UnknownCustodian`], [`ApprovalError::CommitmentMismatch`],
/// [`ApprovalError::BadSignature`], [`ApprovalError::InvalidTime`].
pub fn verify_approval<'r>(
    record: &'r KeyRecord,
    ceremony_id: &str,
    request_digest: &[u8; 32],
    approval: &Approval,
) -> Result<&'r KeyCustodian, ApprovalError> {
    let name = || excerpt(&approval.custodian);
    let custodian = record
        .custodian(&approval.custodian)
        .ok_or_else(|| ApprovalError::UnknownCustodian { custodian: name() })?;
    if custodian.commitment != approval.commitment {
        return Err(ApprovalError::CommitmentMismatch {
            custodian: name(),
            expected: hex::encode(custodian.commitment),
            found: hex::encode(approval.commitment),
        });
    }
    let message = approval_message(
        ceremony_id,
        request_digest,
        &approval.nonce,
        &approval.commitment,
    );
    verify_custodian_signature(&custodian.ed25519_public_key, &message, &approval.signature)
        .map_err(|source| ApprovalError::BadSignature {
            custodian: name(),
            source,
        })?;
    if approval.approved_at.len() > MAX_APPROVED_AT_LEN
        || unix_time_from_rfc3339(&approval.approved_at).is_none()
    {
        return Err(ApprovalError::InvalidTime {
            custodian: name(),
            approved_at: excerpt(&approval.approved_at),
        });
    }
    Ok(custodian)
}

/// Checks a quorum of approvals against the key record: each one as
/// [`verify_approval`], no custodian twice, and at least the record's
/// threshold of them. The first bad approval is reported.
///
/// # Errors
///
/// Every error of [`verify_approval`], [`ApprovalError::DuplicateCustodian`],
/// then [`ApprovalError::TooFew`].
pub fn verify_approvals(
    record: &KeyRecord,
    ceremony_id: &str,
    request_digest: &[u8; 32],
    approvals: &[Approval],
) -> Result<(), ApprovalError> {
    let mut seen = HashSet::with_capacity(approvals.len());
    for approval in approvals {
        if !seen.insert(approval.custodian.as_str()) {
            return Err(ApprovalError::DuplicateCustodian {
                custodian: excerpt(&approval.custodian),
            });
        }
        verify_approval(record, ceremony_id, request_digest, approval)?;
    }
    if approvals.len() < usize::from(record.threshold) {
        return Err(ApprovalError::TooFew {
            found: approvals.len(),
            threshold: record.threshold,
        });
    }
    Ok(())
}

/// SHA-256 over [`APPROVALS_DIGEST_LABEL`], the number of approvals (u32
/// big-endian) and, per approval in order, `custodian`, `nonce`,
/// `commitment`, `signature` and `approved_at`, each as a u32 big-endian
/// length and its bytes.
///
/// rkmd records it (hex) as detail `approvals_digest` of the audit entry that
/// issues the artefact, so the signed audit log fixes exactly which
/// approvals, with which times, made the quorum.
pub fn approvals_digest(approvals: &[Approval]) -> [u8; 32] {
    let mut buf = Vec::with_capacity(APPROVALS_DIGEST_LABEL.len() + 4 + approvals.len() * 256);
    buf.extend_from_slice(APPROVALS_DIGEST_LABEL);
    let count = u32::try_from(approvals.len()).expect("at most 255 custodians");
    buf.extend_from_slice(&count.to_be_bytes());
    for a in approvals {
        push_field(&mut buf, a.custodian.as_bytes());
        push_field(&mut buf, &a.nonce);
        push_field(&mut buf, &a.commitment);
        push_field(&mut buf, &a.signature);
        push_field(&mut buf, a.approved_at.as_bytes());
    }
    Sha256::digest(&buf).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approval_message_layout_is_length_prefixed() {
        let message = approval_message("cer-1", &[1; 32], &[2; 32], &[3; 32]);
        let mut expected = b"rkm/v1/recovery-approval\0".to_vec();
        expected.extend_from_slice(&[0, 0, 0, 5]);
        expected.extend_from_slice(b"cer-1");
        for byte in [1u8, 2, 3] {
            expected.extend_from_slice(&[0, 0, 0, 32]);
            expected.extend_from_slice(&[byte; 32]);
        }
        assert_eq!(message, expected);
    }

    #[test]
    fn approvals_digest_changes_with_every_field_and_order() {
        let a = Approval {
            custodian: "c1".to_owned(),
            nonce: [1; 32],
            commitment: [2; 32],
            signature: [3; 64],
            approved_at: "2026-11-27T04:20:21.123Z".to_owned(),
        };
        let b = Approval {
            custodian: "c2".to_owned(),
            ..a.clone()
        };
        let base = approvals_digest(&[a.clone(), b.clone()]);
        assert_ne!(base, approvals_digest(&[b.clone(), a.clone()]));
        assert_ne!(base, approvals_digest(std::slice::from_ref(&a)));
        let mut changed = a.clone();
        changed.approved_at = "2026-11-27T04:20:22.123Z".to_owned();
        assert_ne!(base, approvals_digest(&[changed, b.clone()]));
        let mut changed = a.clone();
        changed.signature[63] ^= 1;
        assert_ne!(base, approvals_digest(&[changed, b]));
    }
}
