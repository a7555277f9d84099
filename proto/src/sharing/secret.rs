//! Secret byte types of a key ceremony: the KEK and one Shamir share of it.
//! They are zeroizing from the moment they exist (heap boxes wiped on drop,
//! filled in place so no stack copy outlives the call), have no `Clone`,
//! `Serialize` or `Display`, and their `Debug` prints `[REDACTED]`.

use std::fmt;

use secrecy::{ExposeSecret, SecretBox};

/// Length of the KEK and of a share's y value: a 256-bit AES key.
pub const SECRET_LEN: usize = 32;

/// Why secret bytes were refused. Never carries the bytes themselves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// A KEK or share value of the wrong length.
    #[error("secret is {found} bytes long, expected {expected}")]
    WrongLength {
        /// The required length.
        expected: usize,
        /// The length given.
        found: usize,
    },
    /// A share with x = 0: that point of the polynomial is the secret itself.
    #[error("share x-coordinate is 0; shares have x in 1..=255")]
    ZeroX,
}

/// A 256-bit AES key-encryption key in zeroizing memory.
///
/// # Security
///
/// The bytes live in one heap box that is wiped on drop; read them with
/// [`Kek::expose_secret`] only at the call that consumes them.
pub struct Kek(SecretBox<[u8; SECRET_LEN]>);

impl Kek {
    /// Copies `bytes` into a new zeroizing KEK. The caller wipes its own copy.
    pub fn from_bytes(bytes: &[u8; SECRET_LEN]) -> Self {
        Kek(SecretBox::init_with_mut(|kek: &mut [u8; SECRET_LEN]| {
            kek.copy_from_slice(bytes)
        }))
    }

    /// Copies a 32-byte slice into a new zeroizing KEK.
    ///
    /// # Errors
    ///
    /// [`SecretError::WrongLength`] if `bytes` is not 32 bytes long.
    pub fn try_from_slice(bytes: &[u8]) -> Result<Self, SecretError> {
        let bytes: &[u8; SECRET_LEN] = bytes.try_into().map_err(|_| SecretError::WrongLength {
            expected: SECRET_LEN,
            found: bytes.len(),
        })?;
        Ok(Kek::from_bytes(bytes))
    }

    /// The KEK bytes.
    ///
    /// # Security
    ///
    /// Do not copy them into memory that is not wiped.
    pub fn expose_secret(&self) -> &[u8; SECRET_LEN] {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek([REDACTED])")
    }
}

/// One Shamir share of a KEK over GF(256): the x-coordinate (1..=255, public)
/// and the 32-byte y value (secret, zeroizing).
pub struct Share {
    x: u8,
    y: SecretBox<[u8; SECRET_LEN]>,
}

impl Share {
    /// Copies `y` into a new zeroizing share at `x`.
    ///
    /// # Errors
    ///
    /// [`SecretError::ZeroX`] if `x` is 0.
    pub fn new(x: u8, y: &[u8; SECRET_LEN]) -> Result<Self, SecretError> {
        if x == 0 {
            return Err(SecretError::ZeroX);
        }
        Ok(Share {
            x,
            y: SecretBox::init_with_mut(|share: &mut [u8; SECRET_LEN]| share.copy_from_slice(y)),
        })
    }

    /// Like [`Share::new`] for a y value of unchecked length.
    ///
    /// # Errors
    ///
    /// [`SecretError::ZeroX`] and [`SecretError::WrongLength`].
    pub fn try_from_slice(x: u8, y: &[u8]) -> Result<Self, SecretError> {
        let y: &[u8; SECRET_LEN] = y.try_into().map_err(|_| SecretError::WrongLength {
            expected: SECRET_LEN,
            found: y.len(),
        })?;
        Share::new(x, y)
    }

    /// The x-coordinate, 1..=255. Public.
    pub fn x(&self) -> u8 {
        self.x
    }

    /// The secret y value.
    ///
    /// # Security
    ///
    /// Do not copy it into memory that is not wiped.
    pub fn expose_y(&self) -> &[u8; SECRET_LEN] {
        self.y.expose_secret()
    }
}

impl fmt::Debug for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Share")
            .field("x", &self.x)
            .field("y", &"[REDACTED]")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kek_debug_is_redacted() {
        let kek = Kek::from_bytes(&[0xab; 32]);
        let printed = format!("{kek:?}");
        assert_eq!(printed, "Kek([REDACTED])");
        assert!(!printed.to_lowercase().contains("ab"));
    }

    #[test]
    fn share_debug_shows_x_only() {
        let share = Share::new(7, &[0xcd; 32]).unwrap();
        let printed = format!("{share:?}");
        assert!(printed.contains("x: 7"));
        assert!(printed.contains("[REDACTED]"));
        assert!(!printed.contains("205") && !printed.to_lowercase().contains("cd"));
    }

    #[test]
    fn kek_try_from_slice_wrong_length_is_error() {
        assert_eq!(
            Kek::try_from_slice(&[1; 31]).unwrap_err(),
            SecretError::WrongLength {
                expected: 32,
                found: 31
            }
        );
        assert_eq!(
            Kek::try_from_slice(&[1; 32]).unwrap().expose_secret(),
            &[1; 32]
        );
    }

    #[test]
    fn share_zero_x_is_refused() {
        assert_eq!(Share::new(0, &[1; 32]).unwrap_err(), SecretError::ZeroX);
        assert_eq!(
            Share::try_from_slice(3, &[1; 33]).unwrap_err(),
            SecretError::WrongLength {
                expected: 32,
                found: 33
            }
        );
        let share = Share::try_from_slice(3, &[9; 32]).unwrap();
        assert_eq!((share.x(), share.expose_y()), (3, &[9; 32]));
    }
}
