//! Share commitments: a salted SHA-256 over one share, recorded per custodian
//! in the key record. A custodian checks their share against it offline, and
//! the daemon checks every submitted share against it before combining, so a
//! wrong share is named (by its x) instead of silently spoiling the KEK.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::secret::Share;

/// Domain label that starts every commitment preimage.
pub const SHARE_COMMITMENT_LABEL: &[u8] = b"rkm/v1/share-commitment\0";

/// Length of a commitment and of its salt.
pub const COMMITMENT_LEN: usize = 32;

/// SHA-256(`"rkm/v1/share-commitment\0"` ‖ key_id ‖ 0x00 ‖ x ‖ y\[32\] ‖ salt\[32\]).
///
/// # Security
///
/// Hashes the secret y value. The hasher's internal buffer is not wiped by
/// `sha2`; y has 256 bits of entropy, so the commitment itself reveals
/// nothing.
pub fn share_commitment(
    key_id: &str,
    share: &Share,
    salt: &[u8; COMMITMENT_LEN],
) -> [u8; COMMITMENT_LEN] {
    let mut hasher = Sha256::new();
    hasher.update(SHARE_COMMITMENT_LABEL);
    hasher.update(key_id.as_bytes());
    hasher.update([0u8]);
    hasher.update([share.x()]);
    hasher.update(share.expose_y());
    hasher.update(salt);
    hasher.finalize().into()
}

/// Whether `share` and `salt` give the `expected` commitment for `key_id`,
/// compared in constant time.
pub fn commitment_matches(
    key_id: &str,
    share: &Share,
    salt: &[u8; COMMITMENT_LEN],
    expected: &[u8; COMMITMENT_LEN],
) -> bool {
    share_commitment(key_id, share, salt).ct_eq(expected).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computed independently with Python's hashlib over the same preimage.
    const KNOWN_ANSWER: &str = "dbf8e8621939ca6ee77ecb0c0ac33da00ff574643b908c9c2810c12155db7835";

    #[test]
    fn commitment_matches_known_answer() {
        let share = Share::new(5, &[0x11; 32]).unwrap();
        let commitment = share_commitment("rk-0123456789abcdef", &share, &[0x22; 32]);
        assert_eq!(hex::encode(commitment), KNOWN_ANSWER);
    }

    #[test]
    fn commitment_changes_with_every_field() {
        let key_id = "rk-0123456789abcdef";
        let share = Share::new(5, &[0x11; 32]).unwrap();
        let salt = [0x22; 32];
        let expected = share_commitment(key_id, &share, &salt);
        assert!(commitment_matches(key_id, &share, &salt, &expected));
        assert!(!commitment_matches(
            "rk-0123456789abcdee",
            &share,
            &salt,
            &expected
        ));
        assert!(!commitment_matches(
            key_id,
            &Share::new(6, &[0x11; 32]).unwrap(),
            &salt,
            &expected
        ));
        let mut y = [0x11; 32];
        y[0] ^= 1;
        assert!(!commitment_matches(
            key_id,
            &Share::new(5, &y).unwrap(),
            &salt,
            &expected
        ));
        assert!(!commitment_matches(key_id, &share, &[0x23; 32], &expected));
    }
}
