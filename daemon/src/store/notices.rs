//! Notices to custodians and their signed acknowledgements.

use rusqlite::{OptionalExtension as _, params};

use super::{StoreError, Tx};

/// A notice to one custodian.
#[derive(Debug, Clone)]
pub struct Notice {
    pub notice_id: String,
    pub ceremony_id: String,
    pub custodian: String,
    pub text: String,
    pub sent_at: String,
    pub acknowledged_at: String,
}

const COLUMNS: &str = "id, ceremony_id, custodian, text, sent_at, acknowledged_at";

fn row_to_notice(row: &rusqlite::Row<'_>) -> rusqlite::Result<Notice> {
    Ok(Notice {
        notice_id: row.get(0)?,
        ceremony_id: row.get(1)?,
        custodian: row.get(2)?,
        text: row.get(3)?,
        sent_at: row.get(4)?,
        acknowledged_at: row.get(5)?,
    })
}

/// Stores a notice as sent.
///
/// # Errors
/// SQLite fails.
pub fn insert(tx: &mut Tx<'_>, notice: &Notice) -> Result<(), StoreError> {
    tx.connection().execute(
        "INSERT INTO notices (id, ceremony_id, custodian, text, sent_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            notice.notice_id,
            notice.ceremony_id,
            notice.custodian,
            notice.text,
            notice.sent_at
        ],
    )?;
    Ok(())
}

/// Notices, oldest first, for `custodian` or for all ('').
///
/// # Errors
/// SQLite fails.
pub fn list(tx: &Tx<'_>, custodian: &str) -> Result<Vec<Notice>, StoreError> {
    let mut statement = tx.connection().prepare(&format!(
        "SELECT {COLUMNS} FROM notices WHERE ?1 = '' OR custodian = ?1 ORDER BY sent_at, id"
    ))?;
    let rows = statement.query_map([custodian], row_to_notice)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// One notice by id.
///
/// # Errors
/// SQLite fails.
pub fn load(tx: &Tx<'_>, notice_id: &str) -> Result<Option<Notice>, StoreError> {
    Ok(tx
        .connection()
        .query_row(
            &format!("SELECT {COLUMNS} FROM notices WHERE id = ?1"),
            [notice_id],
            row_to_notice,
        )
        .optional()?)
}

/// Records the custodian's signed acknowledgement.
///
/// # Errors
/// SQLite fails.
pub fn acknowledge(
    tx: &mut Tx<'_>,
    notice_id: &str,
    acknowledged_at: &str,
    signature: &[u8],
) -> Result<(), StoreError> {
    tx.connection().execute(
        "UPDATE notices SET acknowledged_at = ?2, signature = ?3 WHERE id = ?1",
        params![notice_id, acknowledged_at, signature],
    )?;
    Ok(())
}
