//! Why a bundle's header or the bundle was refused, each naming the field,
//! line or target at fault.

use crate::encoding::field::FieldError;
use crate::log::checkpoint::CheckpointError;
use crate::records::approval::ApprovalError;
use crate::records::command::CommandError;

use crate::log::merkle::ProofError;
use crate::records::recovery_request::RequestError;

use super::ARTEFACT_MAGIC;

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
