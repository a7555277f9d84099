//! The KEK check value of a key record: HMAC-SHA256 (RFC 2104) of a fixed
//! label under the KEK. After a quorum's shares are combined, the daemon (or a
//! custodian restoring the key elsewhere) compares it before the KEK goes near
//! an HSM, so a wrong combination is caught as "wrong KEK", not as a failed
//! unwrap.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::sharing::secret::Kek;

/// The message MACed under the KEK.
pub const KEK_CHECK_LABEL: &[u8] = b"rkm/v1/kek-check-value";

/// Length of a KEK check value.
pub const KEK_CHECK_LEN: usize = 32;

fn mac(kek: &Kek) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(kek.expose_secret())
        .expect("HMAC accepts keys of any length");
    mac.update(KEK_CHECK_LABEL);
    mac
}

/// HMAC-SHA256 of [`KEK_CHECK_LABEL`] under `kek`.
///
/// # Security
///
/// The value reveals nothing useful about the KEK (HMAC is a PRF); it is
/// public and goes into the key record.
pub fn kek_check_value(kek: &Kek) -> [u8; KEK_CHECK_LEN] {
    mac(kek).finalize().into_bytes().into()
}

/// Whether `kek` has the given check value, compared in constant time.
pub fn kek_matches(kek: &Kek, check_value: &[u8; KEK_CHECK_LEN]) -> bool {
    mac(kek).verify_slice(check_value).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computed independently with Python's `hmac.new(bytes(range(32)),
    /// b"rkm/v1/kek-check-value", hashlib.sha256)`.
    const KNOWN_ANSWER: &str = "8f6e6b36f9eba70a3eeb6c13caa090066e7b93b860892cb5be3c21de738434ef";

    fn counting_kek() -> Kek {
        let bytes: [u8; 32] = std::array::from_fn(|i| i as u8);
        Kek::from_bytes(&bytes)
    }

    #[test]
    fn check_value_matches_known_answer() {
        assert_eq!(hex::encode(kek_check_value(&counting_kek())), KNOWN_ANSWER);
    }

    #[test]
    fn kek_matches_own_value_only() {
        let kek = counting_kek();
        let value = kek_check_value(&kek);
        assert!(kek_matches(&kek, &value));
        let mut other = value;
        other[31] ^= 1;
        assert!(!kek_matches(&kek, &other));
        assert!(!kek_matches(&Kek::from_bytes(&[0; 32]), &value));
    }
}
