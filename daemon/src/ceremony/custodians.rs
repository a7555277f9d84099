//! Enrolling and disabling key custodians (operators), from the public card
//! each custodian made with `rkm custodian init`; and the check that a
//! custodian signed over their share (receipts, attestations).

use rkm_proto::audit_entry::action;
use rkm_proto::custodian_card::CustodianCard;

use super::keygen::KeySummary;
use super::{CeremonyError, Services, now};
use crate::audit::Event;
use crate::store;

pub use crate::store::custodians::{Custodian, KeySlot};

/// Checks that `signature` over `message` is by `custodian`'s enrolled
/// identity over their share's commitment; `what` names the signed thing in
/// the refusal ("receipt", "attestation").
pub fn check_signed_over_share(
    custodian: &Custodian,
    message: &[u8],
    signature: &[u8],
    what: &str,
) -> Result<(), CeremonyError> {
    rkm_proto::messages::verify_custodian_signature(
        &custodian.ed25519_public_key,
        message,
        signature,
    )
    .map_err(|error| {
        CeremonyError::PermissionDenied(format!(
            "the {what} is not signed by custodian {:?}'s identity over their share's commitment: {error}",
            custodian.name
        ))
    })
}

/// Checks a receipt's or an attestation's proof of possession of the share
/// against the public key rkmd kept from the key generation. Returns whether
/// it was checked: keys imported from a record have none here.
pub fn check_possession(
    stored: Option<Vec<u8>>,
    message: &[u8],
    proof: &[u8],
    what: &str,
) -> Result<bool, CeremonyError> {
    let Some(stored) = stored else {
        return Ok(false);
    };
    let key: [u8; 32] = stored.try_into().map_err(|_| {
        CeremonyError::Internal("stored possession public key is not 32 bytes".to_owned())
    })?;
    if rkm_proto::commitment::possession_proof_matches(&key, message, proof) {
        Ok(true)
    } else {
        Err(CeremonyError::PermissionDenied(format!(
            "the {what} does not prove possession of the share: it was made without the share (or with another one); check the share with `rkm share verify` and send it again"
        )))
    }
}

/// A share commitment as stored.
pub fn stored_commitment(bytes: Vec<u8>) -> Result<[u8; 32], CeremonyError> {
    bytes
        .try_into()
        .map_err(|_| CeremonyError::Internal("stored commitment is not 32 bytes".to_owned()))
}

impl Services {
    /// The custodian and their slot in the key; the inner error is a refusal
    /// to audit (not a custodian of this key): receipts and attestations
    /// both start here.
    pub(super) async fn custodian_slot(
        &self,
        summary: &KeySummary,
        custodian: &str,
    ) -> Result<Result<(Custodian, KeySlot), CeremonyError>, CeremonyError> {
        let (key_id, name) = (summary.key_id.clone(), custodian.to_owned());
        let (holder, slot) = self
            .store
            .read(move |tx| {
                Ok((
                    store::custodians::load(tx, &name)?,
                    store::custodians::load_slot(tx, &key_id, &name)?,
                ))
            })
            .await?;
        Ok(match (holder, slot) {
            (Some(holder), Some(slot)) => Ok((holder, slot)),
            _ => Err(CeremonyError::PermissionDenied(format!(
                "{custodian:?} is not a custodian of key {}",
                summary.label
            ))),
        })
    }

    /// Enrols the custodian of `card_text`.
    ///
    /// # Errors
    /// A malformed card, or a name, signing key or age recipient that another
    /// custodian already has.
    pub async fn enrol_custodian(
        &self,
        actor: &str,
        card_text: String,
    ) -> Result<Custodian, CeremonyError> {
        let event = Event::ok(actor, action::CUSTODIAN_ENROL);
        let card = match CustodianCard::parse(&card_text) {
            Ok(card) => card,
            Err(error) => {
                let error = CeremonyError::InvalidArgument(format!(
                    "the custodian card is not valid: {error}"
                ));
                return self.refuse(event, error).await;
            }
        };
        let event = event
            .subject(card.name.clone())
            .detail("custodian", card.name.clone())
            .detail("fingerprint", card.fingerprint());
        let (name, signing_key, recipient) = (
            card.name.clone(),
            card.ed25519_public_key,
            card.age_recipient.clone(),
        );
        let conflict = self
            .store
            .read(move |tx| store::custodians::holder_of(tx, &name, &signing_key, &recipient))
            .await?;
        if let Some(existing) = conflict {
            let error = if existing == card.name {
                CeremonyError::FailedPrecondition(format!(
                    "a custodian named {existing:?} is already enrolled; a new card for the same person needs a new name, or disable the old one first"
                ))
            } else {
                CeremonyError::FailedPrecondition(format!(
                    "this card's keys already belong to custodian {existing:?}; each custodian needs their own identity"
                ))
            };
            return self.refuse(event, error).await;
        }
        let custodian = Custodian {
            name: card.name.clone(),
            ed25519_public_key: card.ed25519_public_key,
            age_recipient: card.age_recipient.clone(),
            fingerprint: card.fingerprint(),
            enabled: true,
            enrolled_at: now(),
            disabled_reason: String::new(),
        };
        let stored = custodian.clone();
        self.audit
            .record_with(event, move |tx| {
                store::custodians::insert(tx, &stored, &card_text)
            })
            .await?;
        Ok(custodian)
    }

    /// Every custodian, by name.
    ///
    /// # Errors
    /// The store fails.
    pub async fn list_custodians(&self) -> Result<Vec<Custodian>, CeremonyError> {
        Ok(self.store.read(store::custodians::list).await?)
    }

    /// Disables a custodian: no new key will include them.
    ///
    /// # Errors
    /// Unknown or already disabled custodian, or an empty reason.
    pub async fn disable_custodian(
        &self,
        actor: &str,
        name: String,
        reason: String,
    ) -> Result<Custodian, CeremonyError> {
        let event = Event::ok(actor, action::CUSTODIAN_DISABLE)
            .subject(name.clone())
            .detail("custodian", name.clone())
            .detail("disable_reason", reason.clone());
        if reason.trim().is_empty() {
            let error = CeremonyError::InvalidArgument(
                "say why the custodian is disabled (--reason)".to_owned(),
            );
            return self.refuse(event, error).await;
        }
        let lookup = name.clone();
        let existing = self
            .store
            .read(move |tx| store::custodians::load(tx, &lookup))
            .await?;
        let Some(mut custodian) = existing else {
            let error = CeremonyError::not_found(
                "custodian",
                name,
                "; `rkm custodian list` shows who is enrolled",
            );
            return self.refuse(event, error).await;
        };
        if !custodian.enabled {
            let error = CeremonyError::FailedPrecondition(format!(
                "custodian {name:?} is already disabled ({})",
                custodian.disabled_reason
            ));
            return self.refuse(event, error).await;
        }
        let stored_reason = reason.clone();
        self.audit
            .record_with(event, move |tx| {
                store::custodians::disable(tx, &name, &stored_reason)
            })
            .await?;
        custodian.enabled = false;
        custodian.disabled_reason = reason;
        Ok(custodian)
    }
}
