//! Why an audit file was refused, and where the altered entry is
//! ([`Diagnosis`]), each message naming the line, entry and checkpoint.

use std::io;

use super::HEADER;
use crate::encoding::text;
use crate::log::checkpoint::CheckpointError;
use crate::log::merkle::Hash;

/// Why an audit file was refused, or could not be read. Every variant but
/// [`AuditFileError::Io`] means the file does not verify; each names the line
/// (1-based) and the entry index or checkpoint size concerned, and where it
/// applies the expected and the found value.
#[derive(Debug, thiserror::Error)]
pub enum AuditFileError {
    /// Reading the file failed; this says nothing about its contents.
    #[error("cannot read the audit file: {0}")]
    Io(#[from] io::Error),
    /// The file ends before its three header lines.
    #[error(
        "the file ends at line {line}, before the {what} line of its header: it is empty or truncated"
    )]
    MissingHeader {
        /// The line that is missing.
        line: u64,
        /// Which header line: "rkm-audit-log", "origin" or "audit-key".
        what: &'static str,
    },
    /// A header line is not what version 1 puts there.
    #[error("line {line}: expected {expected:?}, found {found:?}")]
    BadHeader {
        /// The line.
        line: u64,
        /// What version 1 has there.
        expected: &'static str,
        /// Excerpt of the line found.
        found: String,
    },
    /// The file is of another format version.
    #[error("line 1: this is an audit file of format {found:?}; this rkm reads {HEADER:?}")]
    UnsupportedVersion {
        /// Excerpt of the first line.
        found: String,
    },
    /// The audit key in the header cannot be parsed.
    #[error("line {line}: the audit key in the header is invalid: {source}")]
    BadAuditKey {
        /// The line.
        line: u64,
        /// Why.
        source: CheckpointError,
    },
    /// The file is of another audit key than the trusted one.
    #[error(
        "line {line}: the file is of audit key {found}, but the trusted audit key is {expected}: it is another log, or its key was replaced"
    )]
    KeyMismatch {
        /// The line.
        line: u64,
        /// The trusted key.
        expected: String,
        /// The key in the file.
        found: String,
    },
    /// The file is of another log than the trusted origin.
    #[error("line {line}: the file is of log origin {found:?}, expected {expected:?}")]
    OriginMismatch {
        /// The line.
        line: u64,
        /// The trusted origin.
        expected: String,
        /// Excerpt of the origin in the file.
        found: String,
    },
    /// A line that is neither an entry nor a checkpoint, or is one badly.
    #[error("line {line}: {reason}")]
    MalformedLine {
        /// The line.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A line longer than any valid one; it was not read whole.
    #[error("line {line} is longer than {max} bytes, more than any valid {what} line")]
    LineTooLong {
        /// The line.
        line: u64,
        /// The limit.
        max: usize,
        /// "entry" or "audit file".
        what: &'static str,
    },
    /// The last line has no newline: the file was cut while being written or copied.
    #[error("line {line} ends without a newline: the file is truncated in the middle of a line")]
    TruncatedLine {
        /// The unfinished line.
        line: u64,
    },
    /// An entry is not the next one: entries were deleted, inserted or moved.
    #[error(
        "line {line}: expected entry {expected}, found entry {found}: an entry was deleted, inserted, duplicated or moved"
    )]
    EntryOutOfOrder {
        /// The line.
        line: u64,
        /// The index that must come next.
        expected: u64,
        /// The index found.
        found: u64,
    },
    /// A checkpoint note does not open with the trusted key, or its body is
    /// not a checkpoint.
    #[error("line {line}: checkpoint{}: {source}", claimed_size_suffix(*.claimed_size))]
    CheckpointSignature {
        /// The line.
        line: u64,
        /// The size the unverified note claims, if it can be read.
        claimed_size: Option<u64>,
        /// Why it was refused.
        source: CheckpointError,
    },
    /// A checkpoint is signed but for another log.
    #[error("line {line}: checkpoint at size {size}: {source}")]
    CheckpointOrigin {
        /// The line.
        line: u64,
        /// Its tree size.
        size: u64,
        /// The origin mismatch.
        source: CheckpointError,
    },
    /// A checkpoint whose size is not the number of entries before it:
    /// entries before it were deleted or inserted, or it was moved.
    #[error(
        "line {line}: checkpoint at size {size} comes after {}: {}",
        entry_count(*.entries),
        misplaced_detail(*.size, *.entries)
    )]
    CheckpointMisplaced {
        /// The line.
        line: u64,
        /// Its tree size.
        size: u64,
        /// Entries read so far.
        entries: u64,
    },
    /// A checkpoint that does not grow the log.
    #[error(
        "line {line}: checkpoint at size {size} does not follow the previous checkpoint at size {previous}: sizes must strictly increase"
    )]
    CheckpointNotIncreasing {
        /// The line.
        line: u64,
        /// Its tree size.
        size: u64,
        /// The previous checkpoint's size.
        previous: u64,
    },
    /// The entries do not hash to the signed root: an entry in `start..end`
    /// was changed (those before `start` match an earlier signed checkpoint).
    #[error(
        "line {line}: entries {start}..{end} do not hash to the checkpoint at size {size} (expected root {expected}, found {found}){}",
        diagnosis_suffix(.diagnosis.as_deref())
    )]
    RootMismatch {
        /// The checkpoint's line.
        line: u64,
        /// The checkpoint's size, `end`.
        size: u64,
        /// First entry not covered by an earlier verified checkpoint.
        start: u64,
        /// One past the last entry the checkpoint covers.
        end: u64,
        /// The signed root.
        expected: Hash,
        /// The root of the entries in the file.
        found: Hash,
        /// The first entry of `start..end` found wrong by [`diagnose_range`],
        /// once a caller has run it.
        diagnosis: Option<Box<Diagnosis>>,
    },
    /// The file ends with entries that no checkpoint covers.
    #[error(
        "the file ends at line {line} with entries {start}..{end} that no checkpoint covers{}: it is truncated",
        last_checkpoint_suffix(*.last_checkpoint)
    )]
    Truncated {
        /// The last line.
        line: u64,
        /// First entry after the last checkpoint.
        start: u64,
        /// Entries in the file.
        end: u64,
        /// Size of the last checkpoint, if any.
        last_checkpoint: Option<u64>,
    },
    /// The file has no checkpoint at all.
    #[error("the file ends at line {line} without any checkpoint: it is truncated")]
    NoCheckpoint {
        /// The last line.
        line: u64,
    },
}

fn claimed_size_suffix(size: Option<u64>) -> String {
    size.map_or_else(String::new, |size| format!(" claiming size {size}"))
}

/// "1 entry", "2 entries".
fn entry_count(entries: u64) -> String {
    if entries == 1 {
        "1 entry".to_owned()
    } else {
        format!("{entries} entries")
    }
}

/// What a misplaced checkpoint means, naming the entries concerned.
fn misplaced_detail(size: u64, entries: u64) -> String {
    let range = |start: u64, end: u64| {
        if end - start == 1 {
            format!("entry {start} is")
        } else {
            format!("entries {start}..{end} are")
        }
    };
    if size > entries {
        format!(
            "{} missing before it (deleted or moved), or the checkpoint was moved",
            range(entries, size)
        )
    } else {
        format!(
            "{} before it but not covered by it (inserted or moved), or the checkpoint was moved",
            range(size, entries)
        )
    }
}

fn last_checkpoint_suffix(size: Option<u64>) -> String {
    size.map_or_else(
        || " (there is no checkpoint)".to_owned(),
        |size| format!(" (the last checkpoint is at size {size})"),
    )
}

fn diagnosis_suffix(diagnosis: Option<&Diagnosis>) -> String {
    diagnosis.map_or_else(String::new, |diagnosis| format!("; {diagnosis}"))
}

impl AuditFileError {
    /// True unless the file could not be read ([`AuditFileError::Io`]): the
    /// file itself is wrong.
    pub fn is_verification_failure(&self) -> bool {
        !matches!(self, AuditFileError::Io(_))
    }
}

/// What a diagnostic re-read found in the entries of a mismatching range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Diagnosis {
    /// The first entry of the range that is not a valid audit entry.
    Undecodable {
        /// Its line.
        line: u64,
        /// Its index.
        index: u64,
        /// Why it does not decode.
        reason: String,
    },
    /// The first entry of the range dated before the entry before it.
    TimeOutOfOrder {
        /// Its line.
        line: u64,
        /// Its index.
        index: u64,
        /// Its time.
        time: String,
        /// The time of the entry before it.
        previous: String,
    },
    /// Every entry of the range decodes and times are in order; the altered
    /// entry cannot be singled out from the file alone.
    NotFound {
        /// First entry re-read.
        start: u64,
        /// One past the last entry re-read.
        end: u64,
    },
}

impl std::fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Diagnosis::Undecodable {
                line,
                index,
                reason,
            } => write!(
                f,
                "the first altered entry is entry {index} (line {line}): {reason}"
            ),
            Diagnosis::TimeOutOfOrder {
                line,
                index,
                time,
                previous,
            } => write!(
                f,
                "the first altered entry is entry {index} (line {line}): its time {time} is before the previous entry's {previous}"
            ),
            Diagnosis::NotFound { start, end } => write!(
                f,
                "every entry in {start}..{end} decodes, so the altered one cannot be named from the file alone; compare them with `rkm audit prove INDEX`"
            ),
        }
    }
}

/// An escaped excerpt of untrusted bytes, for messages.
pub(super) fn excerpt(bytes: &[u8]) -> String {
    text::excerpt(&String::from_utf8_lossy(bytes))
}
