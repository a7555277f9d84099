//! A request's targets: the device id rule, the streaming commitment to a
//! target list ([`TargetsHasher`]) and the splitter that turns a manifest
//! arriving in chunks into device ids, with memory that stays flat.

use sha2::{Digest, Sha256};

use super::{MAX_DEVICE_ID_LEN, RequestError};
use crate::encoding::text::excerpt;

/// Checks a device id: 1..=128 bytes of printable ASCII (0x21..=0x7e), so
/// no space, and not starting with `#` (which would be a manifest comment).
///
/// # Errors
///
/// [`RequestError::InvalidDeviceId`].
pub fn validate_device_id(id: &str) -> Result<(), RequestError> {
    check_device_id(id.as_bytes()).map_err(|reason| RequestError::InvalidDeviceId {
        id: excerpt(id),
        reason,
    })
}

pub(super) fn check_device_id(id: &[u8]) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("it is empty");
    }
    if id.len() > MAX_DEVICE_ID_LEN {
        return Err("it is longer than 128 bytes");
    }
    if let Some(&byte) = id.iter().find(|b| !(0x21..=0x7e).contains(*b)) {
        return Err(if byte == b' ' {
            "it contains a space"
        } else if byte == b'\t' {
            "it contains a tab"
        } else if byte < 0x20 || byte == 0x7f {
            "it contains a control character"
        } else {
            "it contains a byte that is not printable ASCII"
        });
    }
    if id[0] == b'#' {
        return Err("it starts with '#', which marks a comment in a manifest");
    }
    Ok(())
}

/// The commitment to a target list: how many ids and SHA-256 over `id\n`
/// for each, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TargetsDigest {
    /// Number of targets.
    pub count: u64,
    /// SHA-256 over `id ‖ "\n"` per target, in order.
    pub sha256: [u8; 32],
}

/// Streaming [`TargetsDigest`] of a target list in order.
#[derive(Debug, Clone)]
pub struct TargetsHasher {
    count: u64,
    hasher: Sha256,
}

impl Default for TargetsHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl TargetsHasher {
    /// The hasher of the empty list.
    pub fn new() -> Self {
        TargetsHasher {
            count: 0,
            hasher: Sha256::new(),
        }
    }

    /// Adds the next target.
    ///
    /// # Errors
    ///
    /// [`RequestError::InvalidDeviceId`]; the id is then not added.
    pub fn push(&mut self, id: &str) -> Result<(), RequestError> {
        validate_device_id(id)?;
        self.push_valid(id);
        Ok(())
    }

    pub(super) fn push_valid(&mut self, id: &str) {
        self.hasher.update(id.as_bytes());
        self.hasher.update(b"\n");
        self.count += 1;
    }

    /// Targets added so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The digest of the targets added.
    pub fn finish(self) -> TargetsDigest {
        TargetsDigest {
            count: self.count,
            sha256: self.hasher.finalize().into(),
        }
    }
}

/// Splits a manifest that arrives in chunks of any size into device ids:
/// one per line, a trailing `\r` removed, blank (empty or whitespace-only)
/// lines and lines starting with `#` skipped. Memory stays flat: a line is
/// buffered only up to the longest valid device id.
///
/// After an error the stream is bad; drop the splitter.
#[derive(Debug, Clone, Default)]
pub struct ManifestSplitter {
    /// 1-based number of the line being read.
    line: u64,
    /// The current line so far (not for comment lines).
    buf: Vec<u8>,
    /// The current line is a comment.
    comment: bool,
    /// The current line is longer than any device id; `buf` keeps its
    /// start, for the error to quote.
    too_long: bool,
    /// A byte other than whitespace was seen in the current over-long line.
    too_long_not_blank: bool,
}

impl ManifestSplitter {
    /// A splitter at the start of a manifest.
    pub fn new() -> Self {
        ManifestSplitter {
            line: 1,
            ..Default::default()
        }
    }

    /// Lines completed so far.
    pub fn lines(&self) -> u64 {
        self.line - 1
    }

    /// Feeds the next chunk; appends each device id completed by it to `out`,
    /// with its 1-based line number.
    ///
    /// # Errors
    ///
    /// [`RequestError::ManifestLine`] for the first line that is not a device
    /// id, a comment or blank, naming the line.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<(u64, String)>) -> Result<(), RequestError> {
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            self.absorb(&rest[..end]);
            self.end_line(out)?;
            rest = &rest[end + 1..];
        }
        self.absorb(rest);
        Ok(())
    }

    /// Ends the manifest: a last line without a newline counts too.
    ///
    /// # Errors
    ///
    /// As [`ManifestSplitter::push`].
    pub fn finish(mut self, out: &mut Vec<(u64, String)>) -> Result<(), RequestError> {
        if !self.buf.is_empty() || self.comment || self.too_long {
            self.end_line(out)?;
        }
        Ok(())
    }

    fn absorb(&mut self, part: &[u8]) {
        if self.comment || part.is_empty() {
            return;
        }
        if self.buf.is_empty() && !self.too_long && part[0] == b'#' {
            self.comment = true;
            return;
        }
        if self.too_long {
            // Read on to the newline, keeping only whether it is blank: a
            // line this long with a non-blank byte is an error anyway.
            self.too_long_not_blank |= part.iter().any(|b| !b.is_ascii_whitespace());
            return;
        }
        // One byte more than an id, for a trailing "\r".
        let room = MAX_DEVICE_ID_LEN + 1 - self.buf.len();
        if part.len() > room {
            self.too_long = true;
            self.too_long_not_blank = self
                .buf
                .iter()
                .chain(part)
                .any(|b| !b.is_ascii_whitespace());
            self.buf.extend_from_slice(&part[..room]);
        } else {
            self.buf.extend_from_slice(part);
        }
    }

    fn end_line(&mut self, out: &mut Vec<(u64, String)>) -> Result<(), RequestError> {
        let line = self.line;
        self.line += 1;
        let comment = std::mem::take(&mut self.comment);
        let too_long = std::mem::take(&mut self.too_long);
        if comment {
            return Ok(());
        }
        if too_long {
            let start = excerpt(&String::from_utf8_lossy(&self.buf));
            self.buf.clear();
            if !std::mem::take(&mut self.too_long_not_blank) {
                return Ok(());
            }
            return Err(RequestError::ManifestLine {
                line,
                id: start,
                reason: "it is longer than 128 bytes",
            });
        }
        let mut id = self.buf.as_slice();
        if let Some(stripped) = id.strip_suffix(b"\r") {
            id = stripped;
        }
        let result = if id.iter().all(u8::is_ascii_whitespace) {
            Ok(())
        } else {
            match check_device_id(id) {
                Ok(()) => {
                    out.push((line, id.iter().map(|&b| char::from(b)).collect()));
                    Ok(())
                }
                Err(reason) => Err(RequestError::ManifestLine {
                    line,
                    id: excerpt(&String::from_utf8_lossy(id)),
                    reason,
                }),
            }
        };
        self.buf.clear();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_splitter_memory_stays_flat_on_an_endless_line() {
        let mut splitter = ManifestSplitter::new();
        let mut out = Vec::new();
        splitter.push(b"meter-1\n", &mut out).unwrap();
        for _ in 0..100_000 {
            splitter.push(b"xy", &mut out).unwrap();
            assert!(splitter.buf.len() <= MAX_DEVICE_ID_LEN + 1);
        }
        assert_eq!(
            splitter.push(b"\n", &mut out).unwrap_err(),
            RequestError::ManifestLine {
                line: 2,
                id: format!("{}…", "xy".repeat(40)),
                reason: "it is longer than 128 bytes"
            }
        );
        assert_eq!(out, vec![(1, "meter-1".to_owned())]);
    }
}
