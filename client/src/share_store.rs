//! A custodian's share directory: one folder per key holding the share
//! envelope (still encrypted to the custodian's identity) and the signed key
//! record, plus the audit keys this directory trusts. Files are written whole
//! (temporary files, then a rename), readable by the owner only.
//!
//! ```text
//! DIR/trusted-audit-keys.json     {"rkm_trusted_audit_keys":1,"keys":{"<origin>":"<verifier key>"}}
//! DIR/<key_id>/share.age          the envelope exactly as rkmd sent it
//! DIR/<key_id>/key-record.json    the signed key record file
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use rkm_proto::checkpoint::VerifierKey;
use rkm_proto::commitment::PossessionKey;
use rkm_proto::envelope::{self, EnvelopeContents};
use rkm_proto::identity::CustodianIdentity;
use rkm_proto::key_record::{KeyRecord, SignedKeyRecord};
use serde::{Deserialize, Serialize};

use crate::atomic_file::write_file_atomically;
use crate::exit::VerificationFailed;
use crate::passphrase::{PassphraseArgs, open_identity};
use crate::trust::{key_fingerprint, stored_record_audit_key};

/// The envelope file in a key's folder.
pub const SHARE_FILE: &str = "share.age";
/// The signed key record file in a key's folder.
pub const KEY_RECORD_FILE: &str = "key-record.json";
/// The file of pinned audit keys, one per log origin.
pub const TRUSTED_KEYS_FILE: &str = "trusted-audit-keys.json";

/// Largest file read back from the share directory.
const MAX_FILE: u64 = 2 * 1024 * 1024;

/// Where a custodian's shares are kept.
#[derive(Debug, Clone, clap::Args)]
pub struct ShareDirArgs {
    /// The share directory [default: $RKM_SHARE_DIR, else
    /// $XDG_DATA_HOME/rkm/shares, else ~/.local/share/rkm/shares].
    #[arg(long, env = "RKM_SHARE_DIR", value_name = "DIR")]
    pub share_dir: Option<PathBuf>,
}

impl ShareDirArgs {
    /// The share directory (not created).
    ///
    /// # Errors
    /// No directory was given and neither `XDG_DATA_HOME` nor `HOME` is set.
    pub fn resolve(&self) -> anyhow::Result<ShareDir> {
        if let Some(dir) = &self.share_dir {
            return Ok(ShareDir(dir.clone()));
        }
        let data_home = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .filter(|path| path.is_absolute())
            .or_else(|| {
                std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share"))
            })
            .context(
                "no share directory: give --share-dir DIR or set RKM_SHARE_DIR (HOME is not set)",
            )?;
        Ok(ShareDir(data_home.join("rkm").join("shares")))
    }
}

/// A custodian's own files, as the commands that open their share name them.
#[derive(Debug, Clone, clap::Args)]
pub struct CustodianFiles {
    /// Your identity file.
    #[arg(long, value_name = "FILE")]
    pub identity: PathBuf,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
    #[command(flatten)]
    pub share_dir: ShareDirArgs,
}

impl CustodianFiles {
    /// The identity, opened with its passphrase.
    ///
    /// # Errors
    /// As [`open_identity`].
    pub fn open_identity(&self) -> anyhow::Result<CustodianIdentity> {
        open_identity(&self.identity, &self.passphrase)
    }
}

/// A share directory.
#[derive(Debug, Clone)]
pub struct ShareDir(PathBuf);

/// What a key's folder holds, as read back.
#[derive(Debug)]
pub struct StoredShare {
    pub key_id: String,
    pub folder: PathBuf,
    /// The envelope ciphertext (encrypted to the identity).
    pub envelope: Vec<u8>,
    /// The signed key record file.
    pub key_record: String,
}

/// Whether [`ShareDir::store`] wrote the files or found them already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Written,
    AlreadyThere,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TrustedKeys {
    rkm_trusted_audit_keys: u32,
    keys: BTreeMap<String, String>,
}

/// Checks that a key id from rkmd or the user is safe as a folder name.
///
/// # Errors
/// It is empty, long, or holds characters other than `[a-z0-9-]`.
pub fn check_key_id(key_id: &str) -> anyhow::Result<()> {
    let valid = !key_id.is_empty()
        && key_id.len() <= 64
        && key_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !key_id.starts_with('-');
    if !valid {
        bail!("{key_id:?} is not a valid key id");
    }
    Ok(())
}

impl ShareDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The folder of one key.
    pub fn key_folder(&self, key_id: &str) -> PathBuf {
        self.0.join(key_id)
    }

    fn create(&self) -> anyhow::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.0)
            .with_context(|| format!("cannot create the share directory {}", self.0.display()))
    }

    /// The audit key this directory pins for `origin`, if any.
    ///
    /// # Errors
    /// The pin file exists but cannot be read or holds a malformed key.
    pub fn pinned_audit_key(&self, origin: &str) -> anyhow::Result<Option<VerifierKey>> {
        let trusted = self.trusted_keys()?;
        trusted
            .keys
            .get(origin)
            .map(|text| {
                VerifierKey::parse(text).map_err(|error| {
                    anyhow::anyhow!(
                        "{} pins a malformed audit key for {origin:?}: {error}",
                        self.0.join(TRUSTED_KEYS_FILE).display()
                    )
                })
            })
            .transpose()
    }

    fn trusted_keys(&self) -> anyhow::Result<TrustedKeys> {
        let path = self.0.join(TRUSTED_KEYS_FILE);
        if !path.exists() {
            return Ok(TrustedKeys::default());
        }
        let text = read_limited(&path)?;
        let trusted: TrustedKeys = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a trusted audit key file", path.display()))?;
        if trusted.rkm_trusted_audit_keys != 1 {
            bail!(
                "{} has version {}; this rkm reads version 1",
                path.display(),
                trusted.rkm_trusted_audit_keys
            );
        }
        Ok(trusted)
    }

    /// Pins `key` for its origin unless a key is already pinned for it.
    ///
    /// # Errors
    /// The pin file cannot be read or written, or pins another key for the
    /// origin.
    pub fn pin_audit_key(&self, key: &VerifierKey) -> anyhow::Result<()> {
        self.create()?;
        let mut trusted = self.trusted_keys()?;
        match trusted.keys.get(key.name()) {
            Some(existing) if *existing == key.to_string() => return Ok(()),
            Some(existing) => bail!(
                "{} already pins audit key {existing} for {:?}, not {key}",
                self.0.join(TRUSTED_KEYS_FILE).display(),
                key.name()
            ),
            None => {}
        }
        trusted.rkm_trusted_audit_keys = 1;
        trusted.keys.insert(key.name().to_owned(), key.to_string());
        let mut text = serde_json::to_string_pretty(&trusted)?;
        text.push('\n');
        write_file_atomically(&self.0, TRUSTED_KEYS_FILE, text.as_bytes())
    }

    /// Stores a verified share envelope and its key record in
    /// `DIR/<key_id>/`: both files are written to a temporary folder which is
    /// then renamed into place, so the folder is either whole or absent. If the
    /// folder already holds exactly these files, nothing is written.
    ///
    /// # Errors
    /// The folder holds different files, or the files cannot be written.
    pub fn store(&self, key_id: &str, envelope: &[u8], key_record: &str) -> anyhow::Result<Stored> {
        check_key_id(key_id)?;
        self.create()?;
        let folder = self.key_folder(key_id);
        if folder.exists() {
            let existing = self.load_folder(key_id)?;
            if existing.envelope == envelope && existing.key_record == key_record {
                return Ok(Stored::AlreadyThere);
            }
            bail!(
                "{} already holds a different share for key {key_id}; move it away if it is stale, then fetch again",
                folder.display()
            );
        }
        let incoming = tempfile::Builder::new()
            .prefix(".incoming-")
            .tempdir_in(&self.0)
            .with_context(|| format!("cannot write into {}", self.0.display()))?;
        fs::set_permissions(incoming.path(), fs::Permissions::from_mode(0o700))?;
        write_new_file(&incoming.path().join(SHARE_FILE), envelope)?;
        write_new_file(
            &incoming.path().join(KEY_RECORD_FILE),
            key_record.as_bytes(),
        )?;
        fs::File::open(incoming.path())?.sync_all()?;
        let incoming = incoming.keep();
        if let Err(error) = fs::rename(&incoming, &folder) {
            let _ = fs::remove_dir_all(&incoming);
            return Err(error)
                .with_context(|| format!("cannot move the share into {}", folder.display()));
        }
        fs::File::open(&self.0)?.sync_all()?;
        Ok(Stored::Written)
    }

    /// Reads back the folder of a key given by key id or label.
    ///
    /// # Errors
    /// No folder matches, several do, or the files cannot be read.
    pub fn load(&self, key: &str) -> anyhow::Result<StoredShare> {
        if check_key_id(key).is_ok() && self.key_folder(key).is_dir() {
            return self.load_folder(key);
        }
        if !self.0.is_dir() {
            bail!(
                "no share for key {key:?}: the share directory {} does not exist; `rkm share fetch --key {key}` fetches your share (or give the right --share-dir)",
                self.0.display()
            );
        }
        let mut matches = Vec::new();
        let mut damaged = Vec::new();
        let entries = fs::read_dir(&self.0).with_context(|| {
            format!(
                "no share for key {key:?}: cannot read the share directory {}",
                self.0.display()
            )
        })?;
        for entry in entries {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.starts_with('.') || check_key_id(&name).is_err() || !entry.path().is_dir() {
                continue;
            }
            let record_file = entry.path().join(KEY_RECORD_FILE);
            let label = read_limited(&record_file).and_then(|text| {
                let text = std::str::from_utf8(&text)
                    .map_err(|_| anyhow::anyhow!("it is not UTF-8 text"))?;
                let signed = SignedKeyRecord::from_file(text)?;
                Ok(KeyRecord::decode(&signed.record)?.label)
            });
            match label {
                Ok(label) if label == key => matches.push(name),
                Ok(_) => {}
                Err(error) => damaged.push(format!("{} ({error:#})", record_file.display())),
            }
        }
        match matches.as_slice() {
            // A damaged record may be the one asked for: say so rather
            // than claim there is no share.
            [] if !damaged.is_empty() => Err(VerificationFailed::error(format!(
                "no readable share labelled {key:?} in {}, and these key records are damaged: {}. Fetch the share again (`rkm share fetch --key {key}`) or restore the folder from your backup; a key id names a folder directly",
                self.0.display(),
                damaged.join("; ")
            ))),
            [] => bail!(
                "no share for key {key:?} in {}; `rkm share fetch --key {key}` fetches it",
                self.0.display()
            ),
            [key_id] => self.load_folder(key_id),
            several => bail!(
                "several shares in {} are labelled {key:?} ({}); name the key by its id",
                self.0.display(),
                several.join(", ")
            ),
        }
    }

    fn load_folder(&self, key_id: &str) -> anyhow::Result<StoredShare> {
        let folder = self.key_folder(key_id);
        let envelope = read_limited(&folder.join(SHARE_FILE))?;
        let key_record =
            String::from_utf8(read_limited(&folder.join(KEY_RECORD_FILE))?).map_err(|_| {
                anyhow::anyhow!(
                    "{} is not UTF-8 text",
                    folder.join(KEY_RECORD_FILE).display()
                )
            })?;
        Ok(StoredShare {
            key_id: key_id.to_owned(),
            folder,
            envelope,
            key_record,
        })
    }
}

fn read_limited(path: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    let file = fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() as u64 > MAX_FILE {
        bail!("{} is larger than {MAX_FILE} bytes", path.display());
    }
    Ok(bytes)
}

/// Creates `path` (which must not exist) with mode 0600 and writes `bytes`.
fn write_new_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// A share that passed every check against its key record, and what was
/// checked, in the words `share fetch` and `share verify` print.
#[derive(Debug)]
pub struct VerifiedShare {
    /// The key record, its signature verified with `audit_key`.
    pub record: KeyRecord,
    pub audit_key: VerifierKey,
    /// The share's x, as the record gives it.
    pub x: u8,
    /// The share's commitment, as the record gives it.
    pub commitment: [u8; 32],
    /// The opened envelope.
    ///
    /// # Security
    /// Holds the share; drop it as soon as it has been sealed or its
    /// possession key derived (it zeroizes on drop).
    pub contents: EnvelopeContents,
    pub checks: Vec<String>,
}

fn verification(what: &str, error: impl std::fmt::Display) -> anyhow::Error {
    VerificationFailed::error(format!("{what}: {error}"))
}

fn parse_key_record(key_record_file: &str) -> anyhow::Result<SignedKeyRecord> {
    SignedKeyRecord::from_file(key_record_file)
        .map_err(|error| verification("the key record is not valid", error))
}

impl VerifiedShare {
    /// Every check of a share against its key record: the record's signature
    /// with `audit_key`, that it is for `key_id`, that the envelope opens with
    /// `identity`, and that the share is the one the record lists for this
    /// identity (x, threshold, commitment). Nothing here touches the disk or
    /// the network.
    ///
    /// # Errors
    /// Any check fails ([`VerificationFailed`]).
    pub fn check(
        envelope_bytes: &[u8],
        key_record_file: &str,
        identity: &CustodianIdentity,
        audit_key: &VerifierKey,
        key_id: &str,
    ) -> anyhow::Result<Self> {
        Self::check_signed(
            envelope_bytes,
            parse_key_record(key_record_file)?,
            identity,
            audit_key,
            key_id,
        )
    }

    fn check_signed(
        envelope_bytes: &[u8],
        signed: SignedKeyRecord,
        identity: &CustodianIdentity,
        audit_key: &VerifierKey,
        key_id: &str,
    ) -> anyhow::Result<Self> {
        let record = signed
            .verify(audit_key)
            .map_err(|error| verification("the key record does not verify", error))?;
        let mut checks = vec![format!(
            "key record signature verifies with audit key {audit_key} (fingerprint {})",
            key_fingerprint(audit_key)
        )];
        if record.key_id != key_id {
            return Err(VerificationFailed::error(format!(
                "the key record is for key {}, not {key_id}",
                record.key_id
            )));
        }
        checks.push(format!(
            "key record is for key {} ({}), threshold {} of {}",
            record.key_id,
            record.label,
            record.threshold,
            record.custodians.len()
        ));
        let contents = envelope::open(envelope_bytes, identity.age_identity())
            .map_err(|error| verification("the share envelope does not open", error))?;
        checks.push(format!(
            "envelope opens with your identity ({})",
            identity.name()
        ));
        let entry = contents
            .verify_against_record(&record, &identity.card())
            .map_err(|error| verification("the share does not match the key record", error))?;
        let (x, commitment) = (entry.x, entry.commitment);
        checks.push(format!(
            "key record lists {} with this identity's Ed25519 key and age recipient",
            identity.name()
        ));
        checks.push(format!("share x = {x}, as the key record gives"));
        checks.push(format!(
            "envelope threshold {} = key record threshold",
            contents.threshold
        ));
        checks.push(format!(
            "share matches its commitment {}",
            hex::encode(commitment)
        ));
        Ok(VerifiedShare {
            record,
            audit_key: audit_key.clone(),
            x,
            commitment,
            contents,
            checks,
        })
    }

    /// The key that proves possession of this share in receipts and
    /// attestations, derived from the share; the share itself is dropped.
    pub fn into_possession_key(self) -> (VerifiedFacts, PossessionKey) {
        let possession_key = PossessionKey::derive(
            &self.record.key_id,
            &self.contents.share,
            &self.contents.salt,
        );
        let facts = VerifiedFacts {
            record: self.record,
            audit_key: self.audit_key,
            x: self.x,
            commitment: self.commitment,
            checks: self.checks,
        };
        (facts, possession_key)
    }
}

/// What was verified of a share, without the share.
#[derive(Debug)]
pub struct VerifiedFacts {
    pub record: KeyRecord,
    pub audit_key: VerifierKey,
    pub x: u8,
    pub commitment: [u8; 32],
    pub checks: Vec<String>,
}

impl StoredShare {
    /// Verifies this stored share (see [`VerifiedShare::check`]) with the
    /// audit key [`stored_record_audit_key`] picks from `given` and the pins
    /// of `dir`.
    ///
    /// # Errors
    /// The record is not valid or does not verify, the share does not match
    /// it, or `given` contradicts a pin ([`VerificationFailed`]); no audit
    /// key is given or pinned.
    pub fn open_verified(
        &self,
        dir: &ShareDir,
        identity: &CustodianIdentity,
        given_audit_key: Option<&VerifierKey>,
    ) -> anyhow::Result<VerifiedShare> {
        let signed = parse_key_record(&self.key_record)?;
        let audit_key = stored_record_audit_key(given_audit_key, dir, &signed)?;
        VerifiedShare::check_signed(&self.envelope, signed, identity, &audit_key, &self.key_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_key_id_refuses_paths() {
        assert!(check_key_id("rk-0123456789abcdef").is_ok());
        for bad in ["", "..", "../x", "a/b", "-rf", "RK-1", &"a".repeat(65)] {
            assert!(check_key_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn store_writes_owner_only_files_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let shares = ShareDir(dir.path().join("shares"));
        assert_eq!(
            shares.store("rk-00", b"envelope", "{}").unwrap(),
            Stored::Written
        );
        let folder = shares.key_folder("rk-00");
        for name in [SHARE_FILE, KEY_RECORD_FILE] {
            let mode = fs::metadata(folder.join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        let mode = fs::metadata(&folder).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(
            shares.store("rk-00", b"envelope", "{}").unwrap(),
            Stored::AlreadyThere
        );
        let error = shares.store("rk-00", b"other", "{}").unwrap_err();
        assert!(error.to_string().contains("different share"), "{error}");
        let leftovers: Vec<_> = fs::read_dir(shares.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("rk-00")]);
    }
}
