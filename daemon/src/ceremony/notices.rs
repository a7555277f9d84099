//! Notices: what each custodian was asked to do when a ceremony opened, and
//! their signed acknowledgement, so the communication around a ceremony leaves
//! a trail in the audit log too.

use rkm_proto::audit_entry::action;
use rkm_proto::messages::{notice_ack_message, verify_custodian_signature};

use super::{CeremonyError, Services, now};
use crate::audit::Event;
use crate::store;

pub use crate::store::notices::Notice;

impl Services {
    /// Records a notice to `custodian` about `ceremony_id`, audited.
    ///
    /// # Errors
    /// The audit entry cannot be written.
    pub async fn send_notice(
        &self,
        actor: &str,
        ceremony_id: &str,
        custodian: &str,
        text: String,
    ) -> Result<Notice, CeremonyError> {
        let notice = Notice {
            notice_id: self.new_id("ntc").await?,
            ceremony_id: ceremony_id.to_owned(),
            custodian: custodian.to_owned(),
            text,
            sent_at: now(),
            acknowledged_at: String::new(),
        };
        let event = Event::ok(actor, action::NOTICE_SEND)
            .subject(ceremony_id)
            .detail("custodian", custodian)
            .detail("notice_id", notice.notice_id.clone())
            .detail("text", notice.text.clone());
        let stored = notice.clone();
        self.audit
            .record_with(event, move |tx| store::notices::insert(tx, &stored))
            .await?;
        Ok(notice)
    }

    /// Notices, oldest first, for one custodian or for all.
    ///
    /// # Errors
    /// The store fails.
    pub async fn list_notices(&self, custodian: String) -> Result<Vec<Notice>, CeremonyError> {
        Ok(self
            .store
            .read(move |tx| store::notices::list(tx, &custodian))
            .await?)
    }

    /// Records a custodian's signed acknowledgement of a notice.
    ///
    /// # Errors
    /// Unknown notice, a notice for someone else, a bad signature, or one
    /// already acknowledged.
    pub async fn acknowledge_notice(
        &self,
        peer: &str,
        notice_id: String,
        custodian: String,
        signature: Vec<u8>,
    ) -> Result<Notice, CeremonyError> {
        let event = Event::ok(peer, action::NOTICE_ACK)
            .detail("notice_id", notice_id.clone())
            .detail("custodian", custodian.clone());
        let (lookup_id, lookup_name) = (notice_id.clone(), custodian.clone());
        let (notice, holder) = self
            .store
            .read(move |tx| {
                Ok((
                    store::notices::load(tx, &lookup_id)?,
                    store::custodians::load(tx, &lookup_name)?,
                ))
            })
            .await?;
        let Some(mut notice) = notice else {
            let error =
                CeremonyError::not_found("notice", notice_id, "; `rkm notice list` shows yours");
            return self.refuse(event, error).await;
        };
        let event = event.subject(notice.ceremony_id.clone());
        if notice.custodian != custodian {
            let error = CeremonyError::PermissionDenied(format!(
                "notice {notice_id} was sent to {:?}, not to {custodian:?}",
                notice.custodian
            ));
            return self.refuse(event, error).await;
        }
        let Some(holder) = holder else {
            let error = CeremonyError::not_found("custodian", custodian, "");
            return self.refuse(event, error).await;
        };
        let message = notice_ack_message(&notice_id, &custodian);
        if let Err(error) =
            verify_custodian_signature(&holder.ed25519_public_key, &message, &signature)
        {
            let error = CeremonyError::PermissionDenied(format!(
                "the acknowledgement is not signed by custodian {custodian:?}'s identity: {error}"
            ));
            return self.refuse(event, error).await;
        }
        let event = Event {
            actor: custodian.clone(),
            ..event
        };
        if !notice.acknowledged_at.is_empty() {
            let error = CeremonyError::FailedPrecondition(format!(
                "notice {notice_id} was already acknowledged at {}",
                notice.acknowledged_at
            ));
            return self.refuse(event, error).await;
        }
        let acknowledged_at = now();
        let stored_at = acknowledged_at.clone();
        self.audit
            .record_with(event, move |tx| {
                store::notices::acknowledge(tx, &notice_id, &stored_at, &signature)
            })
            .await?;
        notice.acknowledged_at = acknowledged_at;
        Ok(notice)
    }
}
