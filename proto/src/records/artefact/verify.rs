//! Verifying a bundle offline, as a stream: the header against the key
//! record and the audit key, then every record line in order.

use std::io::{BufRead, Read};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::encoding::text::excerpt;
use crate::log::checkpoint::VerifierKey;
use crate::records::command::CommandVerifier;

use crate::records::key_record::KeyRecord;
use crate::records::recovery_request::{CanonicalRequest, RequestError, TargetsHasher};

use super::error::{ArtefactError, CommandProblem, HeaderError};
use super::header::ArtefactHeader;
use super::signatures::{SignatureCheck, check_signatures};
use super::{ARTEFACT_MAGIC, MAX_HEADER_LINE_LEN, MAX_RECORD_LINE_LEN};

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

    check_signatures(&verifier, &digest, threads, |checks| {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::merkle::Hash;
    use crate::records::artefact::AuditProof;

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
