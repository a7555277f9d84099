//! The custodians' side of a key generation: each fetches their sealed
//! share (a signed request), verifies it offline, and sends a signed receipt
//! with a proof of possession; the last receipt activates the key and
//! completes the ceremony.

use rkm_proto::audit_entry::action;
use rkm_proto::messages::{
    envelope_fetch_message, share_receipt_message, verify_custodian_signature,
};

use super::super::custodians::{self, Custodian, KeySlot};
use super::super::state::{CeremonyState, KeyState, transition};
use super::super::{CeremonyError, Services, now};
use super::{FETCH_CLOCK_SKEW, FetchedEnvelope, KeySummary, unix_now, within_clock_skew};
use crate::audit::Event;
use crate::store;

/// A receipt as the custodian sent it.
struct SubmittedReceipt {
    custodian: String,
    signature: Vec<u8>,
    possession_proof: Vec<u8>,
}

impl Services {
    /// Hands a custodian their sealed share, after checking their signature.
    ///
    /// # Errors
    /// Unknown key, not a custodian of it, a bad or stale signature, or a
    /// receipt already in (the envelope is then deleted).
    pub async fn fetch_envelope(
        &self,
        peer: &str,
        key: String,
        custodian: String,
        unix_time: u64,
        signature: Vec<u8>,
    ) -> Result<FetchedEnvelope, CeremonyError> {
        // Refusals name the caller; only a verified signature makes the
        // custodian the actor.
        let event = Event::ok(peer, action::ENVELOPE_FETCH).detail("custodian", custodian.clone());
        let summary = match self.get_key(key).await {
            Ok(summary) => summary,
            Err(error) => return self.refuse(event, error).await,
        };
        let event = event.subject(summary.key_id.clone());
        let (key_id, name) = (summary.key_id.clone(), custodian.clone());
        let (holder, envelope) = self
            .store
            .read(move |tx| {
                Ok((
                    store::custodians::load(tx, &name)?,
                    store::keys::envelope_of(tx, &key_id, &name)?,
                ))
            })
            .await?;
        let (Some(holder), Some(envelope)) = (holder, envelope) else {
            let error = CeremonyError::PermissionDenied(format!(
                "{custodian:?} is not a custodian of key {}",
                summary.label
            ));
            return self.refuse(event, error).await;
        };
        let message = envelope_fetch_message(&summary.key_id, &custodian, unix_time);
        if let Err(error) =
            verify_custodian_signature(&holder.ed25519_public_key, &message, &signature)
        {
            let error = CeremonyError::PermissionDenied(format!(
                "the request is not signed by custodian {custodian:?}'s identity: {error}"
            ));
            return self.refuse(event, error).await;
        }
        if !within_clock_skew(unix_now(), unix_time) {
            let error = CeremonyError::PermissionDenied(format!(
                "the request's time is more than {FETCH_CLOCK_SKEW} s from rkmd's clock; check the clock and retry"
            ));
            return self.refuse(event, error).await;
        }
        let event = Event {
            actor: custodian.clone(),
            ..event
        };
        let Some(envelope) = envelope else {
            let error = CeremonyError::FailedPrecondition(format!(
                "{custodian:?} already confirmed their share of key {}; the envelope was deleted. Use the share stored by `rkm share fetch`",
                summary.label
            ));
            return self.refuse(event, error).await;
        };
        if let Err(error) = self.check_not_expired(&summary.ceremony_id).await {
            return self.refuse(event, error).await;
        }
        self.audit.record(event).await?;
        Ok(FetchedEnvelope {
            key_id: summary.key_id,
            envelope,
            signed_key_record: summary.signed_key_record,
        })
    }

    /// Records a custodian's signed receipt for their share and deletes the
    /// envelope; the key becomes active with the last receipt.
    ///
    /// # Errors
    /// Unknown key, not a custodian of it, a bad signature, a receipt already
    /// in, or an expired ceremony.
    pub async fn submit_receipt(
        &self,
        peer: &str,
        key: String,
        custodian: String,
        signature: Vec<u8>,
        possession_proof: Vec<u8>,
    ) -> Result<KeySummary, CeremonyError> {
        let event = Event::ok(peer, action::SHARE_RECEIPT).detail("custodian", custodian.clone());
        let summary = match self.get_key(key).await {
            Ok(summary) => summary,
            Err(error) => return self.refuse(event, error).await,
        };
        let event = event
            .subject(summary.key_id.clone())
            .detail("ceremony_id", summary.ceremony_id.clone());
        let receipt = SubmittedReceipt {
            custodian,
            signature,
            possession_proof,
        };
        let (holder, slot) = match self.custodian_slot(&summary, &receipt.custodian).await? {
            Ok(found) => found,
            Err(error) => return self.refuse(event, error).await,
        };
        if let Err(error) = check_receipt_signature(&summary, &receipt, &holder, &slot) {
            return self.refuse(event, error).await;
        }
        // The signature is theirs: the custodian is the actor from here on.
        let event = Event {
            actor: receipt.custodian.clone(),
            ..event
        };
        if let Err(error) = self.check_receipt_due(&summary, &receipt, &slot).await {
            return self.refuse(event, error).await;
        }
        let completed = self.store_receipt(event, &summary, receipt).await?;
        if completed {
            self.audit
                .record(
                    Event::ok("rkmd", action::CEREMONY_COMPLETE)
                        .subject(summary.ceremony_id.clone())
                        .detail("key_id", summary.key_id.clone())
                        .detail("state", KeyState::Active.as_str()),
                )
                .await?;
        }
        self.audit.checkpoint().await?;
        self.get_key(summary.key_id).await
    }

    /// Refuses a second receipt, or one after the receipt window.
    async fn check_receipt_due(
        &self,
        summary: &KeySummary,
        receipt: &SubmittedReceipt,
        slot: &KeySlot,
    ) -> Result<(), CeremonyError> {
        if !slot.received_at.is_empty() {
            return Err(CeremonyError::FailedPrecondition(format!(
                "{:?} already sent a receipt for key {} at {}",
                receipt.custodian, summary.label, slot.received_at
            )));
        }
        self.check_not_expired(&summary.ceremony_id).await
    }

    /// Stores the receipt (deleting the envelope) in one audited transaction
    /// with, for the last one, the key's activation and the ceremony's
    /// completion; tells whether it was the last.
    async fn store_receipt(
        &self,
        event: Event,
        summary: &KeySummary,
        receipt: SubmittedReceipt,
    ) -> Result<bool, CeremonyError> {
        let (key_id, ceremony) = (summary.key_id.clone(), summary.ceremony_id.clone());
        let (_, completed) = self
            .audit
            .record_with(event, move |tx| {
                // The receipt follows the same offline check as an
                // attestation, so it is the custodian's first attestation.
                let missing = store::keys::record_receipt(
                    tx,
                    &key_id,
                    &receipt.custodian,
                    &receipt.signature,
                    &now(),
                    unix_now(),
                )?;
                if missing == 0 {
                    store::keys::set_state(tx, &key_id, KeyState::Active.as_str())?;
                    transition(
                        tx,
                        &ceremony,
                        CeremonyState::AwaitingReceipts,
                        CeremonyState::Completed,
                    )?;
                }
                Ok::<_, CeremonyError>(missing == 0)
            })
            .await?;
        Ok(completed)
    }
}

/// Checks the receipt's signature by the custodian over their share's
/// commitment, and its proof of possession of the share.
fn check_receipt_signature(
    summary: &KeySummary,
    receipt: &SubmittedReceipt,
    holder: &Custodian,
    slot: &KeySlot,
) -> Result<(), CeremonyError> {
    let commitment = custodians::stored_commitment(slot.commitment.clone())?;
    let message = share_receipt_message(&summary.key_id, &receipt.custodian, slot.x, &commitment);
    custodians::check_signed_over_share(holder, &message, &receipt.signature, "receipt")?;
    custodians::check_possession(
        slot.possession_public_key.clone(),
        &message,
        &receipt.possession_proof,
        "receipt",
    )?;
    Ok(())
}
