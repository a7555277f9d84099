//! Passphrases of custodian identity files: read from a file (`--passphrase-file`
//! or `RKM_PASSPHRASE_FILE`) or typed at a prompt, never taken from an argument
//! value. They are `SecretString`s from the moment they are read.

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use rkm_proto::identity::{CustodianIdentity, IdentityError};
use secrecy::{ExposeSecret as _, SecretString};
use zeroize::Zeroizing;

/// Shortest passphrase accepted for a new identity file, in characters.
pub const MIN_NEW_PASSPHRASE_CHARS: usize = 12;

/// Largest passphrase file read.
const MAX_PASSPHRASE_FILE: u64 = 4096;

/// Where the passphrase of an identity file comes from.
#[derive(Debug, Clone, clap::Args)]
pub struct PassphraseArgs {
    /// Read the identity's passphrase from this file (its first line) instead
    /// of prompting. Passphrases are never given as arguments.
    #[arg(long, env = "RKM_PASSPHRASE_FILE", value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

impl PassphraseArgs {
    /// The passphrase of an existing identity file: from the file, else
    /// prompted once.
    ///
    /// # Errors
    /// The file cannot be read, or there is no file and no terminal to prompt on.
    pub fn existing(&self, identity_file: &Path) -> anyhow::Result<SecretString> {
        match &self.passphrase_file {
            Some(path) => read_passphrase_file(path),
            None => prompt(&format!(
                "Passphrase of identity {}: ",
                identity_file.display()
            )),
        }
    }

    /// The passphrase for a new identity file: from the file, else prompted
    /// twice. Refuses passphrases shorter than [`MIN_NEW_PASSPHRASE_CHARS`].
    ///
    /// # Errors
    /// As [`PassphraseArgs::existing`]; the two entries differ; too short.
    pub fn new_passphrase(&self) -> anyhow::Result<SecretString> {
        let passphrase = match &self.passphrase_file {
            Some(path) => read_passphrase_file(path)?,
            None => {
                let first = prompt("New identity passphrase: ")?;
                let second = prompt("Repeat the passphrase: ")?;
                if first.expose_secret() != second.expose_secret() {
                    bail!("the two passphrases differ; nothing was written");
                }
                first
            }
        };
        let chars = passphrase.expose_secret().chars().count();
        if chars < MIN_NEW_PASSPHRASE_CHARS {
            bail!(
                "the passphrase has {chars} characters; use at least {MIN_NEW_PASSPHRASE_CHARS} (a few random words are good)"
            );
        }
        Ok(passphrase)
    }
}

/// Reads a passphrase file: its first line, without the line ending.
///
/// # Errors
/// The file cannot be read, others may read it, it is too large, not UTF-8,
/// or empty.
pub fn read_passphrase_file(path: &Path) -> anyhow::Result<SecretString> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open the passphrase file {}", path.display()))?;
    // As rkmd refuses a PIN file others can read: the passphrase is what
    // keeps a stolen identity file shut.
    let mode = file
        .metadata()
        .with_context(|| format!("cannot read the passphrase file {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "the passphrase file {} can be read by others (mode {:04o}): run `chmod 600 {}`, and change the passphrase if others may have read it",
            path.display(),
            mode & 0o7777,
            path.display()
        );
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(256));
    file.take(MAX_PASSPHRASE_FILE + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read the passphrase file {}", path.display()))?;
    if bytes.len() as u64 > MAX_PASSPHRASE_FILE {
        bail!(
            "the passphrase file {} is larger than {MAX_PASSPHRASE_FILE} bytes; it should hold one line",
            path.display()
        );
    }
    let line_end = bytes
        .iter()
        .position(|&byte| byte == b'\n')
        .unwrap_or(bytes.len());
    let line = bytes[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&bytes[..line_end]);
    let text = std::str::from_utf8(line)
        .map_err(|_| anyhow::anyhow!("the passphrase file {} is not UTF-8", path.display()))?;
    if text.is_empty() {
        bail!(
            "the passphrase file {} is empty: its first line is the passphrase",
            path.display()
        );
    }
    Ok(SecretString::from(text))
}

/// Prompts on the terminal without echo.
pub fn prompt(text: &str) -> anyhow::Result<SecretString> {
    match rpassword::prompt_password(text) {
        Ok(typed) => {
            // Copied once into the secret box; the typed String is wiped.
            let typed = Zeroizing::new(typed);
            Ok(SecretString::from(typed.as_str()))
        }
        Err(error) => bail!(
            "cannot prompt for the passphrase ({error}); run rkm in a terminal, or give --passphrase-file FILE (or RKM_PASSPHRASE_FILE)"
        ),
    }
}

/// Reads and opens a custodian identity file.
///
/// # Errors
/// The file cannot be read, the passphrase cannot be had, the passphrase is
/// wrong, or the file is not an identity file.
pub fn open_identity(
    path: &Path,
    passphrase: &PassphraseArgs,
) -> anyhow::Result<CustodianIdentity> {
    let file = std::fs::read(path)
        .with_context(|| format!("cannot read the identity file {}", path.display()))?;
    let passphrase = passphrase.existing(path)?;
    CustodianIdentity::decrypt(&file, &passphrase).map_err(|error| match error {
        IdentityError::WrongPassphrase => anyhow::anyhow!(
            "the passphrase does not open the identity file {}; check --passphrase-file (or retype it)",
            path.display()
        ),
        other => anyhow::Error::new(other)
            .context(format!("cannot open the identity file {}", path.display())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(contents: &[u8]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), contents).unwrap();
        file
    }

    #[test]
    fn passphrase_file_first_line_without_newline() {
        let file = file_with(b"correct horse battery\r\nsecond line\n");
        let passphrase = read_passphrase_file(file.path()).unwrap();
        assert_eq!(passphrase.expose_secret(), "correct horse battery");
    }

    #[test]
    fn passphrase_file_others_can_read_is_refused_with_the_chmod_to_run() {
        use std::os::unix::fs::PermissionsExt as _;
        for mode in [0o644, 0o640, 0o604] {
            let file = file_with(b"correct horse battery\n");
            std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(mode)).unwrap();
            let error = read_passphrase_file(file.path()).unwrap_err().to_string();
            assert!(error.contains(&format!("mode {mode:04o}")), "{error}");
            assert!(
                error.contains(&format!("chmod 600 {}", file.path().display())),
                "{error}"
            );
            assert!(!error.contains("correct horse"), "{error}");
        }
    }

    #[test]
    fn passphrase_file_empty_is_refused() {
        let file = file_with(b"\n");
        let error = read_passphrase_file(file.path()).unwrap_err();
        assert!(error.to_string().contains("is empty"), "{error}");
    }

    #[test]
    fn new_passphrase_too_short_is_refused() {
        let file = file_with(b"short\n");
        let args = PassphraseArgs {
            passphrase_file: Some(file.path().to_owned()),
        };
        let error = args.new_passphrase().unwrap_err();
        assert!(error.to_string().contains("at least 12"), "{error}");
    }
}
