//! Share attestations between ceremonies: a custodian checks their share
//! offline against the key record (`rkm share verify --attest`) and signs that
//! they still hold it. rkmd keeps each custodian's latest attestation per key,
//! so `rkm status` and `rkm key show` show how many custodians attested
//! recently against the threshold: a quorum at risk is seen before an
//! incident, not during one.

use rkm_proto::messages::share_attestation_message;

use super::keygen::{FETCH_CLOCK_SKEW, KeySummary, unix_now, within_clock_skew};
use super::{CeremonyError, Services, custodians};
use crate::audit::{Event, RecordError};
use crate::store;

impl Services {
    /// Records `custodian`'s attestation that they hold their share of `key`,
    /// signed over `unix_time`.
    ///
    /// # Errors
    /// Each refusal says why and is audited: an unknown key, someone who is
    /// not an enabled custodian of it, a signature that does not verify with
    /// their enrolled key over their share's commitment, a time more than
    /// 300 s from rkmd's clock, or one not later than their last attestation
    /// (a replay).
    pub async fn attest_share(
        &self,
        peer: &str,
        key: String,
        custodian: String,
        unix_time: u64,
        signature: Vec<u8>,
        possession_proof: Vec<u8>,
    ) -> Result<KeySummary, CeremonyError> {
        let event = Event::ok(peer, "share.attest")
            .detail("custodian", custodian.clone())
            .detail("unix_time", unix_time.to_string());
        let summary = match self.get_key(key).await {
            Ok(summary) => summary,
            Err(error) => return self.refuse(event, error).await,
        };
        let event = event.subject(summary.key_id.clone());
        let (key_id, name) = (summary.key_id.clone(), custodian.clone());
        let (holder, slot) = self
            .store
            .read(move |tx| {
                Ok((
                    store::custodians::load(tx, &name)?,
                    store::custodians::load_slot(tx, &key_id, &name)?,
                ))
            })
            .await?;
        let (Some(holder), Some(slot)) = (holder, slot) else {
            let error = CeremonyError::PermissionDenied(format!(
                "{custodian:?} is not a custodian of key {}",
                summary.label
            ));
            return self.refuse(event, error).await;
        };
        let (x, last_unix, possession) = (slot.x, slot.attested_unix, slot.possession_public_key);
        let commitment = custodians::stored_commitment(slot.commitment)?;
        let message =
            share_attestation_message(&summary.key_id, &custodian, x, &commitment, unix_time);
        if let Err(error) =
            custodians::check_signed_over_share(&holder, &message, &signature, "attestation")
        {
            return self.refuse(event, error).await;
        }
        let possession_checked = match custodians::check_possession(
            possession,
            &message,
            &possession_proof,
            "attestation",
        ) {
            Ok(checked) => checked,
            Err(error) => return self.refuse(event, error).await,
        };
        let event = event.detail(
            "possession",
            if possession_checked {
                "proven"
            } else {
                "not checked: key imported from its record"
            },
        );
        // The signature is theirs: the custodian is the actor from here on.
        let event = Event {
            actor: custodian.clone(),
            ..event
        };
        if !holder.enabled {
            let error = CeremonyError::PermissionDenied(format!(
                "custodian {custodian:?} is disabled ({}); their attestation does not count",
                holder.disabled_reason
            ));
            return self.refuse(event, error).await;
        }
        if !within_clock_skew(unix_now(), unix_time) {
            let error = CeremonyError::InvalidArgument(format!(
                "the attestation's time is more than {FETCH_CLOCK_SKEW} s from rkmd's clock; check the clock and attest again"
            ));
            return self.refuse(event, error).await;
        }
        if unix_time <= last_unix {
            let error = CeremonyError::FailedPrecondition(format!(
                "{custodian:?} already attested key {} at or after this time: a replayed attestation; attest again",
                summary.label
            ));
            return self.refuse(event, error).await;
        }
        let (key_id, name, at) = (
            summary.key_id.clone(),
            custodian.clone(),
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_time),
            )
            .to_string(),
        );
        let recorded = self
            .audit
            .record_with(event.clone(), move |tx| {
                // Two copies of one attestation race past the check above.
                if store::custodians::record_attestation(tx, &key_id, &name, &at, unix_time)? {
                    Ok(())
                } else {
                    Err(CeremonyError::FailedPrecondition(
                        "a later attestation was recorded meanwhile: a replayed attestation"
                            .to_owned(),
                    ))
                }
            })
            .await;
        match recorded {
            Ok(_) => {}
            Err(RecordError::Change(error @ CeremonyError::FailedPrecondition(_))) => {
                return self.refuse(event, error).await;
            }
            Err(error) => return Err(error.into()),
        }
        self.get_key(summary.key_id).await
    }
}
