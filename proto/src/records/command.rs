//! What the recovery key signs: one command message per target (the request
//! digest, the target's sequence number and its device id) or, in a drill,
//! one challenge. ECDSA P-256 over SHA-256 of these bytes; rkmd has the HSM
//! sign the digest (CKM_ECDSA) or the message (CKM_ECDSA_SHA256), and
//! verifiers accept only low-S signatures, so each command has exactly one
//! valid signature encoding.

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use sha2::{Digest, Sha256};

use crate::records::key_record::KeyRecord;

/// Label of [`command_message`].
pub const COMMAND_LABEL: &[u8] = b"rkm/v1/recovery-command\0";

/// Label of [`drill_challenge_message`].
pub const DRILL_CHALLENGE_LABEL: &[u8] = b"rkm/v1/drill-challenge\0";

/// Why a recovery key signature or public key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The public key is not a P-256 SubjectPublicKeyInfo.
    #[error("the recovery public key is not a DER SubjectPublicKeyInfo of a P-256 key")]
    InvalidPublicKey,
    /// r or s is zero or not below the group order.
    #[error("the signature is not an ECDSA P-256 r‖s pair (r or s is zero or out of range)")]
    InvalidSignatureEncoding,
    /// s is in the upper half of the group order: the signature is malleable.
    #[error("the signature has a high S value; only the low-S form is accepted")]
    HighS,
    /// The signature does not verify.
    #[error("the signature does not verify with the recovery public key")]
    BadSignature,
}

/// [`COMMAND_LABEL`] ‖ request digest ‖ sequence (u64 big-endian) ‖ device
/// id length (u32 big-endian) ‖ device id.
pub fn command_message(request_digest: &[u8; 32], sequence: u64, device_id: &str) -> Vec<u8> {
    let id_len = u32::try_from(device_id.len()).expect("device ids are short");
    let mut out = Vec::with_capacity(COMMAND_LABEL.len() + 32 + 8 + 4 + device_id.len());
    out.extend_from_slice(COMMAND_LABEL);
    out.extend_from_slice(request_digest);
    out.extend_from_slice(&sequence.to_be_bytes());
    out.extend_from_slice(&id_len.to_be_bytes());
    out.extend_from_slice(device_id.as_bytes());
    out
}

/// SHA-256 of [`command_message`]: the prehash the recovery key signs.
pub fn command_digest(request_digest: &[u8; 32], sequence: u64, device_id: &str) -> [u8; 32] {
    let id_len = u32::try_from(device_id.len()).expect("device ids are short");
    let mut hasher = Sha256::new();
    hasher.update(COMMAND_LABEL);
    hasher.update(request_digest);
    hasher.update(sequence.to_be_bytes());
    hasher.update(id_len.to_be_bytes());
    hasher.update(device_id.as_bytes());
    hasher.finalize().into()
}

/// [`DRILL_CHALLENGE_LABEL`] ‖ request digest ‖ ceremony id length (u32
/// big-endian) ‖ ceremony id: what a drill signs instead of a command.
pub fn drill_challenge_message(request_digest: &[u8; 32], ceremony_id: &str) -> Vec<u8> {
    let id_len = u32::try_from(ceremony_id.len()).expect("ceremony ids are short");
    let mut out = Vec::with_capacity(DRILL_CHALLENGE_LABEL.len() + 32 + 4 + ceremony_id.len());
    out.extend_from_slice(DRILL_CHALLENGE_LABEL);
    out.extend_from_slice(request_digest);
    out.extend_from_slice(&id_len.to_be_bytes());
    out.extend_from_slice(ceremony_id.as_bytes());
    out
}

/// SHA-256 of [`drill_challenge_message`]: the prehash a drill signs.
pub fn drill_challenge_digest(request_digest: &[u8; 32], ceremony_id: &str) -> [u8; 32] {
    Sha256::digest(drill_challenge_message(request_digest, ceremony_id)).into()
}

/// Turns an ECDSA P-256 signature `r ‖ s` (as PKCS#11 CKM_ECDSA returns it)
/// into its low-S form, which is the only one verifiers accept. HSMs do not
/// normalise S, so rkmd calls this on every signature before writing it.
///
/// # Errors
///
/// [`CommandError::InvalidSignatureEncoding`] if r or s is zero or out of
/// range.
pub fn normalize_signature(signature: &[u8; 64]) -> Result<[u8; 64], CommandError> {
    let parsed =
        Signature::from_slice(signature).map_err(|_| CommandError::InvalidSignatureEncoding)?;
    let low = parsed.normalize_s().unwrap_or(parsed);
    Ok(low.to_bytes().into())
}

/// The recovery public key, ready to verify command and drill signatures.
#[derive(Debug, Clone)]
pub struct CommandVerifier {
    key: VerifyingKey,
}

impl CommandVerifier {
    /// Reads the recovery public key from its SubjectPublicKeyInfo DER (as in
    /// the key record).
    ///
    /// # Errors
    ///
    /// [`CommandError::InvalidPublicKey`].
    pub fn from_spki(spki: &[u8]) -> Result<Self, CommandError> {
        VerifyingKey::from_public_key_der(spki)
            .map(|key| CommandVerifier { key })
            .map_err(|_| CommandError::InvalidPublicKey)
    }

    /// Verifies `r ‖ s` over a 32-byte prehash ([`command_digest`] or
    /// [`drill_challenge_digest`]); high-S signatures are refused.
    ///
    /// # Errors
    ///
    /// [`CommandError::InvalidSignatureEncoding`], [`CommandError::HighS`],
    /// [`CommandError::BadSignature`].
    pub fn verify_digest(
        &self,
        digest: &[u8; 32],
        signature: &[u8; 64],
    ) -> Result<(), CommandError> {
        let signature =
            Signature::from_slice(signature).map_err(|_| CommandError::InvalidSignatureEncoding)?;
        if signature.normalize_s().is_some() {
            return Err(CommandError::HighS);
        }
        self.key
            .verify_prehash(digest, &signature)
            .map_err(|_| CommandError::BadSignature)
    }

    /// Verifies the signature of one command.
    ///
    /// # Errors
    ///
    /// As [`CommandVerifier::verify_digest`].
    pub fn verify_command(
        &self,
        request_digest: &[u8; 32],
        sequence: u64,
        device_id: &str,
        signature: &[u8; 64],
    ) -> Result<(), CommandError> {
        self.verify_digest(
            &command_digest(request_digest, sequence, device_id),
            signature,
        )
    }
}

/// Verifies a drill's signature against the key record's public key, as the
/// drill ceremony does before it reports success.
///
/// # Errors
///
/// [`CommandError::InvalidPublicKey`] and those of
/// [`CommandVerifier::verify_digest`].
pub fn verify_drill_signature(
    record: &KeyRecord,
    request_digest: &[u8; 32],
    ceremony_id: &str,
    signature: &[u8; 64],
) -> Result<(), CommandError> {
    CommandVerifier::from_spki(&record.public_key_spki)?.verify_digest(
        &drill_challenge_digest(request_digest, ceremony_id),
        signature,
    )
}

#[cfg(test)]
mod tests {
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    use p256::pkcs8::EncodePublicKey;

    use super::*;

    fn key() -> (SigningKey, CommandVerifier) {
        let signing = SigningKey::from_slice(&[7; 32]).unwrap();
        let spki = p256::PublicKey::from(signing.verifying_key())
            .to_public_key_der()
            .unwrap();
        (
            signing,
            CommandVerifier::from_spki(spki.as_bytes()).unwrap(),
        )
    }

    #[test]
    fn command_message_layout_and_digest_agree() {
        let message = command_message(&[9; 32], 258, "meter-1");
        let mut expected = b"rkm/v1/recovery-command\0".to_vec();
        expected.extend_from_slice(&[9; 32]);
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 2]);
        expected.extend_from_slice(&[0, 0, 0, 7]);
        expected.extend_from_slice(b"meter-1");
        assert_eq!(message, expected);
        let digest: [u8; 32] = Sha256::digest(&message).into();
        assert_eq!(command_digest(&[9; 32], 258, "meter-1"), digest);
    }

    #[test]
    fn drill_challenge_differs_from_every_command() {
        let drill = drill_challenge_message(&[9; 32], "cer-1");
        assert!(drill.starts_with(b"rkm/v1/drill-challenge\0"));
        assert_ne!(
            drill_challenge_digest(&[9; 32], "cer-1"),
            drill_challenge_digest(&[9; 32], "cer-2")
        );
    }

    #[test]
    fn verify_accepts_low_s_and_refuses_high_s_and_other_messages() {
        let (signing, verifier) = key();
        let digest = command_digest(&[1; 32], 0, "meter-1");
        let signature: Signature = signing.sign_prehash(&digest).unwrap();
        let low = signature.normalize_s().unwrap_or(signature);
        let low_bytes: [u8; 64] = low.to_bytes().into();
        verifier
            .verify_command(&[1; 32], 0, "meter-1", &low_bytes)
            .unwrap();
        assert_eq!(normalize_signature(&low_bytes), Ok(low_bytes));

        // The same signature with s replaced by n - s: valid maths, refused.
        let (r, s) = low.split_scalars();
        let high = Signature::from_scalars(r, -*s).unwrap();
        let high_bytes: [u8; 64] = high.to_bytes().into();
        assert_eq!(
            verifier.verify_command(&[1; 32], 0, "meter-1", &high_bytes),
            Err(CommandError::HighS)
        );
        assert_eq!(normalize_signature(&high_bytes), Ok(low_bytes));

        assert_eq!(
            verifier.verify_command(&[1; 32], 1, "meter-1", &low_bytes),
            Err(CommandError::BadSignature)
        );
        assert_eq!(
            verifier.verify_command(&[1; 32], 0, "meter-1", &[0; 64]),
            Err(CommandError::InvalidSignatureEncoding)
        );
        assert_eq!(
            CommandVerifier::from_spki(b"not der").err(),
            Some(CommandError::InvalidPublicKey)
        );
    }
}
