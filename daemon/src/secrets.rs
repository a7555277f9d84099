//! Newtypes for the secrets the daemon holds. Each zeroizes on drop, has no
//! `Clone`, `Serialize` or `Display`, and prints `[REDACTED]` under `Debug`.
//! `expose_secret()` appears only at the call that consumes the secret.

use std::fmt;
use std::path::Path;

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

/// Reads a secret from `path`, removing one trailing newline.
fn read_secret_file(path: &Path) -> std::io::Result<SecretString> {
    let mut content = Zeroizing::new(std::fs::read_to_string(path)?);
    if content.ends_with('\n') {
        content.pop();
        if content.ends_with('\r') {
            content.pop();
        }
    }
    Ok(SecretString::from(content.as_str()))
}

/// The HSM user PIN.
pub struct UserPin(SecretString);

impl UserPin {
    /// Reads the PIN from a file (one line; a trailing newline is ignored).
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn from_file(path: &Path) -> std::io::Result<Self> {
        read_secret_file(path).map(Self)
    }

    /// Takes ownership of a PIN that was read from the environment.
    pub fn from_env_value(value: String) -> Self {
        Self(SecretString::from(value))
    }

    /// # Security
    /// Only for handing the PIN to `C_Login`.
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }

    /// Whether the PIN is empty (an empty PIN file is a mistake, not a PIN).
    pub fn is_empty(&self) -> bool {
        self.0.expose_secret().is_empty()
    }
}

impl fmt::Debug for UserPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UserPin([REDACTED])")
    }
}

/// The 32 bytes of a key-encryption key (AES-256) while it is whole in host
/// memory: between the HSM's RNG and splitting, or between combining shares and
/// loading it into the HSM.
pub struct KekBytes(Zeroizing<[u8; 32]>);

impl KekBytes {
    /// Length of a KEK in bytes.
    pub const LEN: usize = 32;

    /// Takes the bytes; the caller's copy should itself be zeroizing.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(Zeroizing::new(*bytes))
    }

    /// Copies a slice of exactly 32 bytes.
    ///
    /// # Errors
    /// The slice is not 32 bytes long.
    pub fn try_from_slice(bytes: &[u8]) -> Result<Self, usize> {
        let mut kek = Zeroizing::new([0u8; 32]);
        if bytes.len() != Self::LEN {
            return Err(bytes.len());
        }
        kek.copy_from_slice(bytes);
        Ok(Self(kek))
    }

    /// # Security
    /// Only for loading the KEK into the HSM or splitting it.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for KekBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KekBytes([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_secret() {
        let pin = UserPin::from_env_value("123456".to_owned());
        let kek = KekBytes::from_bytes(&[0xab; 32]);
        let printed = format!("{pin:?} {kek:?}");
        assert!(!printed.contains("123456"));
        assert!(!printed.contains("ab"), "{printed}");
        assert!(printed.contains("REDACTED"));
    }

    #[test]
    fn pin_file_loses_one_trailing_newline_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pin");
        std::fs::write(&path, "12 34\n").unwrap();
        assert_eq!(UserPin::from_file(&path).unwrap().expose_secret(), "12 34");
    }
}
