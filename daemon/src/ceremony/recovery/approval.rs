//! One custodian's approval of a recovery: who may approve, the nonce, the
//! signature over the request digest, the share sealed to the ceremony key
//! and checked against its commitment, then held in the HSM; all recorded in
//! one audited transaction that the racing approvals cannot both win.

use rkm_proto::approval::approval_message;
use rkm_proto::audit_entry::action;
use rkm_proto::commitment::commitment_matches;
use rkm_proto::envelope::{self, EnvelopeContents};
use rkm_proto::key_record::{KeyCustodian, KeyRecord};
use rkm_proto::messages::verify_custodian_signature;
use zeroize::Zeroizing;

use super::super::state::{CeremonyState, transition};
use super::super::{CeremonyError, Services, now};
use super::nonces::check_nonce;
use super::{RecoveryState, RecoverySummary, held_share_aad};
use crate::audit::{Event, RecordError};
use crate::store;

/// One custodian's approval as submitted.
#[derive(Debug, Clone)]
pub struct ApprovalSubmission {
    pub ceremony_id: String,
    pub custodian: String,
    pub nonce: Vec<u8>,
    pub commitment: Vec<u8>,
    pub signature: Vec<u8>,
    pub sealed_share: Vec<u8>,
}

/// Whether the opened share is `custodian`'s share of `key_id`: the
/// envelope names them and the key, and the share has their x and opens
/// their commitment.
fn share_is_theirs(
    contents: &EnvelopeContents,
    key_id: &str,
    custodian: &str,
    entry: &KeyCustodian,
) -> bool {
    contents.key_id == key_id
        && contents.custodian == custodian
        && contents.share.x() == entry.x
        && commitment_matches(key_id, &contents.share, &contents.salt, &entry.commitment)
}

/// Whether one more approval, making `count` of a `threshold`, reaches the
/// quorum.
fn quorum_reached(count: u64, threshold: u64) -> bool {
    count >= threshold
}

impl Services {
    /// Checks and records one custodian's approval, holding their share in
    /// the HSM; the K-th approval starts the signing.
    ///
    /// # Errors
    /// Each refusal says why, names the custodian, and is audited; nothing of
    /// a refused approval is kept and earlier approvals are untouched.
    pub async fn approve(
        &self,
        peer: &str,
        approval: ApprovalSubmission,
    ) -> Result<RecoverySummary, CeremonyError> {
        let event = Event::ok(peer, action::RECOVERY_APPROVE)
            .subject(approval.ceremony_id.clone())
            .detail("custodian", approval.custodian.clone());
        let held = match self.check_approval(&approval).await {
            Ok(held) => held,
            Err(error) => return self.refuse(event, error).await,
        };
        // The approval's signature verified: the custodian is the actor.
        let event = Event {
            actor: approval.custodian.clone(),
            ..event
        };
        let ceremony_id = approval.ceremony_id.clone();
        let reached = match self.record_approval(event.clone(), approval, held).await {
            Ok(reached) => reached,
            // Lost a race inside the transaction (the quorum was reached or
            // the nonce used meanwhile): nothing was kept.
            Err(RecordError::Change(
                error @ (CeremonyError::FailedPrecondition(_) | CeremonyError::NoLongerIn { .. }),
            )) => return self.refuse(event, error).await,
            Err(error) => return Err(error.into()),
        };
        if reached {
            let services = self.clone();
            let id = ceremony_id.clone();
            tokio::spawn(async move { services.run_quorum(id).await });
        }
        self.audit.checkpoint().await?;
        self.get_recovery(ceremony_id).await
    }

    /// Checks that `custodian` may approve ceremony `ceremony_id` now: it is
    /// open (and confirmed, under the two-person rule), and they are an enabled custodian of its key.
    pub(super) async fn approver(
        &self,
        ceremony_id: &str,
        custodian: &str,
    ) -> Result<(RecoverySummary, KeyRecord), CeremonyError> {
        let summary = self.get_recovery(ceremony_id.to_owned()).await?;
        // Membership first: someone who holds no share of this key learns
        // nothing of the ceremony (its key, state or opener).
        let record = self.verified_record(&summary.key_id).await?;
        if record.custodian(custodian).is_none() {
            return Err(CeremonyError::PermissionDenied(format!(
                "{custodian:?} is not a custodian of the key of ceremony {ceremony_id}"
            )));
        }
        if summary.state != RecoveryState::Open {
            return Err(CeremonyError::FailedPrecondition(format!(
                "ceremony {ceremony_id} is {}; it takes no more approvals",
                summary.state.as_str()
            )));
        }
        if summary.awaiting_confirmation {
            return Err(CeremonyError::FailedPrecondition(format!(
                "ceremony {ceremony_id} awaits a second operator's confirmation (two-person rule): it takes approvals once an operator other than {} runs `rkm recovery confirm {ceremony_id}`; you will get a notice",
                summary.opened_by
            )));
        }
        let name = custodian.to_owned();
        let enrolled = self
            .store
            .read(move |tx| store::custodians::load(tx, &name))
            .await?;
        if !enrolled.is_some_and(|c| c.enabled) {
            return Err(CeremonyError::PermissionDenied(format!(
                "custodian {custodian:?} is disabled and can no longer approve"
            )));
        }
        Ok((summary, record))
    }

    /// Every check of an approval, in order; returns the share held under
    /// the HSM's holding key.
    async fn check_approval(
        &self,
        approval: &ApprovalSubmission,
    ) -> Result<Vec<u8>, CeremonyError> {
        let custodian = &approval.custodian;
        let (summary, record) = self.approver(&approval.ceremony_id, custodian).await?;
        let entry = record.custodian(custodian).expect("approver() checked it");
        if summary.approvals.iter().any(|a| &a.custodian == custodian) {
            return Err(CeremonyError::FailedPrecondition(format!(
                "{custodian:?} has already approved ceremony {}; an approval counts once",
                approval.ceremony_id
            )));
        }
        self.check_issued_nonce(approval).await?;
        check_approval_signature(approval, &summary, &record, entry)?;
        let contents = self.open_submitted_share(approval)?;
        if !share_is_theirs(&contents, &record.key_id, custodian, entry) {
            return Err(CeremonyError::InvalidArgument(format!(
                "the share submitted by {custodian:?} fails its commitment in key record {}: it is not their share of this key",
                record.key_id
            )));
        }
        self.hold_share(&approval.ceremony_id, custodian, contents)
            .await
    }

    /// Refuses a nonce this rkmd did not issue for this approval, or one
    /// used or expired.
    async fn check_issued_nonce(&self, approval: &ApprovalSubmission) -> Result<(), CeremonyError> {
        let nonce = approval.nonce.clone();
        let issued = self
            .store
            .read(move |tx| store::approvals::nonce(tx, &nonce))
            .await?;
        check_nonce(
            issued.as_ref(),
            &approval.ceremony_id,
            &approval.custodian,
            &now(),
        )
    }

    /// Opens the share sealed to this ceremony's key.
    fn open_submitted_share(
        &self,
        approval: &ApprovalSubmission,
    ) -> Result<EnvelopeContents, CeremonyError> {
        let custodian = &approval.custodian;
        let runtime = self.recovery_runtime()?;
        match runtime.open_sealed(&approval.ceremony_id, &approval.sealed_share) {
            None => Err(CeremonyError::FailedPrecondition(
                "this ceremony's key changed (rkmd restarted): run `rkm recovery approve` again"
                    .to_owned(),
            )),
            Some(Err(envelope::EnvelopeError::NotForThisIdentity)) => {
                Err(CeremonyError::FailedPrecondition(format!(
                    "the share of {custodian:?} was sealed to another key than this ceremony's (rkmd restarted since, or it is for another ceremony): run `rkm recovery approve` again"
                )))
            }
            Some(Err(error)) => Err(CeremonyError::InvalidArgument(format!(
                "the share of {custodian:?} does not open with this ceremony's key: {error}"
            ))),
            Some(Ok(contents)) => Ok(contents),
        }
    }

    /// Encrypts the share under the HSM's holding key, bound to this
    /// ceremony and custodian; the plaintext is wiped here.
    async fn hold_share(
        &self,
        ceremony_id: &str,
        custodian: &str,
        contents: EnvelopeContents,
    ) -> Result<Vec<u8>, CeremonyError> {
        let runtime = self.recovery_runtime()?;
        let mut payload = Zeroizing::new(Vec::with_capacity(65));
        payload.push(contents.share.x());
        payload.extend_from_slice(contents.share.expose_y());
        payload.extend_from_slice(&contents.salt);
        drop(contents);
        Ok(self
            .hsm
            .hold(
                runtime.holding_key,
                payload,
                held_share_aad(ceremony_id, custodian),
            )
            .await?)
    }

    /// Stores an accepted approval and uses its nonce, in one audited
    /// transaction; tells whether it completed the quorum.
    async fn record_approval(
        &self,
        event: Event,
        approval: ApprovalSubmission,
        held: Vec<u8>,
    ) -> Result<bool, RecordError<CeremonyError>> {
        let (_, reached) = self
            .audit
            .record_with(event, move |tx| {
                // Approvals race: only one may move the ceremony on, and none
                // may land after it left the open state.
                let id = &approval.ceremony_id;
                let state = store::ceremonies::status(tx, id)?.state;
                if state != RecoveryState::Open.as_str() {
                    return Err(CeremonyError::FailedPrecondition(format!(
                        "ceremony {id} is {state}; it takes no more approvals"
                    )));
                }
                if !store::approvals::use_nonce(tx, &approval.nonce)? {
                    return Err(CeremonyError::FailedPrecondition(
                        "the approval's nonce was already used".to_owned(),
                    ));
                }
                store::approvals::insert(
                    tx,
                    &store::approvals::NewApproval {
                        ceremony_id: id,
                        custodian: &approval.custodian,
                        nonce: &approval.nonce,
                        commitment: &approval.commitment,
                        signature: &approval.signature,
                        held_share: &held,
                        approved_at: &now(),
                    },
                )?;
                let (count, threshold) = store::approvals::count_and_threshold(tx, id)?;
                if !quorum_reached(count, threshold) {
                    return Ok(false);
                }
                transition(tx, id, CeremonyState::Open, CeremonyState::Signing)?;
                Ok(true)
            })
            .await?;
        Ok(reached)
    }
}

/// Checks the approval's nonce and commitment sizes, that the commitment is
/// the custodian's in the key record, and their signature over this
/// ceremony's request digest.
fn check_approval_signature(
    approval: &ApprovalSubmission,
    summary: &RecoverySummary,
    record: &KeyRecord,
    entry: &KeyCustodian,
) -> Result<(), CeremonyError> {
    let custodian = &approval.custodian;
    let nonce: [u8; 32] = approval
        .nonce
        .as_slice()
        .try_into()
        .map_err(|_| CeremonyError::InvalidArgument("the nonce must be 32 bytes".to_owned()))?;
    let commitment: [u8; 32] = approval.commitment.as_slice().try_into().map_err(|_| {
        CeremonyError::InvalidArgument("the commitment must be 32 bytes".to_owned())
    })?;
    if commitment != entry.commitment {
        return Err(CeremonyError::InvalidArgument(format!(
            "the approval of {custodian:?} names a share commitment that is not theirs in key record {}",
            record.key_id
        )));
    }
    let digest: [u8; 32] =
        summary.request_digest.as_slice().try_into().map_err(|_| {
            CeremonyError::Internal("stored request digest is not 32 bytes".to_owned())
        })?;
    let message = approval_message(&approval.ceremony_id, &digest, &nonce, &commitment);
    verify_custodian_signature(&entry.ed25519_public_key, &message, &approval.signature).map_err(
        |error| {
            CeremonyError::PermissionDenied(format!(
                "the approval is not a signature by {custodian:?} over this ceremony's request digest {} ({error}); if the request changed, review it again",
                hex::encode(digest)
            ))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_is_reached_at_the_threshold_not_before() {
        assert!(!quorum_reached(1, 2));
        assert!(quorum_reached(2, 2));
        assert!(quorum_reached(3, 2));
    }
}
