//! The bundle's header: what was approved (request, approvals) and the audit
//! proof that the issue was logged, in one canonical JSON encoding.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::encoding::field::invalid;
use crate::encoding::hex::lower_hex;
use crate::encoding::text::excerpt;
use crate::log::audit_entry::{AuditEntry, Outcome};
use crate::log::checkpoint::{VerifierKey, open_signed_checkpoint};
use crate::records::approval::{Approval, approvals_digest, verify_approvals};

use crate::log::merkle::{Hash, leaf_hash, verify_inclusion};
use crate::records::key_record::{KeyRecord, MAX_LABEL_LEN};
use crate::records::recovery_request::{CanonicalRequest, CeremonyKind, request_digest};

use super::error::HeaderError;
use super::verify::ArtefactSummary;
use super::{
    DETAIL_APPROVALS_DIGEST, DETAIL_DRILL_SIGNATURE, DETAIL_REQUEST_DIGEST, ISSUE_ACTION_DRILL,
    ISSUE_ACTION_RECOVERY, MAX_HEADER_LEN, MAX_PROOF_LEN,
};

/// The audit evidence in a header: the signed checkpoint, and the entry that
/// records the issue with its inclusion proof in that checkpoint's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditProof {
    /// C2SP signed note of the checkpoint, as the audit key signed it.
    pub signed_checkpoint: String,
    /// Leaf index of the issuing entry.
    pub entry_index: u64,
    /// The issuing entry's bytes, exactly as stored (RFC 9162 leaf).
    pub entry: Vec<u8>,
    /// Inclusion proof of the entry in the checkpoint's tree (RFC 9162 §2.1.3).
    pub inclusion_proof: Vec<Hash>,
}

/// The header line of a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtefactHeader {
    /// The recovery ceremony.
    pub ceremony_id: String,
    /// The recovery key.
    pub key_id: String,
    /// The recovery public key, SubjectPublicKeyInfo DER.
    pub public_key_spki: Vec<u8>,
    /// [`CanonicalRequest::encode`] bytes the custodians approved.
    pub canonical_request: Vec<u8>,
    /// [`request_digest`] of `canonical_request`.
    pub request_digest: [u8; 32],
    /// The approvals that made the quorum.
    pub approvals: Vec<Approval>,
    /// The issuing audit entry and its proof.
    pub audit: AuditProof,
    /// Number of S lines that follow.
    pub target_count: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderJson {
    ceremony_id: String,
    key_id: String,
    public_key_spki: String,
    canonical_request: String,
    request_digest: String,
    approvals: Vec<ApprovalJson>,
    audit: AuditJson,
    target_count: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalJson {
    custodian: String,
    nonce: String,
    commitment: String,
    signature: String,
    approved_at: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditJson {
    signed_checkpoint: String,
    entry_index: u64,
    entry: String,
    inclusion_proof: Vec<String>,
}

fn lower_hex_array<const N: usize>(
    field: &'static str,
    value: &str,
) -> Result<[u8; N], HeaderError> {
    lower_hex(field, value)?
        .try_into()
        .map_err(|_| invalid(field, format!("it is not {N} bytes")))
}

impl ArtefactHeader {
    /// The canonical header JSON, compact, in this order:
    /// `{"ceremony_id":…,"key_id":…,"public_key_spki":"<hex>",
    /// "canonical_request":"<hex>","request_digest":"<hex>",
    /// "approvals":[{"custodian":…,"nonce":"<hex>","commitment":"<hex>",
    /// "signature":"<hex>","approved_at":…},…],"audit":{"signed_checkpoint":…,
    /// "entry_index":N,"entry":"<hex>","inclusion_proof":["<hex>",…]},
    /// "target_count":N}`.
    pub fn encode(&self) -> Vec<u8> {
        let json = HeaderJson {
            ceremony_id: self.ceremony_id.clone(),
            key_id: self.key_id.clone(),
            public_key_spki: hex::encode(&self.public_key_spki),
            canonical_request: hex::encode(&self.canonical_request),
            request_digest: hex::encode(self.request_digest),
            approvals: self
                .approvals
                .iter()
                .map(|a| ApprovalJson {
                    custodian: a.custodian.clone(),
                    nonce: hex::encode(a.nonce),
                    commitment: hex::encode(a.commitment),
                    signature: hex::encode(a.signature),
                    approved_at: a.approved_at.clone(),
                })
                .collect(),
            audit: AuditJson {
                signed_checkpoint: self.audit.signed_checkpoint.clone(),
                entry_index: self.audit.entry_index,
                entry: hex::encode(&self.audit.entry),
                inclusion_proof: self
                    .audit
                    .inclusion_proof
                    .iter()
                    .map(Hash::to_hex)
                    .collect(),
            },
            target_count: self.target_count,
        };
        serde_json::to_vec(&json).expect("header JSON serialises")
    }

    /// Decodes untrusted header JSON: size first, strict JSON, lowercase hex
    /// of the right lengths, then that the input is exactly
    /// [`ArtefactHeader::encode`] of the result. Nothing is verified yet; see
    /// [`ArtefactHeader::verify`].
    ///
    /// # Errors
    ///
    /// [`HeaderError::Encoding`], [`HeaderError::InvalidField`],
    /// [`HeaderError::NotCanonical`].
    pub fn decode(bytes: &[u8]) -> Result<Self, HeaderError> {
        if bytes.len() > MAX_HEADER_LEN {
            return Err(HeaderError::Encoding(format!(
                "it is {} bytes, more than the {MAX_HEADER_LEN} accepted",
                bytes.len()
            )));
        }
        let json: HeaderJson =
            serde_json::from_slice(bytes).map_err(|e| HeaderError::Encoding(e.to_string()))?;
        if json.approvals.len() > 255 {
            return Err(invalid("approvals", "a key has at most 255 custodians"));
        }
        if json.audit.inclusion_proof.len() > MAX_PROOF_LEN {
            return Err(invalid(
                "audit.inclusion_proof",
                "it has more than 64 hashes",
            ));
        }
        let approvals = json
            .approvals
            .into_iter()
            .map(|a| {
                Ok(Approval {
                    nonce: lower_hex_array("approvals.nonce", &a.nonce)?,
                    commitment: lower_hex_array("approvals.commitment", &a.commitment)?,
                    signature: lower_hex_array("approvals.signature", &a.signature)?,
                    custodian: a.custodian,
                    approved_at: a.approved_at,
                })
            })
            .collect::<Result<Vec<_>, HeaderError>>()?;
        let inclusion_proof = json
            .audit
            .inclusion_proof
            .iter()
            .map(|h| lower_hex_array("audit.inclusion_proof", h).map(Hash::from_bytes))
            .collect::<Result<Vec<_>, _>>()?;
        let header = ArtefactHeader {
            ceremony_id: json.ceremony_id,
            key_id: json.key_id,
            public_key_spki: lower_hex("public_key_spki", &json.public_key_spki)?,
            canonical_request: lower_hex("canonical_request", &json.canonical_request)?,
            request_digest: lower_hex_array("request_digest", &json.request_digest)?,
            approvals,
            audit: AuditProof {
                signed_checkpoint: json.audit.signed_checkpoint,
                entry_index: json.audit.entry_index,
                entry: lower_hex("audit.entry", &json.audit.entry)?,
                inclusion_proof,
            },
            target_count: json.target_count,
        };
        if header.encode() != bytes {
            return Err(HeaderError::NotCanonical);
        }
        Ok(header)
    }

    /// Verifies the header against the key record (already verified with the
    /// audit key) and the trusted audit key: key id and public key are the
    /// record's; the request digest is the digest of the canonical request,
    /// which decodes, names this key and has the header's target count (zero
    /// for a drill); the approvals make a quorum ([`verify_approvals`]); the
    /// checkpoint opens with the audit key; the entry is proven in it; and
    /// the entry is the issue of this ceremony (action `recovery.issue` or
    /// `drill.issue` as the request's kind, subject the ceremony id, outcome
    /// ok, details [`DETAIL_REQUEST_DIGEST`] and [`DETAIL_APPROVALS_DIGEST`]).
    ///
    /// # Errors
    ///
    /// The first failed check, in that order.
    pub fn verify(
        &self,
        record: &KeyRecord,
        audit_key: &VerifierKey,
    ) -> Result<ArtefactSummary, HeaderError> {
        if self.ceremony_id.is_empty()
            || self.ceremony_id.len() > MAX_LABEL_LEN
            || self.ceremony_id.chars().any(char::is_control)
        {
            return Err(invalid(
                "ceremony_id",
                "it must be 1 to 128 bytes without control characters",
            ));
        }
        if self.key_id != record.key_id {
            return Err(HeaderError::KeyIdMismatch {
                header: excerpt(&self.key_id),
                record: record.key_id.clone(),
            });
        }
        if self.public_key_spki != record.public_key_spki {
            return Err(HeaderError::PublicKeyMismatch);
        }
        let computed = request_digest(&self.canonical_request);
        if computed != self.request_digest {
            return Err(HeaderError::DigestMismatch {
                stated: hex::encode(self.request_digest),
                computed: hex::encode(computed),
            });
        }
        let request =
            CanonicalRequest::decode(&self.canonical_request).map_err(HeaderError::Request)?;
        if request.key_id != self.key_id {
            return Err(HeaderError::RequestKeyMismatch {
                request: excerpt(&request.key_id),
                header: excerpt(&self.key_id),
            });
        }
        if request.targets.count != self.target_count {
            return Err(HeaderError::TargetCountMismatch {
                header: self.target_count,
                request: request.targets.count,
            });
        }
        if request.ceremony_kind == CeremonyKind::Drill && self.target_count != 0 {
            return Err(HeaderError::DrillWithCommands {
                target_count: self.target_count,
            });
        }
        verify_approvals(
            record,
            &self.ceremony_id,
            &self.request_digest,
            &self.approvals,
        )
        .map_err(HeaderError::Approvals)?;
        let checkpoint = open_signed_checkpoint(&self.audit.signed_checkpoint, audit_key)
            .map_err(HeaderError::Checkpoint)?;
        verify_inclusion(
            self.audit.entry_index,
            checkpoint.size(),
            &leaf_hash(&self.audit.entry),
            &self.audit.inclusion_proof,
            checkpoint.root(),
        )
        .map_err(HeaderError::Inclusion)?;
        let entry =
            AuditEntry::decode(&self.audit.entry).map_err(|e| HeaderError::Entry(e.to_string()))?;
        let action = match request.ceremony_kind {
            CeremonyKind::Recovery => ISSUE_ACTION_RECOVERY,
            CeremonyKind::Drill => ISSUE_ACTION_DRILL,
        };
        let expect = |field: &str, expected: &str, found: Option<&str>| {
            if found == Some(expected) {
                Ok(())
            } else {
                Err(HeaderError::IssueEntry {
                    field: field.to_owned(),
                    expected: expected.to_owned(),
                    found: found.map_or_else(|| "(missing)".to_owned(), excerpt),
                })
            }
        };
        expect("action", action, Some(&entry.action))?;
        expect("subject", &self.ceremony_id, Some(&entry.subject))?;
        expect(
            "outcome",
            &Outcome::Ok.to_string(),
            Some(&entry.outcome.to_string()),
        )?;
        for (name, value) in issue_entry_details(&self.request_digest, &self.approvals) {
            expect(
                &format!("details.{name}"),
                &value,
                entry.details.get(&name).map(String::as_str),
            )?;
        }
        if request.ceremony_kind == CeremonyKind::Drill {
            let mut signature = [0u8; 64];
            let text = entry
                .details
                .get(DETAIL_DRILL_SIGNATURE)
                .ok_or_else(|| HeaderError::DrillSignature("it is missing".to_owned()))?;
            hex::decode_to_slice(text, &mut signature)
                .map_err(|_| HeaderError::DrillSignature("it is not 128 hex digits".to_owned()))?;
            crate::records::command::verify_drill_signature(
                record,
                &self.request_digest,
                &self.ceremony_id,
                &signature,
            )
            .map_err(|e| HeaderError::DrillSignature(e.to_string()))?;
        }
        Ok(ArtefactSummary {
            ceremony_id: self.ceremony_id.clone(),
            key_id: self.key_id.clone(),
            request,
            request_digest: self.request_digest,
            target_count: self.target_count,
            approvers: self.approvals.iter().map(|a| a.custodian.clone()).collect(),
            checkpoint_origin: checkpoint.origin().to_owned(),
            checkpoint_size: checkpoint.size(),
            entry_index: self.audit.entry_index,
        })
    }
}

/// The details that the audit entry issuing an artefact must carry (rkmd
/// may add others): [`DETAIL_REQUEST_DIGEST`] and
/// [`DETAIL_APPROVALS_DIGEST`], both lowercase hex.
pub fn issue_entry_details(
    request_digest: &[u8; 32],
    approvals: &[Approval],
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            DETAIL_REQUEST_DIGEST.to_owned(),
            hex::encode(request_digest),
        ),
        (
            DETAIL_APPROVALS_DIGEST.to_owned(),
            hex::encode(approvals_digest(approvals)),
        ),
    ])
}
