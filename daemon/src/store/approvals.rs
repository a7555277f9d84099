//! Approval nonces (single use, short-lived) and accepted approvals, each
//! with its share held encrypted under the HSM's holding key until the
//! ceremony ends.

use rusqlite::{OptionalExtension as _, params};

use super::{StoreError, Tx, from_sql};

/// One accepted approval (without its held share).
#[derive(Debug, Clone)]
pub struct ApprovalRow {
    pub custodian: String,
    pub nonce: Vec<u8>,
    pub commitment: Vec<u8>,
    pub signature: Vec<u8>,
    pub approved_at: String,
}

/// An approval to store, with its held share.
#[derive(Debug, Clone)]
pub struct NewApproval<'a> {
    pub ceremony_id: &'a str,
    pub custodian: &'a str,
    pub nonce: &'a [u8],
    pub commitment: &'a [u8],
    pub signature: &'a [u8],
    pub held_share: &'a [u8],
    pub approved_at: &'a str,
}

/// A nonce as issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedNonce {
    pub ceremony_id: String,
    pub custodian: String,
    pub expires_at: String,
    pub used: bool,
}

/// A held share of one approver: None once destroyed.
#[derive(Debug)]
pub struct HeldShare {
    pub custodian: String,
    pub held_share: Option<Vec<u8>>,
}

/// Stores a fresh nonce for `custodian`'s approval of `ceremony_id`.
///
/// # Errors
/// SQLite fails.
pub fn insert_nonce(
    tx: &mut Tx<'_>,
    nonce: &[u8],
    ceremony_id: &str,
    custodian: &str,
    expires_at: &str,
) -> Result<(), StoreError> {
    tx.connection().execute(
        "INSERT INTO approval_nonces (nonce, ceremony_id, custodian, expires_at) VALUES (?1, ?2, ?3, ?4)",
        params![nonce, ceremony_id, custodian, expires_at],
    )?;
    Ok(())
}

/// The nonce as issued, if this rkmd issued it.
///
/// # Errors
/// SQLite fails.
pub fn nonce(tx: &Tx<'_>, nonce: &[u8]) -> Result<Option<IssuedNonce>, StoreError> {
    Ok(tx
        .connection()
        .query_row(
            "SELECT ceremony_id, custodian, expires_at, used FROM approval_nonces WHERE nonce = ?1",
            [nonce],
            |row| {
                Ok(IssuedNonce {
                    ceremony_id: row.get(0)?,
                    custodian: row.get(1)?,
                    expires_at: row.get(2)?,
                    used: row.get(3)?,
                })
            },
        )
        .optional()?)
}

/// Uses a nonce; tells whether it was still unused (approvals race).
///
/// # Errors
/// SQLite fails.
pub fn use_nonce(tx: &mut Tx<'_>, nonce: &[u8]) -> Result<bool, StoreError> {
    Ok(tx.connection().execute(
        "UPDATE approval_nonces SET used = 1 WHERE nonce = ?1 AND used = 0",
        [nonce],
    )? == 1)
}

/// Uses every nonce of a ceremony that closed.
///
/// # Errors
/// SQLite fails.
pub fn use_nonces_of(tx: &mut Tx<'_>, ceremony_id: &str) -> Result<(), StoreError> {
    tx.connection().execute(
        "UPDATE approval_nonces SET used = 1 WHERE ceremony_id = ?1",
        [ceremony_id],
    )?;
    Ok(())
}

/// Stores an accepted approval.
///
/// # Errors
/// SQLite fails (the custodian approved already).
pub fn insert(tx: &mut Tx<'_>, approval: &NewApproval<'_>) -> Result<(), StoreError> {
    tx.connection().execute(
        "INSERT INTO approvals (ceremony_id, custodian, nonce, commitment, signature, held_share, approved_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            approval.ceremony_id,
            approval.custodian,
            approval.nonce,
            approval.commitment,
            approval.signature,
            approval.held_share,
            approval.approved_at
        ],
    )?;
    Ok(())
}

/// The approvals of a ceremony, in the order they came in.
///
/// # Errors
/// SQLite fails.
pub fn of(tx: &Tx<'_>, ceremony_id: &str) -> Result<Vec<ApprovalRow>, StoreError> {
    let mut statement = tx.connection().prepare_cached(
        "SELECT custodian, nonce, commitment, signature, approved_at FROM approvals
         WHERE ceremony_id = ?1 ORDER BY approved_at, custodian",
    )?;
    Ok(statement
        .query_map([ceremony_id], |row| {
            Ok(ApprovalRow {
                custodian: row.get(0)?,
                nonce: row.get(1)?,
                commitment: row.get(2)?,
                signature: row.get(3)?,
                approved_at: row.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?)
}

/// (approvals so far, threshold of the key) of a recovery ceremony, read in
/// the same transaction that adds an approval.
///
/// # Errors
/// SQLite fails.
pub fn count_and_threshold(tx: &Tx<'_>, ceremony_id: &str) -> Result<(u64, u64), StoreError> {
    let (count, threshold): (i64, i64) = tx.connection().query_row(
        "SELECT (SELECT COUNT(*) FROM approvals WHERE ceremony_id = ?1), k.threshold
         FROM recoveries r JOIN keys k ON k.key_id = r.key_id WHERE r.ceremony_id = ?1",
        [ceremony_id],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    Ok((from_sql(count), from_sql(threshold)))
}

/// The held shares of a ceremony, in approval order.
///
/// # Errors
/// SQLite fails.
pub fn held_shares(tx: &Tx<'_>, ceremony_id: &str) -> Result<Vec<HeldShare>, StoreError> {
    Ok(tx
        .connection()
        .prepare("SELECT custodian, held_share FROM approvals WHERE ceremony_id = ?1 ORDER BY approved_at, custodian")?
        .query_map([ceremony_id], |row| {
            Ok(HeldShare {
                custodian: row.get(0)?,
                held_share: row.get(1)?,
            })
        })?
        .collect::<Result<_, _>>()?)
}

/// Destroys the held shares of a ceremony.
///
/// # Errors
/// SQLite fails.
pub fn destroy_held_shares(tx: &mut Tx<'_>, ceremony_id: &str) -> Result<(), StoreError> {
    tx.connection().execute(
        "UPDATE approvals SET held_share = NULL WHERE ceremony_id = ?1",
        [ceremony_id],
    )?;
    Ok(())
}
