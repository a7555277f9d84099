//! The two-person rule (`recovery.two_person_rule`): a recovery opened under
//! it takes no nonce and no approval until an operator other than the one who
//! opened it confirms it. Drills are exempt: they sign no command. A ceremony
//! keeps the rule it was opened under, so turning the setting off never
//! releases one that awaits confirmation, and turning it on never holds one
//! already open.

use rkm_proto::audit_entry::action;

use super::super::{CeremonyError, Services, now};
use super::{RecoveryState, RecoverySummary};
use crate::audit::{Event, RecordError};
use crate::store;

/// Whether two audit actors (see `access::Identity::actor`) are the same
/// person. Roles are granted by common name, so two certificates with one
/// common name (a renewed one, or one per laptop) are one person, as are
/// two with one fingerprint or one subject. A certificate and a local uid
/// are never matched: the README says not to give one person both.
fn same_person(opener: &str, confirmer: &str) -> bool {
    if opener == confirmer {
        return true;
    }
    let certificate = |actor: &str| {
        let (subject, fingerprint) = actor.strip_prefix("cert:")?.rsplit_once(' ')?;
        Some((
            subject.to_owned(),
            common_name(subject),
            fingerprint.to_owned(),
        ))
    };
    match (certificate(opener), certificate(confirmer)) {
        (Some((subject_a, cn_a, fingerprint_a)), Some((subject_b, cn_b, fingerprint_b))) => {
            subject_a == subject_b
                || fingerprint_a == fingerprint_b
                || cn_a.is_some() && cn_a == cn_b
        }
        _ => false,
    }
}

/// The `CN=` value of an RFC 4514 subject, its escapes kept (it is
/// compared, never shown).
fn common_name(subject: &str) -> Option<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut escaped = false;
    for c in subject.chars() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' || c == '+' {
            parts.push(std::mem::take(&mut current));
            continue;
        }
        current.push(c);
    }
    parts.push(current);
    parts
        .iter()
        .find_map(|part| part.trim().strip_prefix("CN=").map(str::to_owned))
}

impl Services {
    /// A second operator's confirmation of a recovery opened under the
    /// two-person rule; the key's custodians are then told they may approve.
    ///
    /// # Errors
    /// Unknown ceremony, one not open or not awaiting confirmation, or the
    /// confirmer is the operator who opened it. Each refusal is audited.
    pub async fn confirm_recovery(
        &self,
        actor: &str,
        ceremony_id: String,
    ) -> Result<RecoverySummary, CeremonyError> {
        let event = Event::ok(actor, action::RECOVERY_CONFIRM).subject(ceremony_id.clone());
        let summary = match self.confirmable(actor, &ceremony_id).await {
            Ok(summary) => summary,
            Err(error) => return self.refuse(event, error).await,
        };
        let event = event.detail("opened_by", summary.opened_by.clone());
        let (id, confirmer) = (ceremony_id.clone(), actor.to_owned());
        let recorded = self
            .audit
            .record_with(event.clone(), move |tx| {
                // Confirmations race with each other, with cancellation and
                // with expiry: only one lands, and only on an open ceremony.
                let state = store::ceremonies::status(tx, &id)?.state;
                if state != RecoveryState::Open.as_str() {
                    return Err(CeremonyError::FailedPrecondition(format!(
                        "ceremony {id} is {state} and can no longer be confirmed"
                    )));
                }
                if !store::recoveries::confirm(tx, &id, &confirmer, &now())? {
                    return Err(CeremonyError::FailedPrecondition(format!(
                        "ceremony {id} was confirmed meanwhile by another operator"
                    )));
                }
                Ok(())
            })
            .await;
        match recorded {
            Ok(_) => {}
            Err(RecordError::Change(error)) => return self.refuse(event, error).await,
            Err(error) => return Err(error.into()),
        }
        // The confirmation is made: a notice that cannot be sent is logged,
        // not reported as a failed confirmation.
        if let Err(error) = self.notify_confirmed(actor, &summary).await {
            tracing::error!(%error, ceremony = %ceremony_id, "could not tell the custodians of a confirmed recovery");
        }
        self.audit.checkpoint().await?;
        self.get_recovery(ceremony_id).await
    }

    /// The ceremony, if `actor` may confirm it now.
    async fn confirmable(
        &self,
        actor: &str,
        ceremony_id: &str,
    ) -> Result<RecoverySummary, CeremonyError> {
        let summary = self.get_recovery(ceremony_id.to_owned()).await?;
        if summary.state != RecoveryState::Open {
            return Err(CeremonyError::FailedPrecondition(format!(
                "ceremony {ceremony_id} is {} and can no longer be confirmed",
                summary.state.as_str()
            )));
        }
        if !summary.awaiting_confirmation {
            let why = if !summary.confirmed_by.is_empty() {
                format!("it was confirmed by {}", summary.confirmed_by)
            } else if self.two_person_rule {
                "it was opened as a drill or before the two-person rule was turned on".to_owned()
            } else {
                "the two-person rule is off on this rkmd (recovery.two_person_rule)".to_owned()
            };
            return Err(CeremonyError::FailedPrecondition(format!(
                "ceremony {ceremony_id} needs no confirmation: {why}"
            )));
        }
        if same_person(&summary.opened_by, actor) {
            return Err(CeremonyError::PermissionDenied(format!(
                "{actor} opened ceremony {ceremony_id}; the two-person rule needs a different operator to confirm it"
            )));
        }
        Ok(summary)
    }

    async fn notify_confirmed(
        &self,
        actor: &str,
        summary: &RecoverySummary,
    ) -> Result<(), CeremonyError> {
        let record = self.verified_record(&summary.key_id).await?;
        let id = &summary.ceremony_id;
        for custodian in &record.custodians {
            let text = format!(
                "Ceremony {id} on recovery key {:?} was confirmed by a second operator ({actor}). Review it with `rkm recovery show {id} --identity FILE` and approve with `rkm recovery approve {id}` before {}.",
                summary.key_label, summary.expires_at
            );
            self.send_notice(actor, id, &custodian.name, text).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "cert:CN=alice sha256:aaaa";
    const ALICE_RENEWED: &str = "cert:CN=alice sha256:bbbb";
    const BOB: &str = "cert:CN=bob sha256:cccc";

    #[test]
    fn the_opener_cannot_confirm_with_the_same_or_a_second_certificate() {
        assert!(same_person(ALICE, ALICE));
        assert!(same_person(ALICE, ALICE_RENEWED));
        assert!(same_person(
            "cert:CN=alice sha256:aaaa",
            "cert:CN=other sha256:aaaa"
        ));
        assert!(same_person("local:uid=1000", "local:uid=1000"));
        assert!(same_person(
            "cert:CN=alice sha256:aaaa",
            "cert:CN=alice,OU=laptop sha256:eeee"
        ));
        assert!(same_person(
            "cert:OU=ops,CN=alice sha256:aaaa",
            "cert:CN=alice+UID=7 sha256:eeee"
        ));
    }

    #[test]
    fn another_operator_is_another_person() {
        assert!(!same_person(ALICE, BOB));
        assert!(!same_person("local:uid=1000", "local:uid=1001"));
        assert!(!same_person("local:uid=1000", BOB));
        assert!(!same_person(
            "cert:CN=ops, O=Example sha256:aaaa",
            "cert:CN=ops2, O=Example sha256:dddd"
        ));
        assert!(!same_person(
            r"cert:CN=ali\,ce sha256:aaaa",
            "cert:CN=ali sha256:dddd"
        ));
        assert!(!same_person("cert:O=x sha256:aaaa", "cert:O=y sha256:dddd"));
    }
}
