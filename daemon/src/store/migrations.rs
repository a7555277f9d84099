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
    // 3: custodians, ceremonies and their notices, recovery keys and the
    // per-custodian state of each key (share commitment, sealed envelope until
    // the receipt is in). No secret is ever stored: envelopes are age
    // ciphertext, commitments are hashes.
    "CREATE TABLE custodians (
        name               TEXT PRIMARY KEY NOT NULL,
        ed25519_public_key BLOB NOT NULL UNIQUE,
        age_recipient      TEXT NOT NULL UNIQUE,
        fingerprint        TEXT NOT NULL,
        card               TEXT NOT NULL,
        enabled            INTEGER NOT NULL,
        enrolled_at        TEXT NOT NULL,
        disabled_reason    TEXT NOT NULL DEFAULT ''
    ) STRICT;
    CREATE TABLE ceremonies (
        id         TEXT PRIMARY KEY NOT NULL,
        kind       TEXT NOT NULL,
        state      TEXT NOT NULL,
        subject    TEXT NOT NULL,
        opened_by  TEXT NOT NULL,
        opened_at  TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        closed_at  TEXT NOT NULL DEFAULT ''
    ) STRICT;
    CREATE TABLE notices (
        id              TEXT PRIMARY KEY NOT NULL,
        ceremony_id     TEXT NOT NULL REFERENCES ceremonies (id),
        custodian       TEXT NOT NULL REFERENCES custodians (name),
        text            TEXT NOT NULL,
        sent_at         TEXT NOT NULL,
        acknowledged_at TEXT NOT NULL DEFAULT '',
        signature       BLOB
    ) STRICT;
    CREATE TABLE keys (
        key_id          TEXT PRIMARY KEY NOT NULL,
        label           TEXT NOT NULL UNIQUE,
        public_key_spki BLOB NOT NULL UNIQUE,
        signed_record   TEXT NOT NULL,
        threshold       INTEGER NOT NULL,
        state           TEXT NOT NULL,
        ceremony_id     TEXT NOT NULL REFERENCES ceremonies (id),
        created_at      TEXT NOT NULL
    ) STRICT;
    CREATE TABLE key_custodians (
        key_id            TEXT NOT NULL REFERENCES keys (key_id),
        custodian         TEXT NOT NULL REFERENCES custodians (name),
        x                 INTEGER NOT NULL,
        commitment        BLOB NOT NULL,
        envelope          BLOB,
        receipt_signature BLOB,
        received_at       TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (key_id, custodian)
    ) STRICT;",
    // 4: recovery ceremonies: the canonical request custodians approve, the
    // targets in manifest order, single-use approval nonces, and approvals
    // with their share held encrypted under the HSM's holding key until the
    // ceremony ends (then NULL).
    "CREATE TABLE recoveries (
        ceremony_id       TEXT PRIMARY KEY NOT NULL REFERENCES ceremonies (id),
        key_id            TEXT NOT NULL REFERENCES keys (key_id),
        canonical_request BLOB NOT NULL,
        request_digest    BLOB NOT NULL,
        target_count      INTEGER NOT NULL,
        signed_count      INTEGER NOT NULL DEFAULT 0,
        artefact_size     INTEGER NOT NULL DEFAULT 0,
        failure           TEXT NOT NULL DEFAULT ''
    ) STRICT;
    CREATE TABLE recovery_targets (
        ceremony_id TEXT NOT NULL,
        seq         INTEGER NOT NULL,
        device_id   TEXT NOT NULL,
        PRIMARY KEY (ceremony_id, seq)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE approval_nonces (
        nonce       BLOB PRIMARY KEY NOT NULL,
        ceremony_id TEXT NOT NULL,
        custodian   TEXT NOT NULL,
        expires_at  TEXT NOT NULL,
        used        INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    CREATE TABLE approvals (
        ceremony_id TEXT NOT NULL REFERENCES ceremonies (id),
        custodian   TEXT NOT NULL,
        nonce       BLOB NOT NULL,
        commitment  BLOB NOT NULL,
        signature   BLOB NOT NULL,
        held_share  BLOB,
        approved_at TEXT NOT NULL,
        PRIMARY KEY (ceremony_id, custodian)
    ) STRICT;",
    // 5: keys restored from another HSM keep the record signed by that HSM's
    // audit key; this is the verifier key to check it with ('' for our own).
    "ALTER TABLE keys ADD COLUMN record_audit_key TEXT NOT NULL DEFAULT '';",
    // 6: each custodian's latest attestation that they still hold their
    // share (history is in the audit log); unix seconds orders them.
    "ALTER TABLE key_custodians ADD COLUMN attested_at TEXT NOT NULL DEFAULT '';
    ALTER TABLE key_custodians ADD COLUMN attested_unix INTEGER NOT NULL DEFAULT 0;",
    // 7: per custodian, the public half of the key derived from their share
    // that proves possession of it in receipts and attestations; NULL for
    // keys imported from a record.
    "ALTER TABLE key_custodians ADD COLUMN possession_public_key BLOB;",
    // 8: the two-person rule: a recovery opened under it takes no approval
    // until a second operator confirms it; who did, and when.
    "ALTER TABLE recoveries ADD COLUMN awaiting_confirmation INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE recoveries ADD COLUMN confirmed_by TEXT NOT NULL DEFAULT '';
    ALTER TABLE recoveries ADD COLUMN confirmed_at TEXT NOT NULL DEFAULT '';",
    // 9: a device listed twice in one request is refused naming both places:
    // where each target came from (manifest line; 0 for the request's own
    // `targets` list), and an index to find an earlier listing. Not UNIQUE:
    // ceremonies stored before this check may hold duplicates.
    "ALTER TABLE recovery_targets ADD COLUMN line INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX recovery_targets_device ON recovery_targets (ceremony_id, device_id);",
];
