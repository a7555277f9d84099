//! Recovery ceremonies: the canonical request custodians approve, its
//! targets in manifest order, and the signing's outcome.

use rusqlite::{OptionalExtension as _, params};

use super::approvals::{self, ApprovalRow};
use super::{StoreError, Tx, from_sql, to_sql};

/// A recovery ceremony as stored, with its ceremony row's facts and its key's
/// label and threshold; `state` is the string `ceremony::state` names.
#[derive(Debug, Clone)]
pub struct RecoveryRow {
    pub ceremony_id: String,
    pub key_id: String,
    pub key_label: String,
    pub state: String,
    pub canonical_request: Vec<u8>,
    pub request_digest: Vec<u8>,
    pub target_count: u64,
    pub threshold: u8,
    pub approvals: Vec<ApprovalRow>,
    pub opened_by: String,
    pub opened_at: String,
    pub expires_at: String,
    pub signed_count: u64,
    pub artefact_size: u64,
    pub failure: String,
    /// Under the two-person rule, until a second operator confirms it.
    pub awaiting_confirmation: bool,
    pub confirmed_by: String,
    pub confirmed_at: String,
}

/// A recovery request to store beside its ceremony row.
#[derive(Debug, Clone)]
pub struct NewRecovery<'a> {
    pub ceremony_id: &'a str,
    pub key_id: &'a str,
    pub canonical_request: &'a [u8],
    pub request_digest: &'a [u8; 32],
    pub target_count: u64,
    /// Opened under the two-person rule: approvals wait for a second operator.
    pub awaiting_confirmation: bool,
}

/// (sequence, device id) of one target.
pub type Target = (i64, String);

/// Stores a recovery request.
///
/// # Errors
/// SQLite fails.
pub fn insert(tx: &mut Tx<'_>, recovery: &NewRecovery<'_>) -> Result<(), StoreError> {
    tx.connection().execute(
        "INSERT INTO recoveries (ceremony_id, key_id, canonical_request, request_digest, target_count,
                                 awaiting_confirmation)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            recovery.ceremony_id,
            recovery.key_id,
            recovery.canonical_request,
            recovery.request_digest.to_vec(),
            to_sql(recovery.target_count),
            recovery.awaiting_confirmation
        ],
    )?;
    Ok(())
}

/// A recovery ceremony with its approvals.
///
/// # Errors
/// SQLite fails.
pub fn load(tx: &Tx<'_>, ceremony_id: &str) -> Result<Option<RecoveryRow>, StoreError> {
    let Some(mut row) = tx
        .connection()
        .query_row(
            "SELECT r.ceremony_id, r.key_id, k.label, c.state, r.canonical_request, r.request_digest,
                    r.target_count, k.threshold, c.opened_by, c.opened_at, c.expires_at,
                    r.signed_count, r.artefact_size, r.failure,
                    r.awaiting_confirmation, r.confirmed_by, r.confirmed_at
             FROM recoveries r JOIN ceremonies c ON c.id = r.ceremony_id JOIN keys k ON k.key_id = r.key_id
             WHERE r.ceremony_id = ?1",
            [ceremony_id],
            |row| {
                Ok(RecoveryRow {
                    ceremony_id: row.get(0)?,
                    key_id: row.get(1)?,
                    key_label: row.get(2)?,
                    state: row.get(3)?,
                    canonical_request: row.get(4)?,
                    request_digest: row.get(5)?,
                    target_count: from_sql(row.get(6)?),
                    threshold: row.get(7)?,
                    opened_by: row.get(8)?,
                    opened_at: row.get(9)?,
                    expires_at: row.get(10)?,
                    signed_count: from_sql(row.get(11)?),
                    artefact_size: from_sql(row.get(12)?),
                    failure: row.get(13)?,
                    awaiting_confirmation: row.get(14)?,
                    confirmed_by: row.get(15)?,
                    confirmed_at: row.get(16)?,
                    approvals: Vec::new(),
                })
            },
        )
        .optional()?
    else {
        return Ok(None);
    };
    row.approvals = approvals::of(tx, ceremony_id)?;
    Ok(Some(row))
}

/// Records that `confirmer` confirmed a recovery awaiting confirmation;
/// false if it no longer awaits one (another operator was first).
///
/// # Errors
/// SQLite fails.
pub fn confirm(
    tx: &mut Tx<'_>,
    ceremony_id: &str,
    confirmer: &str,
    confirmed_at: &str,
) -> Result<bool, StoreError> {
    let changed = tx.connection().execute(
        "UPDATE recoveries SET awaiting_confirmation = 0, confirmed_by = ?2, confirmed_at = ?3
         WHERE ceremony_id = ?1 AND awaiting_confirmation = 1",
        params![ceremony_id, confirmer, confirmed_at],
    )?;
    Ok(changed == 1)
}

/// Every recovery ceremony, newest first; with `custodian`, only those on
/// keys that custodian holds a share of.
///
/// # Errors
/// SQLite fails.
pub fn list(tx: &Tx<'_>, custodian: Option<&str>) -> Result<Vec<RecoveryRow>, StoreError> {
    let ids: Vec<String> = tx
        .connection()
        .prepare(
            "SELECT r.ceremony_id FROM recoveries r JOIN ceremonies c ON c.id = r.ceremony_id
             WHERE ?1 IS NULL
                OR EXISTS (SELECT 1 FROM key_custodians kc WHERE kc.key_id = r.key_id AND kc.custodian = ?1)
             ORDER BY c.opened_at DESC",
        )?
        .query_map([custodian], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let mut all = Vec::with_capacity(ids.len());
    for id in ids {
        all.extend(load(tx, &id)?);
    }
    Ok(all)
}

/// A device id listed a second time in one request: (sequence, manifest
/// line) of both listings; line 0 is the request's own `targets` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateTarget {
    pub device_id: String,
    pub first: (u64, u64),
    pub again: (u64, u64),
}

/// Stores targets numbered from `first`, each with its manifest line;
/// returns the next sequence number, or the first device listed twice (and
/// then stores nothing more: the request is refused).
///
/// # Errors
/// SQLite fails.
pub fn insert_targets(
    tx: &mut Tx<'_>,
    ceremony_id: &str,
    first: u64,
    targets: Vec<(u64, String)>,
) -> Result<Result<u64, DuplicateTarget>, StoreError> {
    let mut sequence = first;
    let connection = tx.connection();
    let mut earlier = connection.prepare_cached(
        // INDEXED BY: without statistics SQLite would scan the ceremony's
        // targets by primary key, quadratic over a large manifest.
        "SELECT seq, line FROM recovery_targets INDEXED BY recovery_targets_device
         WHERE ceremony_id = ?1 AND device_id = ?2 LIMIT 1",
    )?;
    let mut insert = connection.prepare_cached(
        "INSERT INTO recovery_targets (ceremony_id, seq, device_id, line) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (line, target) in targets {
        let listed: Option<(i64, i64)> = earlier
            .query_row(params![ceremony_id, target], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()?;
        if let Some((seq, first_line)) = listed {
            return Ok(Err(DuplicateTarget {
                device_id: target,
                first: (from_sql(seq), from_sql(first_line)),
                again: (sequence, line),
            }));
        }
        insert.execute(params![ceremony_id, to_sql(sequence), target, to_sql(line)])?;
        sequence += 1;
    }
    Ok(Ok(sequence))
}

/// Up to `limit` targets from sequence `from` on, in manifest order.
///
/// # Errors
/// SQLite fails.
pub fn targets_page(
    tx: &Tx<'_>,
    ceremony_id: &str,
    from: i64,
    limit: usize,
) -> Result<Vec<Target>, StoreError> {
    Ok(tx
        .connection()
        .prepare_cached(
            "SELECT seq, device_id FROM recovery_targets WHERE ceremony_id = ?1 AND seq >= ?2 ORDER BY seq LIMIT ?3",
        )?
        .query_map(params![ceremony_id, from, to_sql(limit as u64)], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<Result<_, _>>()?)
}

/// Deletes the targets staged for `ceremony_id`.
///
/// # Errors
/// SQLite fails.
pub fn delete_targets(tx: &mut Tx<'_>, ceremony_id: &str) -> Result<usize, StoreError> {
    Ok(tx.connection().execute(
        "DELETE FROM recovery_targets WHERE ceremony_id = ?1",
        [ceremony_id],
    )?)
}

/// Deletes targets that belong to no recovery (staged by a request whose
/// client went away); returns how many.
///
/// # Errors
/// SQLite fails.
pub fn delete_orphan_targets(tx: &mut Tx<'_>) -> Result<usize, StoreError> {
    Ok(tx.connection().execute(
        "DELETE FROM recovery_targets WHERE ceremony_id NOT IN (SELECT ceremony_id FROM recoveries)",
        [],
    )?)
}

/// Records why the signing failed.
///
/// # Errors
/// SQLite fails.
pub fn set_failure(tx: &mut Tx<'_>, ceremony_id: &str, reason: &str) -> Result<(), StoreError> {
    tx.connection().execute(
        "UPDATE recoveries SET failure = ?2 WHERE ceremony_id = ?1",
        params![ceremony_id, reason],
    )?;
    Ok(())
}

/// Records the signing's progress.
///
/// # Errors
/// SQLite fails.
pub fn set_signed_count(tx: &mut Tx<'_>, ceremony_id: &str, signed: u64) -> Result<(), StoreError> {
    tx.connection().execute(
        "UPDATE recoveries SET signed_count = ?2 WHERE ceremony_id = ?1",
        params![ceremony_id, to_sql(signed)],
    )?;
    Ok(())
}

/// Records the signing's outcome: commands signed and the artefact's size.
///
/// # Errors
/// SQLite fails.
pub fn set_signed(
    tx: &mut Tx<'_>,
    ceremony_id: &str,
    signed: u64,
    artefact_size: u64,
) -> Result<(), StoreError> {
    tx.connection().execute(
        "UPDATE recoveries SET signed_count = ?2, artefact_size = ?3 WHERE ceremony_id = ?1",
        params![ceremony_id, to_sql(signed), to_sql(artefact_size)],
    )?;
    Ok(())
}
