//! Share attestations between ceremonies: a custodian checks their share
//! offline against the key record (`rkm share verify --attest`) and signs that
//! they still hold it. rkmd keeps each custodian's latest attestation per key,
//! so `rkm status` and `rkm key show` show how many custodians attested
//! recently against the threshold: a quorum at risk is seen before an
//! incident, not during one.

use rkm_proto::audit_entry::action;
use rkm_proto::messages::share_attestation_message;

use super::custodians::{self, Custodian, KeySlot};
use super::keygen::{FETCH_CLOCK_SKEW, KeySummary, unix_now, within_clock_skew};
use super::{CeremonyError, Services};
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
        let event = Event::ok(peer, action::SHARE_ATTEST)
            .detail("custodian", custodian.clone())
            .detail("unix_time", unix_time.to_string());
        let summary = match self.get_key(key).await {
            Ok(summary) => summary,
            Err(error) => return self.refuse(event, error).await,
        };
        let event = event.subject(summary.key_id.clone());
        let (holder, slot) = match self.custodian_slot(&summary, &custodian).await? {
            Ok(found) => found,
            Err(error) => return self.refuse(event, error).await,
        };
        let attestation = Attestation {
            custodian,
            unix_time,
            signature,
            possession_proof,
        };
        let possession_checked =
            match check_attestation_signature(&summary, &attestation, &holder, &slot) {
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
            actor: attestation.custodian.clone(),
            ..event
        };
        if let Err(error) =
            check_attestation_counts(&summary, &attestation, &holder, &slot, unix_now())
        {
            return self.refuse(event, error).await;
        }
        self.store_attestation(event, &summary, attestation).await?;
        self.get_key(summary.key_id).await
    }

    /// Records the attestation, audited; a copy that lost the race to an
    /// equal or later one is refused (and audited) like any replay.
    async fn store_attestation(
        &self,
        event: Event,
        summary: &KeySummary,
        attestation: Attestation,
    ) -> Result<(), CeremonyError> {
        let Attestation {
            custodian,
            unix_time,
            ..
        } = attestation;
        let (key_id, at) = (
            summary.key_id.clone(),
            rkm_proto::encoding::time::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_time),
            ),
        );
        let recorded = self
            .audit
            .record_with(event.clone(), move |tx| {
                // Two copies of one attestation race past the check above.
                if store::custodians::record_attestation(tx, &key_id, &custodian, &at, unix_time)? {
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
            Ok(_) => Ok(()),
            Err(RecordError::Change(error @ CeremonyError::FailedPrecondition(_))) => {
                self.refuse(event, error).await
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// An attestation as the custodian sent it.
struct Attestation {
    custodian: String,
    unix_time: u64,
    signature: Vec<u8>,
    possession_proof: Vec<u8>,
}

/// Checks the signature by the custodian over their share's commitment and
/// the time, and the proof of possession; tells whether possession was
/// checked (imported keys have no possession key here).
fn check_attestation_signature(
    summary: &KeySummary,
    attestation: &Attestation,
    holder: &Custodian,
    slot: &KeySlot,
) -> Result<bool, CeremonyError> {
    let commitment = custodians::stored_commitment(slot.commitment.clone())?;
    let message = share_attestation_message(
        &summary.key_id,
        &attestation.custodian,
        slot.x,
        &commitment,
        attestation.unix_time,
    );
    custodians::check_signed_over_share(holder, &message, &attestation.signature, "attestation")?;
    custodians::check_possession(
        slot.possession_public_key.clone(),
        &message,
        &attestation.possession_proof,
        "attestation",
    )
}

/// Whether a verified attestation counts: by an enabled custodian, signed
/// within the clock skew of `now_unix`, and later than their last one.
fn check_attestation_counts(
    summary: &KeySummary,
    attestation: &Attestation,
    holder: &Custodian,
    slot: &KeySlot,
    now_unix: u64,
) -> Result<(), CeremonyError> {
    let custodian = &attestation.custodian;
    if !holder.enabled {
        return Err(CeremonyError::PermissionDenied(format!(
            "custodian {custodian:?} is disabled ({}); their attestation does not count",
            holder.disabled_reason
        )));
    }
    if !within_clock_skew(now_unix, attestation.unix_time) {
        return Err(CeremonyError::InvalidArgument(format!(
            "the attestation's time is more than {FETCH_CLOCK_SKEW} s from rkmd's clock; check the clock and attest again"
        )));
    }
    if attestation.unix_time <= slot.attested_unix {
        return Err(CeremonyError::FailedPrecondition(format!(
            "{custodian:?} already attested key {} at or after this time: a replayed attestation; attest again",
            summary.label
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::keygen::KeyState;
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn summary() -> KeySummary {
        KeySummary {
            key_id: "rk-1".to_owned(),
            label: "fleet".to_owned(),
            state: KeyState::Active,
            threshold: 2,
            public_key_spki: Vec::new(),
            signed_key_record: String::new(),
            receipts: Vec::new(),
            ceremony_id: "cer-1".to_owned(),
            created_at: String::new(),
            record_audit_key: String::new(),
        }
    }

    fn holder(enabled: bool) -> Custodian {
        Custodian {
            name: "alice".to_owned(),
            ed25519_public_key: [0; 32],
            age_recipient: String::new(),
            fingerprint: String::new(),
            enabled,
            enrolled_at: String::new(),
            disabled_reason: if enabled {
                String::new()
            } else {
                "left".to_owned()
            },
        }
    }

    fn slot(attested_unix: u64) -> KeySlot {
        KeySlot {
            x: 1,
            commitment: vec![0; 32],
            received_at: String::new(),
            attested_unix,
            possession_public_key: None,
        }
    }

    fn attestation(unix_time: u64) -> Attestation {
        Attestation {
            custodian: "alice".to_owned(),
            unix_time,
            signature: Vec::new(),
            possession_proof: Vec::new(),
        }
    }

    fn refusal(holder: &Custodian, slot: &KeySlot, unix_time: u64) -> String {
        check_attestation_counts(&summary(), &attestation(unix_time), holder, slot, NOW)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn later_attestation_by_an_enabled_custodian_counts() {
        check_attestation_counts(
            &summary(),
            &attestation(NOW),
            &holder(true),
            &slot(NOW - 60),
            NOW,
        )
        .unwrap();
    }

    #[test]
    fn disabled_custodian_attestation_does_not_count() {
        assert!(refusal(&holder(false), &slot(0), NOW).contains("is disabled (left)"));
    }

    #[test]
    fn attestation_far_from_the_clock_is_refused() {
        assert!(refusal(&holder(true), &slot(0), NOW - 301).contains("from rkmd's clock"));
        assert!(refusal(&holder(true), &slot(0), NOW + 301).contains("from rkmd's clock"));
    }

    #[test]
    fn attestation_not_later_than_the_last_is_a_replay() {
        assert!(refusal(&holder(true), &slot(NOW), NOW).contains("a replayed attestation"));
        assert!(refusal(&holder(true), &slot(NOW + 10), NOW).contains("a replayed attestation"));
    }
}
