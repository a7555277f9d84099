//! Every PKCS#11 attribute template rkm uses, in one place, so the security
//! properties of each object can be reviewed together (PKCS#11 3.0 §4).

use cryptoki::object::{Attribute, KeyType, ObjectClass};

/// DER of the OID of NIST P-256 (secp256r1, 1.2.840.10045.3.1.7).
pub const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER of the OID of Ed25519 (1.3.101.112), RFC 8410.
pub const ED25519_PARAMS: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];

/// Label of the persistent audit key pair.
pub const AUDIT_KEY_LABEL: &str = "rkm-audit-key";

/// Public half of a recovery key: a session object, only for reading the point.
pub fn recovery_public_key() -> Vec<Attribute> {
    vec![
        Attribute::Token(false),
        Attribute::EcParams(P256_PARAMS.to_vec()),
        Attribute::Verify(true),
    ]
}

/// Private half of a freshly generated recovery key: a session object that
/// never leaves the HSM except wrapped (sensitive, extractable only so that
/// `C_WrapKey` works on it).
pub fn recovery_private_key_generated() -> Vec<Attribute> {
    vec![
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(true),
        Attribute::Sign(true),
        Attribute::Decrypt(false),
        Attribute::Derive(false),
        Attribute::Unwrap(false),
    ]
}

/// A recovery private key unwrapped from its blob: a session object that can
/// only sign, and can never be extracted again.
pub fn recovery_private_key_unwrapped() -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::KeyType(KeyType::EC),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Decrypt(false),
        Attribute::Derive(false),
        Attribute::Unwrap(false),
    ]
}

/// The KEK while it is whole: a session AES-256 key that only wraps and
/// unwraps, and cannot be read back.
pub fn kek(value: Vec<u8>) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Value(value),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Wrap(true),
        Attribute::Unwrap(true),
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
        Attribute::Sign(false),
        Attribute::Derive(false),
    ]
}

/// Public half of the audit key: a token object, found by label.
pub fn audit_public_key() -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Label(AUDIT_KEY_LABEL.as_bytes().to_vec()),
        Attribute::EcParams(ED25519_PARAMS.to_vec()),
        Attribute::Verify(true),
    ]
}

/// Private half of the audit key: a persistent token object that never leaves
/// the HSM and only signs.
pub fn audit_private_key() -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Label(AUDIT_KEY_LABEL.as_bytes().to_vec()),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Decrypt(false),
        Attribute::Derive(false),
        Attribute::Unwrap(false),
    ]
}

/// Search template for one half of the audit key pair.
pub fn find_audit_key(class: ObjectClass) -> Vec<Attribute> {
    vec![
        Attribute::Class(class),
        Attribute::KeyType(KeyType::EC_EDWARDS),
        Attribute::Token(true),
        Attribute::Label(AUDIT_KEY_LABEL.as_bytes().to_vec()),
    ]
}

/// Label of the token data object that holds the latest audit checkpoint.
pub const CHECKPOINT_LABEL: &str = "rkm-audit-checkpoint";

/// The latest signed audit checkpoint, kept in the token so that a store that
/// was deleted, replaced or rolled back is caught at start-up. Not secret,
/// but private so that only the logged-in user can change it.
pub fn checkpoint_object(note: Vec<u8>) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Modifiable(true),
        Attribute::Label(CHECKPOINT_LABEL.as_bytes().to_vec()),
        Attribute::Application(b"rkm".to_vec()),
        Attribute::Value(note),
    ]
}

/// Search template for the checkpoint data object.
pub fn find_checkpoint_object() -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(true),
        Attribute::Label(CHECKPOINT_LABEL.as_bytes().to_vec()),
    ]
}

/// Label of the AES key that holds submitted shares between approvals.
pub const HOLDING_KEY_LABEL: &str = "rkm-share-holding-key";

/// The share holding key: a persistent AES-256 token object, generated in the
/// HSM, never extractable, that only encrypts and decrypts (AES-GCM) the
/// shares custodians submit, so a daemon restart loses none and none is ever
/// on disk in plaintext.
pub fn holding_key() -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::ValueLen(32.into()),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Label(HOLDING_KEY_LABEL.as_bytes().to_vec()),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Sign(false),
        Attribute::Derive(false),
    ]
}

/// Search template for the holding key.
pub fn find_holding_key() -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::Token(true),
        Attribute::Label(HOLDING_KEY_LABEL.as_bytes().to_vec()),
    ]
}
