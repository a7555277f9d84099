//! Custodians as enrolled, and each custodian's place in each key (their
//! share's x, commitment, receipt and latest attestation).

use rusqlite::{OptionalExtension as _, params};

use super::{StoreError, Tx};

/// A custodian as the daemon knows them.
#[derive(Debug, Clone)]
pub struct Custodian {
    pub name: String,
    pub ed25519_public_key: [u8; 32],
    pub age_recipient: String,
    pub fingerprint: String,
    pub enabled: bool,
    pub enrolled_at: String,
    pub disabled_reason: String,
}

/// One custodian's place in one key, as stored.
#[derive(Debug)]
pub struct KeySlot {
    pub x: u8,
    pub commitment: Vec<u8>,
    /// '' until the receipt is in.
    pub received_at: String,
    /// Their latest attestation, Unix seconds (0: none).
    pub attested_unix: u64,
    /// Public half of `rkm_proto::commitment::PossessionKey`; None for
    /// imported keys.
    pub possession_public_key: Option<Vec<u8>>,
}

const COLUMNS: &str =
    "name, ed25519_public_key, age_recipient, fingerprint, enabled, enrolled_at, disabled_reason";

fn row_to_custodian(row: &rusqlite::Row<'_>) -> rusqlite::Result<Custodian> {
    let key: Vec<u8> = row.get(1)?;
    Ok(Custodian {
        name: row.get(0)?,
        ed25519_public_key: key.try_into().map_err(|_| {
            rusqlite::Error::InvalidColumnType(
                1,
                "ed25519_public_key".into(),
                rusqlite::types::Type::Blob,
            )
        })?,
        age_recipient: row.get(2)?,
        fingerprint: row.get(3)?,
        enabled: row.get(4)?,
        enrolled_at: row.get(5)?,
        disabled_reason: row.get(6)?,
    })
}

/// One custodian by name.
///
/// # Errors
/// SQLite fails.
pub fn load(tx: &Tx<'_>, name: &str) -> Result<Option<Custodian>, StoreError> {
    Ok(tx
        .connection()
        .query_row(
            &format!("SELECT {COLUMNS} FROM custodians WHERE name = ?1"),
            [name],
            row_to_custodian,
        )
        .optional()?)
}

/// Every custodian, by name.
///
/// # Errors
/// SQLite fails.
pub fn list(tx: &Tx<'_>) -> Result<Vec<Custodian>, StoreError> {
    let mut statement = tx
        .connection()
        .prepare(&format!("SELECT {COLUMNS} FROM custodians ORDER BY name"))?;
    let rows = statement.query_map([], row_to_custodian)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The enrolled custodian who already has this name, signing key or age
/// recipient, if any.
///
/// # Errors
/// SQLite fails.
pub fn holder_of(
    tx: &Tx<'_>,
    name: &str,
    ed25519_public_key: &[u8; 32],
    age_recipient: &str,
) -> Result<Option<String>, StoreError> {
    Ok(tx
        .connection()
        .query_row(
            "SELECT name FROM custodians WHERE name = ?1 OR ed25519_public_key = ?2 OR age_recipient = ?3",
            params![name, ed25519_public_key.to_vec(), age_recipient],
            |row| row.get::<_, String>(0),
        )
        .optional()?)
}

/// Enrols `custodian` (enabled) with the card they were enrolled from.
///
/// # Errors
/// SQLite fails (a name or key already enrolled).
pub fn insert(tx: &mut Tx<'_>, custodian: &Custodian, card: &str) -> Result<(), StoreError> {
    tx.connection().execute(
        "INSERT INTO custodians (name, ed25519_public_key, age_recipient, fingerprint, card, enabled, enrolled_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6)",
        params![
            custodian.name,
            custodian.ed25519_public_key.to_vec(),
            custodian.age_recipient,
            custodian.fingerprint,
            card,
            custodian.enrolled_at
        ],
    )?;
    Ok(())
}

/// Disables custodian `name`, saying why.
///
/// # Errors
/// SQLite fails.
pub fn disable(tx: &mut Tx<'_>, name: &str, reason: &str) -> Result<(), StoreError> {
    tx.connection().execute(
        "UPDATE custodians SET enabled = 0, disabled_reason = ?2 WHERE name = ?1",
        params![name, reason],
    )?;
    Ok(())
}

/// `custodian`'s slot in key `key_id`, if they are one of its custodians.
///
/// # Errors
/// SQLite fails.
pub fn load_slot(
    tx: &Tx<'_>,
    key_id: &str,
    custodian: &str,
) -> Result<Option<KeySlot>, StoreError> {
    Ok(tx
        .connection()
        .query_row(
            "SELECT x, commitment, received_at, attested_unix, possession_public_key
             FROM key_custodians WHERE key_id = ?1 AND custodian = ?2",
            params![key_id, custodian],
            |row| {
                Ok(KeySlot {
                    x: row.get(0)?,
                    commitment: row.get(1)?,
                    received_at: row.get(2)?,
                    attested_unix: row.get(3)?,
                    possession_public_key: row.get(4)?,
                })
            },
        )
        .optional()?)
}

/// Records an attestation at `unix_time` if it is later than the custodian's
/// last one; tells whether it was (two copies of one attestation race).
///
/// # Errors
/// SQLite fails.
pub fn record_attestation(
    tx: &mut Tx<'_>,
    key_id: &str,
    custodian: &str,
    attested_at: &str,
    unix_time: u64,
) -> Result<bool, StoreError> {
    let updated = tx.connection().execute(
        "UPDATE key_custodians SET attested_at = ?3, attested_unix = ?4
         WHERE key_id = ?1 AND custodian = ?2 AND attested_unix < ?4",
        params![key_id, custodian, attested_at, unix_time],
    )?;
    Ok(updated == 1)
}
