//! Names for public keys that people compare and tools parse: the fingerprint
//! read aloud at a ceremony and the C2SP signed-note verifier key that auditors
//! pass to `rkm audit verify`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

/// Signature type byte of Ed25519 in C2SP signed notes.
const SIGNED_NOTE_ED25519: u8 = 0x01;

/// Hex SHA-256 of `public_key`, in groups of four characters, so two people can
/// compare it by voice ("3f2a 9c01 …").
pub fn fingerprint(public_key: &[u8]) -> String {
    let digest = hex::encode(Sha256::digest(public_key));
    digest
        .as_bytes()
        .chunks(4)
        .map(|group| std::str::from_utf8(group).expect("hex is ASCII"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The 4-byte key ID of an Ed25519 signed-note key (C2SP signed-note, "Signatures"):
/// the first four bytes of SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key).
pub fn signed_note_key_id(name: &str, ed25519_public_key: &[u8; 32]) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([SIGNED_NOTE_ED25519]);
    hasher.update(ed25519_public_key);
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// The C2SP signed-note verifier key `<name>+<key id hex>+<base64(0x01 ‖ key)>`.
pub fn signed_note_verifier_key(name: &str, ed25519_public_key: &[u8; 32]) -> String {
    let mut encoded_key = Vec::with_capacity(33);
    encoded_key.push(SIGNED_NOTE_ED25519);
    encoded_key.extend_from_slice(ed25519_public_key);
    format!(
        "{name}+{}+{}",
        hex::encode(signed_note_key_id(name, ed25519_public_key)),
        STANDARD.encode(encoded_key)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_of_empty_key_is_grouped_sha256() {
        assert_eq!(
            fingerprint(b""),
            "e3b0 c442 98fc 1c14 9afb f4c8 996f b924 27ae 41e4 649b 934c a495 991b 7852 b855"
        );
    }

    /// Known answer from the Go implementation's documentation
    /// (golang.org/x/mod/sumdb/note, "PeterNeumann" example).
    #[test]
    fn verifier_key_matches_go_sumdb_note_example() {
        let key = STANDARD
            .decode("ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
            .unwrap();
        assert_eq!(key[0], SIGNED_NOTE_ED25519);
        let public_key: [u8; 32] = key[1..].try_into().unwrap();
        assert_eq!(
            signed_note_verifier_key("PeterNeumann", &public_key),
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        );
    }
}
