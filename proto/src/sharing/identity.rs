//! The custodian identity: an Ed25519 signing key (approvals, receipts) and an
//! age X25519 identity (share envelopes), kept in one passphrase-protected
//! identity file (age scrypt). `rkm custodian init` creates it, every custodian
//! command opens it; only its public half, the [`CustodianCard`], leaves the
//! custodian's machine.

use std::fmt;
use std::io::{Read, Write};
use std::str::FromStr;

use ed25519_dalek::{Signer, SigningKey};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::encoding::wire::Reader;
use crate::records::custodian_card::{CardError, CustodianCard, validate_custodian_name};

/// Magic bytes that open the decrypted identity payload.
const IDENTITY_MAGIC: &[u8; 8] = b"RKMIDENT";

/// Version of the identity payload.
pub const IDENTITY_VERSION: u8 = 1;

/// Largest identity file accepted (it is a few hundred bytes).
pub const MAX_IDENTITY_FILE_LEN: usize = 64 * 1024;

/// Largest decrypted payload accepted.
const MAX_PAYLOAD_LEN: usize = 1024;

/// Lowest and highest scrypt work factor (log2 N) accepted by
/// [`CustodianIdentity::encrypt_with_work_factor`].
pub const WORK_FACTOR_RANGE: std::ops::RangeInclusive<u8> = 1..=30;

/// Human-readable part of an age X25519 secret key (Bech32, BIP 173).
const AGE_SECRET_KEY_HRP: &str = "age-secret-key-";

/// The first lines of a version 2 payload (a standard age identity file).
const TEXT_HEADER: &str = "# rkm custodian identity, version 2\n";
const TEXT_EXPLANATION: &str =
    "# A standard age identity file: `age -d -i FILE share.age` opens your shares.\n";
const NAME_PREFIX: &str = "# rkm-name: ";
const SEED_PREFIX: &str = "# rkm-ed25519-seed: ";

/// Why an identity could not be made, sealed or opened. Never carries key
/// material or the passphrase.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The custodian name breaks the naming rule.
    #[error(transparent)]
    InvalidName(#[from] CardError),
    /// An empty passphrase was given.
    #[error("the passphrase is empty; choose one that only you know")]
    EmptyPassphrase,
    /// A scrypt work factor outside [`WORK_FACTOR_RANGE`].
    #[error("scrypt work factor {log_n} is outside 1..=30")]
    InvalidWorkFactor {
        /// The value given.
        log_n: u8,
    },
    /// The input is not an age-encrypted file.
    #[error("this is not an rkm identity file: {reason}")]
    NotAnIdentityFile {
        /// What is wrong.
        reason: &'static str,
    },
    /// The file is age-encrypted, but to a key, not a passphrase.
    #[error("this file is not protected by a passphrase, so it is not an rkm identity file")]
    NotPassphraseProtected,
    /// The passphrase does not decrypt the file.
    #[error("the passphrase does not open this identity file")]
    WrongPassphrase,
    /// The file asks for more scrypt work than this machine accepts.
    #[error(
        "the identity file needs scrypt work factor {required}, more than this machine accepts ({max}); open it on a faster machine or re-create it"
    )]
    WorkFactorTooHigh {
        /// Work factor stated by the file.
        required: u8,
        /// Highest this machine accepts.
        max: u8,
    },
    /// The file opened with the passphrase but its contents are damaged,
    /// altered, or not an identity.
    #[error("the identity file is damaged or was altered: {reason}")]
    Damaged {
        /// What is wrong.
        reason: &'static str,
    },
    /// An identity payload of a version this build does not know.
    #[error("identity file has version {found}; this rkm reads version {IDENTITY_VERSION}")]
    UnsupportedVersion {
        /// The version found.
        found: u8,
    },
    /// age could not encrypt the file.
    #[error("could not encrypt the identity file: {0}")]
    Encrypt(String),
}

/// A custodian's secret keys and name.
///
/// # Security
///
/// Both keys are wiped on drop (`ed25519-dalek`'s `zeroize` feature and
/// `x25519-dalek`'s `StaticSecret`). No `Clone`; `Debug` prints only the name
/// and the public fingerprint.
pub struct CustodianIdentity {
    name: String,
    signing: SigningKey,
    age: age::x25519::Identity,
}

impl CustodianIdentity {
    /// Derives an identity from 64 bytes of caller randomness (the client
    /// passes fresh OS randomness): bytes 0..32 are the Ed25519 seed
    /// (RFC 8032 §5.1.5), bytes 32..64 the X25519 secret of the age identity.
    /// The same inputs give the same identity.
    ///
    /// # Errors
    ///
    /// [`IdentityError::InvalidName`].
    ///
    /// # Security
    ///
    /// `seed` is the whole secret; the caller wipes it. The age secret is
    /// passed to `age` as its Bech32 string (age has no from-bytes API), in a
    /// zeroizing buffer.
    pub fn generate(name: &str, seed: &[u8; 64]) -> Result<Self, IdentityError> {
        validate_custodian_name(name)?;
        let (ed_seed, x_secret) = seed.split_at(32);
        let signing = SigningKey::from_bytes(ed_seed.try_into().expect("32-byte half"));
        let age = age_identity_from_bytes(x_secret.try_into().expect("32-byte half"));
        Ok(CustodianIdentity {
            name: name.to_owned(),
            signing,
            age,
        })
    }

    /// The custodian's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public card to hand to the operator.
    pub fn card(&self) -> CustodianCard {
        CustodianCard {
            name: self.name.clone(),
            ed25519_public_key: self.signing.verifying_key().to_bytes(),
            age_recipient: self.age.to_public().to_string(),
        }
    }

    /// Ed25519 signature (RFC 8032) over `message`, which should come from
    /// [`crate::sharing::messages`] so it is domain-separated.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// The age identity that opens envelopes sealed to this custodian.
    pub fn age_identity(&self) -> &age::x25519::Identity {
        &self.age
    }

    /// The identity file: the payload encrypted with age scrypt under
    /// `passphrase`, with age's work factor calibrated to about one second on
    /// this machine.
    ///
    /// # Errors
    ///
    /// [`IdentityError::EmptyPassphrase`], [`IdentityError::Encrypt`].
    pub fn encrypt(&self, passphrase: &SecretString) -> Result<Vec<u8>, IdentityError> {
        self.encrypt_inner(passphrase, None)
    }

    /// [`CustodianIdentity::encrypt`] with scrypt work factor N = 2^`log_n`.
    /// Tests use a low one; production uses [`CustodianIdentity::encrypt`].
    ///
    /// # Errors
    ///
    /// [`IdentityError::InvalidWorkFactor`] outside [`WORK_FACTOR_RANGE`], and
    /// the errors of [`CustodianIdentity::encrypt`].
    pub fn encrypt_with_work_factor(
        &self,
        passphrase: &SecretString,
        log_n: u8,
    ) -> Result<Vec<u8>, IdentityError> {
        if !WORK_FACTOR_RANGE.contains(&log_n) {
            return Err(IdentityError::InvalidWorkFactor { log_n });
        }
        self.encrypt_inner(passphrase, Some(log_n))
    }

    fn encrypt_inner(
        &self,
        passphrase: &SecretString,
        log_n: Option<u8>,
    ) -> Result<Vec<u8>, IdentityError> {
        if passphrase.expose_secret().is_empty() {
            return Err(IdentityError::EmptyPassphrase);
        }
        let mut recipient = age::scrypt::Recipient::new(passphrase.clone());
        if let Some(log_n) = log_n {
            recipient.set_work_factor(log_n);
        }
        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                .map_err(|e| IdentityError::Encrypt(e.to_string()))?;
        let payload = self.payload();
        let mut file = Vec::with_capacity(512);
        let mut writer = encryptor
            .wrap_output(&mut file)
            .map_err(|e| IdentityError::Encrypt(e.to_string()))?;
        writer
            .write_all(&payload)
            .and_then(|()| writer.finish().map(|_| ()))
            .map_err(|e| IdentityError::Encrypt(e.to_string()))?;
        Ok(file)
    }

    /// Opens an identity file with `passphrase`.
    ///
    /// # Errors
    ///
    /// [`IdentityError::NotAnIdentityFile`],
    /// [`IdentityError::NotPassphraseProtected`],
    /// [`IdentityError::WrongPassphrase`] (also what a damaged passphrase
    /// stanza looks like), [`IdentityError::WorkFactorTooHigh`],
    /// [`IdentityError::Damaged`], [`IdentityError::UnsupportedVersion`],
    /// [`IdentityError::InvalidName`].
    pub fn decrypt(file: &[u8], passphrase: &SecretString) -> Result<Self, IdentityError> {
        if file.len() > MAX_IDENTITY_FILE_LEN {
            return Err(IdentityError::NotAnIdentityFile {
                reason: "it is larger than 64 KiB",
            });
        }
        let decryptor = age::Decryptor::new_buffered(file).map_err(|e| match e {
            age::DecryptError::UnknownFormat => IdentityError::NotAnIdentityFile {
                reason: "it is in an unknown age format version",
            },
            _ => IdentityError::NotAnIdentityFile {
                reason: "it is not an age-encrypted file",
            },
        })?;
        if !decryptor.is_scrypt() {
            return Err(IdentityError::NotPassphraseProtected);
        }
        let identity = age::scrypt::Identity::new(passphrase.clone());
        let reader = decryptor
            .decrypt(std::iter::once(&identity as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::DecryptionFailed | age::DecryptError::KeyDecryptionFailed => {
                    IdentityError::WrongPassphrase
                }
                age::DecryptError::ExcessiveWork { required, target } => {
                    IdentityError::WorkFactorTooHigh {
                        required,
                        max: target.saturating_add(4),
                    }
                }
                age::DecryptError::NoMatchingKeys => IdentityError::NotPassphraseProtected,
                _ => IdentityError::Damaged {
                    reason: "its header does not authenticate",
                },
            })?;
        let mut payload = Zeroizing::new(Vec::with_capacity(MAX_PAYLOAD_LEN + 1));
        reader
            .take(MAX_PAYLOAD_LEN as u64 + 1)
            .read_to_end(&mut payload)
            .map_err(|_| IdentityError::Damaged {
                reason: "its contents do not authenticate",
            })?;
        if payload.len() > MAX_PAYLOAD_LEN {
            return Err(IdentityError::Damaged {
                reason: "its contents are too large",
            });
        }
        Self::from_payload(&payload)
    }

    /// The version 2 payload: a standard age identity file, so that stock
    /// `age -d -i FILE share.age` opens this custodian's shares; rkm's name
    /// and Ed25519 seed ride along as comment lines (age skips them). Built in
    /// a zeroizing buffer sized up front so it never reallocates.
    fn payload(&self) -> Zeroizing<Vec<u8>> {
        let age_secret = self.age.to_string();
        let mut out = Zeroizing::new(Vec::with_capacity(MAX_PAYLOAD_LEN));
        out.extend_from_slice(TEXT_HEADER.as_bytes());
        out.extend_from_slice(TEXT_EXPLANATION.as_bytes());
        out.extend_from_slice(NAME_PREFIX.as_bytes());
        out.extend_from_slice(self.name.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(SEED_PREFIX.as_bytes());
        let seed_hex = Zeroizing::new(hex::encode(self.signing.as_bytes()));
        out.extend_from_slice(seed_hex.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(age_secret.expose_secret().as_bytes());
        out.push(b'\n');
        out
    }

    /// Reads the version 2 payload exactly as [`CustodianIdentity::payload`]
    /// writes it: five lines, in order, nothing else.
    fn from_text_payload(payload: &[u8]) -> Result<Self, IdentityError> {
        let damaged = |reason| IdentityError::Damaged { reason };
        let text = std::str::from_utf8(payload).map_err(|_| damaged("it is not UTF-8 text"))?;
        let rest = text
            .strip_prefix(TEXT_HEADER)
            .and_then(|rest| rest.strip_prefix(TEXT_EXPLANATION))
            .ok_or(damaged("it does not start with the rkm identity header"))?;
        let rest = rest
            .strip_prefix(NAME_PREFIX)
            .ok_or(damaged("it has no rkm-name line"))?;
        let (name, rest) = rest.split_once('\n').ok_or(damaged("it is truncated"))?;
        validate_custodian_name(name)?;
        let rest = rest
            .strip_prefix(SEED_PREFIX)
            .ok_or(damaged("it has no rkm-ed25519-seed line"))?;
        let (seed_hex, rest) = rest.split_once('\n').ok_or(damaged("it is truncated"))?;
        let seed_bytes = Zeroizing::new(
            crate::encoding::hex::decode_lower_hex(seed_hex)
                .ok_or(damaged("its signing key is not lowercase hex"))?,
        );
        let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
            seed_bytes
                .as_slice()
                .try_into()
                .map_err(|_| damaged("its signing key is not 32 bytes"))?,
        );
        let (age_secret, rest) = rest.split_once('\n').ok_or(damaged("it is truncated"))?;
        if !rest.is_empty() {
            return Err(damaged("it has trailing bytes"));
        }
        Self::from_parts(name, &seed, age_secret)
    }

    /// The identity the fields of either payload version describe.
    fn from_parts(name: &str, seed: &[u8; 32], age_secret: &str) -> Result<Self, IdentityError> {
        let age =
            age::x25519::Identity::from_str(age_secret).map_err(|_| IdentityError::Damaged {
                reason: "its age key is not an age X25519 secret key",
            })?;
        Ok(CustodianIdentity {
            name: name.to_owned(),
            signing: SigningKey::from_bytes(seed),
            age,
        })
    }

    /// The version 1 payload (files made before version 2, still read):
    /// magic ‖ version ‖ name (u16 length ‖ UTF-8) ‖ Ed25519 seed\[32\] ‖
    /// age secret key (u16 length ‖ ASCII).
    #[cfg(test)]
    fn payload_v1(&self) -> Zeroizing<Vec<u8>> {
        let age_secret = self.age.to_string();
        let mut out = crate::encoding::wire::Writer::with_capacity(MAX_PAYLOAD_LEN);
        out.bytes(IDENTITY_MAGIC);
        out.u8(IDENTITY_VERSION);
        out.str16(&self.name);
        out.bytes(self.signing.as_bytes());
        out.str16(age_secret.expose_secret());
        out.finish()
    }

    fn from_payload(payload: &[u8]) -> Result<Self, IdentityError> {
        if payload.starts_with(b"#") {
            return Self::from_text_payload(payload);
        }
        let damaged = |reason| IdentityError::Damaged { reason };
        let mut reader = Reader::new(payload);
        if reader.array::<8>() != Some(*IDENTITY_MAGIC) {
            return Err(damaged("it does not hold an rkm identity"));
        }
        let version = reader.u8().ok_or(damaged("it is truncated"))?;
        if version != IDENTITY_VERSION {
            return Err(IdentityError::UnsupportedVersion { found: version });
        }
        let name = reader
            .str16()
            .ok_or(damaged("its name is truncated or not UTF-8"))?;
        validate_custodian_name(name)?;
        let seed = Zeroizing::new(
            reader
                .array::<32>()
                .ok_or(damaged("its signing key is truncated"))?,
        );
        let age_secret = reader
            .str16()
            .ok_or(damaged("its age key is truncated or not text"))?;
        if !reader.is_empty() {
            return Err(damaged("it has trailing bytes"));
        }
        Self::from_parts(name, &seed, age_secret)
    }
}

impl fmt::Debug for CustodianIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CustodianIdentity")
            .field("name", &self.name)
            .field("fingerprint", &self.card().fingerprint())
            .field("secret_keys", &"[REDACTED]")
            .finish()
    }
}

/// The age X25519 identity whose secret scalar bytes are `secret`: encodes
/// them as `AGE-SECRET-KEY-1…` (Bech32, BIP 173; 74 characters, within its
/// 90-character limit, so plain Bech32 equals age's long-form checksum) into
/// a zeroizing buffer sized so it never reallocates, and parses that.
fn age_identity_from_bytes(secret: &[u8; 32]) -> age::x25519::Identity {
    let hrp = bech32::Hrp::parse(AGE_SECRET_KEY_HRP).expect("valid HRP");
    let mut text = Zeroizing::new(String::with_capacity(128));
    bech32::encode_upper_to_fmt::<bech32::Bech32, String>(&mut text, hrp, secret)
        .expect("a 32-byte key fits in Bech32");
    age::x25519::Identity::from_str(&text).expect("a freshly encoded age secret key parses")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test vector of age's own `x25519` module (age-0.12 `TEST_SK`/`TEST_PK`).
    const TEST_SK: &str =
        "AGE-SECRET-KEY-1GQ9778VQXMMJVE8SK7J6VT8UJ4HDQAJUVSFCWCM02D8GEWQ72PVQ2Y5J33";
    const TEST_PK: &str = "age1t7rxyev2z3rw82stdlrrepyc39nvn86l5078zqkf5uasdy86jp6svpy7pa";

    #[test]
    fn age_identity_from_bytes_matches_age_parser() {
        let parsed = age::x25519::Identity::from_str(TEST_SK).unwrap();
        assert_eq!(parsed.to_public().to_string(), TEST_PK);
        // Recover the raw bytes through bech32 and rebuild the identity.
        let (_, bytes) = bech32::decode(TEST_SK).unwrap();
        let bytes: [u8; 32] = bytes.try_into().unwrap();
        let rebuilt = age_identity_from_bytes(&bytes);
        assert_eq!(rebuilt.to_string().expose_secret(), TEST_SK);
        assert_eq!(rebuilt.to_public().to_string(), TEST_PK);
    }

    #[test]
    fn payload_round_trips() {
        let identity = CustodianIdentity::generate("alice", &[5; 64]).unwrap();
        let payload = identity.payload();
        let back = CustodianIdentity::from_payload(&payload).unwrap();
        assert_eq!(back.card(), identity.card());
        assert_eq!(back.sign(b"m"), identity.sign(b"m"));
    }

    #[test]
    fn version_2_payload_is_an_age_identity_file_age_itself_reads() {
        let identity = CustodianIdentity::generate("alice", &[5; 64]).unwrap();
        let payload = identity.payload();
        let text = std::str::from_utf8(&payload).unwrap();
        let parsed = age::IdentityFile::from_buffer(text.as_bytes())
            .unwrap()
            .into_identities()
            .unwrap();
        assert_eq!(parsed.len(), 1, "one identity, the rest comments: {text}");
        for cut in 0..payload.len() {
            assert!(
                CustodianIdentity::from_payload(&payload[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = payload.to_vec();
        longer.extend_from_slice(b"# more\n");
        assert!(CustodianIdentity::from_payload(&longer).is_err());
    }

    #[test]
    fn version_1_payloads_are_still_read() {
        let identity = CustodianIdentity::generate("alice", &[5; 64]).unwrap();
        let back = CustodianIdentity::from_payload(&identity.payload_v1()).unwrap();
        assert_eq!(back.card(), identity.card());
        assert_eq!(back.sign(b"m"), identity.sign(b"m"));
    }

    #[test]
    fn payload_with_trailing_or_missing_bytes_is_damaged() {
        let identity = CustodianIdentity::generate("alice", &[5; 64]).unwrap();
        let payload = identity.payload_v1();
        let mut longer = payload.to_vec();
        longer.push(0);
        assert!(matches!(
            CustodianIdentity::from_payload(&longer),
            Err(IdentityError::Damaged { .. })
        ));
        for cut in 0..payload.len() {
            assert!(CustodianIdentity::from_payload(&payload[..cut]).is_err());
        }
        let mut newer = payload.to_vec();
        newer[8] = 2;
        assert!(matches!(
            CustodianIdentity::from_payload(&newer),
            Err(IdentityError::UnsupportedVersion { found: 2 })
        ));
    }
}
