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

mod diagnose;
mod error;
mod reader;
mod verify;
mod writer;

pub use diagnose::{diagnose_error, diagnose_range, verify_reopening};
pub use error::{AuditFileError, Diagnosis};
pub use reader::AuditFileReader;
pub use verify::{LogVerifier, Summary, VerifiedCheckpoint, verify};
pub use writer::{AuditFileWriter, WriteError};

use crate::log::audit_entry::MAX_ENTRY_LEN;
use crate::log::checkpoint::VerifierKey;

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

#[cfg(test)]
mod tests;
