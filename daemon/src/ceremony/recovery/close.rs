//! The two ways an open recovery ends without signing: its approval window
//! passes (expiry) or an operator cancels it. Either way the held shares are
//! destroyed and the unused nonces burnt, with the audit entry.

use super::super::state::CeremonyKind as StoredKind;
use super::super::{CeremonyError, Services};
use super::{RecoveryState, RecoverySummary};
use crate::audit::Event;
use crate::store;
use rkm_proto::audit_entry::action;

impl Services {
    /// Closes an open ceremony as `state` (cancelled or expired), destroying
    /// the held shares in the same transaction as the audit entry.
    async fn close_open(
        &self,
        actor: &str,
        ceremony_id: &str,
        state: RecoveryState,
        reason: &str,
    ) -> Result<(), CeremonyError> {
        let action = if state == RecoveryState::Cancelled {
            action::RECOVERY_CANCEL
        } else {
            action::RECOVERY_EXPIRE
        };
        let event = Event::ok(actor, action)
            .subject(ceremony_id)
            .detail("reason", reason)
            .detail("held_shares", "destroyed");
        self.close_ceremony(event, ceremony_id, RecoveryState::Open, state, |tx, id| {
            store::approvals::destroy_held_shares(tx, id)?;
            store::approvals::use_nonces_of(tx, id)
        })
        .await?;
        if let Some(runtime) = self.recovery.as_deref() {
            runtime.forget(ceremony_id);
        }
        Ok(())
    }

    /// Expires every open ceremony whose time is up.
    pub async fn expire_due(&self) {
        let Some(due) = self
            .overdue(StoredKind::Recovery, RecoveryState::Open)
            .await
        else {
            tracing::error!("could not look for expired ceremonies");
            return;
        };
        for ceremony in due {
            let id = ceremony.id;
            if let Err(error) = self
                .close_open(
                    "rkmd",
                    &id,
                    RecoveryState::Expired,
                    "the approval window ended",
                )
                .await
            {
                tracing::warn!(%error, ceremony = %id, "could not expire a ceremony");
            }
        }
    }

    /// Cancels an open ceremony.
    ///
    /// # Errors
    /// Unknown ceremony, one no longer open, or no reason given.
    pub async fn cancel_recovery(
        &self,
        actor: &str,
        ceremony_id: String,
        reason: String,
    ) -> Result<RecoverySummary, CeremonyError> {
        let event = Event::ok(actor, action::RECOVERY_CANCEL).subject(ceremony_id.clone());
        if reason.trim().is_empty() {
            return self
                .refuse(
                    event,
                    CeremonyError::InvalidArgument(
                        "say why the ceremony is cancelled (--reason)".to_owned(),
                    ),
                )
                .await;
        }
        let summary = match self.get_recovery(ceremony_id.clone()).await {
            Ok(summary) => summary,
            Err(error) => return self.refuse(event, error).await,
        };
        if summary.state != RecoveryState::Open {
            let error = CeremonyError::FailedPrecondition(format!(
                "ceremony {ceremony_id} is {} and can no longer be cancelled",
                summary.state.as_str()
            ));
            return self.refuse(event, error).await;
        }
        self.close_open(actor, &ceremony_id, RecoveryState::Cancelled, &reason)
            .await?;
        self.audit.checkpoint().await?;
        self.get_recovery(ceremony_id).await
    }
}
