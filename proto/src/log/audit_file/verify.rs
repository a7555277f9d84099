//! Verifying an audit file in one pass and flat memory: each entry hashed
//! as it stands, each checkpoint signature and root checked against the
//! tree so far.

use std::io::BufRead;

use super::error::excerpt;
use super::{AuditFileError, AuditFileReader, PROGRESS_EVERY, Record};
use crate::log::audit_entry::AuditEntry;
use crate::log::checkpoint::{Checkpoint, SignedNote, VerifierKey, open_signed_checkpoint};
use crate::log::merkle::{Frontier, Hash, leaf_hash};

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
        if records.is_multiple_of(PROGRESS_EVERY) {
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
