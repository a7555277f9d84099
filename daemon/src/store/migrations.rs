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
    // 2: the audit log. Entries verbatim as hashed; every perfect subtree
    // hash (level 0 = leaf hashes) so proofs are served without rebuilding
    // the tree; and every signed checkpoint.
    "CREATE TABLE audit_entries (
        idx     INTEGER PRIMARY KEY NOT NULL,
        entry   BLOB NOT NULL,
        subject TEXT NOT NULL
    ) STRICT;
    CREATE INDEX audit_entries_subject ON audit_entries (subject, idx);
    CREATE TABLE audit_nodes (
        level INTEGER NOT NULL,
        idx   INTEGER NOT NULL,
        hash  BLOB NOT NULL,
        PRIMARY KEY (level, idx)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE audit_checkpoints (
        size        INTEGER PRIMARY KEY NOT NULL,
        root        BLOB NOT NULL,
        signed_note TEXT NOT NULL
    ) STRICT;",
];
