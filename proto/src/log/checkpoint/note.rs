//! C2SP signed notes around a checkpoint: verifier keys, signature lines,
//! and opening an untrusted note with a trusted key.

use super::*;

/// A trusted Ed25519 signed-note key: its name, its key ID and its public key,
/// read from the verifier key string `<name>+<key id hex>+<base64(0x01 ‖ key)>`
/// that auditors are given (see [`crate::encoding::fingerprint::signed_note_verifier_key`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    key_id: [u8; 4],
    public_key: VerifyingKey,
}

impl VerifierKey {
    /// The verifier key for `name` and a raw Ed25519 public key, as rkmd
    /// builds it from the HSM's audit key.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::InvalidKeyName`] for a bad name and
    /// [`CheckpointError::InvalidPublicKey`] for bytes that are not a point of
    /// prime order.
    pub fn new(name: &str, public_key: &[u8; 32]) -> Result<Self, CheckpointError> {
        check_key_name(name)?;
        let public_key = VerifyingKey::from_bytes(public_key).map_err(|_| {
            CheckpointError::InvalidPublicKey {
                reason: "it does not decode to a curve point",
            }
        })?;
        if public_key.is_weak() {
            return Err(CheckpointError::InvalidPublicKey {
                reason: "it is a point of small order",
            });
        }
        Ok(VerifierKey {
            key_id: signed_note_key_id(name, public_key.as_bytes()),
            name: name.to_owned(),
            public_key,
        })
    }

    /// Parses a verifier key string and checks that its key ID is the one its
    /// name and key give (C2SP signed-note, "Signatures").
    ///
    /// # Errors
    ///
    /// [`CheckpointError::MalformedVerifierKey`] for the wrong shape,
    /// [`CheckpointError::InvalidKeyName`],
    /// [`CheckpointError::UnsupportedSignatureType`],
    /// [`CheckpointError::InvalidPublicKey`] and
    /// [`CheckpointError::KeyIdMismatch`].
    pub fn parse(vkey: &str) -> Result<Self, CheckpointError> {
        let malformed = |reason| CheckpointError::MalformedVerifierKey { reason };
        if vkey.len() > 1024 {
            return Err(malformed("it is longer than 1024 bytes"));
        }
        // Names hold no '+' (check_key_name), but base64 does: split twice only,
        // as Go's note.NewVerifier does.
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed("it does not have the three '+'-separated parts"));
        };
        check_key_name(name)?;
        if id_hex.len() != 8 {
            return Err(malformed("the key id is not 8 hex digits"));
        }
        let stated: [u8; 4] = hex::decode(id_hex)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| malformed("the key id is not 8 hex digits"))?;
        let key = STANDARD
            .decode(key_b64)
            .map_err(|_| malformed("the key is not canonical base64"))?;
        let Some((&key_type, key_bytes)) = key.split_first() else {
            return Err(malformed("the key is empty"));
        };
        if key_type != ED25519_SIGNATURE_TYPE {
            return Err(CheckpointError::UnsupportedSignatureType { found: key_type });
        }
        let key_bytes: &[u8; 32] =
            key_bytes
                .try_into()
                .map_err(|_| CheckpointError::InvalidPublicKey {
                    reason: "it is not 32 bytes long",
                })?;
        let verifier = VerifierKey::new(name, key_bytes)?;
        if verifier.key_id != stated {
            return Err(CheckpointError::KeyIdMismatch {
                name: excerpt(name),
                stated: hex::encode(stated),
                computed: hex::encode(verifier.key_id),
            });
        }
        Ok(verifier)
    }

    /// The key name that signature lines carry.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key ID that prefixes each signature.
    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// The raw Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key.to_bytes()
    }

    /// `<name>+<key id hex>`, how errors name the key.
    fn label(&self) -> String {
        format!("{}+{}", self.name, hex::encode(self.key_id))
    }
}

impl fmt::Display for VerifierKey {
    /// The verifier key string, `<name>+<key id hex>+<base64(0x01 ‖ key)>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&signed_note_verifier_key(
            &self.name,
            self.public_key.as_bytes(),
        ))
    }
}

impl FromStr for VerifierKey {
    type Err = CheckpointError;

    fn from_str(vkey: &str) -> Result<Self, Self::Err> {
        VerifierKey::parse(vkey)
    }
}

/// One signature line of a note, not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key name on the line.
    pub key_name: String,
    /// The first four bytes of the decoded signature.
    pub key_id: [u8; 4],
    /// The rest of the decoded signature, algorithm-specific.
    pub signature: Vec<u8>,
}

/// A parsed C2SP signed note whose signatures have not been checked yet. Its
/// text MUST be ignored until [`SignedNote::verify`] succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote {
    text: String,
    signatures: Vec<NoteSignature>,
}

impl SignedNote {
    /// Parses an untrusted note (C2SP signed-note, "Format"). The text ends at
    /// the last blank line; everything after it must be signature lines.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::NoteTooLarge`], [`CheckpointError::ControlCharacter`]
    /// and [`CheckpointError::TooManySignatures`] before any line is parsed;
    /// then [`CheckpointError::NoSignatureBlock`],
    /// [`CheckpointError::NoSignatures`],
    /// [`CheckpointError::NotNewlineTerminated`],
    /// [`CheckpointError::MalformedSignatureLine`] or
    /// [`CheckpointError::InvalidKeyName`].
    pub fn parse(note: &str) -> Result<Self, CheckpointError> {
        check_untrusted_text(note)?;
        let separator = note
            .rfind("\n\n")
            .ok_or(CheckpointError::NoSignatureBlock)?;
        let text = &note[..=separator];
        let block = &note[separator + 2..];
        if block.is_empty() {
            return Err(CheckpointError::NoSignatures);
        }
        let Some(block) = block.strip_suffix('\n') else {
            return Err(CheckpointError::NotNewlineTerminated);
        };
        let count = block.split('\n').count();
        if count > MAX_SIGNATURES {
            return Err(CheckpointError::TooManySignatures {
                found: count,
                max: MAX_SIGNATURES,
            });
        }
        let signatures = block
            .split('\n')
            .enumerate()
            .map(|(index, line)| parse_signature_line(index + 1, line))
            .collect::<Result<_, _>>()?;
        Ok(SignedNote {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The text, unverified.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The signature lines, unverified, in note order.
    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// Verifies the note with one trusted key and returns its text.
    ///
    /// Signatures by other keys (another name or another key ID) are ignored.
    /// Every signature by this key must verify with Ed25519 `verify_strict`
    /// (RFC 8032 §5.1.7, rejecting non-canonical and small-order encodings),
    /// and there must be at least one (C2SP signed-note, "Signatures").
    ///
    /// # Errors
    ///
    /// [`CheckpointError::NoSignatureByKey`] if no line carries this key's
    /// name and ID, [`CheckpointError::BadSignature`] if one that does fails.
    pub fn verify(&self, key: &VerifierKey) -> Result<&str, CheckpointError> {
        let ours: Vec<&NoteSignature> = self
            .signatures
            .iter()
            .filter(|sig| sig.key_name == key.name && sig.key_id == key.key_id)
            .collect();
        if ours.is_empty() {
            return Err(CheckpointError::NoSignatureByKey {
                key: key.label(),
                others: self.signatures.len(),
            });
        }
        for sig in ours {
            let bytes: &[u8; ED25519_SIGNATURE_LEN] =
                sig.signature
                    .as_slice()
                    .try_into()
                    .map_err(|_| CheckpointError::BadSignature {
                        key: key.label(),
                        reason: format!(
                            "it has {} bytes, expected {ED25519_SIGNATURE_LEN}",
                            sig.signature.len()
                        ),
                    })?;
            key.public_key
                .verify_strict(signed_message(&self.text), &Signature::from_bytes(bytes))
                .map_err(|_| CheckpointError::BadSignature {
                    key: key.label(),
                    reason: "Ed25519 verification failed".to_owned(),
                })?;
        }
        Ok(&self.text)
    }
}

pub(super) fn parse_signature_line(
    line: usize,
    text: &str,
) -> Result<NoteSignature, CheckpointError> {
    let malformed = |reason| CheckpointError::MalformedSignatureLine { line, reason };
    let rest = text
        .strip_prefix(SIGNATURE_LINE_PREFIX)
        .ok_or_else(|| malformed("it does not start with an em dash (U+2014) and a space"))?;
    let (key_name, encoded) = rest
        .split_once(' ')
        .ok_or_else(|| malformed("it has no space between key name and signature"))?;
    check_key_name(key_name)?;
    let blob = STANDARD
        .decode(encoded)
        .map_err(|_| malformed("the signature is not canonical base64"))?;
    if blob.len() < 5 {
        return Err(malformed(
            "the signature is shorter than a key id and one byte",
        ));
    }
    let (key_id, signature) = blob.split_at(4);
    Ok(NoteSignature {
        key_name: key_name.to_owned(),
        key_id: key_id.try_into().expect("split at 4"),
        signature: signature.to_vec(),
    })
}

/// Opens an untrusted signed checkpoint: parses the note, verifies it with
/// `key` ([`SignedNote::verify`]) and only then parses its text as a
/// checkpoint body ([`Checkpoint::parse_body`]).
///
/// The caller still compares the origin with [`Checkpoint::check_origin`] and
/// the tree with a consistency proof.
///
/// # Errors
///
/// Any error of [`SignedNote::parse`], [`SignedNote::verify`] and
/// [`Checkpoint::parse_body`], in that order.
pub fn open_signed_checkpoint(
    note: &str,
    key: &VerifierKey,
) -> Result<Checkpoint, CheckpointError> {
    let note = SignedNote::parse(note)?;
    let text = note.verify(key)?;
    Checkpoint::parse_body(text)
}
