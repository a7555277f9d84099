//! The daemon's SQLite store in the state directory: WAL, `synchronous=FULL`,
//! migrations from day one, and one writer (one connection behind a lock, and
//! an exclusive lock file so that a second rkmd cannot open the same state).

pub mod approvals;
pub mod ceremonies;
pub mod custodians;
pub mod keys;
mod migrations;
pub mod notices;
pub mod recoveries;
pub mod space;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension as _, params};

/// File name of the database inside the state directory.
pub const DATABASE_FILE: &str = "rkm.sqlite3";
const LOCK_FILE: &str = "rkmd.lock";

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create or open the state directory {}: {source}", path.display())]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another rkmd is using the state directory {}; stop it first", path.display())]
    Locked { path: PathBuf },
    #[error("database {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "database {} has schema version {found}, newer than this rkmd knows ({known}); run a newer rkmd",
        path.display()
    )]
    SchemaTooNew {
        path: PathBuf,
        found: usize,
        known: usize,
    },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the store's worker thread failed")]
    Worker,
    #[error("invalid value for the store: {0}")]
    Invalid(String),
}

impl StoreError {
    /// SQLite found the disk (or its size limit) full.
    pub fn is_disk_full(&self) -> bool {
        let sqlite = match self {
            StoreError::Sqlite(error) | StoreError::Open { source: error, .. } => error,
            _ => return false,
        };
        matches!(
            sqlite.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DiskFull)
        )
    }
}

/// One transaction (or savepoint) of the store, handed to the typed
/// functions of the record families; business code never sees the raw
/// connection, so every statement lives in `store/`.
pub struct Tx<'c> {
    connection: &'c Connection,
}

impl<'c> Tx<'c> {
    /// Wraps a connection that is inside a transaction or savepoint (the
    /// audit writer's, or [`Store::transact`]'s).
    pub(crate) fn new(connection: &'c Connection) -> Self {
        Self { connection }
    }

    fn connection(&self) -> &Connection {
        self.connection
    }
}

/// Converts a count or index into SQLite's signed 64-bit integer, saturating.
fn to_sql(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Converts a stored count back, reading a negative one as 0.
fn from_sql(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

/// Inserts a `meta` value that must not exist yet (binding the database to
/// its HSM at `rkmd init`).
///
/// # Errors
/// SQLite fails, or the key exists.
pub fn insert_meta(tx: &mut Tx<'_>, key: &str, value: &[u8]) -> Result<(), StoreError> {
    tx.connection().execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)",
        params![key, value],
    )?;
    Ok(())
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    connection: Arc<Mutex<Connection>>,
    path: PathBuf,
    space: Arc<space::Space>,
    _lock: Arc<File>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating if needed) the database in `state_dir` and migrates it.
    ///
    /// # Errors
    /// The directory cannot be created, another rkmd holds it, or SQLite fails.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        Self::open_with_limit(state_dir, 0)
    }

    /// Like [`Store::open`], with the database limited to `max_size_mb` MiB
    /// (0: no limit).
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn open_with_limit(state_dir: &Path, max_size_mb: u64) -> Result<Self, StoreError> {
        Self::open_with_limits(state_dir, max_size_mb, 0)
    }

    /// Like [`Store::open_with_limit`], also keeping `min_free_mb` MiB free
    /// in the state directory ([`space::Space`]).
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn open_with_limits(
        state_dir: &Path,
        max_size_mb: u64,
        min_free_mb: u64,
    ) -> Result<Self, StoreError> {
        let dir_error = |source| StoreError::StateDir {
            path: state_dir.to_owned(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .map_err(dir_error)?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(state_dir.join(LOCK_FILE))
            .map_err(dir_error)?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |_| StoreError::Locked {
                path: state_dir.to_owned(),
            },
        )?;

        let path = state_dir.join(DATABASE_FILE);
        let open_error = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        let mut connection = Connection::open(&path).map_err(open_error)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA foreign_keys = ON;
                 PRAGMA secure_delete = ON;
                 PRAGMA busy_timeout = 5000;",
            )
            .map_err(open_error)?;
        migrate(&mut connection, &path)?;
        if max_size_mb > 0 {
            let page_size: u64 = connection
                .query_row("PRAGMA page_size", [], |row| row.get::<_, i64>(0))
                .map(|size| u64::try_from(size).unwrap_or(4096))?;
            let pages = (max_size_mb * 1024 * 1024 / page_size).max(1);
            connection.pragma_update(
                None,
                "max_page_count",
                i64::try_from(pages).unwrap_or(i64::MAX),
            )?;
        }
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
            path,
            space: Arc::new(space::Space::new(state_dir, min_free_mb)),
            _lock: Arc::new(lock),
        })
    }

    /// The one connection, for the audit writer (the store's one writer).
    pub(crate) fn connection(&self) -> Arc<Mutex<Connection>> {
        self.connection.clone()
    }

    /// The state directory's free space.
    pub fn space(&self) -> Arc<space::Space> {
        self.space.clone()
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` with the connection on a blocking thread.
    ///
    /// # Errors
    /// Whatever `work` returns, or [`StoreError::Worker`] if it panicked.
    pub async fn with<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().unwrap_or_else(|e| e.into_inner());
            work(&mut connection)
        })
        .await
        .map_err(|_| StoreError::Worker)?
    }

    /// Runs the read-only `work` on a blocking thread.
    ///
    /// # Errors
    /// Whatever `work` returns, or [`StoreError::Worker`].
    pub async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.with(move |connection| work(&Tx::new(connection)))
            .await
    }

    /// Runs `work` in a transaction of its own, for writes that need no audit
    /// entry (staged targets, nonces, progress): committed if it succeeds.
    ///
    /// # Errors
    /// Whatever `work` returns, or SQLite fails to commit.
    pub async fn transact<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.with(move |connection| {
            let transaction = connection.transaction()?;
            let value = work(&mut Tx::new(&transaction))?;
            transaction.commit()?;
            Ok(value)
        })
        .await
    }

    /// A value of the `meta` table.
    ///
    /// # Errors
    /// SQLite fails.
    pub async fn meta(&self, key: &'static str) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(move |connection| {
            Ok(connection
                .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
                    row.get(0)
                })
                .optional()?)
        })
        .await
    }

    /// Sets a value of the `meta` table.
    ///
    /// # Errors
    /// SQLite fails.
    pub async fn set_meta(&self, key: &'static str, value: Vec<u8>) -> Result<(), StoreError> {
        self.with(move |connection| {
            connection.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )?;
            Ok(())
        })
        .await
    }

    /// Row counts of the record tables, by kind, for status reports.
    ///
    /// # Errors
    /// SQLite fails.
    pub async fn counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.with(|connection| {
            let tables: Vec<String> = connection
                .prepare(
                    "SELECT name FROM sqlite_schema
                     WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'meta'
                     ORDER BY name",
                )?
                .query_map([], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            tables
                .into_iter()
                .map(|table| {
                    let count: i64 = connection.query_row(
                        &format!("SELECT COUNT(*) FROM \"{table}\""),
                        [],
                        |row| row.get(0),
                    )?;
                    Ok((table, u64::try_from(count).unwrap_or_default()))
                })
                .collect()
        })
        .await
    }
}

use std::os::unix::fs::DirBuilderExt as _;

fn migrate(connection: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let known = migrations::MIGRATIONS.len();
    let version: usize = connection
        .query_row("PRAGMA user_version", [], |row| row.get::<_, i64>(0))
        .map(|v| usize::try_from(v).unwrap_or(usize::MAX))?;
    if version > known {
        return Err(StoreError::SchemaTooNew {
            path: path.to_owned(),
            found: version,
            known,
        });
    }
    for (index, migration) in migrations::MIGRATIONS.iter().enumerate().skip(version) {
        let transaction = connection.transaction()?;
        transaction.execute_batch(migration)?;
        transaction.pragma_update(None, "user_version", index + 1)?;
        transaction.commit()?;
        tracing::info!(version = index + 1, "database migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn open_migrates_and_keeps_meta_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .set_meta("audit_public_key", vec![1, 2, 3])
            .await
            .unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.meta("audit_public_key").await.unwrap(),
            Some(vec![1, 2, 3])
        );
        let mode: String = store
            .with(|c| Ok(c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn second_open_of_the_same_state_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path()).unwrap();
        let second = Store::open(dir.path()).unwrap_err();
        assert!(matches!(second, StoreError::Locked { .. }), "{second}");
    }

    #[test]
    fn newer_schema_is_refused_with_versions() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let connection = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
        connection.pragma_update(None, "user_version", 99).unwrap();
        drop(connection);
        let error = Store::open(dir.path()).unwrap_err();
        assert!(error.to_string().contains("99"), "{error}");
    }
}
