//! The PKCS#11 calls behind each operation of the handle. Each function runs on
//! a worker thread with that worker's logged-in session.

use cryptoki::error::{Error as CryptokiError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use p256::pkcs8::EncodePublicKey as _;
use zeroize::Zeroizing;

use super::error::{HsmError, return_value};
use super::templates;
use crate::secrets::KekBytes;

/// Why an operation failed: a PKCS#11 error (which may mean the session is
/// lost) or a domain error already phrased for the user.
#[derive(Debug)]
pub enum Failure {
    Pkcs11(CryptokiError),
    Domain(HsmError),
}

impl From<CryptokiError> for Failure {
    fn from(error: CryptokiError) -> Self {
        Failure::Pkcs11(error)
    }
}

impl From<HsmError> for Failure {
    fn from(error: HsmError) -> Self {
        Failure::Domain(error)
    }
}

pub type OpResult<T> = Result<T, Failure>;

fn malformed(what: &'static str, detail: impl ToString) -> Failure {
    Failure::Domain(HsmError::Malformed {
        what,
        detail: detail.to_string(),
    })
}

pub fn random(session: &Session, buffer: &mut [u8]) -> OpResult<()> {
    session.generate_random_slice(buffer)?;
    Ok(())
}

/// Generates an ECDSA P-256 key pair as session objects.
pub fn generate_recovery_key(session: &Session) -> OpResult<(ObjectHandle, ObjectHandle)> {
    let (public, private) = session.generate_key_pair(
        &Mechanism::EccKeyPairGen,
        &templates::recovery_public_key(),
        &templates::recovery_private_key_generated(),
    )?;
    Ok((public, private))
}

/// Strips the DER OCTET STRING that PKCS#11 3.0 §2.3.3 puts around CKA_EC_POINT,
/// accepting the raw point that some tokens return instead.
fn unwrap_octet_string(value: &[u8], point_len: usize) -> OpResult<&[u8]> {
    match value {
        [0x04, len, point @ ..] if usize::from(*len) == point_len && point.len() == point_len => {
            Ok(point)
        }
        raw if raw.len() == point_len => Ok(raw),
        other => Err(malformed(
            "CKA_EC_POINT",
            format!("{} bytes, expected a {point_len}-byte point", other.len()),
        )),
    }
}

fn ec_point(session: &Session, key: ObjectHandle) -> OpResult<Vec<u8>> {
    let attributes = session.get_attributes(key, &[AttributeType::EcPoint])?;
    match attributes.into_iter().next() {
        Some(Attribute::EcPoint(point)) => Ok(point),
        _ => Err(malformed("CKA_EC_POINT", "attribute missing")),
    }
}

/// The P-256 public key as SubjectPublicKeyInfo DER (RFC 5480).
pub fn p256_public_key_spki(session: &Session, public: ObjectHandle) -> OpResult<Vec<u8>> {
    let value = ec_point(session, public)?;
    let point = unwrap_octet_string(&value, 65)?;
    let key = p256::PublicKey::from_sec1_bytes(point).map_err(|e| malformed("P-256 point", e))?;
    let der = key
        .to_public_key_der()
        .map_err(|e| malformed("P-256 public key", e))?;
    Ok(der.as_bytes().to_vec())
}

/// Loads 32 bytes as a session AES-256 key that can only wrap and unwrap.
pub fn import_kek(session: &Session, kek: &KekBytes) -> OpResult<ObjectHandle> {
    // The template owns a copy of the value; wipe it once the HSM has it.
    let mut template = templates::kek(kek.expose_secret().to_vec());
    let created = session.create_object(&template);
    for attribute in &mut template {
        if let Attribute::Value(value) = attribute {
            zeroize::Zeroize::zeroize(value);
        }
    }
    Ok(created?)
}

pub fn wrap(session: &Session, kek: ObjectHandle, key: ObjectHandle) -> OpResult<Vec<u8>> {
    Ok(session.wrap_key(&Mechanism::AesKeyWrapPad, kek, key)?)
}

/// Unwraps a PKCS#8 blob as a sign-only, non-extractable session key.
pub fn unwrap(session: &Session, kek: ObjectHandle, blob: &[u8]) -> OpResult<ObjectHandle> {
    session
        .unwrap_key(
            &Mechanism::AesKeyWrapPad,
            kek,
            blob,
            &templates::recovery_private_key_unwrapped(),
        )
        .map_err(|error| match return_value(&error) {
            // SoftHSM reports a failed integrity check as CKR_GENERAL_ERROR.
            Some(
                RvError::GeneralError
                | RvError::WrappedKeyInvalid
                | RvError::WrappedKeyLenRange
                | RvError::EncryptedDataInvalid
                | RvError::EncryptedDataLenRange
                | RvError::DataInvalid
                | RvError::DataLenRange,
            ) => Failure::Domain(HsmError::UnwrapFailed),
            _ => Failure::Pkcs11(error),
        })
}

/// ECDSA over a SHA-256 digest computed by the caller; returns low-S r‖s.
pub fn sign_ecdsa(session: &Session, key: ObjectHandle, digest: &[u8; 32]) -> OpResult<[u8; 64]> {
    let raw = session.sign(&Mechanism::Ecdsa, key, digest)?;
    let signature =
        p256::ecdsa::Signature::from_slice(&raw).map_err(|e| malformed("ECDSA signature", e))?;
    let low_s = signature.normalize_s().unwrap_or(signature);
    Ok(low_s.to_bytes().into())
}

pub fn destroy(session: &Session, object: ObjectHandle) -> OpResult<()> {
    Ok(session.destroy_object(object)?)
}

fn find_one(
    session: &Session,
    template: &[Attribute],
    what: &'static str,
) -> OpResult<Option<ObjectHandle>> {
    let found = session.find_objects(template)?;
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        many => Err(Failure::Domain(HsmError::ObjectAmbiguous {
            label: what.to_owned(),
            count: many.len(),
        })),
    }
}

/// Every checkpoint note kept in the token: normally one, two if rkmd stopped
/// between creating the new object and destroying the old.
pub fn read_checkpoints(session: &Session) -> OpResult<Vec<Vec<u8>>> {
    let mut notes = Vec::new();
    for object in session.find_objects(&templates::find_checkpoint_object())? {
        let attributes = session.get_attributes(object, &[AttributeType::Value])?;
        match attributes.into_iter().next() {
            Some(Attribute::Value(value)) => notes.push(value),
            _ => return Err(malformed("checkpoint object", "CKA_VALUE missing")),
        }
    }
    Ok(notes)
}

/// Replaces the checkpoint note kept in the token. Tokens may refuse to change
/// a data object's value, so the new object is created before the old ones
/// are destroyed: a crash in between leaves both, never neither.
pub fn write_checkpoint(session: &Session, note: &[u8]) -> OpResult<()> {
    let old = session.find_objects(&templates::find_checkpoint_object())?;
    session.create_object(&templates::checkpoint_object(note.to_vec()))?;
    for object in old {
        session.destroy_object(object)?;
    }
    Ok(())
}

/// Destroys the data objects that a crash inside C_CreateObject leaves: a
/// token data object with neither label nor application, which is what
/// SoftHSM has written of a checkpoint object before the attributes of its
/// template (rkm makes every object it creates with both). Returns how many.
pub fn remove_half_made_objects(session: &Session) -> OpResult<usize> {
    let mut removed = 0;
    let candidates =
        session.find_objects(&[Attribute::Token(true), Attribute::Class(ObjectClass::DATA)])?;
    for object in candidates {
        let attributes =
            session.get_attributes(object, &[AttributeType::Label, AttributeType::Application])?;
        let unnamed = attributes.iter().all(|attribute| match attribute {
            Attribute::Label(label) => label.is_empty(),
            Attribute::Application(application) => application.is_empty(),
            _ => true,
        });
        if unnamed {
            session.destroy_object(object)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The audit key pair if the token has it: (private key, raw public key).
pub fn find_audit_key(session: &Session) -> OpResult<Option<(ObjectHandle, [u8; 32])>> {
    let private = find_one(
        session,
        &templates::find_audit_key(ObjectClass::PRIVATE_KEY),
        "rkm-audit-key (private key)",
    )?;
    let public = find_one(
        session,
        &templates::find_audit_key(ObjectClass::PUBLIC_KEY),
        "rkm-audit-key (public key)",
    )?;
    match (private, public) {
        (None, None) => Ok(None),
        (Some(private), Some(public)) => {
            let value = ec_point(session, public)?;
            let raw = unwrap_octet_string(&value, 32)?;
            let key: [u8; 32] = raw
                .try_into()
                .map_err(|_| malformed("Ed25519 key", "length"))?;
            Ok(Some((private, key)))
        }
        _ => Err(Failure::Domain(HsmError::ObjectMissing {
            what: "complete audit key pair (one half is missing: the token was modified outside rkm)",
        })),
    }
}

/// Generates the persistent Ed25519 audit key pair.
pub fn generate_audit_key(session: &Session) -> OpResult<()> {
    session.generate_key_pair(
        &Mechanism::EccEdwardsKeyPairGen,
        &templates::audit_public_key(),
        &templates::audit_private_key(),
    )?;
    Ok(())
}

pub fn sign_eddsa(session: &Session, key: ObjectHandle, message: &[u8]) -> OpResult<[u8; 64]> {
    let mechanism = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
    let raw = session.sign(&mechanism, key, message)?;
    raw.as_slice()
        .try_into()
        .map_err(|_| malformed("Ed25519 signature", format!("{} bytes", raw.len())))
}

/// The share holding key if the token has it.
pub fn find_holding_key(session: &Session) -> OpResult<Option<ObjectHandle>> {
    find_one(
        session,
        &templates::find_holding_key(),
        templates::HOLDING_KEY_LABEL,
    )
}

/// The share holding key, generated in the token the first time.
pub fn get_or_create_holding_key(session: &Session) -> OpResult<ObjectHandle> {
    if let Some(key) = find_holding_key(session)? {
        return Ok(key);
    }
    Ok(session.generate_key(&Mechanism::AesKeyGen, &templates::holding_key())?)
}

/// GCM nonce length and tag length in bits (NIST SP 800-38D).
const GCM_IV_LEN: usize = 12;
const GCM_TAG_BITS: u64 = 128;

/// AES-GCM under the holding key with a fresh random IV; returns IV ‖ ciphertext ‖ tag.
pub fn hold(
    session: &Session,
    key: ObjectHandle,
    plaintext: &[u8],
    aad: &[u8],
) -> OpResult<Vec<u8>> {
    let mut iv = [0u8; GCM_IV_LEN];
    session.generate_random_slice(&mut iv)?;
    let mut iv_param = iv;
    let params = GcmParams::new(&mut iv_param, aad, GCM_TAG_BITS.into())?;
    let ciphertext = session.encrypt(&Mechanism::AesGcm(params), key, plaintext)?;
    let mut held = Vec::with_capacity(GCM_IV_LEN + ciphertext.len());
    held.extend_from_slice(&iv);
    held.extend_from_slice(&ciphertext);
    Ok(held)
}

/// Reverses [`hold`]; a changed ciphertext, IV or AAD fails authentication.
pub fn release(
    session: &Session,
    key: ObjectHandle,
    held: &[u8],
    aad: &[u8],
) -> OpResult<Zeroizing<Vec<u8>>> {
    if held.len() < GCM_IV_LEN + 16 {
        return Err(Failure::Domain(HsmError::HeldDataInvalid));
    }
    let (iv, ciphertext) = held.split_at(GCM_IV_LEN);
    let mut iv: [u8; GCM_IV_LEN] = iv.try_into().expect("split at the IV length");
    let params = GcmParams::new(&mut iv, aad, GCM_TAG_BITS.into())?;
    session
        .decrypt(&Mechanism::AesGcm(params), key, ciphertext)
        .map(Zeroizing::new)
        .map_err(|error| match return_value(&error) {
            Some(
                RvError::GeneralError
                | RvError::EncryptedDataInvalid
                | RvError::EncryptedDataLenRange
                | RvError::DataInvalid,
            ) => Failure::Domain(HsmError::HeldDataInvalid),
            _ => Failure::Pkcs11(error),
        })
}

/// Counts the objects this session can see: (session objects, token objects).
pub fn count_objects(session: &Session) -> OpResult<(usize, usize)> {
    let session_objects = session.find_objects(&[Attribute::Token(false)])?.len();
    let token_objects = session.find_objects(&[Attribute::Token(true)])?.len();
    Ok((session_objects, token_objects))
}
