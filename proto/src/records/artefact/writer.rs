//! Writing a bundle as rkmd signs it: the header, then one record per
//! target, refusing anything out of order so what is written verifies.

use std::io::{self, Write};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::records::command::normalize_signature;

use crate::records::recovery_request::{CanonicalRequest, TargetsDigest, TargetsHasher};

use super::header::ArtefactHeader;
use super::{ARTEFACT_MAGIC, MAX_HEADER_LEN, MAX_RECORD_LINE_LEN};

/// Writes a bundle as rkmd signs: the magic and header lines at once, then
/// one S line per [`ArtefactWriter::signed`], then the end line at
/// [`ArtefactWriter::finish`]. Pass a buffered writer; each line is one
/// `write_all`.
///
/// The writer refuses (with [`io::ErrorKind::InvalidInput`]) anything
/// [`verify_artefact`] would refuse in the lines it writes: a sequence out of
/// order or beyond the target count, an invalid device id, a signature that
/// is not low-S (use [`normalize_signature`] on HSM output), a device list
/// that is not the approved one, or too few commands at the end.
#[derive(Debug)]
pub struct ArtefactWriter<W: Write> {
    out: W,
    next_sequence: u64,
    target_count: u64,
    approved_targets: TargetsDigest,
    targets: TargetsHasher,
    line: Vec<u8>,
}

fn invalid_input(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

impl<W: Write> ArtefactWriter<W> {
    /// Writes the magic and header lines.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] if the header's canonical request does
    /// not decode or its target count is not the header's; otherwise errors
    /// of `out`.
    pub fn new(mut out: W, header: &ArtefactHeader) -> io::Result<Self> {
        let request = CanonicalRequest::decode(&header.canonical_request)
            .map_err(|e| invalid_input(format!("artefact header: {e}")))?;
        if request.targets.count != header.target_count {
            return Err(invalid_input(format!(
                "artefact header announces {} targets, but the request has {}",
                header.target_count, request.targets.count
            )));
        }
        let json = header.encode();
        if json.len() > MAX_HEADER_LEN {
            return Err(invalid_input(format!(
                "artefact header is {} bytes, more than the {MAX_HEADER_LEN} a verifier accepts",
                json.len()
            )));
        }
        let mut first = Vec::with_capacity(ARTEFACT_MAGIC.len() + 9 + json.len() * 4 / 3 + 4);
        first.extend_from_slice(ARTEFACT_MAGIC.as_bytes());
        first.extend_from_slice(b"\nheader ");
        first.extend_from_slice(STANDARD.encode(&json).as_bytes());
        first.push(b'\n');
        out.write_all(&first)?;
        Ok(ArtefactWriter {
            out,
            next_sequence: 0,
            target_count: header.target_count,
            approved_targets: request.targets,
            targets: TargetsHasher::new(),
            line: Vec::with_capacity(MAX_RECORD_LINE_LEN),
        })
    }

    /// Commands written so far.
    pub fn written(&self) -> u64 {
        self.next_sequence
    }

    /// Writes the S line of one signed command.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] for a sequence that is not the next
    /// one or beyond the target count, an invalid device id, or a signature
    /// that is not a low-S r‖s; otherwise errors of `out`.
    pub fn signed(
        &mut self,
        sequence: u64,
        device_id: &str,
        signature: &[u8; 64],
    ) -> io::Result<()> {
        if sequence != self.next_sequence {
            return Err(invalid_input(format!(
                "artefact: sequence {sequence} given, {} expected",
                self.next_sequence
            )));
        }
        if sequence >= self.target_count {
            return Err(invalid_input(format!(
                "artefact: sequence {sequence} is beyond the {} targets",
                self.target_count
            )));
        }
        match normalize_signature(signature) {
            Ok(low) if low == *signature => {}
            Ok(_) => {
                return Err(invalid_input(format!(
                    "artefact: the signature of sequence {sequence} has a high S; normalise it first"
                )));
            }
            Err(e) => return Err(invalid_input(format!("artefact: sequence {sequence}: {e}"))),
        }
        self.targets
            .push(device_id)
            .map_err(|e| invalid_input(format!("artefact: sequence {sequence}: {e}")))?;
        let mut sig_hex = [0u8; 128];
        hex::encode_to_slice(signature, &mut sig_hex).expect("128 hex digits for 64 bytes");
        self.line.clear();
        self.line.extend_from_slice(b"S ");
        self.line.extend_from_slice(sequence.to_string().as_bytes());
        self.line.push(b' ');
        self.line.extend_from_slice(device_id.as_bytes());
        self.line.push(b' ');
        self.line.extend_from_slice(&sig_hex);
        self.line.push(b'\n');
        self.out.write_all(&self.line)?;
        self.next_sequence += 1;
        Ok(())
    }

    /// Flushes what is written so far, so readers of a bundle being signed
    /// see every complete line.
    ///
    /// # Errors
    ///
    /// Errors of `out`.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Writes the end line, flushes, and returns the writer.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] if fewer commands than the target
    /// count were written or their device ids are not the approved target
    /// list (nothing is written then); otherwise errors of `out`.
    pub fn finish(mut self) -> io::Result<W> {
        if self.next_sequence != self.target_count {
            return Err(invalid_input(format!(
                "artefact: {} of {} commands written",
                self.next_sequence, self.target_count
            )));
        }
        if self.targets.finish() != self.approved_targets {
            return Err(invalid_input(
                "artefact: the devices written are not the approved target list".to_owned(),
            ));
        }
        writeln!(self.out, "end {}", self.target_count)?;
        self.out.flush()?;
        Ok(self.out)
    }
}
