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
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use toml::de::{DeTable, DeValue};

use crate::fingerprint::fingerprint;

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

/// Longest excerpt of untrusted text quoted in an error.
const EXCERPT_CHARS: usize = 80;

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
        let root = DeTable::parse(text).map_err(|e| toml_error(text, &e))?;
        TomlReader { text }.request(root.get_ref())
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

/// Checks a device id: 1..=128 bytes of printable ASCII (0x21..=0x7e), so
/// no space, and not starting with `#` (which would be a manifest comment).
///
/// # Errors
///
/// [`RequestError::InvalidDeviceId`].
pub fn validate_device_id(id: &str) -> Result<(), RequestError> {
    check_device_id(id.as_bytes()).map_err(|reason| RequestError::InvalidDeviceId {
        id: excerpt(id),
        reason,
    })
}

fn check_device_id(id: &[u8]) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("it is empty");
    }
    if id.len() > MAX_DEVICE_ID_LEN {
        return Err("it is longer than 128 bytes");
    }
    if let Some(&byte) = id.iter().find(|b| !(0x21..=0x7e).contains(*b)) {
        return Err(if byte == b' ' {
            "it contains a space"
        } else if byte == b'\t' {
            "it contains a tab"
        } else if byte < 0x20 || byte == 0x7f {
            "it contains a control character"
        } else {
            "it contains a byte that is not printable ASCII"
        });
    }
    if id[0] == b'#' {
        return Err("it starts with '#', which marks a comment in a manifest");
    }
    Ok(())
}

/// The commitment to a target list: how many ids and SHA-256 over `id\n`
/// for each, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TargetsDigest {
    /// Number of targets.
    pub count: u64,
    /// SHA-256 over `id ‖ "\n"` per target, in order.
    pub sha256: [u8; 32],
}

/// Streaming [`TargetsDigest`] of a target list in order.
#[derive(Debug, Clone)]
pub struct TargetsHasher {
    count: u64,
    hasher: Sha256,
}

impl Default for TargetsHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl TargetsHasher {
    /// The hasher of the empty list.
    pub fn new() -> Self {
        TargetsHasher {
            count: 0,
            hasher: Sha256::new(),
        }
    }

    /// Adds the next target.
    ///
    /// # Errors
    ///
    /// [`RequestError::InvalidDeviceId`]; the id is then not added.
    pub fn push(&mut self, id: &str) -> Result<(), RequestError> {
        validate_device_id(id)?;
        self.push_valid(id);
        Ok(())
    }

    fn push_valid(&mut self, id: &str) {
        self.hasher.update(id.as_bytes());
        self.hasher.update(b"\n");
        self.count += 1;
    }

    /// Targets added so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The digest of the targets added.
    pub fn finish(self) -> TargetsDigest {
        TargetsDigest {
            count: self.count,
            sha256: self.hasher.finalize().into(),
        }
    }
}

/// Splits a manifest that arrives in chunks of any size into device ids:
/// one per line, a trailing `\r` removed, blank (empty or whitespace-only)
/// lines and lines starting with `#` skipped. Memory stays flat: a line is
/// buffered only up to the longest valid device id.
///
/// After an error the stream is bad; drop the splitter.
#[derive(Debug, Clone, Default)]
pub struct ManifestSplitter {
    /// 1-based number of the line being read.
    line: u64,
    /// The current line so far (not for comment lines).
    buf: Vec<u8>,
    /// The current line is a comment.
    comment: bool,
    /// The current line is longer than any device id (and not blank so far).
    too_long: bool,
}

impl ManifestSplitter {
    /// A splitter at the start of a manifest.
    pub fn new() -> Self {
        ManifestSplitter {
            line: 1,
            ..Default::default()
        }
    }

    /// Lines completed so far.
    pub fn lines(&self) -> u64 {
        self.line - 1
    }

    /// Feeds the next chunk; appends each device id completed by it to `out`.
    ///
    /// # Errors
    ///
    /// [`RequestError::ManifestLine`] for the first line that is not a device
    /// id, a comment or blank, naming the line.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<String>) -> Result<(), RequestError> {
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            self.absorb(&rest[..end]);
            self.end_line(out)?;
            rest = &rest[end + 1..];
        }
        self.absorb(rest);
        Ok(())
    }

    /// Ends the manifest: a last line without a newline counts too.
    ///
    /// # Errors
    ///
    /// As [`ManifestSplitter::push`].
    pub fn finish(mut self, out: &mut Vec<String>) -> Result<(), RequestError> {
        if !self.buf.is_empty() || self.comment || self.too_long {
            self.end_line(out)?;
        }
        Ok(())
    }

    fn absorb(&mut self, part: &[u8]) {
        if self.comment || part.is_empty() {
            return;
        }
        if self.buf.is_empty() && !self.too_long && part[0] == b'#' {
            self.comment = true;
            return;
        }
        if self.too_long {
            // Keep reading to the newline; only whether it is blank matters,
            // and a line this long with a non-blank byte is an error anyway.
            if self.buf.is_empty() && part.iter().any(|b| !b.is_ascii_whitespace()) {
                self.buf.push(b'x');
            }
            return;
        }
        // One byte more than an id, for a trailing "\r".
        let room = MAX_DEVICE_ID_LEN + 1 - self.buf.len();
        if part.len() > room {
            let blank = self.buf.iter().chain(part).all(u8::is_ascii_whitespace);
            self.too_long = true;
            self.buf.clear();
            if !blank {
                self.buf.push(b'x');
            }
        } else {
            self.buf.extend_from_slice(part);
        }
    }

    fn end_line(&mut self, out: &mut Vec<String>) -> Result<(), RequestError> {
        let line = self.line;
        self.line += 1;
        let comment = std::mem::take(&mut self.comment);
        let too_long = std::mem::take(&mut self.too_long);
        if comment {
            return Ok(());
        }
        if too_long {
            if self.buf.is_empty() {
                return Ok(());
            }
            return Err(RequestError::ManifestLine {
                line,
                id: String::new(),
                reason: "it is longer than 128 bytes",
            });
        }
        let mut id = self.buf.as_slice();
        if let Some(stripped) = id.strip_suffix(b"\r") {
            id = stripped;
        }
        let result = if id.iter().all(u8::is_ascii_whitespace) {
            Ok(())
        } else {
            match check_device_id(id) {
                Ok(()) => {
                    out.push(id.iter().map(|&b| char::from(b)).collect());
                    Ok(())
                }
                Err(reason) => Err(RequestError::ManifestLine {
                    line,
                    id: excerpt(&String::from_utf8_lossy(id)),
                    reason,
                }),
            }
        };
        self.buf.clear();
        result
    }
}

/// Whether a ceremony signs commands (recovery) or only a drill challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CeremonyKind {
    /// Signs one command per target.
    Recovery,
    /// Signs a drill challenge; never a command.
    Drill,
}

impl CeremonyKind {
    /// `recovery` or `drill`, as encoded.
    pub fn as_str(&self) -> &'static str {
        match self {
            CeremonyKind::Recovery => "recovery",
            CeremonyKind::Drill => "drill",
        }
    }
}

impl fmt::Display for CeremonyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The request custodians approve: the request file's contents, the key,
/// the kind of ceremony, the target commitment and the emergency flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalRequest {
    /// Recovery or drill.
    pub ceremony_kind: CeremonyKind,
    /// The recovery key asked to sign.
    pub key_id: String,
    /// What to sign.
    pub command: Command,
    /// Why.
    pub reason: String,
    /// Incident reference.
    pub incident: String,
    /// Start of the validity window, `YYYY-MM-DDTHH:MM:SSZ`.
    pub not_before: String,
    /// End of the validity window, `YYYY-MM-DDTHH:MM:SSZ`.
    pub not_after: String,
    /// Commitment to the targets.
    pub targets: TargetsDigest,
    /// Opened as an emergency.
    pub emergency: bool,
    /// Why it is an emergency; empty unless `emergency`.
    pub justification: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CanonicalJson {
    rkm_recovery_request: u64,
    ceremony_kind: String,
    key_id: String,
    command: CommandJson,
    reason: String,
    incident: String,
    not_before: String,
    not_after: String,
    targets: TargetsJson,
    emergency: bool,
    justification: String,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
enum CommandJson {
    ReplaceTrustAnchor {
        anchor_slot: u32,
        new_anchor: String,
    },
    RevokeCertificate {
        issuer: String,
        serial: String,
    },
    Custom {
        #[serde(rename = "type")]
        type_name: String,
        payload: String,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetsJson {
    count: u64,
    sha256: String,
}

#[derive(Deserialize)]
struct VersionOnly {
    rkm_recovery_request: u64,
}

impl CanonicalRequest {
    /// Builds and checks the canonical request for a parsed request file.
    ///
    /// # Errors
    ///
    /// Every error of [`CanonicalRequest::validate`].
    pub fn from_request(
        ceremony_kind: CeremonyKind,
        key_id: &str,
        request: &RecoveryRequest,
        targets: TargetsDigest,
        emergency: bool,
        justification: &str,
    ) -> Result<Self, RequestError> {
        let canonical = CanonicalRequest {
            ceremony_kind,
            key_id: key_id.to_owned(),
            command: request.command.clone(),
            reason: request.reason.clone(),
            incident: request.incident.clone(),
            not_before: request.not_before.clone(),
            not_after: request.not_after.clone(),
            targets,
            emergency,
            justification: justification.to_owned(),
        };
        canonical.validate()?;
        Ok(canonical)
    }

    /// Checks every field: the command, the texts, the key id (1..=64 bytes
    /// of printable ASCII), times in normalised UTC with `not_before <
    /// not_after`, at least one target for a recovery, and a justification
    /// exactly when `emergency`.
    ///
    /// # Errors
    ///
    /// [`RequestError::InvalidField`], [`RequestError::InvalidTime`],
    /// [`RequestError::EmptyWindow`], [`RequestError::NoTargets`],
    /// [`RequestError::MissingJustification`],
    /// [`RequestError::UnexpectedJustification`].
    pub fn validate(&self) -> Result<(), RequestError> {
        if self.key_id.is_empty()
            || self.key_id.len() > MAX_KEY_ID_LEN
            || !self.key_id.bytes().all(|b| (0x21..=0x7e).contains(&b))
        {
            return Err(invalid(
                "key_id",
                "it must be 1 to 64 bytes of printable ASCII without spaces",
            ));
        }
        self.command.validate()?;
        check_text("reason", &self.reason, MAX_REASON_LEN)?;
        check_text("incident", &self.incident, MAX_INCIDENT_LEN)?;
        check_window(&self.not_before, &self.not_after)?;
        if self.ceremony_kind == CeremonyKind::Recovery && self.targets.count == 0 {
            return Err(RequestError::NoTargets);
        }
        match (self.emergency, self.justification.is_empty()) {
            (true, true) => return Err(RequestError::MissingJustification),
            (false, false) => return Err(RequestError::UnexpectedJustification),
            (true, false) => check_text("justification", &self.justification, MAX_REASON_LEN)?,
            (false, true) => {}
        }
        Ok(())
    }

    /// The canonical encoding: compact JSON in this field order,
    /// `{"rkm_recovery_request":1,"ceremony_kind":"recovery"|"drill",
    /// "key_id":…,"command":{"kind":…,<parameters>},"reason":…,"incident":…,
    /// "not_before":…,"not_after":…,"targets":{"count":N,"sha256":"<hex>"},
    /// "emergency":bool,"justification":…}`; bytes as lowercase hex; command
    /// parameters `anchor_slot`, `new_anchor` | `issuer`, `serial` | `type`,
    /// `payload`.
    ///
    /// Call [`CanonicalRequest::validate`] first: an invalid request encodes,
    /// but [`CanonicalRequest::decode`] refuses it.
    pub fn encode(&self) -> Vec<u8> {
        let command = match &self.command {
            Command::ReplaceTrustAnchor {
                anchor_slot,
                new_anchor,
            } => CommandJson::ReplaceTrustAnchor {
                anchor_slot: *anchor_slot,
                new_anchor: hex::encode(new_anchor),
            },
            Command::RevokeCertificate { issuer, serial } => CommandJson::RevokeCertificate {
                issuer: issuer.clone(),
                serial: hex::encode(serial),
            },
            Command::Custom { type_name, payload } => CommandJson::Custom {
                type_name: type_name.clone(),
                payload: hex::encode(payload),
            },
        };
        let json = CanonicalJson {
            rkm_recovery_request: CANONICAL_REQUEST_VERSION,
            ceremony_kind: self.ceremony_kind.as_str().to_owned(),
            key_id: self.key_id.clone(),
            command,
            reason: self.reason.clone(),
            incident: self.incident.clone(),
            not_before: self.not_before.clone(),
            not_after: self.not_after.clone(),
            targets: TargetsJson {
                count: self.targets.count,
                sha256: hex::encode(self.targets.sha256),
            },
            emergency: self.emergency,
            justification: self.justification.clone(),
        };
        serde_json::to_vec(&json).expect("canonical request JSON serialises")
    }

    /// Decodes untrusted canonical request bytes: size first, then the
    /// version, then strict JSON (no unknown or duplicate fields), then
    /// [`CanonicalRequest::validate`], then that the input is exactly
    /// [`CanonicalRequest::encode`] of the result.
    ///
    /// # Errors
    ///
    /// [`RequestError::TooLarge`], [`RequestError::Malformed`],
    /// [`RequestError::UnsupportedVersion`], every error of
    /// [`CanonicalRequest::validate`], [`RequestError::NotCanonical`].
    pub fn decode(bytes: &[u8]) -> Result<Self, RequestError> {
        if bytes.len() > MAX_CANONICAL_REQUEST_LEN {
            return Err(RequestError::TooLarge {
                what: "canonical request",
                size: bytes.len(),
                max: MAX_CANONICAL_REQUEST_LEN,
            });
        }
        let malformed = |e: serde_json::Error| RequestError::Malformed(e.to_string());
        let version: VersionOnly = serde_json::from_slice(bytes).map_err(malformed)?;
        if version.rkm_recovery_request != CANONICAL_REQUEST_VERSION {
            return Err(RequestError::UnsupportedVersion {
                found: version.rkm_recovery_request,
            });
        }
        let json: CanonicalJson = serde_json::from_slice(bytes).map_err(malformed)?;
        let ceremony_kind = match json.ceremony_kind.as_str() {
            "recovery" => CeremonyKind::Recovery,
            "drill" => CeremonyKind::Drill,
            other => {
                return Err(invalid(
                    "ceremony_kind",
                    format!("{:?} is neither \"recovery\" nor \"drill\"", excerpt(other)),
                ));
            }
        };
        let command = match json.command {
            CommandJson::ReplaceTrustAnchor {
                anchor_slot,
                new_anchor,
            } => Command::ReplaceTrustAnchor {
                anchor_slot,
                new_anchor: lower_hex("command.new_anchor", &new_anchor)?,
            },
            CommandJson::RevokeCertificate { issuer, serial } => Command::RevokeCertificate {
                issuer,
                serial: lower_hex("command.serial", &serial)?,
            },
            CommandJson::Custom { type_name, payload } => Command::Custom {
                type_name,
                payload: lower_hex("command.payload", &payload)?,
            },
        };
        let sha256 = lower_hex("targets.sha256", &json.targets.sha256)?
            .try_into()
            .map_err(|_| invalid("targets.sha256", "it is not 32 bytes"))?;
        let request = CanonicalRequest {
            ceremony_kind,
            key_id: json.key_id,
            command,
            reason: json.reason,
            incident: json.incident,
            not_before: json.not_before,
            not_after: json.not_after,
            targets: TargetsDigest {
                count: json.targets.count,
                sha256,
            },
            emergency: json.emergency,
            justification: json.justification,
        };
        request.validate()?;
        if request.encode() != bytes {
            return Err(RequestError::NotCanonical);
        }
        Ok(request)
    }

    /// The request digest custodians approve: [`request_digest`] of
    /// [`CanonicalRequest::encode`].
    pub fn digest(&self) -> [u8; 32] {
        request_digest(&self.encode())
    }

    /// A multi-line description for the custodian who is asked to approve:
    /// what kind of ceremony, which key, the command and its parameters (long
    /// byte strings as length and fingerprint), the target count, the reason,
    /// the incident, the validity window, and the emergency justification.
    /// Every line ends with a newline.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let mut line = |label: &str, value: &str| {
            out.push_str(&format!("{label:<14}{value}\n"));
        };
        match self.ceremony_kind {
            CeremonyKind::Recovery => line(
                "ceremony:",
                "RECOVERY (the key will sign one command per target)",
            ),
            CeremonyKind::Drill => line(
                "ceremony:",
                "drill (the key signs a drill challenge; no command is issued)",
            ),
        }
        line("key:", &self.key_id);
        line("command:", self.command.kind());
        match &self.command {
            Command::ReplaceTrustAnchor {
                anchor_slot,
                new_anchor,
            } => {
                line("  slot:", &anchor_slot.to_string());
                let what = match anchor_kind(new_anchor) {
                    Ok(AnchorKind::Certificate) => "X.509 certificate",
                    Ok(AnchorKind::PublicKey) => "SubjectPublicKeyInfo",
                    Err(_) => "DER",
                };
                line(
                    "  new anchor:",
                    &format!("{what}, {} bytes", new_anchor.len()),
                );
                line("  SHA-256:", &fingerprint(new_anchor));
            }
            Command::RevokeCertificate { issuer, serial } => {
                line("  issuer:", issuer);
                line("  serial:", &hex::encode(serial));
            }
            Command::Custom { type_name, payload } => {
                line("  type:", type_name);
                if payload.len() <= 32 {
                    line(
                        "  payload:",
                        &format!("{} bytes: {}", payload.len(), hex::encode(payload)),
                    );
                } else {
                    line("  payload:", &format!("{} bytes", payload.len()));
                    line("  SHA-256:", &fingerprint(payload));
                }
            }
        }
        line(
            "targets:",
            &format!(
                "{} device{} (list SHA-256 {})",
                self.targets.count,
                if self.targets.count == 1 { "" } else { "s" },
                hex::encode(self.targets.sha256)
            ),
        );
        line("reason:", &self.reason);
        line("incident:", &self.incident);
        line(
            "valid:",
            &format!("from {} to {}", self.not_before, self.not_after),
        );
        if self.emergency {
            line("EMERGENCY:", &self.justification);
        } else {
            line("emergency:", "no");
        }
        out
    }
}

/// SHA-256(`"rkm/v1/recovery-request\0"` ‖ `encoded`), the request digest.
pub fn request_digest(encoded: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(REQUEST_DIGEST_LABEL);
    hasher.update(encoded);
    hasher.finalize().into()
}

/// Unix seconds of an RFC 3339 (§5.6) date-time such as
/// `2026-11-27T00:00:00Z` or `2026-11-27T01:00:00.5+01:00`; a fraction is
/// dropped (rounded towards the past), a leap second counts as the next
/// second. `None` if it is not RFC 3339 or the year is outside 0000..=9999.
pub fn unix_time_from_rfc3339(text: &str) -> Option<i64> {
    parse_rfc3339(text).ok().map(|t| t.unix)
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time; `None` outside years 0000..=9999.
pub fn rfc3339_from_unix(unix: i64) -> Option<String> {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    ))
}

// ---------------------------------------------------------------------------
// Field rules

fn invalid(field: &'static str, reason: impl Into<String>) -> RequestError {
    RequestError::InvalidField {
        field,
        reason: reason.into(),
    }
}

/// At most [`EXCERPT_CHARS`] characters of untrusted text, escaped.
pub(crate) fn excerpt(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(EXCERPT_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(EXCERPT_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// Characters that would let text shown to a custodian rewrite or reorder
/// what is displayed: Unicode bidirectional formatting characters and
/// invisible zero-width ones.
fn is_format_trick(c: char) -> bool {
    matches!(c,
        '\u{200b}'..='\u{200f}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}'
        | '\u{feff}')
}

/// Text shown to custodians: non-blank, at most `max` bytes, no control
/// characters (not even newline, which could forge a line of the
/// description) and no bidirectional or zero-width formatting characters.
fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), RequestError> {
    if value.trim().is_empty() {
        return Err(invalid(field, "it is empty"));
    }
    if value.len() > max {
        return Err(invalid(field, format!("it is longer than {max} bytes")));
    }
    if let Some(c) = value.chars().find(|&c| c.is_control()) {
        return Err(invalid(
            field,
            format!(
                "it contains the control character U+{:04X}; write it on one line",
                u32::from(c)
            ),
        ));
    }
    if let Some(c) = value.chars().find(|&c| is_format_trick(c)) {
        return Err(invalid(
            field,
            format!(
                "it contains the invisible formatting character U+{:04X}",
                u32::from(c)
            ),
        ));
    }
    Ok(())
}

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

fn lower_hex(field: &'static str, value: &str) -> Result<Vec<u8>, RequestError> {
    if value.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(RequestError::NotCanonical);
    }
    hex::decode(value).map_err(|e| invalid(field, format!("it is not hex ({e})")))
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

struct ParsedTime {
    unix: i64,
    fraction: bool,
    leap_second: bool,
}

/// RFC 3339 §5.6 `date-time`, with `T`/`t` and `Z`/`z`, day of month
/// checked against the month and leap years.
fn parse_rfc3339(text: &str) -> Result<ParsedTime, &'static str> {
    const SHAPE: &str = "it is not an RFC 3339 time such as 2026-11-27T00:00:00Z";
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Result<i64, &'static str> {
        let part = b.get(range).ok_or(SHAPE)?;
        if part.iter().all(u8::is_ascii_digit) {
            Ok(part.iter().fold(0, |acc, d| acc * 10 + i64::from(d - b'0')))
        } else {
            Err(SHAPE)
        }
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(SHAPE);
    }
    if !(1..=12).contains(&month) {
        return Err("the month is out of range");
    }
    let leap_year = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 if leap_year => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=month_days).contains(&day) {
        return Err("the day is out of range for the month");
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err("the time of day is out of range");
    }
    let mut rest = &b[19..];
    let mut fraction = false;
    if let Some(after_dot) = rest.strip_prefix(b".") {
        let len = after_dot.iter().take_while(|c| c.is_ascii_digit()).count();
        if len == 0 {
            return Err(SHAPE);
        }
        fraction = after_dot[..len].iter().any(|&d| d != b'0');
        rest = &after_dot[len..];
    }
    let offset = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            if ![h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()) {
                return Err(SHAPE);
            }
            let hours = i64::from((h1 - b'0') * 10 + (h2 - b'0'));
            let minutes = i64::from((m1 - b'0') * 10 + (m2 - b'0'));
            if hours > 23 || minutes > 59 {
                return Err("the UTC offset is out of range");
            }
            let offset = hours * 3600 + minutes * 60;
            if *sign == b'-' { -offset } else { offset }
        }
        [] => return Err("it has no UTC offset; end it with Z or ±HH:MM"),
        _ => return Err(SHAPE),
    };
    let days = days_from_civil(year, month, day);
    let unix = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Ok(ParsedTime {
        unix,
        fraction,
        leap_second: second == 60,
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

// ---------------------------------------------------------------------------
// New trust anchors: the DER shape of an SPKI or a certificate

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AnchorKind {
    PublicKey,
    Certificate,
}

/// One DER TLV with a low tag number and a minimal definite length:
/// (tag, contents, rest).
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, rest) = rest.split_at_checked(n)?;
        if bytes[0] == 0 {
            return None;
        }
        let len = bytes
            .iter()
            .fold(0usize, |acc, &b| acc << 8 | usize::from(b));
        if len < 0x80 {
            return None;
        }
        (len, rest)
    };
    let (contents, rest) = rest.split_at_checked(len)?;
    Some((tag, contents, rest))
}

/// Whether `der` has the outer shape of a SubjectPublicKeyInfo (RFC 5280
/// §4.1: SEQUENCE { AlgorithmIdentifier, BIT STRING }) or of a Certificate
/// (SEQUENCE { TBSCertificate, AlgorithmIdentifier, BIT STRING }).
fn anchor_kind(der: &[u8]) -> Result<AnchorKind, &'static str> {
    const NOT_DER: &str =
        "it is not the DER of a SubjectPublicKeyInfo or an X.509 certificate (RFC 5280 §4.1)";
    let (tag, mut contents, rest) = der_tlv(der).ok_or(NOT_DER)?;
    if tag != 0x30 || !rest.is_empty() {
        return Err(NOT_DER);
    }
    let mut tags = Vec::with_capacity(3);
    let mut first_child = None;
    while !contents.is_empty() {
        let (tag, inner, rest) = der_tlv(contents).ok_or(NOT_DER)?;
        if first_child.is_none() {
            first_child = Some(inner);
        }
        tags.push(tag);
        if tags.len() > 3 {
            return Err(NOT_DER);
        }
        contents = rest;
    }
    match tags.as_slice() {
        [0x30, 0x03] => {
            // AlgorithmIdentifier starts with its OID.
            let alg = first_child.unwrap_or_default();
            match der_tlv(alg) {
                Some((0x06, _, _)) => Ok(AnchorKind::PublicKey),
                _ => Err(NOT_DER),
            }
        }
        [0x30, 0x30, 0x03] => Ok(AnchorKind::Certificate),
        _ => Err(NOT_DER),
    }
}

// ---------------------------------------------------------------------------
// The request file

fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |tail| tail.chars().count())
        + 1;
    (line, column)
}

fn toml_error(text: &str, error: &toml::de::Error) -> RequestError {
    let (line, column) = error
        .span()
        .map_or((0, 0), |span| line_and_column(text, span.start));
    RequestError::Toml {
        line,
        column,
        message: error.message().to_owned(),
    }
}

type Spanned<T> = toml::Spanned<T>;

struct TomlReader<'t> {
    text: &'t str,
}

/// The values of one table, found by key, with the key's line.
struct Found<'a, 'i> {
    value: &'a Spanned<DeValue<'i>>,
    line: usize,
}

impl TomlReader<'_> {
    fn line(&self, span: std::ops::Range<usize>) -> usize {
        line_and_column(self.text, span.start).0
    }

    fn request(&self, root: &DeTable<'_>) -> Result<RecoveryRequest, RequestError> {
        let (mut reason, mut incident, mut not_before, mut not_after) = (None, None, None, None);
        let (mut targets, mut command) = (None, None);
        for (key, value) in root.iter() {
            let line = self.line(key.span());
            let found = Some(Found { value, line });
            match key.get_ref().as_ref() {
                "reason" => reason = found,
                "incident" => incident = found,
                "not_before" => not_before = found,
                "not_after" => not_after = found,
                "targets" => targets = found,
                "command" => command = found,
                other => {
                    return Err(RequestError::UnknownKey {
                        key: excerpt(other),
                        line,
                    });
                }
            }
        }
        let command = self.command(command.ok_or(RequestError::MissingKey { key: "command" })?)?;
        let reason = string("reason", reason)?;
        check_text("reason", &reason, MAX_REASON_LEN)?;
        let incident = string("incident", incident)?;
        check_text("incident", &incident, MAX_INCIDENT_LEN)?;
        let not_before = time("not_before", not_before)?;
        let not_after = time("not_after", not_after)?;
        if not_before.0 >= not_after.0 {
            return Err(RequestError::EmptyWindow {
                not_before: not_before.1,
                not_after: not_after.1,
            });
        }
        let targets = match targets {
            None => Vec::new(),
            Some(found) => self.targets(found)?,
        };
        Ok(RecoveryRequest {
            command,
            reason,
            incident,
            not_before: not_before.1,
            not_after: not_after.1,
            targets,
        })
    }

    fn command(&self, found: Found<'_, '_>) -> Result<Command, RequestError> {
        let DeValue::Table(table) = found.value.get_ref() else {
            return Err(wrong_type("command", "a table", found));
        };
        let mut kind = None;
        let mut params: Vec<(&str, Found<'_, '_>)> = Vec::new();
        for (key, value) in table.iter() {
            let line = self.line(key.span());
            let name = key.get_ref().as_ref();
            match name {
                "kind" => kind = Some(Found { value, line }),
                "anchor_slot" | "new_anchor" | "issuer" | "serial" | "type" | "payload" => {
                    params.push((name, Found { value, line }));
                }
                other => {
                    return Err(RequestError::UnknownKey {
                        key: format!("command.{}", excerpt(other)),
                        line,
                    });
                }
            }
        }
        let kind = string("command.kind", kind)?;
        let (kind, allowed): (&'static str, &[&str]) = match kind.as_str() {
            KIND_REPLACE_TRUST_ANCHOR => {
                (KIND_REPLACE_TRUST_ANCHOR, &["anchor_slot", "new_anchor"])
            }
            KIND_REVOKE_CERTIFICATE => (KIND_REVOKE_CERTIFICATE, &["issuer", "serial"]),
            KIND_CUSTOM => (KIND_CUSTOM, &["type", "payload"]),
            other => {
                return Err(RequestError::UnknownCommandKind {
                    kind: excerpt(other),
                });
            }
        };
        if let Some((name, found)) = params.iter().find(|(name, _)| !allowed.contains(name)) {
            return Err(RequestError::KeyNotForKind {
                key: format!("command.{name}"),
                kind,
                line: found.line,
            });
        }
        let mut take = |name: &str| {
            params
                .iter()
                .position(|(n, _)| *n == name)
                .map(|i| params.swap_remove(i).1)
        };
        let command = match kind {
            KIND_REPLACE_TRUST_ANCHOR => {
                let slot = take("anchor_slot").ok_or(RequestError::MissingKey {
                    key: "command.anchor_slot",
                })?;
                let anchor_slot = slot_number(slot)?;
                let new_anchor = hex_param("command.new_anchor", take("new_anchor"))?;
                Command::ReplaceTrustAnchor {
                    anchor_slot,
                    new_anchor,
                }
            }
            KIND_REVOKE_CERTIFICATE => Command::RevokeCertificate {
                issuer: string("command.issuer", take("issuer"))?,
                serial: hex_param("command.serial", take("serial"))?,
            },
            _ => Command::Custom {
                type_name: string("command.type", take("type"))?,
                payload: hex_param("command.payload", take("payload"))?,
            },
        };
        command.validate()?;
        Ok(command)
    }

    fn targets(&self, found: Found<'_, '_>) -> Result<Vec<String>, RequestError> {
        let DeValue::Array(array) = found.value.get_ref() else {
            return Err(wrong_type("targets", "an array of device ids", found));
        };
        let mut targets = Vec::with_capacity(array.len());
        let mut seen = HashSet::with_capacity(array.len());
        for (index, item) in array.iter().enumerate() {
            let line = self.line(item.span());
            let DeValue::String(id) = item.get_ref() else {
                return Err(RequestError::WrongType {
                    key: format!("targets[{index}]"),
                    expected: "a string",
                    found: item.get_ref().type_str(),
                    line,
                });
            };
            check_device_id(id.as_bytes()).map_err(|reason| RequestError::InvalidTarget {
                index,
                id: excerpt(id),
                reason,
                line,
            })?;
            if !seen.insert(id.as_ref()) {
                return Err(RequestError::DuplicateTarget {
                    id: id.to_string(),
                    line,
                });
            }
            targets.push(id.to_string());
        }
        Ok(targets)
    }
}

fn wrong_type(key: &str, expected: &'static str, found: Found<'_, '_>) -> RequestError {
    RequestError::WrongType {
        key: key.to_owned(),
        expected,
        found: found.value.get_ref().type_str(),
        line: found.line,
    }
}

fn string(key: &'static str, found: Option<Found<'_, '_>>) -> Result<String, RequestError> {
    let found = found.ok_or(RequestError::MissingKey { key })?;
    match found.value.get_ref() {
        DeValue::String(s) => Ok(s.to_string()),
        _ => Err(wrong_type(key, "a string", found)),
    }
}

fn hex_param(key: &'static str, found: Option<Found<'_, '_>>) -> Result<Vec<u8>, RequestError> {
    let text = string(key, found)?;
    hex::decode(&text).map_err(|e| invalid(key, format!("it is not hex ({e})")))
}

fn slot_number(found: Found<'_, '_>) -> Result<u32, RequestError> {
    let DeValue::Integer(integer) = found.value.get_ref() else {
        return Err(wrong_type("command.anchor_slot", "an integer", found));
    };
    i128::from_str_radix(integer.as_str(), integer.radix())
        .ok()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| {
            invalid(
                "command.anchor_slot",
                format!("{integer} is not a slot number from 0 to {}", u32::MAX),
            )
        })
}

/// A window time from the file: an RFC 3339 string or a TOML offset
/// date-time; returns its Unix seconds and normalised text.
fn time(key: &'static str, found: Option<Found<'_, '_>>) -> Result<(i64, String), RequestError> {
    let found = found.ok_or(RequestError::MissingKey { key })?;
    let text = match found.value.get_ref() {
        DeValue::String(s) => s.to_string(),
        DeValue::Datetime(dt) => dt.to_string(),
        _ => return Err(wrong_type(key, "an RFC 3339 time", found)),
    };
    let unix = normalise_time(key, &text)?;
    let normalised = rfc3339_from_unix(unix).expect("normalise_time checked the range");
    Ok((unix, normalised))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days_round_trip_and_known_answers() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(0, 1, 1), -719_528);
        for days in [-719_528, -1, 0, 1, 11_016, 11_017, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{days}");
        }
        assert_eq!(
            rfc3339_from_unix(1_795_737_600).as_deref(),
            Some("2026-11-27T00:00:00Z")
        );
        assert_eq!(rfc3339_from_unix(-62_167_219_201), None);
        assert_eq!(
            rfc3339_from_unix(253_402_300_799).as_deref(),
            Some("9999-12-31T23:59:59Z")
        );
        assert_eq!(rfc3339_from_unix(253_402_300_800), None);
    }

    #[test]
    fn rfc3339_parses_offsets_fractions_and_refuses_bad_dates() {
        assert_eq!(
            unix_time_from_rfc3339("2026-11-27T01:30:00+01:30"),
            Some(1_795_737_600)
        );
        assert_eq!(
            unix_time_from_rfc3339("2026-11-26t19:00:00.999-05:00"),
            Some(1_795_737_600)
        );
        assert_eq!(
            unix_time_from_rfc3339("2024-02-29T00:00:00Z"),
            Some(1_709_164_800)
        );
        for bad in [
            "2025-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2025-04-31T00:00:00Z",
            "2025-01-01T00:00:00",
            "2025-01-01 00:00:00Z",
            "2025-01-01T00:00:00.Z",
            "2025-01-01T00:00:00+1:00",
            "2025-01-01T00:00:00+24:00",
            "",
        ] {
            assert_eq!(unix_time_from_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn der_reader_refuses_non_minimal_and_indefinite_lengths() {
        assert!(der_tlv(&[0x30, 0x80, 0x00, 0x00]).is_none());
        assert!(der_tlv(&[0x30, 0x81, 0x05, 0, 0, 0, 0, 0]).is_none());
        assert!(der_tlv(&[0x30, 0x82, 0x00, 0x80]).is_none());
        assert!(der_tlv(&[0x30, 0x03, 0x01]).is_none());
        assert_eq!(
            der_tlv(&[0x02, 0x01, 0x05, 0xff]),
            Some((0x02, &[5][..], &[0xff][..]))
        );
    }

    #[test]
    fn manifest_splitter_memory_stays_flat_on_an_endless_line() {
        let mut splitter = ManifestSplitter::new();
        let mut out = Vec::new();
        splitter.push(b"meter-1\n", &mut out).unwrap();
        for _ in 0..100_000 {
            splitter.push(b"xy", &mut out).unwrap();
            assert!(splitter.buf.len() <= MAX_DEVICE_ID_LEN + 1);
        }
        assert_eq!(
            splitter.push(b"\n", &mut out).unwrap_err(),
            RequestError::ManifestLine {
                line: 2,
                id: String::new(),
                reason: "it is longer than 128 bytes"
            }
        );
        assert_eq!(out, vec!["meter-1"]);
    }

    #[test]
    fn excerpt_escapes_and_cuts() {
        assert_eq!(excerpt("a\nb"), "a\\nb");
        let long = "x".repeat(100);
        assert!(excerpt(&long).ends_with('…'));
    }

    #[test]
    fn line_and_column_count_from_one() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_and_column(text, 0), (1, 1));
        assert_eq!(line_and_column(text, 6), (2, 1));
        assert_eq!(line_and_column(text, 9), (2, 3));
    }
}
