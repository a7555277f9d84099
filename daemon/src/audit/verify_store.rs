//! Start-up check of the audit store: recompute every leaf and root from the
//! entries as stored and compare them with every stored checkpoint and with
//! the latest checkpoint kept in the token. A store that was deleted,
//! replaced, rolled back or edited is refused, saying which.

use std::collections::BTreeMap;

use rkm_proto::checkpoint::{Checkpoint, VerifierKey, open_signed_checkpoint};
use rkm_proto::merkle::{Frontier, Hash, leaf_hash};

use super::AuditError;
use super::checkpointer::{SignedCheckpoint, row_to_checkpoint};
use crate::hsm::Hsm;
use crate::store::{Store, StoreError};

/// What the start-up check found.
#[derive(Debug, Clone)]
pub struct StoreVerification {
    /// The tree rebuilt from the entries.
    pub frontier: Frontier,
    /// Size of the token's latest checkpoint, if it has one.
    pub token_checkpoint_size: Option<u64>,
    /// Number of stored checkpoints, all verified.
    pub stored_checkpoints: usize,
}

struct Recomputed {
    frontier: Frontier,
    missing: Option<u64>,
    roots: BTreeMap<u64, Hash>,
    checkpoints: Vec<SignedCheckpoint>,
}

/// Runs the check.
///
/// # Errors
/// [`AuditError::Tampered`] naming what does not match.
pub async fn verify(
    store: &Store,
    hsm: &Hsm,
    verifier: &VerifierKey,
) -> Result<StoreVerification, AuditError> {
    let mut token_checkpoint: Option<Checkpoint> = None;
    for bytes in hsm.read_checkpoints().await? {
        let text = String::from_utf8(bytes).map_err(|_| {
            AuditError::Tampered("the token's checkpoint object is not text".to_owned())
        })?;
        let checkpoint = open_signed_checkpoint(&text, verifier).map_err(|e| {
            AuditError::Tampered(format!(
                "the token's checkpoint does not verify with the audit key under origin {:?} ({e}); was audit.origin changed?",
                verifier.name()
            ))
        })?;
        if token_checkpoint
            .as_ref()
            .is_none_or(|latest| checkpoint.size() > latest.size())
        {
            token_checkpoint = Some(checkpoint);
        }
    }
    let wanted_size = token_checkpoint.as_ref().map(|c| c.size());
    let recomputed = store
        .with(move |connection| recompute(connection, wanted_size))
        .await?;
    let size = recomputed.frontier.size();
    if let Some(index) = recomputed.missing {
        return Err(AuditError::Tampered(format!(
            "entry {index} is missing from the store"
        )));
    }
    for stored in &recomputed.checkpoints {
        let opened = open_signed_checkpoint(&stored.signed_note, verifier).map_err(|e| {
            AuditError::Tampered(format!(
                "stored checkpoint at size {} does not verify: {e}",
                stored.size
            ))
        })?;
        if opened.size() != stored.size || *opened.root() != stored.root {
            return Err(AuditError::Tampered(format!(
                "stored checkpoint at size {} does not match its signed note",
                stored.size
            )));
        }
        compare_root(
            &recomputed,
            size,
            stored.size,
            &stored.root,
            "the stored checkpoint",
        )?;
    }
    match &token_checkpoint {
        Some(checkpoint) => {
            compare_root(
                &recomputed,
                size,
                checkpoint.size(),
                checkpoint.root(),
                "the token's latest checkpoint",
            )?;
        }
        // A crash between the first entry and the first checkpoint leaves a
        // store with entries but no checkpoint anywhere; any stored
        // checkpoint means the token's was removed.
        None if !recomputed.checkpoints.is_empty() => {
            return Err(AuditError::Tampered(format!(
                "the store holds {} signed checkpoints but the token holds none: the token's checkpoint was deleted, or this database belongs to another token",
                recomputed.checkpoints.len()
            )));
        }
        None => {}
    }
    Ok(StoreVerification {
        frontier: recomputed.frontier,
        token_checkpoint_size: token_checkpoint.map(|c| c.size()),
        stored_checkpoints: recomputed.checkpoints.len(),
    })
}

fn compare_root(
    recomputed: &Recomputed,
    size: u64,
    checkpoint_size: u64,
    expected: &Hash,
    which: &str,
) -> Result<(), AuditError> {
    if checkpoint_size > size {
        return Err(AuditError::Tampered(format!(
            "the store has {size} entries but {which} covers {checkpoint_size}: the database was deleted, replaced or rolled back to an older copy"
        )));
    }
    let found = recomputed
        .roots
        .get(&checkpoint_size)
        .copied()
        .unwrap_or(Hash::EMPTY_ROOT);
    if &found != expected {
        return Err(AuditError::Tampered(format!(
            "entries 0..{checkpoint_size} hash to root {found}, but {which} says {expected}: the log was edited"
        )));
    }
    Ok(())
}

fn recompute(
    connection: &mut rusqlite::Connection,
    token_size: Option<u64>,
) -> Result<Recomputed, StoreError> {
    let checkpoints: Vec<SignedCheckpoint> = connection
        .prepare("SELECT size, root, signed_note FROM audit_checkpoints ORDER BY size")?
        .query_map([], row_to_checkpoint)?
        .collect::<Result<_, _>>()?;
    let mut wanted: Vec<u64> = checkpoints.iter().map(|c| c.size).collect();
    wanted.extend(token_size);
    let mut roots = BTreeMap::new();
    let mut frontier = Frontier::new();
    let mut missing = None;
    if wanted.contains(&0) {
        roots.insert(0, frontier.root());
    }
    let mut statement = connection.prepare("SELECT idx, entry FROM audit_entries ORDER BY idx")?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let index: i64 = row.get(0)?;
        if u64::try_from(index).ok() != Some(frontier.size()) {
            missing = Some(frontier.size());
            break;
        }
        let entry = row
            .get_ref(1)?
            .as_blob()
            .map_err(|e| StoreError::Invalid(format!("entry {index}: {e}")))?;
        frontier
            .append(leaf_hash(entry))
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        if wanted.contains(&frontier.size()) {
            roots.insert(frontier.size(), frontier.root());
        }
    }
    Ok(Recomputed {
        frontier,
        missing,
        roots,
        checkpoints,
    })
}
