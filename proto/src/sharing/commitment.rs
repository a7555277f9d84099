//! Share commitments: a salted SHA-256 over one share, recorded per custodian
//! in the key record. A custodian checks their share against it offline, and
//! the daemon checks every submitted share against it before combining, so a
//! wrong share is named (by its x) instead of silently spoiling the KEK.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::sharing::secret::Share;

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
    share_hash(SHARE_COMMITMENT_LABEL, key_id, share, salt)
}

/// SHA-256(label ‖ key_id ‖ 0x00 ‖ x ‖ y ‖ salt): one-way in the share.
fn share_hash(
    label: &[u8],
    key_id: &str,
    share: &Share,
    salt: &[u8; COMMITMENT_LEN],
) -> [u8; COMMITMENT_LEN] {
    let mut hasher = Sha256::new();
    hasher.update(label);
    hasher.update(key_id.as_bytes());
    hasher.update([0u8]);
    hasher.update([share.x()]);
    hasher.update(share.expose_y());
    hasher.update(salt);
    hasher.finalize().into()
}

/// Domain label of [`possession_key`].
pub const SHARE_POSSESSION_LABEL: &[u8] = b"rkm/v1/share-possession\0";

/// An Ed25519 key that only the holder of a share (and its salt) can derive:
/// its seed is SHA-256(`"rkm/v1/share-possession\0"` ‖ key_id ‖ 0x00 ‖ x ‖
/// y\[32\] ‖ salt\[32\]). rkmd keeps only the public half from the key
/// generation (never in the key record), so a receipt or an attestation
/// signed with it proves possession of the share, not only the custodian's
/// word, and rkmd's database holds nothing that could forge that proof.
pub struct PossessionKey(ed25519_dalek::SigningKey);

impl PossessionKey {
    /// Derives the key of `share` of `key_id`.
    pub fn derive(key_id: &str, share: &Share, salt: &[u8; COMMITMENT_LEN]) -> Self {
        let seed = zeroize::Zeroizing::new(share_hash(SHARE_POSSESSION_LABEL, key_id, share, salt));
        PossessionKey(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// The public half, which rkmd keeps.
    pub fn public_key(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// The proof of possession over a signed message (a receipt or an
    /// attestation).
    pub fn prove(&self, message: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer as _;
        self.0.sign(message).to_bytes()
    }
}

impl std::fmt::Debug for PossessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PossessionKey").field(&"<redacted>").finish()
    }
}

/// Whether `proof` is [`PossessionKey::prove`] of `message` by the key whose
/// public half is `public_key`.
pub fn possession_proof_matches(public_key: &[u8; 32], message: &[u8], proof: &[u8]) -> bool {
    crate::sharing::messages::verify_custodian_signature(public_key, message, proof).is_ok()
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
    fn possession_proof_depends_on_the_share_the_salt_and_the_message() {
        let share = Share::new(5, &[0x11; 32]).unwrap();
        let other = Share::new(5, &[0x12; 32]).unwrap();
        let key = PossessionKey::derive("rk-1", &share, &[0x22; 32]);
        let public = key.public_key();
        let proof = key.prove(b"receipt");
        assert!(possession_proof_matches(&public, b"receipt", &proof));
        assert!(!possession_proof_matches(&public, b"receipt!", &proof));
        assert!(!possession_proof_matches(&public, b"receipt", &proof[..63]));
        for wrong in [
            PossessionKey::derive("rk-1", &other, &[0x22; 32]),
            PossessionKey::derive("rk-1", &share, &[0x23; 32]),
            PossessionKey::derive("rk-2", &share, &[0x22; 32]),
        ] {
            assert!(!possession_proof_matches(
                &public,
                b"receipt",
                &wrong.prove(b"receipt")
            ));
        }
        assert_eq!(format!("{key:?}"), "PossessionKey(\"<redacted>\")");
    }

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
