//! The artefact bundle: the portable result of a recovery ceremony. rkmd
//! streams it out with [`ArtefactWriter`] as the HSM signs; `rkm artefact
//! verify` checks it offline with [`verify_artefact`], given nothing but the
//! bundle, the key record and the trusted audit key.
//!
//! The bundle is text, one record per line, each ending in `\n`:
//!
//! ```text
//! rkm-artefact v1
//! header <base64 of the header JSON>
//! S <sequence> <device id> <r‖s, 128 lowercase hex digits>
//! …one S line per target, sequence 0, 1, 2, … in manifest order
//! end <count>
//! ```
//!
//! The header JSON is compact with a fixed field order (see
//! [`ArtefactHeader::encode`]). Every byte of the bundle is covered: the
//! header by the key record, the request digest, the custodians' approval
//! signatures and the audit log (the issuing entry carries the request digest
//! and [`approvals_digest`], and is proven into a signed checkpoint); each S
//! line by the recovery key's signature; the device list as a whole by the
//! approved target digest; the end line by the count.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Read, Write};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::encoding::field::{FieldError, invalid};
use crate::encoding::hex::lower_hex;
use crate::encoding::text::excerpt;
use crate::log::audit_entry::{AuditEntry, Outcome, action};
use crate::log::checkpoint::{CheckpointError, VerifierKey, open_signed_checkpoint};
use crate::records::approval::{Approval, ApprovalError, approvals_digest, verify_approvals};
use crate::records::command::{CommandError, CommandVerifier, normalize_signature};
use signatures::SignatureCheck;

mod signatures;
use crate::log::merkle::{Hash, ProofError, leaf_hash, verify_inclusion};
use crate::records::key_record::{KeyRecord, MAX_LABEL_LEN};
use crate::records::recovery_request::{
    CanonicalRequest, CeremonyKind, RequestError, TargetsDigest, TargetsHasher, request_digest,
};

/// The first line of every bundle.
pub const ARTEFACT_MAGIC: &str = "rkm-artefact v1";

/// Largest header JSON accepted, 4 MiB.
pub const MAX_HEADER_LEN: usize = 4 << 20;

/// Longest line other than the header, without its newline. An S line is at
/// most 2 + 20 + 1 + 128 + 1 + 128 = 280 bytes.
pub const MAX_RECORD_LINE_LEN: usize = 512;

/// Longest header line: `header ` and the base64 of [`MAX_HEADER_LEN`] bytes.
const MAX_HEADER_LINE_LEN: usize = 7 + MAX_HEADER_LEN.div_ceil(3) * 4;

/// SHA-256 of a bundle's first two lines (magic and header, newlines
/// included), or `None` while `input` does not hold both whole.
///
/// rkmd signs a ceremony anew, under a new header, when it restarts in the
/// middle of signing; a collector resuming from a partial bundle sends this
/// digest so that rkmd can tell whether the bytes it holds are still part of
/// the artefact.
///
/// # Errors
///
/// Errors of `input`.
pub fn header_lines_digest(input: impl BufRead) -> io::Result<Option<[u8; 32]>> {
    use sha2::{Digest as _, Sha256};
    let limit = ARTEFACT_MAGIC.len() + 1 + MAX_HEADER_LINE_LEN + 1;
    let mut input = input.take(limit as u64);
    let mut lines = Vec::new();
    for _ in 0..2 {
        input.read_until(b'\n', &mut lines)?;
        if lines.last() != Some(&b'\n') {
            return Ok(None);
        }
    }
    Ok(Some(Sha256::digest(&lines).into()))
}

/// Most inclusion proof hashes (a tree of 2^64 leaves needs 64).
const MAX_PROOF_LEN: usize = 64;

/// Action of the audit entry that issues a recovery's artefact (an alias of
/// [`action::RECOVERY_ISSUE`], kept for one release).
pub const ISSUE_ACTION_RECOVERY: &str = action::RECOVERY_ISSUE;
/// Action of the audit entry that issues a drill's artefact (an alias of
/// [`action::DRILL_ISSUE`], kept for one release).
pub const ISSUE_ACTION_DRILL: &str = action::DRILL_ISSUE;
/// Detail of a drill's issuing entry: the drill signature (hex r‖s) over
/// [`crate::records::command::drill_challenge_digest`].
pub const DETAIL_DRILL_SIGNATURE: &str = "drill_signature";
/// Detail of the issuing entry: hex request digest.
pub const DETAIL_REQUEST_DIGEST: &str = "request_digest";
/// Detail of the issuing entry: hex [`approvals_digest`] of the header's approvals.
pub const DETAIL_APPROVALS_DIGEST: &str = "approvals_digest";

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

/// Why a bundle's header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Not base64 of JSON of the header's shape, or too large.
    #[error("the header is not readable: {0}")]
    Encoding(String),
    /// Readable, but not byte for byte the canonical encoding.
    #[error("the header is not in canonical form; it was not produced by rkm")]
    NotCanonical,
    /// A field breaks its rule.
    #[error("header field {field} is invalid: {reason}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The header is for another key than the record.
    #[error("the bundle is for key {header:?}, but the key record is for {record:?}")]
    KeyIdMismatch {
        /// Key id in the header.
        header: String,
        /// Key id of the record.
        record: String,
    },
    /// The header's public key is not the record's.
    #[error("the bundle's recovery public key is not the key record's")]
    PublicKeyMismatch,
    /// The key record's public key cannot verify signatures.
    #[error("the key record's public key is unusable: {0}")]
    RecordKey(CommandError),
    /// The stated request digest is not the digest of the canonical request.
    #[error("request digest {stated} is not the digest of the request, {computed}")]
    DigestMismatch {
        /// Hex digest in the header.
        stated: String,
        /// Hex digest computed.
        computed: String,
    },
    /// The canonical request does not decode.
    #[error("the request is invalid: {0}")]
    Request(RequestError),
    /// The request names another key.
    #[error("the request is for key {request:?}, not for {header:?}")]
    RequestKeyMismatch {
        /// Key id in the request.
        request: String,
        /// Key id in the header.
        header: String,
    },
    /// The header's target count is not the approved one.
    #[error("the header announces {header} targets, but the approved request has {request}")]
    TargetCountMismatch {
        /// Count in the header.
        header: u64,
        /// Count in the request.
        request: u64,
    },
    /// A drill request with commands: a drill never yields a command.
    #[error("the request is a drill, but the bundle carries {target_count} commands")]
    DrillWithCommands {
        /// Count in the header.
        target_count: u64,
    },
    /// The approvals do not make a valid quorum.
    #[error("{0}")]
    Approvals(ApprovalError),
    /// The checkpoint does not open with the audit key.
    #[error("the audit checkpoint is invalid: {0}")]
    Checkpoint(CheckpointError),
    /// The issuing entry is not in the checkpoint's tree.
    #[error("the issuing audit entry is not proven in the checkpoint: {0}")]
    Inclusion(ProofError),
    /// The issuing entry does not decode (the
    /// [`crate::log::audit_entry::EntryError`], as text).
    #[error("the issuing audit entry is invalid: {0}")]
    Entry(String),
    /// A drill's issuing entry lacks a drill signature that verifies.
    #[error("the drill signature in the issuing audit entry does not verify: {0}")]
    DrillSignature(String),
    /// The issuing entry does not record this issue.
    #[error("the issuing audit entry's {field} is {found:?}, expected {expected:?}")]
    IssueEntry {
        /// `action`, `subject`, `outcome` or `details.<name>`.
        field: String,
        /// What the bundle requires.
        expected: String,
        /// What the entry holds (escaped excerpt).
        found: String,
    },
}

impl FieldError for HeaderError {
    fn invalid_field(field: &'static str, reason: String) -> Self {
        HeaderError::InvalidField { field, reason }
    }
    fn not_canonical() -> Self {
        HeaderError::NotCanonical
    }
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

/// What a verified bundle holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtefactSummary {
    /// The ceremony.
    pub ceremony_id: String,
    /// The recovery key.
    pub key_id: String,
    /// The approved request (command, reason, window, targets, …).
    pub request: CanonicalRequest,
    /// Its digest.
    pub request_digest: [u8; 32],
    /// Number of signed commands.
    pub target_count: u64,
    /// Custodians whose approvals made the quorum, in header order.
    pub approvers: Vec<String>,
    /// Origin of the audit log that recorded the issue.
    pub checkpoint_origin: String,
    /// Size of the checkpoint's tree.
    pub checkpoint_size: u64,
    /// Leaf index of the issuing entry.
    pub entry_index: u64,
}

impl ArtefactSummary {
    /// `replace-trust-anchor`, `revoke-certificate` or `custom`.
    pub fn command_kind(&self) -> &'static str {
        self.request.command.kind()
    }
}

/// What is wrong with one S line whose sequence number could be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandProblem {
    /// Not the next sequence number.
    #[error("expected sequence {expected}")]
    UnexpectedSequence {
        /// The sequence number that should come next.
        expected: u64,
    },
    /// More S lines than the header announces.
    #[error("the header announces only {target_count} targets")]
    BeyondTargetCount {
        /// Count in the header.
        target_count: u64,
    },
    /// The device id breaks the device id rule.
    #[error("the device id is invalid: {0}")]
    InvalidDeviceId(&'static str),
    /// The signature field is not 128 lowercase hex digits.
    #[error("the signature is not 128 lowercase hex digits")]
    SignatureNotHex,
    /// The signature is refused by the recovery key.
    #[error("{0}")]
    Signature(CommandError),
}

/// Why a bundle failed verification: always the first bad record, with its
/// line number (1-based) and, for a signed command, its sequence and device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArtefactError {
    /// Reading the input failed.
    #[error("line {line}: could not read the bundle: {message}")]
    Io {
        /// Line being read.
        line: u64,
        /// The I/O error.
        message: String,
    },
    /// The first line is not [`ARTEFACT_MAGIC`].
    #[error("line 1: not an rkm artefact bundle (expected {ARTEFACT_MAGIC:?}, found {found:?})")]
    NotAnArtefact {
        /// Escaped excerpt of the first line.
        found: String,
    },
    /// A line is not a record of the format.
    #[error("line {line}: {reason}")]
    Malformed {
        /// The line.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// The header (line 2) fails verification.
    #[error("line 2 (header): {0}")]
    Header(HeaderError),
    /// A signed command fails verification.
    #[error("line {line} (sequence {sequence}, device {device_id:?}): {problem}")]
    Command {
        /// The line.
        line: u64,
        /// Its sequence number.
        sequence: u64,
        /// Its device id (escaped excerpt).
        device_id: String,
        /// What failed.
        problem: CommandProblem,
    },
    /// The bundle stops before its end line.
    #[error(
        "line {line}: the bundle ends after {found} of {expected} signed commands without an end line: it is truncated"
    )]
    Truncated {
        /// The line where more was expected.
        line: u64,
        /// Commands verified.
        found: u64,
        /// Commands announced.
        expected: u64,
    },
    /// The end line's count is not the header's and the lines'.
    #[error(
        "line {line}: the end line states {stated} commands, the header announces {expected} and the bundle holds {found}"
    )]
    CountMismatch {
        /// The end line.
        line: u64,
        /// Count on the end line.
        stated: u64,
        /// Count in the header.
        expected: u64,
        /// S lines seen.
        found: u64,
    },
    /// The device ids, in order, are not the target list custodians approved.
    #[error(
        "line {line}: the devices of the signed commands are not the approved target list (SHA-256 {computed}, approved {approved})"
    )]
    TargetsMismatch {
        /// The end line.
        line: u64,
        /// Hex SHA-256 over the devices in the bundle.
        computed: String,
        /// Hex SHA-256 in the approved request.
        approved: String,
    },
    /// Anything after the end line.
    #[error("line {line}: there is data after the end line")]
    TrailingData {
        /// The first line after the end line.
        line: u64,
    },
}

impl ArtefactError {
    /// The 1-based line of the bad record.
    pub fn line(&self) -> u64 {
        match self {
            ArtefactError::NotAnArtefact { .. } => 1,
            ArtefactError::Header(_) => 2,
            ArtefactError::Io { line, .. }
            | ArtefactError::Malformed { line, .. }
            | ArtefactError::Command { line, .. }
            | ArtefactError::Truncated { line, .. }
            | ArtefactError::CountMismatch { line, .. }
            | ArtefactError::TargetsMismatch { line, .. }
            | ArtefactError::TrailingData { line } => *line,
        }
    }
}

/// Reads one line at a time into a reused buffer, never more than a limit.
struct LineReader<R> {
    input: R,
    buf: Vec<u8>,
    line: u64,
}

enum Line {
    /// A complete line (newline removed) is in the buffer.
    Complete,
    /// The input ended with no byte of this line.
    End,
    /// The input ended inside this line (no newline).
    Cut,
}

impl<R: BufRead> LineReader<R> {
    fn next(&mut self, max: usize) -> Result<Line, ArtefactError> {
        self.buf.clear();
        self.line += 1;
        let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
        let read = (&mut self.input)
            .take(limit)
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| ArtefactError::Io {
                line: self.line,
                message: e.to_string(),
            })?;
        if read == 0 {
            return Ok(Line::End);
        }
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
            return Ok(Line::Complete);
        }
        if self.buf.len() > max {
            return Err(ArtefactError::Malformed {
                line: self.line,
                reason: format!("the line is longer than {max} bytes"),
            });
        }
        Ok(Line::Cut)
    }

    fn text(&self) -> Result<&str, ArtefactError> {
        std::str::from_utf8(&self.buf).map_err(|_| ArtefactError::Malformed {
            line: self.line,
            reason: "the line is not UTF-8".to_owned(),
        })
    }
}

/// A decimal u64 without sign or leading zeros.
fn canonical_u64(text: &str) -> Option<u64> {
    if text.is_empty()
        || !text.bytes().all(|b| b.is_ascii_digit())
        || (text.len() > 1 && text.starts_with('0'))
    {
        return None;
    }
    text.parse().ok()
}

/// Verifies a bundle, streaming, in memory bounded by the largest header
/// and independent of the number of commands, with nothing but the bundle,
/// the key record (already verified with the audit key,
/// [`crate::records::key_record::SignedKeyRecord::verify`]) and the trusted audit key:
///
/// 1. line 1 is [`ARTEFACT_MAGIC`]; line 2 the header, which passes
///    [`ArtefactHeader::verify`];
/// 2. every S line: sequence consecutive from 0, device id valid, ECDSA P-256
///    low-S signature over [`crate::records::command::command_digest`] with the record's public key;
/// 3. the end line: count = header's target count = S lines seen, the device
///    ids in order hash to the approved target digest, nothing follows; a
///    missing end line is truncation.
///
/// `progress` is called with the number of commands verified so far after
/// each one.
///
/// # Errors
///
/// The first bad record, as an [`ArtefactError`] naming its line (and for an
/// S line its sequence and device id).
pub fn verify_artefact(
    input: impl BufRead,
    record: &KeyRecord,
    audit_key: &VerifierKey,
    progress: impl FnMut(u64),
) -> Result<ArtefactSummary, ArtefactError> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    verify_artefact_on_threads(input, record, audit_key, threads, progress)
}

/// [`verify_artefact`] with the signature checks on `threads` threads (1: on
/// the calling thread). The result does not depend on `threads`: the first
/// bad record is named whichever thread finds it.
///
/// # Errors
///
/// As [`verify_artefact`].
pub fn verify_artefact_on_threads(
    input: impl BufRead,
    record: &KeyRecord,
    audit_key: &VerifierKey,
    threads: usize,
    mut progress: impl FnMut(u64),
) -> Result<ArtefactSummary, ArtefactError> {
    let mut lines = LineReader {
        input,
        buf: Vec::new(),
        line: 0,
    };
    // Line 1: magic.
    match lines.next(MAX_RECORD_LINE_LEN)? {
        Line::Complete if lines.buf == ARTEFACT_MAGIC.as_bytes() => {}
        Line::End => {
            return Err(ArtefactError::NotAnArtefact {
                found: String::new(),
            });
        }
        _ => {
            return Err(ArtefactError::NotAnArtefact {
                found: excerpt(&String::from_utf8_lossy(&lines.buf)),
            });
        }
    }
    // Line 2: header.
    let header = match lines.next(MAX_HEADER_LINE_LEN)? {
        Line::Complete => {
            let encoded =
                lines
                    .buf
                    .strip_prefix(b"header ")
                    .ok_or_else(|| ArtefactError::Malformed {
                        line: 2,
                        reason: "expected the header line, \"header <base64>\"".to_owned(),
                    })?;
            let json = STANDARD.decode(encoded).map_err(|e| {
                ArtefactError::Header(HeaderError::Encoding(format!(
                    "it is not canonical base64 ({e})"
                )))
            })?;
            ArtefactHeader::decode(&json).map_err(ArtefactError::Header)?
        }
        Line::End | Line::Cut => {
            return Err(ArtefactError::Malformed {
                line: 2,
                reason: "the bundle ends before its header line: it is truncated".to_owned(),
            });
        }
    };
    let summary = header
        .verify(record, audit_key)
        .map_err(ArtefactError::Header)?;
    let verifier = CommandVerifier::from_spki(&record.public_key_spki)
        .map_err(|e| ArtefactError::Header(HeaderError::RecordKey(e)))?;
    let digest = header.request_digest;
    let target_count = header.target_count;
    let approved_targets = summary.request.targets;
    drop(header);

    signatures::check_signatures(&verifier, &digest, threads, |checks| {
        let mut targets = TargetsHasher::new();
        let mut next_sequence = 0u64;
        loop {
            let line = lines.line + 1;
            match lines.next(MAX_RECORD_LINE_LEN)? {
                Line::Complete => {}
                Line::End | Line::Cut => {
                    return Err(ArtefactError::Truncated {
                        line,
                        found: next_sequence,
                        expected: target_count,
                    });
                }
            }
            let text = lines.text()?;
            let mut fields = text.split(' ');
            match fields.next() {
                Some("S") => {
                    let command = SignedLine::parse(line, fields)?;
                    let check = command.check(next_sequence, target_count, &mut targets)?;
                    next_sequence += 1;
                    progress(next_sequence);
                    if !checks.push(check) {
                        return Ok(None);
                    }
                }
                Some("end") => {
                    let stated = match (fields.next().and_then(canonical_u64), fields.next()) {
                        (Some(stated), None) => stated,
                        _ => {
                            return Err(ArtefactError::Malformed {
                                line,
                                reason: "the end line is not \"end <count>\"".to_owned(),
                            });
                        }
                    };
                    if stated != target_count || next_sequence != target_count {
                        return Err(ArtefactError::CountMismatch {
                            line,
                            stated,
                            expected: target_count,
                            found: next_sequence,
                        });
                    }
                    let computed = targets.finish();
                    if computed != approved_targets {
                        return Err(ArtefactError::TargetsMismatch {
                            line,
                            computed: hex::encode(computed.sha256),
                            approved: hex::encode(approved_targets.sha256),
                        });
                    }
                    return match lines.next(MAX_RECORD_LINE_LEN) {
                        Ok(Line::End) => Ok(Some(summary)),
                        Ok(_) | Err(ArtefactError::Malformed { .. }) => {
                            Err(ArtefactError::TrailingData { line: line + 1 })
                        }
                        Err(e) => Err(e),
                    };
                }
                _ => {
                    return Err(ArtefactError::Malformed {
                        line,
                        reason: format!(
                            "expected an S line or the end line, found {:?}",
                            excerpt(text.get(..40).unwrap_or(text))
                        ),
                    });
                }
            }
        }
    })
}

/// An S line split into its fields.
struct SignedLine<'a> {
    line: u64,
    sequence: u64,
    device_id: &'a str,
    signature: &'a str,
}

impl<'a> SignedLine<'a> {
    fn parse(line: u64, mut fields: std::str::Split<'a, char>) -> Result<Self, ArtefactError> {
        let malformed = |reason: &str| ArtefactError::Malformed {
            line,
            reason: reason.to_owned(),
        };
        let (Some(sequence), Some(device_id), Some(signature), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(malformed(
                "an S line is \"S <sequence> <device id> <signature>\", separated by single spaces",
            ));
        };
        let sequence = canonical_u64(sequence).ok_or_else(|| {
            malformed("the sequence number is not a decimal number without leading zeros")
        })?;
        Ok(SignedLine {
            line,
            sequence,
            device_id,
            signature,
        })
    }

    /// Checks everything but the signature, which the caller checks with
    /// the returned [`SignatureCheck`].
    fn check(
        &self,
        expected: u64,
        target_count: u64,
        targets: &mut TargetsHasher,
    ) -> Result<SignatureCheck, ArtefactError> {
        let fail = |problem| ArtefactError::Command {
            line: self.line,
            sequence: self.sequence,
            device_id: excerpt(self.device_id),
            problem,
        };
        if self.sequence != expected {
            return Err(fail(CommandProblem::UnexpectedSequence { expected }));
        }
        if self.sequence >= target_count {
            return Err(fail(CommandProblem::BeyondTargetCount { target_count }));
        }
        targets.push(self.device_id).map_err(|e| {
            fail(CommandProblem::InvalidDeviceId(match e {
                RequestError::InvalidDeviceId { reason, .. } => reason,
                _ => "it is not a device id",
            }))
        })?;
        let mut signature = [0u8; 64];
        if self.signature.len() != 128
            || self.signature.bytes().any(|b| b.is_ascii_uppercase())
            || hex::decode_to_slice(self.signature, &mut signature).is_err()
        {
            return Err(fail(CommandProblem::SignatureNotHex));
        }
        Ok(SignatureCheck {
            line: self.line,
            sequence: self.sequence,
            device_id: self.device_id.to_owned(),
            signature,
        })
    }
}

/// Writes a bundle as rkmd signs: the magic and header lines at once, then
/// one S line per [`ArtefactWriter::signed`], then the end line at
/// [`ArtefactWriter::finish`]. Pass a buffered writer; each line is one
/// `write_all`.
///
/// The writer refuses (with [`io::ErrorKind::InvalidInput`]) anything
/// [`verify_artefact`] would refuse in the lines it writes: a sequence out of
/// order or beyond the target count, an invalid device id, a signature that
/// is not low-S (use [`normalize_signature`] on HSM output), a device list
/// that is not the approved one, or too few commands at the end.
#[derive(Debug)]
pub struct ArtefactWriter<W: Write> {
    out: W,
    next_sequence: u64,
    target_count: u64,
    approved_targets: TargetsDigest,
    targets: TargetsHasher,
    line: Vec<u8>,
}

fn invalid_input(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

impl<W: Write> ArtefactWriter<W> {
    /// Writes the magic and header lines.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] if the header's canonical request does
    /// not decode or its target count is not the header's; otherwise errors
    /// of `out`.
    pub fn new(mut out: W, header: &ArtefactHeader) -> io::Result<Self> {
        let request = CanonicalRequest::decode(&header.canonical_request)
            .map_err(|e| invalid_input(format!("artefact header: {e}")))?;
        if request.targets.count != header.target_count {
            return Err(invalid_input(format!(
                "artefact header announces {} targets, but the request has {}",
                header.target_count, request.targets.count
            )));
        }
        let json = header.encode();
        if json.len() > MAX_HEADER_LEN {
            return Err(invalid_input(format!(
                "artefact header is {} bytes, more than the {MAX_HEADER_LEN} a verifier accepts",
                json.len()
            )));
        }
        let mut first = Vec::with_capacity(ARTEFACT_MAGIC.len() + 9 + json.len() * 4 / 3 + 4);
        first.extend_from_slice(ARTEFACT_MAGIC.as_bytes());
        first.extend_from_slice(b"\nheader ");
        first.extend_from_slice(STANDARD.encode(&json).as_bytes());
        first.push(b'\n');
        out.write_all(&first)?;
        Ok(ArtefactWriter {
            out,
            next_sequence: 0,
            target_count: header.target_count,
            approved_targets: request.targets,
            targets: TargetsHasher::new(),
            line: Vec::with_capacity(MAX_RECORD_LINE_LEN),
        })
    }

    /// Commands written so far.
    pub fn written(&self) -> u64 {
        self.next_sequence
    }

    /// Writes the S line of one signed command.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] for a sequence that is not the next
    /// one or beyond the target count, an invalid device id, or a signature
    /// that is not a low-S r‖s; otherwise errors of `out`.
    pub fn signed(
        &mut self,
        sequence: u64,
        device_id: &str,
        signature: &[u8; 64],
    ) -> io::Result<()> {
        if sequence != self.next_sequence {
            return Err(invalid_input(format!(
                "artefact: sequence {sequence} given, {} expected",
                self.next_sequence
            )));
        }
        if sequence >= self.target_count {
            return Err(invalid_input(format!(
                "artefact: sequence {sequence} is beyond the {} targets",
                self.target_count
            )));
        }
        match normalize_signature(signature) {
            Ok(low) if low == *signature => {}
            Ok(_) => {
                return Err(invalid_input(format!(
                    "artefact: the signature of sequence {sequence} has a high S; normalise it first"
                )));
            }
            Err(e) => return Err(invalid_input(format!("artefact: sequence {sequence}: {e}"))),
        }
        self.targets
            .push(device_id)
            .map_err(|e| invalid_input(format!("artefact: sequence {sequence}: {e}")))?;
        let mut sig_hex = [0u8; 128];
        hex::encode_to_slice(signature, &mut sig_hex).expect("128 hex digits for 64 bytes");
        self.line.clear();
        self.line.extend_from_slice(b"S ");
        self.line.extend_from_slice(sequence.to_string().as_bytes());
        self.line.push(b' ');
        self.line.extend_from_slice(device_id.as_bytes());
        self.line.push(b' ');
        self.line.extend_from_slice(&sig_hex);
        self.line.push(b'\n');
        self.out.write_all(&self.line)?;
        self.next_sequence += 1;
        Ok(())
    }

    /// Flushes what is written so far, so readers of a bundle being signed
    /// see every complete line.
    ///
    /// # Errors
    ///
    /// Errors of `out`.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Writes the end line, flushes, and returns the writer.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] if fewer commands than the target
    /// count were written or their device ids are not the approved target
    /// list (nothing is written then); otherwise errors of `out`.
    pub fn finish(mut self) -> io::Result<W> {
        if self.next_sequence != self.target_count {
            return Err(invalid_input(format!(
                "artefact: {} of {} commands written",
                self.next_sequence, self.target_count
            )));
        }
        if self.targets.finish() != self.approved_targets {
            return Err(invalid_input(
                "artefact: the devices written are not the approved target list".to_owned(),
            ));
        }
        writeln!(self.out, "end {}", self.target_count)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_u64_refuses_signs_and_leading_zeros() {
        assert_eq!(canonical_u64("0"), Some(0));
        assert_eq!(canonical_u64("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            "00",
            "01",
            "+1",
            "-1",
            " 1",
            "18446744073709551616",
            "1a",
        ] {
            assert_eq!(canonical_u64(bad), None, "{bad}");
        }
    }

    #[test]
    fn line_reader_stops_at_the_limit_and_reports_cut_lines() {
        let mut reader = LineReader {
            input: &b"abc\nabcdef\nxy"[..],
            buf: Vec::new(),
            line: 0,
        };
        assert!(matches!(reader.next(5), Ok(Line::Complete)));
        assert_eq!(reader.buf, b"abc");
        assert!(matches!(
            reader.next(5),
            Err(ArtefactError::Malformed { line: 2, .. })
        ));
        let mut reader = LineReader {
            input: &b"xy"[..],
            buf: Vec::new(),
            line: 0,
        };
        assert!(matches!(reader.next(5), Ok(Line::Cut)));
        assert!(matches!(reader.next(5), Ok(Line::End)));
    }

    #[test]
    fn header_decode_refuses_uppercase_hex_and_unknown_fields() {
        let header = ArtefactHeader {
            ceremony_id: "cer-1".to_owned(),
            key_id: "rk-1".to_owned(),
            public_key_spki: vec![0xab],
            canonical_request: vec![0xcd],
            request_digest: [0xef; 32],
            approvals: vec![],
            audit: AuditProof {
                signed_checkpoint: "x\n".to_owned(),
                entry_index: 0,
                entry: vec![1],
                inclusion_proof: vec![Hash::from_bytes([2; 32])],
            },
            target_count: 1,
        };
        let bytes = header.encode();
        assert_eq!(ArtefactHeader::decode(&bytes).unwrap(), header);
        let upper = String::from_utf8(bytes.clone())
            .unwrap()
            .replace("\"ab\"", "\"AB\"");
        assert_eq!(
            ArtefactHeader::decode(upper.as_bytes()),
            Err(HeaderError::NotCanonical)
        );
        let spaced = String::from_utf8(bytes).unwrap().replacen(':', ": ", 1);
        assert_eq!(
            ArtefactHeader::decode(spaced.as_bytes()),
            Err(HeaderError::NotCanonical)
        );
    }
}
