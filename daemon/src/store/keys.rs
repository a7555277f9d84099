//! Recovery keys: the signed key record, the key's state, and per custodian
//! the commitment, the sealed envelope (until the receipt is in) and the
//! receipt.

use rusqlite::{OptionalExtension as _, params};

use super::{StoreError, Tx};

/// A key as stored; `state` is the string `ceremony::state::KeyState` names.
#[derive(Debug, Clone)]
pub struct KeyRow {
    pub key_id: String,
    pub label: String,
    pub state: String,
    pub threshold: u8,
    pub public_key_spki: Vec<u8>,
    pub signed_key_record: String,
    pub ceremony_id: String,
    pub created_at: String,
    /// Verifier key that signed the record if it was imported ('' for ours).
    pub record_audit_key: String,
    pub receipts: Vec<Receipt>,
}

/// One custodian's receipt status for a key.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub custodian: String,
    pub received_at: Option<String>,
    /// The custodian's latest share attestation: RFC 3339 and Unix seconds.
    pub attested: Option<(String, u64)>,
    /// Whether the custodian is enrolled and enabled here.
    pub enabled: bool,
}

/// A key to store.
#[derive(Debug, Clone)]
pub struct NewKey<'a> {
    pub key_id: &'a str,
    pub label: &'a str,
    pub public_key_spki: &'a [u8],
    pub signed_key_record: &'a str,
    pub threshold: u8,
    pub state: &'a str,
    pub ceremony_id: &'a str,
    pub created_at: &'a str,
    /// '' for keys generated here.
    pub record_audit_key: &'a str,
}

/// One custodian's place in a new key.
#[derive(Debug, Clone)]
pub struct NewSlot<'a> {
    pub custodian: &'a str,
    pub x: u8,
    pub commitment: &'a [u8; 32],
    /// The sealed share, for a generated key; None for an imported one.
    pub envelope: Option<&'a [u8]>,
    pub possession_public_key: Option<&'a [u8]>,
    /// '' until the receipt is in; an imported key's custodians count as
    /// having confirmed at import.
    pub received_at: &'a str,
}

/// A key by label or key id, with its receipts.
///
/// # Errors
/// SQLite fails.
pub fn load(tx: &Tx<'_>, key: &str) -> Result<Option<KeyRow>, StoreError> {
    let connection = tx.connection();
    let Some(mut row) = connection
        .query_row(
            "SELECT key_id, label, state, threshold, public_key_spki, signed_record, ceremony_id, created_at,
                    record_audit_key
             FROM keys WHERE key_id = ?1 OR label = ?1",
            [key],
            |row| {
                Ok(KeyRow {
                    key_id: row.get(0)?,
                    label: row.get(1)?,
                    state: row.get(2)?,
                    threshold: row.get(3)?,
                    public_key_spki: row.get(4)?,
                    signed_key_record: row.get(5)?,
                    ceremony_id: row.get(6)?,
                    created_at: row.get(7)?,
                    record_audit_key: row.get(8)?,
                    receipts: Vec::new(),
                })
            },
        )
        .optional()?
    else {
        return Ok(None);
    };
    let mut statement = connection.prepare_cached(
        "SELECT kc.custodian, kc.received_at, kc.attested_at, kc.attested_unix, COALESCE(c.enabled, 0)
         FROM key_custodians kc LEFT JOIN custodians c ON c.name = kc.custodian
         WHERE kc.key_id = ?1 ORDER BY kc.x",
    )?;
    row.receipts = statement
        .query_map([&row.key_id], |row| {
            let received_at: String = row.get(1)?;
            let attested_at: String = row.get(2)?;
            Ok(Receipt {
                custodian: row.get(0)?,
                received_at: (!received_at.is_empty()).then_some(received_at),
                attested: (!attested_at.is_empty()).then(|| (attested_at, row.get(3).unwrap_or(0))),
                enabled: row.get::<_, i64>(4)? != 0,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(Some(row))
}

/// Every key, by label.
///
/// # Errors
/// SQLite fails.
pub fn list(tx: &Tx<'_>) -> Result<Vec<KeyRow>, StoreError> {
    let ids: Vec<String> = tx
        .connection()
        .prepare("SELECT key_id FROM keys ORDER BY label")?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let mut keys = Vec::with_capacity(ids.len());
    for id in ids {
        keys.extend(load(tx, &id)?);
    }
    Ok(keys)
}

/// The key that has `label`, if any.
///
/// # Errors
/// SQLite fails.
pub fn with_label(tx: &Tx<'_>, label: &str) -> Result<Option<String>, StoreError> {
    Ok(tx
        .connection()
        .query_row("SELECT key_id FROM keys WHERE label = ?1", [label], |row| {
            row.get(0)
        })
        .optional()?)
}

/// The key that has this public key, if any.
///
/// # Errors
/// SQLite fails.
pub fn with_public_key(tx: &Tx<'_>, spki: &[u8]) -> Result<Option<String>, StoreError> {
    Ok(tx
        .connection()
        .query_row(
            "SELECT key_id FROM keys WHERE public_key_spki = ?1",
            [spki],
            |row| row.get(0),
        )
        .optional()?)
}

/// Whether `custodian` holds a share of key `key_id`.
///
/// # Errors
/// SQLite fails.
pub fn holds_share(tx: &Tx<'_>, key_id: &str, custodian: &str) -> Result<bool, StoreError> {
    Ok(tx
        .connection()
        .query_row(
            "SELECT 1 FROM key_custodians WHERE key_id = ?1 AND custodian = ?2",
            [key_id, custodian],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// The key here with this key id, label or public key, if any.
///
/// # Errors
/// SQLite fails.
pub fn same_key(
    tx: &Tx<'_>,
    key_id: &str,
    label: &str,
    spki: &[u8],
) -> Result<Option<String>, StoreError> {
    Ok(tx
        .connection()
        .query_row(
            "SELECT key_id FROM keys WHERE key_id = ?1 OR label = ?2 OR public_key_spki = ?3",
            params![key_id, label, spki],
            |row| row.get(0),
        )
        .optional()?)
}

/// Stores a key and its custodians' slots.
///
/// # Errors
/// SQLite fails (a key id, label or public key already here).
pub fn insert(tx: &mut Tx<'_>, key: &NewKey<'_>, slots: &[NewSlot<'_>]) -> Result<(), StoreError> {
    let connection = tx.connection();
    connection.execute(
        "INSERT INTO keys (key_id, label, public_key_spki, signed_record, threshold, state, ceremony_id, created_at, record_audit_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            key.key_id,
            key.label,
            key.public_key_spki,
            key.signed_key_record,
            key.threshold,
            key.state,
            key.ceremony_id,
            key.created_at,
            key.record_audit_key
        ],
    )?;
    for slot in slots {
        connection.execute(
            "INSERT INTO key_custodians (key_id, custodian, x, commitment, envelope, possession_public_key, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                key.key_id,
                slot.custodian,
                slot.x,
                slot.commitment.to_vec(),
                slot.envelope,
                slot.possession_public_key,
                slot.received_at
            ],
        )?;
    }
    Ok(())
}

/// `custodian`'s sealed envelope of key `key_id`: None if they are not one
/// of its custodians, `Some(None)` once it was deleted.
///
/// # Errors
/// SQLite fails.
pub fn envelope_of(
    tx: &Tx<'_>,
    key_id: &str,
    custodian: &str,
) -> Result<Option<Option<Vec<u8>>>, StoreError> {
    Ok(tx
        .connection()
        .query_row(
            "SELECT envelope FROM key_custodians WHERE key_id = ?1 AND custodian = ?2",
            params![key_id, custodian],
            |row| row.get(0),
        )
        .optional()?)
}

/// Records a custodian's receipt (their first attestation too) and deletes
/// their envelope; returns how many receipts the key still waits for.
///
/// # Errors
/// SQLite fails.
pub fn record_receipt(
    tx: &mut Tx<'_>,
    key_id: &str,
    custodian: &str,
    signature: &[u8],
    received_at: &str,
    unix_time: u64,
) -> Result<u64, StoreError> {
    let connection = tx.connection();
    connection.execute(
        "UPDATE key_custodians SET envelope = NULL, receipt_signature = ?3, received_at = ?4,
                attested_at = ?4, attested_unix = ?5
         WHERE key_id = ?1 AND custodian = ?2",
        params![key_id, custodian, signature, received_at, unix_time],
    )?;
    let missing: i64 = connection.query_row(
        "SELECT COUNT(*) FROM key_custodians WHERE key_id = ?1 AND received_at = ''",
        [key_id],
        |row| row.get(0),
    )?;
    Ok(super::from_sql(missing))
}

/// Sets a key's state.
///
/// # Errors
/// SQLite fails.
pub fn set_state(tx: &mut Tx<'_>, key_id: &str, state: &str) -> Result<(), StoreError> {
    tx.connection().execute(
        "UPDATE keys SET state = ?2 WHERE key_id = ?1",
        params![key_id, state],
    )?;
    Ok(())
}

/// Deletes every envelope of key `key_id` still waiting for its custodian.
///
/// # Errors
/// SQLite fails.
pub fn delete_envelopes(tx: &mut Tx<'_>, key_id: &str) -> Result<(), StoreError> {
    tx.connection().execute(
        "UPDATE key_custodians SET envelope = NULL WHERE key_id = ?1",
        [key_id],
    )?;
    Ok(())
}
