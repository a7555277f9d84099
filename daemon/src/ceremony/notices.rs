//! Notices: what each custodian was asked to do when a ceremony opened, and
//! their signed acknowledgement, so the communication around a ceremony leaves
//! a trail in the audit log too.

use rkm_proto::messages::{notice_ack_message, verify_custodian_signature};
use rusqlite::{OptionalExtension as _, params};

use super::{CeremonyError, Services, custodians, now};
use crate::audit::Event;

/// A notice to one custodian.
#[derive(Debug, Clone)]
pub struct Notice {
    pub notice_id: String,
    pub ceremony_id: String,
    pub custodian: String,
    pub text: String,
    pub sent_at: String,
    pub acknowledged_at: String,
}

const COLUMNS: &str = "id, ceremony_id, custodian, text, sent_at, acknowledged_at";

fn row_to_notice(row: &rusqlite::Row<'_>) -> rusqlite::Result<Notice> {
    Ok(Notice {
        notice_id: row.get(0)?,
        ceremony_id: row.get(1)?,
        custodian: row.get(2)?,
        text: row.get(3)?,
        sent_at: row.get(4)?,
        acknowledged_at: row.get(5)?,
    })
}

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
        let event = Event::ok(actor, "notice.send")
            .subject(ceremony_id)
            .detail("custodian", custodian)
            .detail("notice_id", notice.notice_id.clone())
            .detail("text", notice.text.clone());
        let stored = notice.clone();
        self.audit
            .record_with(event, move |connection| {
                connection
                    .execute(
                        "INSERT INTO notices (id, ceremony_id, custodian, text, sent_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![stored.notice_id, stored.ceremony_id, stored.custodian, stored.text, stored.sent_at],
                    )
                    .map_err(crate::store::StoreError::from)?;
                Ok(())
            })
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
            .with(move |connection| {
                let mut statement = connection.prepare(&format!(
                    "SELECT {COLUMNS} FROM notices WHERE ?1 = '' OR custodian = ?1 ORDER BY sent_at, id"
                ))?;
                let rows = statement.query_map([custodian], row_to_notice)?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
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
        let event = Event::ok(peer, "notice.ack")
            .detail("notice_id", notice_id.clone())
            .detail("custodian", custodian.clone());
        let (lookup_id, lookup_name) = (notice_id.clone(), custodian.clone());
        let (notice, holder) = self
            .store
            .with(move |connection| {
                let notice = connection
                    .query_row(
                        &format!("SELECT {COLUMNS} FROM notices WHERE id = ?1"),
                        [&lookup_id],
                        row_to_notice,
                    )
                    .optional()?;
                Ok((notice, custodians::load(connection, &lookup_name)?))
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
            .record_with(event, move |connection| {
                connection
                    .execute(
                        "UPDATE notices SET acknowledged_at = ?2, signature = ?3 WHERE id = ?1",
                        params![notice_id, stored_at, signature],
                    )
                    .map_err(crate::store::StoreError::from)?;
                Ok(())
            })
            .await?;
        notice.acknowledged_at = acknowledged_at;
        Ok(notice)
    }
}
