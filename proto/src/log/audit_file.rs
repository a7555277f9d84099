//! The portable audit file that `rkm audit fetch` writes and auditors verify
//! offline: the log's entries verbatim and its signed checkpoints, in one
//! line-based text file, read and checked as a stream in flat memory.
//!
//! Format, version 1 (every line ends with `\n`):
//!
//! ```text
//! rkm-audit-log v1
//! origin <origin>
//! audit-key <C2SP verifier key>
//! E <index> <entry bytes verbatim: one line of JSON>
//! C <base64 of the whole C2SP signed note>
//! ```
//!
//! Entries come in index order from 0. A `C` line comes right after the entry
//! that brings the log to the checkpoint's size, and the file ends with a
//! checkpoint that covers every entry. Entry bytes are hashed exactly as they
//! stand in the file (RFC 9162 §2.1.1 leaf), never re-serialised.
//!
//! [`verify`] reads the file once, keeping only the tree's right edge
//! ([`Frontier`], O(log n) hashes) and one line at a time. It does not decode
//! entries as JSON; when a checkpoint's root does not match, [`diagnose_range`]
//! re-reads the entries that checkpoint newly covers, decoding each, to name
//! the first one that is wrong ([`verify_reopening`] does both). Ranges of
//! entries in messages are half-open: `entries 1000..2000` are 1000 to 1999.

use std::io::{self, BufRead, Read as _, Write};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::encoding::text;
use crate::log::audit_entry::{AuditEntry, MAX_ENTRY_LEN};
use crate::log::checkpoint::{
    Checkpoint, CheckpointError, SignedNote, VerifierKey, open_signed_checkpoint,
};
use crate::log::merkle::{Frontier, Hash, leaf_hash};

/// The first line of a version-1 audit file.
pub const HEADER: &str = "rkm-audit-log v1";
/// What the first line of an audit file of any version starts with.
const HEADER_PREFIX: &str = "rkm-audit-log v";
/// Prefix of the second line.
const ORIGIN_PREFIX: &str = "origin ";
/// Prefix of the third line.
const AUDIT_KEY_PREFIX: &str = "audit-key ";

/// Longest line read from an untrusted file: the base64 of the largest note
/// accepted ([`crate::log::checkpoint::MAX_NOTE_LEN`]) with room to spare. No line
/// makes the reader hold more than this.
pub const MAX_LINE_LEN: usize = 2 << 20;
/// Longest entry line: tag, 20 index digits, two spaces, the largest entry.
const MAX_ENTRY_LINE_LEN: usize = MAX_ENTRY_LEN + 32;
/// How many records pass between two progress reports.
const PROGRESS_EVERY: u64 = 4096;

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
fn excerpt(bytes: &[u8]) -> String {
    text::excerpt(&String::from_utf8_lossy(bytes))
}

/// The header of an audit file, as written (not yet trusted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The log's origin, the first line of its checkpoints.
    pub origin: String,
    /// The audit key the file says signed its checkpoints.
    pub audit_key: VerifierKey,
}

/// One record of an audit file, borrowed from the reader's line buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    /// An `E` line.
    Entry {
        /// Its line number.
        line: u64,
        /// The index it states.
        index: u64,
        /// The entry bytes, verbatim.
        bytes: &'a [u8],
    },
    /// A `C` line.
    Checkpoint {
        /// Its line number.
        line: u64,
        /// The signed note, decoded from base64 but not verified.
        note: String,
    },
}

/// Lines of an untrusted file, one in memory at a time, each read with a
/// bound so that no line makes the reader hold more than [`MAX_LINE_LEN`].
#[derive(Debug)]
struct Lines<R> {
    reader: R,
    buf: Vec<u8>,
    line: u64,
    bytes_read: u64,
}

impl<R: BufRead> Lines<R> {
    /// Reads the next line into `buf` without its newline. False at the end
    /// of the file.
    fn next(&mut self) -> Result<bool, AuditFileError> {
        self.buf.clear();
        let read = (&mut self.reader)
            .take(MAX_LINE_LEN as u64 + 1)
            .read_until(b'\n', &mut self.buf)?;
        if read == 0 {
            return Ok(false);
        }
        self.line += 1;
        self.bytes_read += read as u64;
        if self.buf.pop() != Some(b'\n') {
            return Err(if read > MAX_LINE_LEN {
                AuditFileError::LineTooLong {
                    line: self.line,
                    max: MAX_LINE_LEN,
                    what: "audit file",
                }
            } else {
                AuditFileError::TruncatedLine { line: self.line }
            });
        }
        Ok(true)
    }

    /// The next line, which the header must have.
    fn header_line(&mut self, what: &'static str) -> Result<&[u8], AuditFileError> {
        if !self.next()? {
            return Err(AuditFileError::MissingHeader {
                line: self.line + 1,
                what,
            });
        }
        Ok(&self.buf)
    }

    /// The value of the next header line, `<prefix><value>`.
    fn header_field(
        &mut self,
        what: &'static str,
        prefix: &'static str,
        expected: &'static str,
    ) -> Result<String, AuditFileError> {
        let line = self.line + 1;
        let bytes = self.header_line(what)?;
        let bad = || AuditFileError::BadHeader {
            line,
            expected,
            found: excerpt(bytes),
        };
        let value = bytes.strip_prefix(prefix.as_bytes()).ok_or_else(bad)?;
        let value = std::str::from_utf8(value).map_err(|_| bad())?;
        if value.is_empty() || value.chars().any(char::is_control) {
            return Err(bad());
        }
        Ok(value.to_owned())
    }
}

/// Reads an audit file as a stream of records, one line in memory at a time.
/// It checks the shape of each line, not the log: see [`verify`].
#[derive(Debug)]
pub struct AuditFileReader<R> {
    lines: Lines<R>,
    header: Header,
}

impl<R: BufRead> AuditFileReader<R> {
    /// Reads and parses the three header lines.
    ///
    /// # Errors
    ///
    /// [`AuditFileError::MissingHeader`], [`AuditFileError::UnsupportedVersion`],
    /// [`AuditFileError::BadHeader`] or [`AuditFileError::BadAuditKey`] for a
    /// file that does not start with a version-1 header; I/O errors.
    pub fn new(reader: R) -> Result<Self, AuditFileError> {
        let mut lines = Lines {
            reader,
            buf: Vec::with_capacity(1024),
            line: 0,
            bytes_read: 0,
        };
        let first = lines.header_line("rkm-audit-log")?;
        if first != HEADER.as_bytes() {
            return Err(if first.starts_with(HEADER_PREFIX.as_bytes()) {
                AuditFileError::UnsupportedVersion {
                    found: excerpt(first),
                }
            } else {
                AuditFileError::BadHeader {
                    line: 1,
                    expected: HEADER,
                    found: excerpt(first),
                }
            });
        }
        let origin = lines.header_field("origin", ORIGIN_PREFIX, "origin <origin>")?;
        let key = lines.header_field(
            "audit-key",
            AUDIT_KEY_PREFIX,
            "audit-key <C2SP verifier key>",
        )?;
        let audit_key = VerifierKey::parse(&key).map_err(|source| AuditFileError::BadAuditKey {
            line: lines.line,
            source,
        })?;
        Ok(AuditFileReader {
            lines,
            header: Header { origin, audit_key },
        })
    }

    /// The header, as the file states it.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The number of the last line read (1-based; 3 after the header).
    pub fn line(&self) -> u64 {
        self.lines.line
    }

    /// Bytes read so far, header included.
    pub fn bytes_read(&self) -> u64 {
        self.lines.bytes_read
    }

    /// The next record, or `None` at the end of the file.
    ///
    /// # Errors
    ///
    /// [`AuditFileError::MalformedLine`], [`AuditFileError::LineTooLong`] or
    /// [`AuditFileError::TruncatedLine`] for a line that is not a whole,
    /// well-formed record; I/O errors.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, AuditFileError> {
        if !self.lines.next()? {
            return Ok(None);
        }
        parse_record(self.lines.line, &self.lines.buf).map(Some)
    }
}

const ENTRY_SHAPE: &str = "an entry line must be `E <index> <entry>`";
const CHECKPOINT_SHAPE: &str = "a checkpoint line must be `C <base64 signed note>`";

/// Parses one line (without its newline) as a record.
fn parse_record(line: u64, bytes: &[u8]) -> Result<Record<'_>, AuditFileError> {
    let malformed = |reason: String| AuditFileError::MalformedLine { line, reason };
    match bytes.split_first() {
        Some((b'E', rest)) => {
            if bytes.len() > MAX_ENTRY_LINE_LEN {
                return Err(AuditFileError::LineTooLong {
                    line,
                    max: MAX_ENTRY_LINE_LEN,
                    what: "entry",
                });
            }
            let rest = rest
                .strip_prefix(b" ")
                .ok_or_else(|| malformed(ENTRY_SHAPE.into()))?;
            let space = rest
                .iter()
                .position(|&b| b == b' ')
                .ok_or_else(|| malformed(ENTRY_SHAPE.into()))?;
            let index = parse_index(&rest[..space]).ok_or_else(|| {
                malformed(format!(
                    "entry index {:?} is not a decimal number without leading zeros",
                    excerpt(&rest[..space])
                ))
            })?;
            Ok(Record::Entry {
                line,
                index,
                bytes: &rest[space + 1..],
            })
        }
        Some((b'C', rest)) => {
            let encoded = rest
                .strip_prefix(b" ")
                .ok_or_else(|| malformed(CHECKPOINT_SHAPE.into()))?;
            let note = STANDARD.decode(encoded).map_err(|error| {
                malformed(format!("the checkpoint is not canonical base64 ({error})"))
            })?;
            let note = String::from_utf8(note)
                .map_err(|_| malformed("the checkpoint note is not UTF-8".into()))?;
            Ok(Record::Checkpoint { line, note })
        }
        _ => Err(malformed(format!(
            "expected an entry (`E …`) or a checkpoint (`C …`), found {:?}",
            excerpt(bytes)
        ))),
    }
}

/// A decimal u64 without sign or leading zeros.
fn parse_index(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 || (digits.len() > 1 && digits[0] == b'0') {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &digit| {
        if !digit.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })
}

/// A checkpoint whose signature, origin and root were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    /// Its tree size.
    pub size: u64,
    /// Its root hash, equal to the root recomputed from the entries.
    pub root: Hash,
    /// The whole signed note.
    pub note: String,
    /// The line it was read from (or would be written to).
    pub line: u64,
}

/// The tree checks of an audit log, fed one record at a time: by [`verify`]
/// from a file, and by `rkm audit fetch` for what the daemon sends before it
/// writes it. Holds O(log n) hashes.
#[derive(Debug, Clone)]
pub struct LogVerifier {
    key: VerifierKey,
    origin: String,
    frontier: Frontier,
    last_checkpoint: Option<VerifiedCheckpoint>,
    checkpoints: u64,
}

impl LogVerifier {
    /// A verifier of a log, from entry 0, that trusts `key` for checkpoints
    /// of `origin`.
    pub fn new(key: VerifierKey, origin: impl Into<String>) -> Self {
        LogVerifier {
            key,
            origin: origin.into(),
            frontier: Frontier::new(),
            last_checkpoint: None,
            checkpoints: 0,
        }
    }

    /// Entries checked so far (the next entry's index).
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The root of the entries checked so far.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// Checkpoints checked so far.
    pub fn checkpoints(&self) -> u64 {
        self.checkpoints
    }

    /// The last checkpoint checked.
    pub fn last_checkpoint(&self) -> Option<&VerifiedCheckpoint> {
        self.last_checkpoint.as_ref()
    }

    /// The trusted key.
    pub fn key(&self) -> &VerifierKey {
        &self.key
    }

    /// The trusted origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Adds the next entry to the tree.
    ///
    /// # Errors
    ///
    /// [`AuditFileError::EntryOutOfOrder`] unless `index` is the next index.
    pub fn entry(&mut self, line: u64, index: u64, bytes: &[u8]) -> Result<(), AuditFileError> {
        let expected = self.frontier.size();
        if index != expected {
            return Err(AuditFileError::EntryOutOfOrder {
                line,
                expected,
                found: index,
            });
        }
        self.frontier
            .append(leaf_hash(bytes))
            .map_err(|error| AuditFileError::MalformedLine {
                line,
                reason: error.to_string(),
            })
    }

    /// Checks a signed checkpoint against the entries so far: its signature
    /// by the trusted key, its origin, that its size is the number of entries
    /// so far and grows the log, and that its root is theirs.
    ///
    /// # Errors
    ///
    /// [`AuditFileError::CheckpointSignature`],
    /// [`AuditFileError::CheckpointOrigin`],
    /// [`AuditFileError::CheckpointNotIncreasing`],
    /// [`AuditFileError::CheckpointMisplaced`] or
    /// [`AuditFileError::RootMismatch`] (without a diagnosis), in that order.
    pub fn checkpoint(
        &mut self,
        line: u64,
        note: &str,
    ) -> Result<&VerifiedCheckpoint, AuditFileError> {
        let checkpoint = open_signed_checkpoint(note, &self.key).map_err(|source| {
            AuditFileError::CheckpointSignature {
                line,
                claimed_size: unverified_size(note),
                source,
            }
        })?;
        let size = checkpoint.size();
        checkpoint
            .check_origin(&self.origin)
            .map_err(|source| AuditFileError::CheckpointOrigin { line, size, source })?;
        let previous = self.last_checkpoint.as_ref().map(|c| c.size);
        if let Some(previous) = previous
            && size <= previous
        {
            return Err(AuditFileError::CheckpointNotIncreasing {
                line,
                size,
                previous,
            });
        }
        let entries = self.frontier.size();
        if size != entries {
            return Err(AuditFileError::CheckpointMisplaced {
                line,
                size,
                entries,
            });
        }
        let found = self.frontier.root();
        if *checkpoint.root() != found {
            return Err(AuditFileError::RootMismatch {
                line,
                size,
                start: previous.unwrap_or(0),
                end: size,
                expected: *checkpoint.root(),
                found,
                diagnosis: None,
            });
        }
        self.checkpoints += 1;
        Ok(self.last_checkpoint.insert(VerifiedCheckpoint {
            size,
            root: found,
            note: note.to_owned(),
            line,
        }))
    }

    /// Checks that the last checkpoint covers every entry.
    ///
    /// # Errors
    ///
    /// [`AuditFileError::NoCheckpoint`] or [`AuditFileError::Truncated`],
    /// naming `last_line`.
    pub fn finish(&self, last_line: u64) -> Result<&VerifiedCheckpoint, AuditFileError> {
        let end = self.frontier.size();
        match &self.last_checkpoint {
            None if end == 0 => Err(AuditFileError::NoCheckpoint { line: last_line }),
            Some(checkpoint) if checkpoint.size == end => Ok(checkpoint),
            last => Err(AuditFileError::Truncated {
                line: last_line,
                start: last.as_ref().map_or(0, |c| c.size),
                end,
                last_checkpoint: last.as_ref().map(|c| c.size),
            }),
        }
    }
}

/// The size an unverified note claims, for error messages only.
fn unverified_size(note: &str) -> Option<u64> {
    let note = SignedNote::parse(note).ok()?;
    Checkpoint::parse_body(note.text()).ok().map(|c| c.size())
}

/// What [`verify`] found in a file that verifies.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The log's origin.
    pub origin: String,
    /// Entries in the file, the last checkpoint's size.
    pub entries: u64,
    /// Checkpoints in the file.
    pub checkpoints: u64,
    /// The root of the whole log, the last checkpoint's root.
    pub root: Hash,
    /// The last checkpoint.
    pub last_checkpoint: VerifiedCheckpoint,
    /// Time of the first entry, if the file has one that decodes.
    pub first_time: Option<String>,
    /// Time of the last entry, if the file has one that decodes.
    pub last_time: Option<String>,
    /// Lines in the file.
    pub lines: u64,
    /// Bytes in the file.
    pub bytes: u64,
    /// The verifier at the end of the file, to go on appending from.
    pub verifier: LogVerifier,
}

/// Verifies a whole audit file in one streaming pass: the header names the
/// trusted key and `origin`; every entry is the next index and is hashed as it
/// stands; every checkpoint is signed by `key`, is of `origin`, grows the log,
/// sits right after its last entry and has the recomputed root; the last
/// checkpoint covers every entry. Entries are not decoded as JSON.
///
/// `progress` is called now and then with the bytes read so far.
///
/// # Errors
///
/// The first failure found, as an [`AuditFileError`]; a
/// [`AuditFileError::RootMismatch`] has no diagnosis (see
/// [`verify_reopening`] and [`diagnose_range`]).
pub fn verify<R: BufRead>(
    reader: R,
    key: &VerifierKey,
    origin: &str,
    mut progress: impl FnMut(u64),
) -> Result<Summary, AuditFileError> {
    let mut file = AuditFileReader::new(reader)?;
    let header = file.header();
    if header.audit_key != *key {
        return Err(AuditFileError::KeyMismatch {
            line: 3,
            expected: key.to_string(),
            found: header.audit_key.to_string(),
        });
    }
    if header.origin != origin {
        return Err(AuditFileError::OriginMismatch {
            line: 2,
            expected: origin.to_owned(),
            found: excerpt(header.origin.as_bytes()),
        });
    }
    let mut verifier = LogVerifier::new(key.clone(), origin);
    let mut first_time = None;
    let mut last_entry = Vec::with_capacity(1024);
    let mut records = 0u64;
    loop {
        match file.next_record()? {
            None => break,
            Some(Record::Entry { line, index, bytes }) => {
                verifier.entry(line, index, bytes)?;
                if index == 0 {
                    first_time = entry_time(bytes);
                }
                last_entry.clear();
                last_entry.extend_from_slice(bytes);
            }
            Some(Record::Checkpoint { line, note }) => {
                verifier.checkpoint(line, &note)?;
            }
        }
        records += 1;
        if records % PROGRESS_EVERY == 0 {
            progress(file.bytes_read());
        }
    }
    progress(file.bytes_read());
    let last_checkpoint = verifier.finish(file.line())?.clone();
    Ok(Summary {
        origin: origin.to_owned(),
        entries: verifier.size(),
        checkpoints: verifier.checkpoints(),
        root: last_checkpoint.root,
        last_checkpoint,
        first_time,
        last_time: if verifier.size() == 0 {
            None
        } else {
            entry_time(&last_entry)
        },
        lines: file.line(),
        bytes: file.bytes_read(),
        verifier,
    })
}

fn entry_time(bytes: &[u8]) -> Option<String> {
    AuditEntry::decode(bytes).ok().map(|entry| entry.time)
}

/// [`verify`], and when a checkpoint's root does not match, a second read
/// with a reader from `open` to name the first altered entry
/// ([`diagnose_range`]), put into the error's diagnosis.
///
/// # Errors
///
/// As [`verify`]; I/O errors of `open`. A failing diagnostic read leaves the
/// root mismatch without a diagnosis.
pub fn verify_reopening<R, F>(
    mut open: F,
    key: &VerifierKey,
    origin: &str,
    progress: impl FnMut(u64),
) -> Result<Summary, AuditFileError>
where
    R: BufRead,
    F: FnMut() -> io::Result<R>,
{
    let error = match verify(open()?, key, origin, progress) {
        Ok(summary) => return Ok(summary),
        Err(error) => error,
    };
    Err(diagnose_error(error, open))
}

/// Adds a diagnosis to a [`AuditFileError::RootMismatch`] by re-reading its
/// range with a reader from `open`; returns any other error unchanged.
pub fn diagnose_error<R, F>(error: AuditFileError, mut open: F) -> AuditFileError
where
    R: BufRead,
    F: FnMut() -> io::Result<R>,
{
    match error {
        AuditFileError::RootMismatch {
            line,
            size,
            start,
            end,
            expected,
            found,
            diagnosis: None,
        } => {
            let diagnosis = open()
                .map_err(AuditFileError::from)
                .and_then(|reader| diagnose_range(reader, start, end))
                .ok()
                .map(Box::new);
            AuditFileError::RootMismatch {
                line,
                size,
                start,
                end,
                expected,
                found,
                diagnosis,
            }
        }
        other => other,
    }
}

/// Re-reads the entries `start..end` of an audit file, decoding each with
/// [`AuditEntry::decode`], to name the first one that is not a valid entry or
/// is dated before its predecessor (the entry before `start` included).
///
/// # Errors
///
/// Errors reading the file's records.
pub fn diagnose_range<R: BufRead>(
    reader: R,
    start: u64,
    end: u64,
) -> Result<Diagnosis, AuditFileError> {
    let mut file = AuditFileReader::new(reader)?;
    let mut previous: Option<String> = None;
    while let Some(record) = file.next_record()? {
        let Record::Entry { line, index, bytes } = record else {
            continue;
        };
        if index >= end {
            break;
        }
        if index + 1 < start {
            continue;
        }
        let entry = match AuditEntry::decode(bytes) {
            Ok(entry) => entry,
            Err(error) if index >= start => {
                return Ok(Diagnosis::Undecodable {
                    line,
                    index,
                    reason: error.to_string(),
                });
            }
            Err(_) => continue,
        };
        if index >= start
            && let Some(previous) = previous.as_deref()
            && comparable_time(previous)
            && comparable_time(&entry.time)
            && entry.time.as_str() < previous
        {
            return Ok(Diagnosis::TimeOutOfOrder {
                line,
                index,
                time: entry.time,
                previous: previous.to_owned(),
            });
        }
        previous = Some(entry.time);
    }
    Ok(Diagnosis::NotFound { start, end })
}

/// True for the fixed-width UTC form entries use
/// (`2026-11-27T04:20:21.123Z`), where text order is time order.
fn comparable_time(time: &str) -> bool {
    let bytes = time.as_bytes();
    bytes.len() == 24
        && bytes[23] == b'Z'
        && bytes[10] == b'T'
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| matches!(i, 4 | 7 | 10 | 13 | 16 | 19 | 23) || b.is_ascii_digit())
}

/// Why a record could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Writing failed.
    #[error("cannot write the audit file: {0}")]
    Io(#[from] io::Error),
    /// The entry is not the next index.
    #[error("cannot write entry {found}: the next entry is {expected}")]
    OutOfOrder {
        /// The next index.
        expected: u64,
        /// The index given.
        found: u64,
    },
    /// The entry would not fit on one line.
    #[error("cannot write entry {index}: it contains a line break")]
    LineBreak {
        /// Its index.
        index: u64,
    },
    /// The header's origin cannot be a line.
    #[error("cannot write the origin {0:?}: it is empty or has a control character")]
    BadOrigin(String),
}

/// Writes an audit file record by record. It keeps no record, only the next
/// index; whether the log verifies is [`LogVerifier`]'s business.
#[derive(Debug)]
pub struct AuditFileWriter<W> {
    out: W,
    next_index: u64,
}

impl<W: Write> AuditFileWriter<W> {
    /// Writes the header of a new file and returns a writer for entry 0 on.
    ///
    /// # Errors
    ///
    /// [`WriteError::BadOrigin`]; I/O errors.
    pub fn create(mut out: W, origin: &str, key: &VerifierKey) -> Result<Self, WriteError> {
        if origin.is_empty() || origin.chars().any(char::is_control) {
            return Err(WriteError::BadOrigin(origin.to_owned()));
        }
        write!(
            out,
            "{HEADER}\n{ORIGIN_PREFIX}{origin}\n{AUDIT_KEY_PREFIX}{key}\n"
        )?;
        Ok(AuditFileWriter { out, next_index: 0 })
    }

    /// A writer that goes on after a file's existing `next_index` entries
    /// (the caller has written them, or copied them, to `out`).
    pub fn resume(out: W, next_index: u64) -> Self {
        AuditFileWriter { out, next_index }
    }

    /// Writes `E <index> <entry>`.
    ///
    /// # Errors
    ///
    /// [`WriteError::OutOfOrder`], [`WriteError::LineBreak`]; I/O errors.
    pub fn entry(&mut self, index: u64, bytes: &[u8]) -> Result<(), WriteError> {
        if index != self.next_index {
            return Err(WriteError::OutOfOrder {
                expected: self.next_index,
                found: index,
            });
        }
        if bytes.contains(&b'\n') {
            return Err(WriteError::LineBreak { index });
        }
        write!(self.out, "E {index} ")?;
        self.out.write_all(bytes)?;
        self.out.write_all(b"\n")?;
        self.next_index += 1;
        Ok(())
    }

    /// Writes `C <base64 of the signed note>`.
    ///
    /// # Errors
    ///
    /// I/O errors.
    pub fn checkpoint(&mut self, signed_note: &str) -> Result<(), WriteError> {
        self.out.write_all(b"C ")?;
        self.out
            .write_all(STANDARD.encode(signed_note.as_bytes()).as_bytes())?;
        self.out.write_all(b"\n")?;
        Ok(())
    }

    /// The index the next entry must have.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// Gives back the output (not flushed).
    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ed25519_dalek::{Signer as _, SigningKey};

    use super::*;
    use crate::encoding::fingerprint::signed_note_verifier_key;
    use crate::log::audit_entry::{ENTRY_VERSION, Outcome};
    use crate::log::checkpoint::{format_signed_note, signed_message};

    const ORIGIN: &str = "rkm.test/audit";

    fn signing_key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn verifier(seed: u8) -> VerifierKey {
        let vkey = signed_note_verifier_key(ORIGIN, signing_key(seed).verifying_key().as_bytes());
        VerifierKey::parse(&vkey).unwrap()
    }

    fn sign(size: u64, root: Hash, seed: u8) -> String {
        let body = Checkpoint::new(ORIGIN, size, root, vec![])
            .unwrap()
            .to_body();
        let key = signing_key(seed);
        let signature = key.sign(signed_message(&body));
        format_signed_note(
            &body,
            ORIGIN,
            verifier(seed).key_id(),
            &signature.to_bytes(),
        )
        .unwrap()
    }

    fn entry(index: u64) -> Vec<u8> {
        AuditEntry {
            v: ENTRY_VERSION,
            time: format!("2026-01-01T00:{:02}:{:02}.000Z", index / 60, index % 60),
            actor: "local:uid=0".to_owned(),
            action: "audit.note".to_owned(),
            subject: String::new(),
            outcome: Outcome::Ok,
            details: BTreeMap::from([("message".to_owned(), format!("note {index}"))]),
        }
        .encode()
        .unwrap()
    }

    /// A valid log of `n` entries with a checkpoint after every `every`
    /// entries and at the end.
    fn log(n: u64, every: u64) -> String {
        let mut writer = AuditFileWriter::create(Vec::new(), ORIGIN, &verifier(7)).unwrap();
        let mut frontier = Frontier::new();
        for index in 0..n {
            let bytes = entry(index);
            writer.entry(index, &bytes).unwrap();
            frontier.append(leaf_hash(&bytes)).unwrap();
            if (index + 1) % every == 0 || index + 1 == n {
                writer
                    .checkpoint(&sign(frontier.size(), frontier.root(), 7))
                    .unwrap();
            }
        }
        if n == 0 {
            writer.checkpoint(&sign(0, Hash::EMPTY_ROOT, 7)).unwrap();
        }
        String::from_utf8(writer.into_inner()).unwrap()
    }

    fn check(text: &str) -> Result<Summary, AuditFileError> {
        verify_reopening(
            || Ok(io::Cursor::new(text.as_bytes())),
            &verifier(7),
            ORIGIN,
            |_| {},
        )
    }

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    fn join(lines: &[String]) -> String {
        let mut text = lines.join("\n");
        text.push('\n');
        text
    }

    /// The 0-based line index of entry `index`.
    fn entry_line(lines: &[String], index: u64) -> usize {
        let prefix = format!("E {index} ");
        lines.iter().position(|l| l.starts_with(&prefix)).unwrap()
    }

    /// (size, start, end) and the diagnosis of a root mismatch.
    fn mismatch(error: &AuditFileError) -> ((u64, u64, u64), Option<&Diagnosis>) {
        match error {
            AuditFileError::RootMismatch {
                size,
                start,
                end,
                diagnosis,
                ..
            } => ((*size, *start, *end), diagnosis.as_deref()),
            other => panic!("not a root mismatch: {other}"),
        }
    }

    #[test]
    fn valid_log_verifies_with_summary() {
        let text = log(10, 4);
        let summary = check(&text).unwrap();
        assert_eq!(summary.entries, 10);
        assert_eq!(summary.checkpoints, 3);
        assert_eq!(
            summary.first_time.as_deref(),
            Some("2026-01-01T00:00:00.000Z")
        );
        assert_eq!(
            summary.last_time.as_deref(),
            Some("2026-01-01T00:00:09.000Z")
        );
        let leaves: Vec<Hash> = (0..10).map(|i| leaf_hash(&entry(i))).collect();
        assert_eq!(
            summary.root,
            crate::log::merkle::root_from_leaf_hashes(&leaves)
        );
        assert_eq!(summary.bytes, text.len() as u64);
        assert_eq!(summary.lines, 3 + 10 + 3);
    }

    #[test]
    fn empty_log_with_size_zero_checkpoint_verifies() {
        let summary = check(&log(0, 1)).unwrap();
        assert_eq!(summary.entries, 0);
        assert_eq!(summary.root, Hash::EMPTY_ROOT);
        assert_eq!(summary.first_time, None);
    }

    #[test]
    fn reader_yields_records_verbatim() {
        let text = log(2, 10);
        let mut reader = AuditFileReader::new(text.as_bytes()).unwrap();
        assert_eq!(reader.header().origin, ORIGIN);
        assert_eq!(reader.header().audit_key, verifier(7));
        let first = entry(0);
        assert_eq!(
            reader.next_record().unwrap(),
            Some(Record::Entry {
                line: 4,
                index: 0,
                bytes: &first
            })
        );
        assert!(matches!(
            reader.next_record().unwrap(),
            Some(Record::Entry { index: 1, .. })
        ));
        assert!(matches!(
            reader.next_record().unwrap(),
            Some(Record::Checkpoint { line: 6, .. })
        ));
        assert_eq!(reader.next_record().unwrap(), None);
    }

    #[test]
    fn flipped_byte_in_entry_is_a_root_mismatch_naming_range_and_entry() {
        let mut lines = lines(&log(10, 4));
        let at = entry_line(&lines, 5);
        // Break the JSON: the re-pass names the entry.
        lines[at] = lines[at].replacen("\"v\":1", "\"v\":1x", 1);
        let error = check(&join(&lines)).unwrap_err();
        let message = error.to_string();
        let (range, diagnosis) = mismatch(&error);
        assert_eq!(range, (8, 4, 8), "{message}");
        assert!(
            matches!(diagnosis, Some(Diagnosis::Undecodable { index: 5, .. })),
            "{message}"
        );
        assert!(
            message.contains("entries 4..8 do not hash to the checkpoint at size 8"),
            "{message}"
        );
        assert!(message.contains("expected root"), "{message}");
        assert!(message.contains("entry 5"), "{message}");
    }

    #[test]
    fn altered_message_that_still_decodes_is_located_to_its_range() {
        let mut lines = lines(&log(10, 4));
        let at = entry_line(&lines, 2);
        lines[at] = lines[at].replacen("note 2", "note X", 1);
        let error = check(&join(&lines)).unwrap_err();
        let (range, diagnosis) = mismatch(&error);
        assert_eq!(range, (4, 0, 4), "{error}");
        assert_eq!(
            diagnosis,
            Some(&Diagnosis::NotFound { start: 0, end: 4 }),
            "{error}"
        );
    }

    #[test]
    fn payloads_swapped_under_their_indices_are_named_by_time_order() {
        let mut lines = lines(&log(10, 10));
        let (a, b) = (entry_line(&lines, 3), entry_line(&lines, 4));
        let payload = |l: &str| l.splitn(3, ' ').nth(2).unwrap().to_owned();
        let (pa, pb) = (payload(&lines[a]), payload(&lines[b]));
        lines[a] = format!("E 3 {pb}");
        lines[b] = format!("E 4 {pa}");
        let error = check(&join(&lines)).unwrap_err();
        let (_, diagnosis) = mismatch(&error);
        assert!(
            matches!(diagnosis, Some(Diagnosis::TimeOutOfOrder { index: 4, .. })),
            "{error}"
        );
    }

    #[test]
    fn deleted_entry_is_named_by_index() {
        let mut lines = lines(&log(10, 4));
        lines.remove(entry_line(&lines, 6));
        let error = check(&join(&lines)).unwrap_err();
        assert!(
            matches!(
                error,
                AuditFileError::EntryOutOfOrder {
                    expected: 6,
                    found: 7,
                    ..
                }
            ),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .contains("expected entry 6, found entry 7")
        );
    }

    #[test]
    fn entry_deleted_right_before_a_checkpoint_is_named() {
        let mut lines = lines(&log(10, 4));
        lines.remove(entry_line(&lines, 3));
        let error = check(&join(&lines)).unwrap_err();
        assert!(
            matches!(
                error,
                AuditFileError::CheckpointMisplaced {
                    size: 4,
                    entries: 3,
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("entry 3 is missing"), "{error}");
    }

    #[test]
    fn swapped_entry_lines_are_named_by_index() {
        let mut lines = lines(&log(10, 4));
        let (a, b) = (entry_line(&lines, 1), entry_line(&lines, 2));
        lines.swap(a, b);
        let error = check(&join(&lines)).unwrap_err();
        assert!(
            matches!(
                error,
                AuditFileError::EntryOutOfOrder {
                    expected: 1,
                    found: 2,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn log_cut_after_an_entry_is_truncated() {
        let mut lines = lines(&log(10, 4));
        lines.truncate(entry_line(&lines, 9) + 1);
        let error = check(&join(&lines)).unwrap_err();
        assert!(
            matches!(
                error,
                AuditFileError::Truncated {
                    start: 8,
                    end: 10,
                    last_checkpoint: Some(8),
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("truncated"));
    }

    #[test]
    fn log_cut_mid_line_is_truncated_at_that_line() {
        let text = log(10, 4);
        let cut = &text[..text.len() - 5];
        let error = check(cut).unwrap_err();
        let last_line = text.lines().count() as u64;
        assert!(
            matches!(error, AuditFileError::TruncatedLine { line } if line == last_line),
            "{error}"
        );
    }

    #[test]
    fn empty_and_header_only_files_are_refused() {
        assert!(matches!(
            check("").unwrap_err(),
            AuditFileError::MissingHeader { line: 1, .. }
        ));
        let header: String = log(0, 1)
            .lines()
            .take(3)
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(matches!(
            check(&header).unwrap_err(),
            AuditFileError::NoCheckpoint { line: 3 }
        ));
        assert!(matches!(
            check("rkm-audit-log v2\n").unwrap_err(),
            AuditFileError::UnsupportedVersion { .. }
        ));
    }

    /// The checkpoint line with its note edited by `edit`.
    fn edit_checkpoint(line: &str, edit: impl FnOnce(String) -> String) -> String {
        let note = String::from_utf8(STANDARD.decode(&line[2..]).unwrap()).unwrap();
        format!("C {}", STANDARD.encode(edit(note)))
    }

    #[test]
    fn forged_checkpoint_signature_is_refused_naming_size() {
        let mut lines = lines(&log(10, 4));
        let at = lines.iter().position(|l| l.starts_with("C ")).unwrap();
        lines[at] = edit_checkpoint(&lines[at], |note| {
            let (text, sig) = note.rsplit_once(' ').unwrap();
            let mut blob = STANDARD.decode(sig.trim_end()).unwrap();
            blob[10] ^= 1;
            format!("{text} {}\n", STANDARD.encode(blob))
        });
        let error = check(&join(&lines)).unwrap_err();
        assert!(
            matches!(
                error,
                AuditFileError::CheckpointSignature {
                    claimed_size: Some(4),
                    source: CheckpointError::BadSignature { .. },
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("claiming size 4"), "{error}");
    }

    #[test]
    fn checkpoint_with_another_checkpoints_signature_is_refused() {
        let mut lines = lines(&log(10, 4));
        let cps: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].starts_with("C "))
            .collect();
        let sig_of = |line: &str| {
            let note = String::from_utf8(STANDARD.decode(&line[2..]).unwrap()).unwrap();
            note.rsplit_once("\n\n").unwrap().1.to_owned()
        };
        let other = sig_of(&lines[cps[1]]);
        lines[cps[0]] = edit_checkpoint(&lines[cps[0]], |note| {
            format!("{}\n\n{other}", note.rsplit_once("\n\n").unwrap().0)
        });
        let error = check(&join(&lines)).unwrap_err();
        assert!(
            matches!(
                error,
                AuditFileError::CheckpointSignature {
                    source: CheckpointError::BadSignature { .. },
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn swapped_checkpoint_lines_are_misplaced() {
        let mut lines = lines(&log(10, 4));
        let cps: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].starts_with("C "))
            .collect();
        lines.swap(cps[0], cps[1]);
        let error = check(&join(&lines)).unwrap_err();
        assert!(
            matches!(
                error,
                AuditFileError::CheckpointMisplaced {
                    size: 8,
                    entries: 4,
                    ..
                }
            ),
            "{error}"
        );
        assert!(
            error.to_string().contains("entries 4..8 are missing"),
            "{error}"
        );
    }

    #[test]
    fn checkpoint_signed_by_another_key_is_refused() {
        let mut lines = lines(&log(4, 4));
        let leaves: Vec<Hash> = (0..4).map(|i| leaf_hash(&entry(i))).collect();
        let root = crate::log::merkle::root_from_leaf_hashes(&leaves);
        let last = lines.len() - 1;
        lines[last] = format!("C {}", STANDARD.encode(sign(4, root, 9)));
        let error = check(&join(&lines)).unwrap_err();
        assert!(
            matches!(
                error,
                AuditFileError::CheckpointSignature {
                    source: CheckpointError::NoSignatureByKey { .. },
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn file_of_another_key_is_refused_at_the_header() {
        let error = verify(log(4, 4).as_bytes(), &verifier(9), ORIGIN, |_| {}).unwrap_err();
        assert!(
            matches!(error, AuditFileError::KeyMismatch { line: 3, .. }),
            "{error}"
        );
        let error = verify(log(4, 4).as_bytes(), &verifier(7), "other", |_| {}).unwrap_err();
        assert!(
            matches!(error, AuditFileError::OriginMismatch { line: 2, .. }),
            "{error}"
        );
    }

    #[test]
    fn duplicated_checkpoint_does_not_increase() {
        let mut lines = lines(&log(4, 4));
        let last = lines.last().unwrap().clone();
        lines.push(last);
        let error = check(&join(&lines)).unwrap_err();
        assert!(
            matches!(
                error,
                AuditFileError::CheckpointNotIncreasing {
                    size: 4,
                    previous: 4,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn malformed_lines_are_named() {
        for (bad, what) in [
            ("X 1 2", "expected an entry"),
            ("E 01 {}", "leading zeros"),
            ("E 1", "must be `E <index> <entry>`"),
            ("C !!!", "base64"),
        ] {
            let mut lines = lines(&log(2, 2));
            lines.insert(3, bad.to_owned());
            let error = check(&join(&lines)).unwrap_err();
            assert!(
                matches!(error, AuditFileError::MalformedLine { line: 4, .. }),
                "{bad}: {error}"
            );
            assert!(error.to_string().contains(what), "{bad}: {error}");
        }
    }

    #[test]
    fn overlong_line_is_refused_without_reading_it_whole() {
        let mut text = log(0, 1).lines().take(3).collect::<Vec<_>>().join("\n");
        text.push_str("\nE 0 ");
        text.push_str(&"x".repeat(MAX_LINE_LEN + 10));
        let error = check(&text).unwrap_err();
        assert!(
            matches!(error, AuditFileError::LineTooLong { line: 4, .. }),
            "{error}"
        );
        let mut text = log(0, 1).lines().take(3).collect::<Vec<_>>().join("\n");
        text.push_str("\nE 0 ");
        text.push_str(&"x".repeat(MAX_ENTRY_LEN + 100));
        text.push('\n');
        let error = check(&text).unwrap_err();
        assert!(
            matches!(error, AuditFileError::LineTooLong { what: "entry", .. }),
            "{error}"
        );
    }

    #[test]
    fn writer_refuses_out_of_order_and_multiline_entries() {
        let mut writer = AuditFileWriter::create(Vec::new(), ORIGIN, &verifier(7)).unwrap();
        assert!(matches!(
            writer.entry(1, b"{}"),
            Err(WriteError::OutOfOrder {
                expected: 0,
                found: 1
            })
        ));
        assert!(matches!(
            writer.entry(0, b"{\n}"),
            Err(WriteError::LineBreak { index: 0 })
        ));
        writer.entry(0, b"{}").unwrap();
        assert_eq!(writer.next_index(), 1);
        assert!(AuditFileWriter::create(Vec::new(), "a\nb", &verifier(7)).is_err());
    }

    #[test]
    fn resumed_verifier_and_writer_extend_a_file() {
        let text = log(6, 3);
        let summary = check(&text).unwrap();
        let mut verifier = summary.verifier;
        let mut writer = AuditFileWriter::resume(text.into_bytes(), summary.entries);
        let mut frontier = Frontier::new();
        for index in 0..6 {
            frontier.append(leaf_hash(&entry(index))).unwrap();
        }
        let mut line = summary.lines;
        for index in 6..9 {
            line += 1;
            verifier.entry(line, index, &entry(index)).unwrap();
            writer.entry(index, &entry(index)).unwrap();
            frontier.append(leaf_hash(&entry(index))).unwrap();
        }
        let note = sign(9, frontier.root(), 7);
        verifier.checkpoint(line + 1, &note).unwrap();
        writer.checkpoint(&note).unwrap();
        let extended = String::from_utf8(writer.into_inner()).unwrap();
        assert_eq!(check(&extended).unwrap().entries, 9);
    }

    #[test]
    fn parse_index_is_strict() {
        assert_eq!(parse_index(b"0"), Some(0));
        assert_eq!(parse_index(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_index(b"18446744073709551616"), None);
        assert_eq!(parse_index(b"00"), None);
        assert_eq!(parse_index(b"-1"), None);
        assert_eq!(parse_index(b""), None);
    }
}
