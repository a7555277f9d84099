//! The `ceremonies` table: one row per ceremony of any kind, with its state.
//! States and kinds arrive as the strings `ceremony::state` names; which
//! transitions are allowed is decided there, this file only makes them stick.

use rusqlite::params;

use super::{StoreError, Tx};

/// A ceremony as opened.
#[derive(Debug, Clone)]
pub struct NewCeremony<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub state: &'a str,
    pub subject: &'a str,
    pub opened_by: &'a str,
    pub opened_at: &'a str,
    pub expires_at: &'a str,
    /// '' while it is not closed.
    pub closed_at: &'a str,
}

/// A ceremony's state and deadline.
#[derive(Debug, Clone)]
pub struct CeremonyStatus {
    pub state: String,
    pub expires_at: String,
}

/// A ceremony found by [`due`]: its id and subject (a key id for key
/// generations).
#[derive(Debug, Clone)]
pub struct DueCeremony {
    pub id: String,
    pub subject: String,
}

/// Stores a new ceremony.
///
/// # Errors
/// SQLite fails (the id exists).
pub fn insert(tx: &mut Tx<'_>, ceremony: &NewCeremony<'_>) -> Result<(), StoreError> {
    tx.connection().execute(
        "INSERT INTO ceremonies (id, kind, state, subject, opened_by, opened_at, expires_at, closed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            ceremony.id,
            ceremony.kind,
            ceremony.state,
            ceremony.subject,
            ceremony.opened_by,
            ceremony.opened_at,
            ceremony.expires_at,
            ceremony.closed_at
        ],
    )?;
    Ok(())
}

/// Moves ceremony `id` from state `from` to `to` (setting `closed_at` when
/// given); tells whether it moved: false when the row was not in `from`.
///
/// # Errors
/// SQLite fails.
pub fn transition(
    tx: &mut Tx<'_>,
    id: &str,
    from: &str,
    to: &str,
    closed_at: Option<&str>,
) -> Result<bool, StoreError> {
    let changed = match closed_at {
        Some(closed_at) => tx.connection().execute(
            "UPDATE ceremonies SET state = ?3, closed_at = ?4 WHERE id = ?1 AND state = ?2",
            params![id, from, to, closed_at],
        )?,
        None => tx.connection().execute(
            "UPDATE ceremonies SET state = ?3 WHERE id = ?1 AND state = ?2",
            params![id, from, to],
        )?,
    };
    Ok(changed == 1)
}

/// Sets what ceremony `id` concerns (a key generation learns its key id
/// only once the key exists).
///
/// # Errors
/// SQLite fails.
pub fn set_subject(tx: &mut Tx<'_>, id: &str, subject: &str) -> Result<(), StoreError> {
    tx.connection().execute(
        "UPDATE ceremonies SET subject = ?2 WHERE id = ?1",
        params![id, subject],
    )?;
    Ok(())
}

/// State and deadline of ceremony `id`.
///
/// # Errors
/// SQLite fails, or there is no such ceremony.
pub fn status(tx: &Tx<'_>, id: &str) -> Result<CeremonyStatus, StoreError> {
    Ok(tx.connection().query_row(
        "SELECT state, expires_at FROM ceremonies WHERE id = ?1",
        [id],
        |row| {
            Ok(CeremonyStatus {
                state: row.get(0)?,
                expires_at: row.get(1)?,
            })
        },
    )?)
}

/// Ceremonies of `kind` in `state` whose deadline is at or before `now`.
///
/// # Errors
/// SQLite fails.
pub fn due(
    tx: &Tx<'_>,
    kind: &str,
    state: &str,
    now: &str,
) -> Result<Vec<DueCeremony>, StoreError> {
    Ok(tx
        .connection()
        .prepare(
            "SELECT id, subject FROM ceremonies WHERE kind = ?1 AND state = ?2 AND expires_at <= ?3",
        )?
        .query_map(params![kind, state, now], |row| {
            Ok(DueCeremony {
                id: row.get(0)?,
                subject: row.get(1)?,
            })
        })?
        .collect::<Result<_, _>>()?)
}

/// Ids of the ceremonies of `kind` in `state`.
///
/// # Errors
/// SQLite fails.
pub fn ids_in(tx: &Tx<'_>, kind: &str, state: &str) -> Result<Vec<String>, StoreError> {
    Ok(tx
        .connection()
        .prepare("SELECT id FROM ceremonies WHERE kind = ?1 AND state = ?2")?
        .query_map(params![kind, state], |row| row.get(0))?
        .collect::<Result<_, _>>()?)
}
