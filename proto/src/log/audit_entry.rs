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
}
