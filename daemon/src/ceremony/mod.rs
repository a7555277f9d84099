//! Ceremonies and the records they change: custodians and their notices, and
//! the key generation ceremony (its envelopes and receipts). Every transition
//! is written together with its audit entry, and every refusal is audited.

mod artefacts;
mod attestation;
pub mod audit_note;
pub mod custodians;
mod drill;
mod error;
mod import;
#[cfg(test)]
mod in_process_tests;
pub mod keygen;
pub mod notices;
pub mod recovery;
mod signing;
pub mod state;

use std::time::SystemTime;

pub use artefacts::ArtefactChunk;
pub use error::CeremonyError;

use crate::audit::{AuditLog, Event};
use crate::hsm::{AuditKey, Hsm};
use crate::store::Store;

/// What ceremonies work with; cheap to clone.
#[derive(Debug, Clone)]
pub struct Services {
    pub(crate) hsm: Hsm,
    pub(crate) store: Store,
    pub(crate) audit: AuditLog,
    pub(crate) audit_key: AuditKey,
    /// Present when serving (recovery needs the holding key and a place for
    /// artefacts).
    pub(crate) recovery: Option<std::sync::Arc<recovery::RecoveryRuntime>>,
    /// Days a share attestation counts as recent.
    pub(crate) attestation_window_days: u32,
    /// A recovery (not a drill) takes approvals only once a second operator
    /// has confirmed it (`recovery.two_person_rule`).
    pub(crate) two_person_rule: bool,
    /// Most devices one recovery may list (`recovery.max_targets`).
    pub(crate) max_targets: u64,
}

/// The current time as RFC 3339 UTC with seconds.
pub fn now() -> String {
    rkm_proto::encoding::time::format_rfc3339_seconds(SystemTime::now())
}

impl Services {
    /// A fresh identifier such as `cer-1f2e3d4c5b6a7988`, from the HSM's RNG.
    ///
    /// # Errors
    /// The HSM fails.
    pub async fn new_id(&self, prefix: &str) -> Result<String, CeremonyError> {
        let bytes = self.hsm.random(8).await?;
        Ok(format!("{prefix}-{}", hex::encode(&bytes[..])))
    }

    /// Audits a refused or failed action, then hands the error back. If even
    /// the audit entry cannot be written, that failure is logged: the action
    /// was refused either way.
    pub async fn refuse<T>(&self, event: Event, error: CeremonyError) -> Result<T, CeremonyError> {
        let event = event
            .with_outcome(error.outcome())
            .detail("reason", error.to_string());
        if let Err(audit_error) = self.audit.record(event).await {
            tracing::error!(%audit_error, "could not audit a refused action");
        }
        Err(error)
    }
}
