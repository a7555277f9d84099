//! Signed audit checkpoints: the C2SP tlog-checkpoint body (origin, tree size,
//! root hash) inside a C2SP signed-note, signed with the HSM's Ed25519 audit
//! key. rkmd formats the note around a signature the HSM made; `rkm` and
//! auditors parse untrusted notes and open them with a verifier key.
//!
//! Untrusted input is bounded first ([`MAX_NOTE_LEN`], [`MAX_SIGNATURES`]),
//! then parsed strictly; errors name the line or key that failed and quote at
//! most a short excerpt of the input.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, VerifyingKey};

use crate::encoding::fingerprint::{signed_note_key_id, signed_note_verifier_key};
use crate::encoding::text::excerpt;
use crate::log::merkle::{HASH_LEN, Hash};

mod note;

pub use note::*;

/// Largest note (or checkpoint body) accepted from untrusted input, 1 MiB.
pub const MAX_NOTE_LEN: usize = 1 << 20;

/// Most signature lines accepted in one note. C2SP signed-note ("Format")
/// asks verifiers to accept at least 16; Go's `sumdb/note` also stops at 100.
pub const MAX_SIGNATURES: usize = 100;

/// Signature type byte of Ed25519 (C2SP signed-note, "Signature types").
const ED25519_SIGNATURE_TYPE: u8 = 0x01;

/// What every signature line starts with: U+2014 EM DASH and a space.
const SIGNATURE_LINE_PREFIX: &str = "\u{2014} ";

/// Length of an Ed25519 signature (RFC 8032 §5.1.6).
const ED25519_SIGNATURE_LEN: usize = 64;

/// Why a checkpoint, a signed note or a verifier key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The input is larger than [`MAX_NOTE_LEN`]; nothing else was looked at.
    #[error("note is {size} bytes, more than the {max} accepted")]
    NoteTooLarge {
        /// Length of the input in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// C2SP signed-note ("Format") allows no ASCII control character but newline.
    #[error("control character 0x{byte:02x} at byte {offset}; only newline is allowed")]
    ControlCharacter {
        /// The offending byte.
        byte: u8,
        /// Its offset in the input.
        offset: usize,
    },
    /// The text (or checkpoint body) does not end with a newline.
    #[error("text does not end with a newline")]
    NotNewlineTerminated,
    /// No blank line separates the text from the signature lines.
    #[error("note has no blank line between its text and its signatures")]
    NoSignatureBlock,
    /// The blank line is not followed by any signature line.
    #[error("note has no signature lines after the blank line")]
    NoSignatures,
    /// More signature lines than [`MAX_SIGNATURES`]; none of them was parsed.
    #[error("note has {found} signature lines, more than the {max} accepted")]
    TooManySignatures {
        /// Number of signature lines.
        found: usize,
        /// The limit.
        max: usize,
    },
    /// A signature line is not `— <key name> <base64>`.
    #[error("signature line {line} is malformed: {reason}")]
    MalformedSignatureLine {
        /// 1-based number among the signature lines.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A key name is empty or has a space or a plus sign (C2SP signed-note, "Format").
    #[error("key name {name:?} is invalid: {reason}")]
    InvalidKeyName {
        /// Excerpt of the name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A verifier key is not `<name>+<8 hex digits>+<base64>`.
    #[error("verifier key is malformed: {reason} (expected <name>+<key id hex>+<base64 key>)")]
    MalformedVerifierKey {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A verifier key of a signature type other than Ed25519 (0x01).
    #[error("verifier key has signature type 0x{found:02x}; only Ed25519 (0x01) is supported")]
    UnsupportedSignatureType {
        /// The type byte found.
        found: u8,
    },
    /// The verifier key's bytes are not a usable Ed25519 public key.
    #[error("verifier key is not a valid Ed25519 public key: {reason}")]
    InvalidPublicKey {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The key ID written in a verifier key is not the one its name and key give.
    #[error(
        "verifier key for {name:?} states key id {stated}, but its name and key give {computed}"
    )]
    KeyIdMismatch {
        /// The key name.
        name: String,
        /// Key ID written in the verifier key, hex.
        stated: String,
        /// Key ID computed from name and key, hex.
        computed: String,
    },
    /// No signature line carries both the name and the key ID of the trusted key.
    #[error("no signature by key {key}; the note has {others} signature(s) by other keys")]
    NoSignatureByKey {
        /// The trusted key, `<name>+<key id hex>`.
        key: String,
        /// How many signatures by other keys were ignored.
        others: usize,
    },
    /// A signature by the trusted key does not verify; the whole note is
    /// rejected (C2SP signed-note, "Signatures").
    #[error("signature by key {key} does not verify: {reason}")]
    BadSignature {
        /// The trusted key, `<name>+<key id hex>`.
        key: String,
        /// Why.
        reason: String,
    },
    /// The checkpoint body stops before one of its three mandatory lines.
    #[error("checkpoint body has no {line} line")]
    MissingLine {
        /// Which line: "tree size" or "root hash".
        line: &'static str,
    },
    /// A line of the checkpoint body is empty (C2SP tlog-checkpoint, "Note text").
    #[error("line {line} of the checkpoint body is empty")]
    EmptyLine {
        /// 1-based line number; 1 is the origin.
        line: usize,
    },
    /// The tree size line is not a decimal u64 without leading zeros.
    #[error("tree size {found:?} is invalid: {reason}")]
    InvalidSize {
        /// Excerpt of the line.
        found: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The root hash line is not the canonical base64 of 32 bytes.
    #[error("root hash {found:?} is invalid: {reason}")]
    InvalidRoot {
        /// Excerpt of the line.
        found: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A field given to [`Checkpoint::new`] cannot be a line of the body.
    #[error("checkpoint {field} is invalid: {reason}")]
    InvalidField {
        /// "origin" or "extension line".
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The checkpoint is for another log.
    #[error("checkpoint origin is {found:?}, expected {expected:?}")]
    OriginMismatch {
        /// The origin the caller trusts.
        expected: String,
        /// Excerpt of the origin in the checkpoint.
        found: String,
    },
}

/// Refuses ASCII control characters other than newline (C2SP signed-note, "Format").
fn check_no_control_characters(text: &str) -> Result<(), CheckpointError> {
    match text
        .bytes()
        .enumerate()
        .find(|&(_, byte)| byte < 0x20 && byte != b'\n')
    {
        Some((offset, byte)) => Err(CheckpointError::ControlCharacter { byte, offset }),
        None => Ok(()),
    }
}

/// Checks untrusted note text before it is parsed: size first, then characters.
fn check_untrusted_text(text: &str) -> Result<(), CheckpointError> {
    if text.len() > MAX_NOTE_LEN {
        return Err(CheckpointError::NoteTooLarge {
            size: text.len(),
            max: MAX_NOTE_LEN,
        });
    }
    check_no_control_characters(text)
}

/// Checks a key name: non-empty, no Unicode space, no plus sign (C2SP
/// signed-note, "Format"), no control character.
fn check_key_name(name: &str) -> Result<(), CheckpointError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.contains('+') {
        Some("it contains a plus sign")
    } else if name.chars().any(char::is_whitespace) {
        Some("it contains a space")
    } else if name.chars().any(char::is_control) {
        Some("it contains a control character")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(CheckpointError::InvalidKeyName {
            name: excerpt(name),
            reason,
        }),
        None => Ok(()),
    }
}

/// Checks a field that becomes one line of a checkpoint body.
fn check_body_line(field: &'static str, line: &str) -> Result<(), CheckpointError> {
    let reason = if line.is_empty() {
        Some("it is empty")
    } else if line.chars().any(char::is_control) {
        Some("it contains a newline or another control character")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(CheckpointError::InvalidField { field, reason }),
        None => Ok(()),
    }
}

/// A log checkpoint: the tree head that the audit key signs (C2SP
/// tlog-checkpoint, "Note text").
///
/// Fields are private so that every `Checkpoint` formats to a body that
/// [`Checkpoint::parse_body`] reads back unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    origin: String,
    size: u64,
    root: Hash,
    extensions: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint of the log `origin` at `size` leaves with root `root`, and
    /// optional extension lines (C2SP tlog-checkpoint discourages them).
    ///
    /// # Errors
    ///
    /// [`CheckpointError::InvalidField`] if the origin or an extension line is
    /// empty or holds a newline or another control character.
    pub fn new(
        origin: impl Into<String>,
        size: u64,
        root: Hash,
        extensions: Vec<String>,
    ) -> Result<Self, CheckpointError> {
        let origin = origin.into();
        check_body_line("origin", &origin)?;
        for line in &extensions {
            check_body_line("extension line", line)?;
        }
        Ok(Checkpoint {
            origin,
            size,
            root,
            extensions,
        })
    }

    /// The log's identity, the first line.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The number of leaves in the tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The RFC 9162 §2.1.1 root hash of the tree at [`Self::size`].
    pub fn root(&self) -> &Hash {
        &self.root
    }

    /// The extension lines after the root hash, usually none.
    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }

    /// The note text: `<origin>\n<size>\n<base64 root>\n`, then one line per
    /// extension. This exact text is what the audit key signs.
    pub fn to_body(&self) -> String {
        let mut body = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root.as_bytes())
        );
        for line in &self.extensions {
            body.push_str(line);
            body.push('\n');
        }
        body
    }

    /// Parses an untrusted checkpoint body (C2SP tlog-checkpoint, "Note
    /// text"): at least three non-empty lines, each ending in a newline; a
    /// decimal size without leading zeros; the canonical base64 of a 32-byte
    /// root.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::NoteTooLarge`] and
    /// [`CheckpointError::ControlCharacter`] first, then
    /// [`CheckpointError::NotNewlineTerminated`],
    /// [`CheckpointError::EmptyLine`], [`CheckpointError::MissingLine`],
    /// [`CheckpointError::InvalidSize`] or [`CheckpointError::InvalidRoot`]
    /// for the first line that is wrong.
    pub fn parse_body(body: &str) -> Result<Self, CheckpointError> {
        check_untrusted_text(body)?;
        let Some(content) = body.strip_suffix('\n') else {
            return Err(CheckpointError::NotNewlineTerminated);
        };
        let mut lines = content.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(CheckpointError::EmptyLine { line: 1 });
        }
        let size_line = lines
            .next()
            .ok_or(CheckpointError::MissingLine { line: "tree size" })?;
        let size = parse_size(size_line)?;
        let root_line = lines
            .next()
            .ok_or(CheckpointError::MissingLine { line: "root hash" })?;
        let root = parse_root(root_line)?;
        let mut extensions = Vec::new();
        for (number, line) in lines.enumerate() {
            if line.is_empty() {
                return Err(CheckpointError::EmptyLine { line: number + 4 });
            }
            extensions.push(line.to_owned());
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    /// Checks that the checkpoint is for the log the caller expects. A valid
    /// signature only says the key signed it; the origin says which log.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::OriginMismatch`] if the origins differ.
    pub fn check_origin(&self, expected: &str) -> Result<(), CheckpointError> {
        if self.origin == expected {
            Ok(())
        } else {
            Err(CheckpointError::OriginMismatch {
                expected: expected.to_owned(),
                found: excerpt(&self.origin),
            })
        }
    }
}

fn parse_size(line: &str) -> Result<u64, CheckpointError> {
    let invalid = |reason| CheckpointError::InvalidSize {
        found: excerpt(line),
        reason,
    };
    if line.is_empty() {
        return Err(CheckpointError::EmptyLine { line: 2 });
    }
    if !line.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(invalid("it is not a decimal number"));
    }
    if line.len() > 1 && line.starts_with('0') {
        return Err(invalid("it has a leading zero"));
    }
    line.parse()
        .map_err(|_| invalid("it is larger than 2^64 - 1"))
}

fn parse_root(line: &str) -> Result<Hash, CheckpointError> {
    if line.is_empty() {
        return Err(CheckpointError::EmptyLine { line: 3 });
    }
    let invalid = |reason: String| CheckpointError::InvalidRoot {
        found: excerpt(line),
        reason,
    };
    // The longest valid line is 44 characters; refuse long ones before decoding.
    if line.len() > 4 * HASH_LEN.div_ceil(3) {
        return Err(invalid(format!("it is {} characters long", line.len())));
    }
    // STANDARD requires canonical padding and zero trailing bits, so each
    // root has exactly one accepted encoding.
    let bytes = STANDARD
        .decode(line)
        .map_err(|error| invalid(format!("it is not canonical base64 ({error})")))?;
    Hash::try_from_slice(&bytes)
        .map_err(|_| invalid(format!("it has {} bytes, expected {HASH_LEN}", bytes.len())))
}

/// The message the audit key signs for a note whose text is `body`: the text
/// itself, including its final newline and nothing after it (C2SP
/// signed-note, "Ed25519 signatures"). rkmd hands exactly these bytes to the
/// HSM.
pub fn signed_message(body: &str) -> &[u8] {
    body.as_bytes()
}

/// Formats a signed note with one signature line (C2SP signed-note,
/// "Format"): `body`, a blank line, `— <key name> <base64(key id ‖ signature)>`.
///
/// # Errors
///
/// [`CheckpointError::NoteTooLarge`], [`CheckpointError::ControlCharacter`] or
/// [`CheckpointError::NotNewlineTerminated`] for a body that could not be
/// parsed back, and [`CheckpointError::InvalidKeyName`] for a bad key name.
pub fn format_signed_note(
    body: &str,
    key_name: &str,
    key_id: [u8; 4],
    signature: &[u8; 64],
) -> Result<String, CheckpointError> {
    check_untrusted_text(body)?;
    if !body.ends_with('\n') {
        return Err(CheckpointError::NotNewlineTerminated);
    }
    check_key_name(key_name)?;
    let mut blob = Vec::with_capacity(4 + ED25519_SIGNATURE_LEN);
    blob.extend_from_slice(&key_id);
    blob.extend_from_slice(signature);
    Ok(format!(
        "{body}\n{SIGNATURE_LINE_PREFIX}{key_name} {}\n",
        STANDARD.encode(blob)
    ))
}
