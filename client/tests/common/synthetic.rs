//! Synthetic signed audit logs for the client's tests and the `audit_verify`
//! benchmark: realistic ~200-byte entries, a checkpoint every `every`
//! entries and at the end, signed by a fixed Ed25519 audit key.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use ed25519_dalek::{Signer as _, SigningKey};
use rkm_proto::audit_entry::{AuditEntry, ENTRY_VERSION, Outcome};
use rkm_proto::audit_file::AuditFileWriter;
use rkm_proto::checkpoint::{Checkpoint, VerifierKey, format_signed_note, signed_message};
use rkm_proto::encoding::time::format_rfc3339_millis;
use rkm_proto::merkle::{Frontier, leaf_hash};

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The synthetic log's origin and key name.
pub const ORIGIN: &str = "rkm.bench/audit";

/// The verifier key of another audit key, for "wrong key" cases.
pub fn other_key() -> VerifierKey {
    let key = SigningKey::from_bytes(&[9; 32]);
    VerifierKey::new(ORIGIN, key.verifying_key().as_bytes()).expect("a valid key")
}

/// A realistic entry: a ceremony step by an operator, with a request digest
/// and a message, about 200 bytes once encoded.
pub fn entry(index: u64) -> AuditEntry {
    const ACTIONS: [&str; 6] = [
        "ceremony.approve",
        "ceremony.open",
        "share.submit",
        "audit.note",
        "key.sign",
        "custodian.attest",
    ];
    let seconds = 1_790_000_000 + index / 10;
    let millis = (index % 10) * 100;
    let time = UNIX_EPOCH + Duration::from_millis(seconds * 1000 + millis);
    AuditEntry {
        v: ENTRY_VERSION,
        time: format_rfc3339_millis(time),
        actor: format!("custodian-{}", index % 7),
        action: ACTIONS[(index % 6) as usize].to_owned(),
        subject: format!("cer-{:08x}", index / 50),
        outcome: Outcome::Ok,
        details: BTreeMap::from([
            (
                "digest".to_owned(),
                format!(
                    "{:016x}{:016x}",
                    index.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    index
                ),
            ),
            ("message".to_owned(), format!("step {index} of the drill")),
        ]),
    }
}

/// Writes a signed log of `entries` entries to `path`; returns its verifier key.
pub fn generate(path: &Path, entries: u64, every: u64) -> Result<VerifierKey> {
    let key = SigningKey::from_bytes(&[7; 32]);
    let verifier = VerifierKey::new(ORIGIN, key.verifying_key().as_bytes())?;
    let out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut writer = AuditFileWriter::create(out, ORIGIN, &verifier)?;
    let mut frontier = Frontier::new();
    for index in 0..entries {
        let bytes = entry(index).encode()?;
        writer.entry(index, &bytes)?;
        frontier.append(leaf_hash(&bytes))?;
        if frontier.size().is_multiple_of(every) || frontier.size() == entries {
            let body = Checkpoint::new(ORIGIN, frontier.size(), frontier.root(), vec![])?.to_body();
            let signature = key.sign(signed_message(&body));
            let note = format_signed_note(&body, ORIGIN, verifier.key_id(), &signature.to_bytes())?;
            writer.checkpoint(&note)?;
        }
    }
    writer.into_inner().flush()?;
    Ok(verifier)
}
