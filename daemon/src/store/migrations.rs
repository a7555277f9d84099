//! Schema migrations, applied in order inside one transaction each; the
//! database's `user_version` is the number of migrations applied. Never edit a
//! released migration: add a new one.

/// Each entry migrates from version `index` to `index + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: settings that bind this database to its HSM (audit key, token).
    "CREATE TABLE meta (
        key   TEXT PRIMARY KEY NOT NULL,
        value BLOB NOT NULL
    ) STRICT;",
];
