//! rkm's persistent token objects: the audit key and its checkpoints, the
//! share holding key, and looking after the token itself (half-made objects,
//! object counts for status).

use std::sync::Arc;

use zeroize::Zeroizing;

use super::generation::TokenObject;
use super::worker::Retry;
use super::{AuditKey, HoldingKey, Hsm, HsmError, ObjectCounts, health, ops};

impl Hsm {
    /// The audit key, if the token has one.
    ///
    /// # Errors
    /// The token holds half a key pair or several, or the HSM fails.
    pub async fn find_audit_key(&self) -> Result<Option<AuditKey>, HsmError> {
        self.submit("find audit key", Retry::OnceAfterReopen, |session| {
            Ok(ops::find_audit_key(session)?.map(|(_, public_key)| AuditKey { public_key }))
        })
        .await
    }

    /// The audit key, generated as a persistent, non-extractable token object
    /// if the token has none. An existing key is never replaced.
    ///
    /// # Errors
    /// The HSM fails; a session lost during generation is not retried.
    pub async fn get_or_create_audit_key(&self) -> Result<(AuditKey, bool), HsmError> {
        if let Some(existing) = self.find_audit_key().await? {
            return Ok((existing, false));
        }
        self.submit("generate audit key", Retry::Never, |session| {
            ops::generate_audit_key(session)
        })
        .await?;
        let created = self
            .find_audit_key()
            .await?
            .ok_or(HsmError::ObjectMissing {
                what: "audit key after generating it",
            })?;
        Ok((created, true))
    }

    /// Ed25519 signature by the audit key over `message`.
    ///
    /// # Errors
    /// The HSM fails.
    pub async fn sign_with_audit_key(
        &self,
        _key: AuditKey,
        message: Vec<u8>,
    ) -> Result<[u8; 64], HsmError> {
        self.submit("audit signature", Retry::OnceAfterReopen, move |session| {
            session.with_token_object(TokenObject::AuditKey, |private| {
                ops::sign_eddsa(session, private, &message)
            })
        })
        .await
    }

    /// The audit checkpoint notes kept in the token: normally one (see
    /// [`Hsm::write_checkpoint`]).
    ///
    /// # Errors
    /// The HSM fails.
    pub async fn read_checkpoints(&self) -> Result<Vec<Vec<u8>>, HsmError> {
        self.submit("read checkpoints", Retry::OnceAfterReopen, |session| {
            ops::read_checkpoints(session)
        })
        .await
    }

    /// Keeps `note` as the token's latest audit checkpoint, replacing the
    /// previous one (created first, then the old one destroyed).
    ///
    /// # Errors
    /// The HSM fails.
    pub async fn write_checkpoint(&self, note: Vec<u8>) -> Result<(), HsmError> {
        self.submit("write checkpoint", Retry::OnceAfterReopen, move |session| {
            ops::write_checkpoint(session, &note)
        })
        .await
    }

    /// The share holding key, generated in the token the first time.
    ///
    /// # Errors
    /// The HSM fails.
    pub async fn holding_key(&self) -> Result<HoldingKey, HsmError> {
        self.submit("holding key", Retry::Never, |session| {
            ops::get_or_create_holding_key(session).map(|_| HoldingKey(()))
        })
        .await
    }

    /// Encrypts `plaintext` under the holding key (AES-GCM, `aad` bound to it).
    ///
    /// # Security
    /// The plaintext reaches the HSM only; the result is safe to store.
    ///
    /// # Errors
    /// The HSM fails.
    pub async fn hold(
        &self,
        _key: HoldingKey,
        plaintext: Zeroizing<Vec<u8>>,
        aad: Vec<u8>,
    ) -> Result<Vec<u8>, HsmError> {
        self.submit("hold share", Retry::OnceAfterReopen, move |session| {
            session.with_token_object(TokenObject::HoldingKey, |key| {
                ops::hold(session, key, &plaintext, &aad)
            })
        })
        .await
    }

    /// Decrypts what [`Hsm::hold`] produced, with the same `aad`.
    ///
    /// # Errors
    /// [`HsmError::HeldDataInvalid`] for changed data or another `aad`.
    pub async fn release(
        &self,
        _key: HoldingKey,
        held: Vec<u8>,
        aad: Vec<u8>,
    ) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        self.submit("release share", Retry::OnceAfterReopen, move |session| {
            session.with_token_object(TokenObject::HoldingKey, |key| {
                ops::release(session, key, &held, &aad)
            })
        })
        .await
    }

    /// Destroys what a crash while the token wrote an object left of it
    /// (see `ops::remove_half_made_objects`); returns how many. Call before
    /// serving, when no other rkmd uses the token.
    ///
    /// # Errors
    /// The HSM fails.
    pub async fn remove_half_made_objects(&self) -> Result<usize, HsmError> {
        self.submit(
            "remove half-made objects",
            Retry::OnceAfterReopen,
            |session| ops::remove_half_made_objects(session),
        )
        .await
    }

    /// Counts the session and token objects rkm's sessions can see.
    ///
    /// # Errors
    /// The HSM fails.
    ///
    /// Runs on the supervisor's session, not through the workers' queue: a
    /// status read must not wait behind a recovery's signing batches.
    pub async fn count_objects(&self) -> Result<ObjectCounts, HsmError> {
        if let Some(outage) = self.inner.shared.outage() {
            return Err(HsmError::Unavailable {
                cause: outage.cause,
            });
        }
        let shared = Arc::clone(&self.inner.shared);
        tokio::task::spawn_blocking(move || {
            health::on_control_session(&shared, "count objects", |session| {
                let (session_objects, token_objects) = ops::count_objects(session)?;
                Ok(ObjectCounts {
                    session_objects,
                    token_objects,
                })
            })
        })
        .await
        .map_err(|_| HsmError::ShutDown)?
    }
}
