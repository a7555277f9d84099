//! The audit entry: what happened, who did it, to what, and how it ended —
//! never a secret. Encoded once as one line of JSON with a fixed field order
//! (version first), stored verbatim and hashed as stored (RFC 9162 leaf); a
//! verifier never re-serialises an entry to hash it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the entry encoding this code writes and reads.
pub const ENTRY_VERSION: u32 = 1;
/// Largest encoded entry accepted, in bytes.
pub const MAX_ENTRY_LEN: usize = 16 * 1024;

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It took effect.
    Ok,
    /// It was refused (bad input, wrong custodian, replay, …): nothing changed.
    Refused,
    /// It failed (HSM or store error): nothing changed.
    Failed,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        })
    }
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// Encoding version ([`ENTRY_VERSION`]).
    pub v: u32,
    /// RFC 3339 UTC time with milliseconds, e.g. `2026-11-27T04:20:21.123Z`.
    pub time: String,
    /// Who: `rkmd` for the daemon itself, `local:uid=N` for a socket peer, or
    /// a custodian's or operator's name.
    pub actor: String,
    /// What, as `noun.verb`: `daemon.start`, `audit.note`, `key.create`, …
    pub action: String,
    /// The ceremony or key id it concerns; empty if none.
    pub subject: String,
    pub outcome: Outcome,
    /// Further facts, sorted by name. Never a secret.
    pub details: BTreeMap<String, String>,
}

/// An entry that cannot be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    #[error("entry is {found} bytes, more than the {max} allowed")]
    TooLong { found: usize, max: usize },
    #[error("entry contains a line break; entries are one line of JSON")]
    LineBreak,
    #[error("entry is not a version-{ENTRY_VERSION} audit entry: {0}")]
    Malformed(String),
    #[error("entry has version {0}; this rkm reads version {ENTRY_VERSION}")]
    Version(u32),
}

impl AuditEntry {
    /// The canonical encoding: one line of compact JSON (string escapes keep
    /// it free of line breaks), fields in declaration order.
    ///
    /// # Errors
    /// The encoding exceeds [`MAX_ENTRY_LEN`].
    pub fn encode(&self) -> Result<Vec<u8>, EntryError> {
        let bytes = serde_json::to_vec(self).map_err(|e| EntryError::Malformed(e.to_string()))?;
        if bytes.len() > MAX_ENTRY_LEN {
            return Err(EntryError::TooLong {
                found: bytes.len(),
                max: MAX_ENTRY_LEN,
            });
        }
        Ok(bytes)
    }

    /// Decodes stored entry bytes, checking size first.
    ///
    /// # Errors
    /// Too long, not one line, not JSON of this shape, or another version.
    pub fn decode(bytes: &[u8]) -> Result<Self, EntryError> {
        if bytes.len() > MAX_ENTRY_LEN {
            return Err(EntryError::TooLong {
                found: bytes.len(),
                max: MAX_ENTRY_LEN,
            });
        }
        if bytes.contains(&b'\n') {
            return Err(EntryError::LineBreak);
        }
        let entry: Self =
            serde_json::from_slice(bytes).map_err(|e| EntryError::Malformed(e.to_string()))?;
        if entry.v != ENTRY_VERSION {
            return Err(EntryError::Version(entry.v));
        }
        Ok(entry)
    }
}

/// Every `action` an audit entry can name, one constant each, so the daemon
/// writes, the client filters and an auditor reads one vocabulary. An entry's
/// `outcome` says whether the action succeeded or was refused.
pub mod action {
    /// A call refused by the access layer (no or bad credentials, a role
    /// the caller does not hold, a lockout); `repeated` counts a burst.
    pub const ACCESS_REFUSED: &str = "access.refused";
    /// A peer or identity locked out after repeated authentication failures.
    pub const ACCESS_LOCKOUT: &str = "access.lockout";
    /// An operator's free-text note added to the log.
    pub const AUDIT_NOTE: &str = "audit.note";
    /// A key-generation ceremony was opened.
    pub const CEREMONY_OPEN: &str = "ceremony.open";
    /// A key-generation ceremony completed: every custodian holds a share.
    pub const CEREMONY_COMPLETE: &str = "ceremony.complete";
    /// A key-generation ceremony ran out of time before it completed.
    pub const CEREMONY_EXPIRE: &str = "ceremony.expire";
    /// A key-generation ceremony failed and was closed.
    pub const CEREMONY_FAIL: &str = "ceremony.fail";
    /// A custodian was enrolled from their card.
    pub const CUSTODIAN_ENROL: &str = "custodian.enrol";
    /// A custodian was disabled.
    pub const CUSTODIAN_DISABLE: &str = "custodian.disable";
    /// rkmd initialised a new store and audit log.
    pub const DAEMON_INIT: &str = "daemon.init";
    /// rkmd started and verified its log against the token's checkpoint.
    pub const DAEMON_START: &str = "daemon.start";
    /// rkmd stopped.
    pub const DAEMON_STOP: &str = "daemon.stop";
    /// A drill ceremony signed its challenge (the drill's issuing entry).
    pub const DRILL_ISSUE: &str = "drill.issue";
    /// A custodian fetched their share envelope.
    pub const ENVELOPE_FETCH: &str = "envelope.fetch";
    /// A recovery key was generated, wrapped and split.
    pub const KEY_CREATE: &str = "key.create";
    /// A key record was imported from another rkm.
    pub const KEY_IMPORT: &str = "key.import";
    /// A custodian acknowledged a notice.
    pub const NOTICE_ACK: &str = "notice.ack";
    /// A notice was sent to custodians.
    pub const NOTICE_SEND: &str = "notice.send";
    /// A recovery or drill ceremony was opened for a request.
    pub const RECOVERY_OPEN: &str = "recovery.open";
    /// A custodian approved a recovery request and submitted their share.
    pub const RECOVERY_APPROVE: &str = "recovery.approve";
    /// Approvals reached the threshold; signing starts.
    pub const RECOVERY_QUORUM: &str = "recovery.quorum";
    /// A recovery ceremony signed its commands (the artefact's issuing entry).
    pub const RECOVERY_ISSUE: &str = "recovery.issue";
    /// A recovery ceremony completed: the artefact is written, the key destroyed.
    pub const RECOVERY_COMPLETE: &str = "recovery.complete";
    /// Signing of an interrupted recovery resumed after a restart.
    pub const RECOVERY_RESUME: &str = "recovery.resume";
    /// A second operator confirmed a recovery (the two-person rule).
    pub const RECOVERY_CONFIRM: &str = "recovery.confirm";
    /// A recovery ceremony was cancelled by an operator.
    pub const RECOVERY_CANCEL: &str = "recovery.cancel";
    /// A recovery ceremony ran out of time; its held shares were destroyed.
    pub const RECOVERY_EXPIRE: &str = "recovery.expire";
    /// A recovery ceremony failed and was closed.
    pub const RECOVERY_FAIL: &str = "recovery.fail";
    /// A custodian attested, with a possession proof, that they still hold their share.
    pub const SHARE_ATTEST: &str = "share.attest";
    /// A custodian confirmed, with a possession proof, that they received their share.
    pub const SHARE_RECEIPT: &str = "share.receipt";

    /// Every action above, for auditors and for tests that check the list
    /// is complete.
    pub const ALL: &[&str] = &[
        ACCESS_REFUSED,
        ACCESS_LOCKOUT,
        AUDIT_NOTE,
        CEREMONY_OPEN,
        CEREMONY_COMPLETE,
        CEREMONY_EXPIRE,
        CEREMONY_FAIL,
        CUSTODIAN_ENROL,
        CUSTODIAN_DISABLE,
        DAEMON_INIT,
        DAEMON_START,
        DAEMON_STOP,
        DRILL_ISSUE,
        ENVELOPE_FETCH,
        KEY_CREATE,
        KEY_IMPORT,
        NOTICE_ACK,
        NOTICE_SEND,
        RECOVERY_OPEN,
        RECOVERY_APPROVE,
        RECOVERY_QUORUM,
        RECOVERY_ISSUE,
        RECOVERY_COMPLETE,
        RECOVERY_RESUME,
        RECOVERY_CONFIRM,
        RECOVERY_CANCEL,
        RECOVERY_EXPIRE,
        RECOVERY_FAIL,
        SHARE_ATTEST,
        SHARE_RECEIPT,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AuditEntry {
        AuditEntry {
            v: ENTRY_VERSION,
            time: "2026-11-27T04:20:21.123Z".to_owned(),
            actor: "local:uid=0".to_owned(),
            action: "audit.note".to_owned(),
            subject: String::new(),
            outcome: Outcome::Ok,
            details: BTreeMap::from([
                ("message".to_owned(), "line one\nline two".to_owned()),
                ("a".to_owned(), "first".to_owned()),
            ]),
        }
    }

    #[test]
    fn encoding_is_one_line_with_fixed_order_and_round_trips() {
        let bytes = sample().encode().unwrap();
        assert!(!bytes.contains(&b'\n'));
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with(r#"{"v":1,"time":"#), "{text}");
        assert!(
            text.contains(r#""details":{"a":"first","message":"#),
            "{text}"
        );
        assert_eq!(AuditEntry::decode(&bytes).unwrap(), sample());
    }

    #[test]
    fn decode_rejects_other_versions_unknown_fields_and_oversize() {
        let mut other = sample();
        other.v = 2;
        let bytes = other.encode().unwrap();
        assert_eq!(AuditEntry::decode(&bytes), Err(EntryError::Version(2)));
        let extra = br#"{"v":1,"time":"t","actor":"a","action":"b","subject":"","outcome":"ok","details":{},"secret":"x"}"#;
        assert!(matches!(
            AuditEntry::decode(extra),
            Err(EntryError::Malformed(_))
        ));
        let long = vec![b' '; MAX_ENTRY_LEN + 1];
        assert!(matches!(
            AuditEntry::decode(&long),
            Err(EntryError::TooLong { .. })
        ));
    }

    #[test]
    fn action_names_are_unique_and_dotted() {
        let unique: std::collections::HashSet<_> = action::ALL.iter().collect();
        assert_eq!(unique.len(), action::ALL.len());
        for name in action::ALL {
            let (noun, verb) = name.split_once('.').expect("noun.verb");
            assert!(!noun.is_empty() && !verb.is_empty(), "{name}");
        }
    }
}
