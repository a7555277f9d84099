//! Recovery ceremonies (DESIGN "Ceremonies" 2): an operator opens one with a
//! request and its targets; custodians review the request digest and approve
//! with their share sealed to the ceremony's ephemeral age key; each accepted
//! share is held encrypted under the HSM's holding key. The K-th approval
//! starts the signing (see `signing.rs`). Expiry and cancellation destroy the
//! held shares.
//!
//! `runtime.rs` keeps the in-memory ceremony keys, `open.rs` validates and
//! stages a request, `nonces.rs` and `approval.rs` take approvals, `close.rs`
//! expires and cancels, `confirm.rs` takes a second operator's confirmation
//! under the two-person rule; this file holds the shared types and reads.

mod approval;
mod close;
mod confirm;
mod nonces;
mod open;
mod runtime;

use std::time::{Duration, SystemTime};

use rkm_proto::key_record::{KeyRecord, SignedKeyRecord};

pub use super::state::CeremonyState as RecoveryState;
use super::{CeremonyError, Services};
pub use crate::store::approvals::ApprovalRow;
use crate::store::{self, recoveries::RecoveryRow};
pub use approval::ApprovalSubmission;
pub use open::OpenRequest;
pub(crate) use open::artefact_size_bound;
pub use runtime::RecoveryRuntime;

/// A recovery ceremony.
#[derive(Debug, Clone)]
pub struct RecoverySummary {
    pub ceremony_id: String,
    pub key_id: String,
    pub key_label: String,
    pub state: RecoveryState,
    pub canonical_request: Vec<u8>,
    pub request_digest: Vec<u8>,
    pub target_count: u64,
    pub threshold: u8,
    pub approvals: Vec<ApprovalRow>,
    pub opened_by: String,
    pub opened_at: String,
    pub expires_at: String,
    pub ceremony_recipient: String,
    pub signed_count: u64,
    pub artefact_size: u64,
    pub failure: String,
    /// Under the two-person rule, until a second operator confirms it.
    pub awaiting_confirmation: bool,
    pub confirmed_by: String,
    pub confirmed_at: String,
}

impl TryFrom<RecoveryRow> for RecoverySummary {
    type Error = CeremonyError;

    fn try_from(row: RecoveryRow) -> Result<Self, CeremonyError> {
        Ok(Self {
            state: RecoveryState::parse(&row.state)?,
            ceremony_id: row.ceremony_id,
            key_id: row.key_id,
            key_label: row.key_label,
            canonical_request: row.canonical_request,
            request_digest: row.request_digest,
            target_count: row.target_count,
            threshold: row.threshold,
            approvals: row.approvals,
            opened_by: row.opened_by,
            opened_at: row.opened_at,
            expires_at: row.expires_at,
            ceremony_recipient: String::new(),
            signed_count: row.signed_count,
            artefact_size: row.artefact_size,
            failure: row.failure,
            awaiting_confirmation: row.awaiting_confirmation,
            confirmed_by: row.confirmed_by,
            confirmed_at: row.confirmed_at,
        })
    }
}

/// The additional data that binds a held share to its ceremony and custodian.
pub fn held_share_aad(ceremony_id: &str, custodian: &str) -> Vec<u8> {
    let mut aad = b"rkm/v1/held-share\0".to_vec();
    for field in [ceremony_id, custodian] {
        aad.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
        aad.extend_from_slice(field.as_bytes());
    }
    aad
}

/// No such ceremony, or none this caller may see: one answer for both.
fn unknown_recovery(ceremony_id: String) -> CeremonyError {
    CeremonyError::not_found(
        "recovery ceremony",
        ceremony_id,
        "; `rkm recovery list` shows the ones you may see (custodians: with --identity)",
    )
}

fn rfc3339_after(duration: Duration) -> String {
    rkm_proto::encoding::time::format_rfc3339_seconds(SystemTime::now() + duration)
}

impl Services {
    fn recovery_runtime(&self) -> Result<&RecoveryRuntime, CeremonyError> {
        self.recovery.as_deref().ok_or_else(|| {
            CeremonyError::Internal("recovery ceremonies are not available".to_owned())
        })
    }

    /// The key record of `key_id`, verified with this daemon's audit key.
    pub(super) async fn verified_record(&self, key_id: &str) -> Result<KeyRecord, CeremonyError> {
        let summary = self.get_key(key_id.to_owned()).await?;
        let signed = SignedKeyRecord::from_file(&summary.signed_key_record)
            .map_err(|e| CeremonyError::Internal(format!("stored key record: {e}")))?;
        // An imported key's record was signed by the audit key of its old HSM.
        let imported = if summary.record_audit_key.is_empty() {
            None
        } else {
            Some(
                rkm_proto::checkpoint::VerifierKey::parse(&summary.record_audit_key).map_err(
                    |e| CeremonyError::Internal(format!("stored record audit key: {e}")),
                )?,
            )
        };
        signed
            .verify(imported.as_ref().unwrap_or(self.audit.verifier()))
            .map_err(|e| CeremonyError::Internal(format!("stored key record does not verify: {e}")))
    }

    /// A recovery ceremony as stored, without expiring anything first.
    pub(super) async fn load_recovery(
        &self,
        ceremony_id: &str,
    ) -> Result<Option<RecoverySummary>, CeremonyError> {
        let lookup = ceremony_id.to_owned();
        self.store
            .read(move |tx| store::recoveries::load(tx, &lookup))
            .await?
            .map(RecoverySummary::try_from)
            .transpose()
    }

    /// A recovery ceremony, expiring it first if its time is up.
    ///
    /// # Errors
    /// No such ceremony.
    pub async fn get_recovery(
        &self,
        ceremony_id: String,
    ) -> Result<RecoverySummary, CeremonyError> {
        self.expire_due().await;
        let mut summary = self
            .load_recovery(&ceremony_id)
            .await?
            .ok_or_else(|| unknown_recovery(ceremony_id))?;
        if summary.state == RecoveryState::Open {
            summary.ceremony_recipient = self.recovery_runtime()?.recipient(&summary.ceremony_id);
        }
        Ok(summary)
    }

    /// A recovery ceremony as `custodian` may see it: only one on a key they
    /// hold a share of. `None` (staff) sees every ceremony.
    ///
    /// # Errors
    /// No such ceremony, or none the custodian may see: the same answer, so
    /// a custodian learns nothing of other keys' ceremonies.
    pub async fn get_recovery_for(
        &self,
        ceremony_id: String,
        custodian: Option<String>,
    ) -> Result<RecoverySummary, CeremonyError> {
        let summary = self.get_recovery(ceremony_id.clone()).await?;
        let Some(custodian) = custodian else {
            return Ok(summary);
        };
        let key_id = summary.key_id.clone();
        let holds = self
            .store
            .read(move |tx| store::keys::holds_share(tx, &key_id, &custodian))
            .await?;
        if !holds {
            return Err(unknown_recovery(ceremony_id));
        }
        Ok(summary)
    }

    /// Every recovery ceremony, newest first; with `custodian`, only those
    /// on keys they hold a share of.
    ///
    /// # Errors
    /// The store fails.
    pub async fn list_recoveries(
        &self,
        custodian: Option<String>,
    ) -> Result<Vec<RecoverySummary>, CeremonyError> {
        self.expire_due().await;
        let rows = self
            .store
            .read(move |tx| store::recoveries::list(tx, custodian.as_deref()))
            .await?;
        rows.into_iter().map(RecoverySummary::try_from).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_share_context_differs_per_ceremony_and_custodian() {
        assert_ne!(
            held_share_aad("rec-1", "alice"),
            held_share_aad("rec-1", "bob")
        );
        assert_ne!(
            held_share_aad("rec-1", "alice"),
            held_share_aad("rec-2", "alice")
        );
        assert_ne!(
            held_share_aad("rec-1", "a\0b"),
            held_share_aad("rec-1\0a", "b")
        );
    }
}
