//! The artefact bundle: the portable result of a recovery ceremony. rkmd
//! streams it out with [`ArtefactWriter`] as the HSM signs; `rkm artefact
//! verify` checks it offline with [`verify_artefact`], given nothing but the
//! bundle, the key record and the trusted audit key.
//!
//! The bundle is text, one record per line, each ending in `\n`:
//!
//! ```text
//! rkm-artefact v1
//! header <base64 of the header JSON>
//! S <sequence> <device id> <r‖s, 128 lowercase hex digits>
//! …one S line per target, sequence 0, 1, 2, … in manifest order
//! end <count>
//! ```
//!
//! The header JSON is compact with a fixed field order (see
//! [`ArtefactHeader::encode`]). Every byte of the bundle is covered: the
//! header by the key record, the request digest, the custodians' approval
//! signatures and the audit log (the issuing entry carries the request digest
//! and [`approvals_digest`], and is proven into a signed checkpoint); each S
//! line by the recovery key's signature; the device list as a whole by the
//! approved target digest; the end line by the count.

mod error;
mod header;
mod signatures;
mod verify;
mod writer;

pub use error::{ArtefactError, CommandProblem, HeaderError};
pub use header::{ArtefactHeader, AuditProof, issue_entry_details};
pub use verify::{ArtefactSummary, verify_artefact, verify_artefact_on_threads};
pub use writer::ArtefactWriter;

use std::io::{self, BufRead};

use crate::log::audit_entry::action;

/// The first line of every bundle.
pub const ARTEFACT_MAGIC: &str = "rkm-artefact v1";

/// Largest header JSON accepted, 4 MiB.
pub const MAX_HEADER_LEN: usize = 4 << 20;

/// Longest line other than the header, without its newline. An S line is at
/// most 2 + 20 + 1 + 128 + 1 + 128 = 280 bytes.
pub const MAX_RECORD_LINE_LEN: usize = 512;

/// Longest header line: `header ` and the base64 of [`MAX_HEADER_LEN`] bytes.
const MAX_HEADER_LINE_LEN: usize = 7 + MAX_HEADER_LEN.div_ceil(3) * 4;

/// SHA-256 of a bundle's first two lines (magic and header, newlines
/// included), or `None` while `input` does not hold both whole.
///
/// rkmd signs a ceremony anew, under a new header, when it restarts in the
/// middle of signing; a collector resuming from a partial bundle sends this
/// digest so that rkmd can tell whether the bytes it holds are still part of
/// the artefact.
///
/// # Errors
///
/// Errors of `input`.
pub fn header_lines_digest(input: impl BufRead) -> io::Result<Option<[u8; 32]>> {
    use sha2::{Digest as _, Sha256};
    let limit = ARTEFACT_MAGIC.len() + 1 + MAX_HEADER_LINE_LEN + 1;
    let mut input = input.take(limit as u64);
    let mut lines = Vec::new();
    for _ in 0..2 {
        input.read_until(b'\n', &mut lines)?;
        if lines.last() != Some(&b'\n') {
            return Ok(None);
        }
    }
    Ok(Some(Sha256::digest(&lines).into()))
}

/// Most inclusion proof hashes (a tree of 2^64 leaves needs 64).
const MAX_PROOF_LEN: usize = 64;

/// Action of the audit entry that issues a recovery's artefact (an alias of
/// [`action::RECOVERY_ISSUE`], kept for one release).
pub const ISSUE_ACTION_RECOVERY: &str = action::RECOVERY_ISSUE;
/// Action of the audit entry that issues a drill's artefact (an alias of
/// [`action::DRILL_ISSUE`], kept for one release).
pub const ISSUE_ACTION_DRILL: &str = action::DRILL_ISSUE;
/// Detail of a drill's issuing entry: the drill signature (hex r‖s) over
/// [`crate::records::command::drill_challenge_digest`].
pub const DETAIL_DRILL_SIGNATURE: &str = "drill_signature";
/// Detail of the issuing entry: hex request digest.
pub const DETAIL_REQUEST_DIGEST: &str = "request_digest";
/// Detail of the issuing entry: hex [`approvals_digest`] of the header's approvals.
pub const DETAIL_APPROVALS_DIGEST: &str = "approvals_digest";
