//! What ceremonies ask of the HSM: randomness, recovery keys and KEKs as
//! session objects, wrapping, unwrapping and signing with them.

use zeroize::Zeroizing;

use super::worker::Retry;
use super::{GeneratedKey, Hsm, HsmError, HsmObject, KekKey, Made, SigningKey, ops};
use crate::secrets::KekBytes;

impl Hsm {
    /// `len` bytes from the HSM's RNG.
    ///
    /// # Errors
    /// The HSM fails or has shut down.
    pub async fn random(&self, len: usize) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        self.submit("random", Retry::OnceAfterReopen, move |session| {
            let mut buffer = Zeroizing::new(vec![0u8; len]);
            ops::random(session, &mut buffer)?;
            Ok(buffer)
        })
        .await
    }

    /// A new KEK from the HSM's RNG, in zeroizing host memory.
    ///
    /// # Security
    /// The caller splits it and drops it; it must never be stored whole.
    ///
    /// # Errors
    /// The HSM fails or has shut down.
    pub async fn random_kek(&self) -> Result<KekBytes, HsmError> {
        let bytes = self.random(KekBytes::LEN).await?;
        KekBytes::try_from_slice(&bytes).map_err(|found| HsmError::Malformed {
            what: "random bytes",
            detail: format!("{found} bytes"),
        })
    }

    /// Generates an ECDSA P-256 recovery key pair as session objects. Never
    /// retried: after a lost session the caller must start again.
    ///
    /// # Errors
    /// The HSM fails, or its session is lost during generation.
    pub async fn generate_recovery_key(&self) -> Result<GeneratedKey, HsmError> {
        self.submit("generate recovery key", Retry::Never, |session| {
            let (public, private) = ops::generate_recovery_key(session)?;
            match ops::p256_public_key_spki(session, public) {
                Ok(public_key_spki) => Ok(GeneratedKey {
                    public_key_spki,
                    private: SigningKey(Made::new(session, private)),
                    public: HsmObject(Made::new(session, public)),
                }),
                Err(failure) => {
                    // Do not leave an unusable key pair behind.
                    let _ = ops::destroy(session, private);
                    let _ = ops::destroy(session, public);
                    Err(failure)
                }
            }
        })
        .await
    }

    /// Loads `kek` as a session AES-256 key that can only wrap and unwrap.
    ///
    /// # Errors
    /// The HSM refuses the key or fails.
    pub async fn import_kek(&self, kek: KekBytes) -> Result<KekKey, HsmError> {
        self.submit("import KEK", Retry::OnceAfterReopen, move |session| {
            ops::import_kek(session, &kek).map(|handle| KekKey(Made::new(session, handle)))
        })
        .await
    }

    /// Wraps `key` under `kek` with CKM_AES_KEY_WRAP_PAD (RFC 5649); the blob is
    /// the PKCS#8 private key, encrypted.
    ///
    /// # Errors
    /// The HSM fails or one of the objects is gone.
    pub async fn wrap(&self, kek: KekKey, key: SigningKey) -> Result<Vec<u8>, HsmError> {
        self.submit("wrap", Retry::OnceAfterReopen, move |session| {
            ops::wrap(
                session,
                kek.0.live(session, "KEK")?,
                key.0.live(session, "recovery key")?,
            )
        })
        .await
    }

    /// Unwraps `blob` under `kek` as a sign-only, non-extractable session key.
    ///
    /// # Errors
    /// [`HsmError::UnwrapFailed`] when the blob is damaged or was wrapped under
    /// another KEK; nothing is created then.
    pub async fn unwrap(&self, kek: KekKey, blob: Vec<u8>) -> Result<SigningKey, HsmError> {
        self.submit("unwrap", Retry::OnceAfterReopen, move |session| {
            ops::unwrap(session, kek.0.live(session, "KEK")?, &blob)
                .map(|handle| SigningKey(Made::new(session, handle)))
        })
        .await
    }

    /// ECDSA P-256 signature (low-S, r‖s) over a SHA-256 digest.
    ///
    /// # Errors
    /// The HSM fails or the key is gone.
    pub async fn sign_digest(
        &self,
        key: SigningKey,
        digest: [u8; 32],
    ) -> Result<[u8; 64], HsmError> {
        self.submit("sign", Retry::OnceAfterReopen, move |session| {
            ops::sign_ecdsa(session, key.0.live(session, "recovery key")?, &digest)
        })
        .await
    }

    /// ECDSA P-256 signatures (low-S, r‖s) over many SHA-256 digests, in order,
    /// as one job on one session: bulk signing pays the hand-off to a worker
    /// and the wake-up of the caller once per batch instead of per signature.
    ///
    /// # Errors
    /// The HSM fails or the key is gone; no signature of the batch is returned.
    pub async fn sign_digests(
        &self,
        key: SigningKey,
        digests: Vec<[u8; 32]>,
    ) -> Result<Vec<[u8; 64]>, HsmError> {
        self.submit("sign batch", Retry::OnceAfterReopen, move |session| {
            let handle = key.0.live(session, "recovery key")?;
            digests
                .iter()
                .map(|digest| ops::sign_ecdsa(session, handle, digest))
                .collect()
        })
        .await
    }

    /// Destroys an object rkm created.
    ///
    /// # Errors
    /// The HSM fails or the object is already gone.
    pub async fn destroy(&self, object: impl Into<HsmObject>) -> Result<(), HsmError> {
        let object = object.into();
        self.submit("destroy", Retry::OnceAfterReopen, move |session| {
            ops::destroy(session, object.0.live(session, "object")?)
        })
        .await
    }
}
