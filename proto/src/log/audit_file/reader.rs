//! Reading an audit file as a stream of records, one bounded line at a
//! time, with nothing trusted yet.

use std::io::{BufRead, Read as _};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::error::excerpt;
use super::{
    AUDIT_KEY_PREFIX, AuditFileError, HEADER, HEADER_PREFIX, Header, MAX_ENTRY_LINE_LEN,
    MAX_LINE_LEN, ORIGIN_PREFIX, Record,
};
use crate::log::checkpoint::VerifierKey;

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
pub(super) fn parse_index(digits: &[u8]) -> Option<u64> {
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
