//! The recovery key's wrapped blob as any HSM and any RFC 5649 implementation
//! accepts it: AES key wrap with padding around exactly one DER
//! PrivateKeyInfo, nothing after it.
//!
//! SoftHSM 2.6.1 pads the PKCS#8 to a multiple of 8 bytes before it wraps (a
//! 67-byte P-256 PrivateKeyInfo and five zero bytes), which RFC 5649 does
//! itself and strict parsers refuse after unwrapping. The key ceremony holds
//! the KEK in host memory anyway (it splits it), so it checks the HSM's blob in
//! software there and, when the HSM padded, wraps the exact DER again under
//! the same KEK. The private key is then in host memory for that moment, in a
//! buffer wiped on drop — no more exposure than the KEK itself, which opens
//! the blob.

use aes_kw::KekAes256;
use p256::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _};
use zeroize::Zeroizing;

use super::secret::Kek;

/// Why a wrapped blob is not one exact PrivateKeyInfo of the expected key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WrapError {
    #[error("the wrapped key does not unwrap under this KEK (RFC 5649)")]
    Unwrap,
    #[error("the unwrapped key is not a DER PrivateKeyInfo: {0}")]
    NotPkcs8(String),
    #[error(
        "the unwrapped key has {extra} bytes after its {der} bytes of DER, and they are not all zero"
    )]
    TrailingData { der: usize, extra: usize },
    #[error("the wrapped key is not the recovery key of the record (its public key differs)")]
    WrongKey,
}

/// What [`exact_wrapped_key`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum WrapCheck {
    /// The blob holds exactly one PrivateKeyInfo of the key.
    Exact,
    /// The HSM padded inside its wrap; this blob holds the exact DER.
    Rewrapped(Vec<u8>),
}

/// The length of the DER element that starts `bytes` (tag, length, content),
/// for the definite lengths a PrivateKeyInfo uses.
fn der_element_len(bytes: &[u8]) -> Option<usize> {
    let (&tag, rest) = bytes.split_first()?;
    if tag != 0x30 {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (content, header) = match first {
        0x00..=0x7f => (usize::from(first), 2),
        0x81 => (usize::from(*rest.first()?), 3),
        0x82 => (
            usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?])),
            4,
        ),
        _ => return None,
    };
    Some(header + content)
}

/// Unwraps `blob` under `kek` and returns exactly one DER PrivateKeyInfo of a
/// P-256 key, refusing trailing bytes: how any strict HSM or tool reads it.
///
/// # Errors
/// The blob does not unwrap, is not PKCS#8, or has bytes after the DER.
pub fn unwrap_pkcs8_strict(kek: &Kek, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, WrapError> {
    let plain = Zeroizing::new(
        KekAes256::from(*kek.expose_secret())
            .unwrap_with_padding_vec(blob)
            .map_err(|_| WrapError::Unwrap)?,
    );
    p256::SecretKey::from_pkcs8_der(&plain).map_err(|e| WrapError::NotPkcs8(e.to_string()))?;
    Ok(plain)
}

/// Checks the HSM's `blob` against the recovery key's `public_key_spki`, and
/// wraps the exact DER again when the HSM left zero padding after it.
///
/// # Errors
/// The blob does not unwrap, holds no PrivateKeyInfo, has non-zero bytes
/// after it, or holds another key.
pub fn exact_wrapped_key(
    kek: &Kek,
    blob: &[u8],
    public_key_spki: &[u8],
) -> Result<WrapCheck, WrapError> {
    let wrapping = KekAes256::from(*kek.expose_secret());
    let plain = Zeroizing::new(
        wrapping
            .unwrap_with_padding_vec(blob)
            .map_err(|_| WrapError::Unwrap)?,
    );
    let der = der_element_len(&plain)
        .filter(|len| *len <= plain.len())
        .ok_or_else(|| WrapError::NotPkcs8("no DER SEQUENCE at the start".to_owned()))?;
    let (exact, after) = plain.split_at(der);
    if after.iter().any(|byte| *byte != 0) {
        return Err(WrapError::TrailingData {
            der,
            extra: after.len(),
        });
    }
    let key =
        p256::SecretKey::from_pkcs8_der(exact).map_err(|e| WrapError::NotPkcs8(e.to_string()))?;
    let spki = key
        .public_key()
        .to_public_key_der()
        .map_err(|e| WrapError::NotPkcs8(e.to_string()))?;
    if spki.as_bytes() != public_key_spki {
        return Err(WrapError::WrongKey);
    }
    if after.is_empty() {
        return Ok(WrapCheck::Exact);
    }
    let rewrapped = wrapping
        .wrap_with_padding_vec(exact)
        .map_err(|_| WrapError::Unwrap)?;
    Ok(WrapCheck::Rewrapped(rewrapped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::pkcs8::EncodePrivateKey as _;

    fn key_and_spki() -> (p256::SecretKey, Vec<u8>) {
        let key = p256::SecretKey::from_slice(&[7; 32]).unwrap();
        let spki = key
            .public_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes()
            .to_vec();
        (key, spki)
    }

    fn wrap(kek: &Kek, plain: &[u8]) -> Vec<u8> {
        KekAes256::from(*kek.expose_secret())
            .wrap_with_padding_vec(plain)
            .unwrap()
    }

    #[test]
    fn a_blob_padded_inside_the_wrap_is_rewrapped_to_the_exact_der() {
        let kek = Kek::from_bytes(&[9; 32]);
        let (key, spki) = key_and_spki();
        let der = key.to_pkcs8_der().unwrap();
        let mut padded = der.as_bytes().to_vec();
        padded.resize(der.as_bytes().len().div_ceil(8) * 8, 0);
        assert_ne!(padded.len(), der.as_bytes().len(), "the fixture pads");
        let blob = wrap(&kek, &padded);
        assert!(
            matches!(
                unwrap_pkcs8_strict(&kek, &blob),
                Err(WrapError::NotPkcs8(_))
            ),
            "a strict reader refuses the padded blob"
        );
        let WrapCheck::Rewrapped(fixed) = exact_wrapped_key(&kek, &blob, &spki).unwrap() else {
            panic!("the padded blob must be rewrapped");
        };
        let strict = unwrap_pkcs8_strict(&kek, &fixed).unwrap();
        assert_eq!(strict.as_slice(), der.as_bytes());
        assert_eq!(exact_wrapped_key(&kek, &fixed, &spki), Ok(WrapCheck::Exact));
    }

    #[test]
    fn another_key_non_zero_trailing_bytes_and_another_kek_are_refused() {
        let kek = Kek::from_bytes(&[9; 32]);
        let (key, spki) = key_and_spki();
        let der = key.to_pkcs8_der().unwrap();
        let mut dirty = der.as_bytes().to_vec();
        dirty.extend_from_slice(&[0, 0, 1, 0, 0]);
        assert!(matches!(
            exact_wrapped_key(&kek, &wrap(&kek, &dirty), &spki),
            Err(WrapError::TrailingData { extra: 5, .. })
        ));
        let other = p256::SecretKey::from_slice(&[8; 32]).unwrap();
        let other_blob = wrap(&kek, other.to_pkcs8_der().unwrap().as_bytes());
        assert_eq!(
            exact_wrapped_key(&kek, &other_blob, &spki),
            Err(WrapError::WrongKey)
        );
        let blob = wrap(&kek, der.as_bytes());
        assert_eq!(
            exact_wrapped_key(&Kek::from_bytes(&[1; 32]), &blob, &spki),
            Err(WrapError::Unwrap)
        );
        assert_eq!(
            exact_wrapped_key(&kek, b"not a blob at all", &spki),
            Err(WrapError::Unwrap)
        );
    }
}
