//! Writing an audit file, as `rkm audit fetch` does: records in order, each
//! on one line, so that what is written is what [`super::verify`] accepts.

use std::io::{self, Write};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::{AUDIT_KEY_PREFIX, HEADER, ORIGIN_PREFIX};
use crate::log::checkpoint::VerifierKey;

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
