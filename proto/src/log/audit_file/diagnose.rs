//! Naming the altered entry when a checkpoint's root does not match: a
//! second read of the range that checkpoint newly covers, decoding each
//! entry.

use std::io::{self, BufRead};

use super::{AuditFileError, AuditFileReader, Diagnosis, Record, Summary, verify};
use crate::log::audit_entry::AuditEntry;
use crate::log::checkpoint::VerifierKey;

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
pub fn diagnose_error<R, F>(mut error: AuditFileError, mut open: F) -> AuditFileError
where
    R: BufRead,
    F: FnMut() -> io::Result<R>,
{
    if let AuditFileError::RootMismatch {
        start,
        end,
        diagnosis: diagnosis @ None,
        ..
    } = &mut error
    {
        *diagnosis = open()
            .map_err(AuditFileError::from)
            .and_then(|reader| diagnose_range(reader, *start, *end))
            .ok()
            .map(Box::new);
    }
    error
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
