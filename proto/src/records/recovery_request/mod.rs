//! Recovery requests: what the operator asks the recovery key to sign. The
//! operator's TOML request file and target manifest are parsed strictly here;
//! rkmd turns them into the [`CanonicalRequest`] whose SHA-256 request digest
//! custodians review and approve (DESIGN.md "Records", "Ceremonies" 2 and 3).
//!
//! Everything a custodian is shown ([`CanonicalRequest::describe`]) is checked
//! to be free of control and bidirectional-formatting characters, so no field
//! can forge another line of the description or reorder what is displayed.
//! Targets are committed to as a count and a SHA-256 over the ids in order
//! ([`TargetsHasher`]), so a manifest of millions of devices is streamed,
//! never held in memory.

use std::collections::HashSet;

mod anchor;
mod canonical;
mod targets;
mod toml_reader;

use anchor::anchor_kind;
use targets::check_device_id;

pub use canonical::{CanonicalRequest, CeremonyKind, request_digest};
pub use targets::{ManifestSplitter, TargetsDigest, TargetsHasher, validate_device_id};

use crate::encoding::field::{FieldError, invalid};
use crate::encoding::text::{check_text, excerpt};
use crate::encoding::time::parse_rfc3339;
// Kept here for one release: they lived in this module before `encoding::time`.
pub use crate::encoding::time::{rfc3339_from_unix, unix_time_from_rfc3339};

/// Largest request file accepted, 1 MiB.
pub const MAX_REQUEST_FILE_LEN: usize = 1 << 20;
/// Largest encoded [`CanonicalRequest`] accepted, 256 KiB.
pub const MAX_CANONICAL_REQUEST_LEN: usize = 256 * 1024;
/// Version tag of the canonical request encoding.
pub const CANONICAL_REQUEST_VERSION: u64 = 1;
/// Domain label of [`request_digest`].
pub const REQUEST_DIGEST_LABEL: &[u8] = b"rkm/v1/recovery-request\0";

/// Longest device id, in bytes.
pub const MAX_DEVICE_ID_LEN: usize = 128;
/// Longest reason and emergency justification, in bytes.
pub const MAX_REASON_LEN: usize = 1024;
/// Longest incident reference, in bytes.
pub const MAX_INCIDENT_LEN: usize = 128;
/// Longest issuer name of `revoke-certificate`, in bytes.
pub const MAX_ISSUER_LEN: usize = 1024;
/// Longest custom command type name, in bytes.
pub const MAX_TYPE_NAME_LEN: usize = 64;
/// Largest new trust anchor (DER), in bytes.
pub const MAX_ANCHOR_LEN: usize = 16 * 1024;
/// Largest certificate serial number, in bytes (RFC 5280 §4.1.2.2).
pub const MAX_SERIAL_LEN: usize = 20;
/// Largest custom command payload, in bytes.
pub const MAX_PAYLOAD_LEN: usize = 16 * 1024;
/// Longest key id in a canonical request, in bytes.
pub const MAX_KEY_ID_LEN: usize = 64;

/// Command kind names, as in the request file and the canonical request.
pub const KIND_REPLACE_TRUST_ANCHOR: &str = "replace-trust-anchor";
/// See [`KIND_REPLACE_TRUST_ANCHOR`].
pub const KIND_REVOKE_CERTIFICATE: &str = "revoke-certificate";
/// See [`KIND_REPLACE_TRUST_ANCHOR`].
pub const KIND_CUSTOM: &str = "custom";

/// Why a request file, a target list, a manifest or a canonical request was
/// refused. Every variant names the field, key, line or target at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The input is larger than its limit; nothing else was looked at.
    #[error("{what} is {size} bytes, more than the {max} accepted")]
    TooLarge {
        /// "request file" or "canonical request".
        what: &'static str,
        /// Size of the input.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The request file is not valid TOML (syntax error, duplicate key, …).
    #[error("request file is not valid TOML at line {line}, column {column}: {message}")]
    Toml {
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// A key the request file format does not have (a typo, or a field meant
    /// for another command kind is caught by [`RequestError::KeyNotForKind`]).
    #[error("request file line {line}: unknown key {key:?}")]
    UnknownKey {
        /// Dotted path of the key, e.g. `command.slot`.
        key: String,
        /// 1-based line.
        line: usize,
    },
    /// A mandatory key is missing.
    #[error("request file has no {key:?}")]
    MissingKey {
        /// Dotted path of the key.
        key: &'static str,
    },
    /// A key has a value of the wrong TOML type.
    #[error("request file line {line}: {key:?} must be {expected}, found {found}")]
    WrongType {
        /// Dotted path of the key.
        key: String,
        /// What it must be.
        expected: &'static str,
        /// The TOML type found.
        found: &'static str,
        /// 1-based line.
        line: usize,
    },
    /// `command.kind` is not one of the three kinds.
    #[error(
        "command kind {kind:?} is unknown; use \"replace-trust-anchor\", \"revoke-certificate\" or \"custom\""
    )]
    UnknownCommandKind {
        /// Excerpt of the kind given.
        kind: String,
    },
    /// A command parameter of another kind, e.g. `serial` for `custom`.
    #[error("request file line {line}: {key:?} is not a parameter of a {kind} command")]
    KeyNotForKind {
        /// Dotted path of the key.
        key: String,
        /// The command kind.
        kind: &'static str,
        /// 1-based line.
        line: usize,
    },
    /// A field breaks its rule (empty, too long, forbidden character, out of
    /// range, not hex, not DER, …).
    #[error("{field} is invalid: {reason}")]
    InvalidField {
        /// The field, e.g. `reason` or `command.new_anchor`.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A time is not an RFC 3339 UTC or offset date-time in whole seconds.
    #[error("{field} {value:?} is not a usable time: {reason}")]
    InvalidTime {
        /// `not_before` or `not_after`.
        field: &'static str,
        /// Excerpt of the value.
        value: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The validity window is empty or reversed.
    #[error(
        "validity window is empty: not_before {not_before} is not before not_after {not_after}"
    )]
    EmptyWindow {
        /// The window's start.
        not_before: String,
        /// The window's end.
        not_after: String,
    },
    /// A device id breaks the device id rule ([`validate_device_id`]).
    #[error("device id {id:?} is invalid: {reason}")]
    InvalidDeviceId {
        /// Escaped excerpt of the id.
        id: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// An inline target (`targets = [...]`) is not a valid device id.
    #[error("request file line {line}: target {index} {id:?} is invalid: {reason}")]
    InvalidTarget {
        /// 0-based position in `targets`.
        index: usize,
        /// Escaped excerpt of the id.
        id: String,
        /// What is wrong.
        reason: &'static str,
        /// 1-based line; 0 for a request built in code.
        line: usize,
    },
    /// An inline target appears twice.
    #[error("request file line {line}: target {id:?} appears twice")]
    DuplicateTarget {
        /// The id.
        id: String,
        /// 1-based line of the second occurrence; 0 for a request built in code.
        line: usize,
    },
    /// A manifest line is not a device id, a comment or blank.
    #[error("manifest line {line}: {id:?} is not a device id: {reason}")]
    ManifestLine {
        /// 1-based line of the manifest.
        line: u64,
        /// Escaped excerpt of the line.
        id: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A canonical request is not JSON of the expected shape.
    #[error("canonical request is malformed: {0}")]
    Malformed(String),
    /// A canonical request version this build does not know.
    #[error(
        "canonical request has version {found}; this rkm reads version {CANONICAL_REQUEST_VERSION}"
    )]
    UnsupportedVersion {
        /// The version found.
        found: u64,
    },
    /// A canonical request that decodes, but is not byte for byte the
    /// encoding of what it holds.
    #[error(
        "canonical request is not in canonical form (field order, spacing, escapes or hex case differ); it was not produced by rkm"
    )]
    NotCanonical,
    /// A recovery request with no targets.
    #[error("a recovery request needs at least one target")]
    NoTargets,
    /// An emergency request without a justification.
    #[error("an emergency request needs a justification")]
    MissingJustification,
    /// A justification on a request that is not an emergency.
    #[error("a justification is only given with an emergency request")]
    UnexpectedJustification,
}

impl FieldError for RequestError {
    fn invalid_field(field: &'static str, reason: String) -> Self {
        RequestError::InvalidField { field, reason }
    }
    fn not_canonical() -> Self {
        RequestError::NotCanonical
    }
}

/// What the recovery key is asked to sign for each target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Replace the trust anchor in `anchor_slot` by `new_anchor`.
    ReplaceTrustAnchor {
        /// The device's trust anchor slot.
        anchor_slot: u32,
        /// DER of a SubjectPublicKeyInfo or of an X.509 certificate.
        new_anchor: Vec<u8>,
    },
    /// Distrust one certificate.
    RevokeCertificate {
        /// The issuer's distinguished name, as text (e.g. `CN=Issuing CA 2`).
        issuer: String,
        /// The certificate's serial number (RFC 5280 §4.1.2.2), big-endian.
        serial: Vec<u8>,
    },
    /// A command of a type rkm does not interpret.
    Custom {
        /// `[a-z0-9._-]`, 1..=64 bytes, starting with a letter or digit.
        type_name: String,
        /// Opaque bytes, at most [`MAX_PAYLOAD_LEN`].
        payload: Vec<u8>,
    },
}

impl Command {
    /// The kind name: `replace-trust-anchor`, `revoke-certificate` or `custom`.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::ReplaceTrustAnchor { .. } => KIND_REPLACE_TRUST_ANCHOR,
            Command::RevokeCertificate { .. } => KIND_REVOKE_CERTIFICATE,
            Command::Custom { .. } => KIND_CUSTOM,
        }
    }

    /// Checks the parameters of the command.
    ///
    /// # Errors
    ///
    /// [`RequestError::InvalidField`] naming the parameter.
    pub fn validate(&self) -> Result<(), RequestError> {
        match self {
            Command::ReplaceTrustAnchor { new_anchor, .. } => {
                if new_anchor.is_empty() {
                    return Err(invalid("command.new_anchor", "it is empty"));
                }
                if new_anchor.len() > MAX_ANCHOR_LEN {
                    return Err(invalid(
                        "command.new_anchor",
                        format!("it is longer than {MAX_ANCHOR_LEN} bytes"),
                    ));
                }
                anchor_kind(new_anchor).map_err(|reason| invalid("command.new_anchor", reason))?;
            }
            Command::RevokeCertificate { issuer, serial } => {
                check_text("command.issuer", issuer, MAX_ISSUER_LEN)?;
                if serial.is_empty() || serial.len() > MAX_SERIAL_LEN {
                    return Err(invalid(
                        "command.serial",
                        format!(
                            "it must be 1 to {MAX_SERIAL_LEN} bytes (RFC 5280 §4.1.2.2), found {}",
                            serial.len()
                        ),
                    ));
                }
            }
            Command::Custom { type_name, payload } => {
                check_type_name(type_name)?;
                if payload.len() > MAX_PAYLOAD_LEN {
                    return Err(invalid(
                        "command.payload",
                        format!("it is longer than {MAX_PAYLOAD_LEN} bytes"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A request file as the operator wrote it, checked and with its times
/// normalised to UTC (`YYYY-MM-DDTHH:MM:SSZ`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryRequest {
    /// What to sign.
    pub command: Command,
    /// Why, in a sentence custodians read.
    pub reason: String,
    /// The incident reference, e.g. `INC-4711`.
    pub incident: String,
    /// Start of the commands' validity window, `YYYY-MM-DDTHH:MM:SSZ`.
    pub not_before: String,
    /// End of the commands' validity window, `YYYY-MM-DDTHH:MM:SSZ`.
    pub not_after: String,
    /// Inline targets in order; empty when a manifest is given separately.
    pub targets: Vec<String>,
}

impl RecoveryRequest {
    /// Parses a request file strictly: at most [`MAX_REQUEST_FILE_LEN`]
    /// bytes; keys `reason`, `incident`, `not_before`, `not_after`, optional
    /// `targets`, and a `[command]` table with `kind` and exactly that kind's
    /// parameters; unknown keys refused; hex in either case; times as RFC
    /// 3339 strings or TOML offset date-times, in whole seconds, normalised to
    /// UTC.
    ///
    /// # Errors
    ///
    /// [`RequestError::TooLarge`], [`RequestError::Toml`],
    /// [`RequestError::UnknownKey`], [`RequestError::MissingKey`],
    /// [`RequestError::WrongType`], [`RequestError::UnknownCommandKind`],
    /// [`RequestError::KeyNotForKind`], [`RequestError::InvalidField`],
    /// [`RequestError::InvalidTime`], [`RequestError::EmptyWindow`],
    /// [`RequestError::InvalidTarget`], [`RequestError::DuplicateTarget`].
    pub fn from_toml(text: &str) -> Result<Self, RequestError> {
        if text.len() > MAX_REQUEST_FILE_LEN {
            return Err(RequestError::TooLarge {
                what: "request file",
                size: text.len(),
                max: MAX_REQUEST_FILE_LEN,
            });
        }
        toml_reader::read_request(text)
    }

    /// Checks every field (as [`RecoveryRequest::from_toml`] does after
    /// parsing), for requests built in code.
    ///
    /// # Errors
    ///
    /// As [`RecoveryRequest::from_toml`], without the TOML errors.
    pub fn validate(&self) -> Result<(), RequestError> {
        self.command.validate()?;
        check_text("reason", &self.reason, MAX_REASON_LEN)?;
        check_text("incident", &self.incident, MAX_INCIDENT_LEN)?;
        check_window(&self.not_before, &self.not_after)?;
        let mut seen = HashSet::with_capacity(self.targets.len());
        for (index, id) in self.targets.iter().enumerate() {
            check_device_id(id.as_bytes()).map_err(|reason| RequestError::InvalidTarget {
                index,
                id: excerpt(id),
                reason,
                line: 0,
            })?;
            if !seen.insert(id.as_str()) {
                return Err(RequestError::DuplicateTarget {
                    id: id.clone(),
                    line: 0,
                });
            }
        }
        Ok(())
    }

    /// The [`TargetsDigest`] of the inline targets.
    pub fn targets_digest(&self) -> TargetsDigest {
        let mut hasher = TargetsHasher::new();
        for id in &self.targets {
            hasher.push_valid(id);
        }
        hasher.finish()
    }
}

// ---------------------------------------------------------------------------
// Field rules

fn check_type_name(name: &str) -> Result<(), RequestError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_TYPE_NAME_LEN
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "command.type",
            format!(
                "{:?} must be 1 to 64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit",
                excerpt(name)
            ),
        ))
    }
}

/// Checks a normalised validity window.
fn check_window(not_before: &str, not_after: &str) -> Result<(), RequestError> {
    let start = check_canonical_time("not_before", not_before)?;
    let end = check_canonical_time("not_after", not_after)?;
    if start >= end {
        return Err(RequestError::EmptyWindow {
            not_before: not_before.to_owned(),
            not_after: not_after.to_owned(),
        });
    }
    Ok(())
}

fn check_canonical_time(field: &'static str, value: &str) -> Result<i64, RequestError> {
    let unix = normalise_time(field, value)?;
    if rfc3339_from_unix(unix).as_deref() != Some(value) {
        return Err(RequestError::InvalidTime {
            field,
            value: excerpt(value),
            reason: "it is not in the form YYYY-MM-DDTHH:MM:SSZ",
        });
    }
    Ok(unix)
}

/// Parses a window time as the operator may write it and returns its Unix
/// seconds: whole seconds, any offset.
fn normalise_time(field: &'static str, value: &str) -> Result<i64, RequestError> {
    let bad = |reason| RequestError::InvalidTime {
        field,
        value: excerpt(value),
        reason,
    };
    let time = parse_rfc3339(value).map_err(bad)?;
    if time.fraction {
        return Err(bad("give whole seconds, without a fraction"));
    }
    if time.leap_second {
        return Err(bad("a leap second cannot bound a validity window"));
    }
    if rfc3339_from_unix(time.unix).is_none() {
        return Err(bad("in UTC it falls outside the years 0000 to 9999"));
    }
    Ok(time.unix)
}
