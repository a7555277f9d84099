//! Why a ceremony step was refused or failed, phrased for the person who has
//! to act on it. Never carries a secret.

use rkm_proto::audit_entry::Outcome;

use crate::audit::AuditError;
use crate::hsm::HsmError;
use crate::store::StoreError;

/// Errors of custodian, notice and key ceremonies.
#[derive(Debug, thiserror::Error)]
pub enum CeremonyError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{what} {name:?} does not exist{hint}")]
    NotFound {
        what: &'static str,
        name: String,
        hint: String,
    },
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error(transparent)]
    Hsm(#[from] HsmError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl CeremonyError {
    /// How the audit log records this error.
    pub fn outcome(&self) -> Outcome {
        match self {
            CeremonyError::InvalidArgument(_)
            | CeremonyError::NotFound { .. }
            | CeremonyError::FailedPrecondition(_)
            | CeremonyError::PermissionDenied(_) => Outcome::Refused,
            _ => Outcome::Failed,
        }
    }

    pub fn not_found(what: &'static str, name: impl Into<String>, hint: impl Into<String>) -> Self {
        CeremonyError::NotFound {
            what,
            name: name.into(),
            hint: hint.into(),
        }
    }
}

impl From<rusqlite::Error> for CeremonyError {
    fn from(error: rusqlite::Error) -> Self {
        CeremonyError::Store(StoreError::Sqlite(error))
    }
}

impl From<CeremonyError> for AuditError {
    /// Lets a refusal inside an audited transaction undo the transaction.
    fn from(error: CeremonyError) -> Self {
        match error {
            CeremonyError::Audit(error) => error,
            CeremonyError::Store(error) => AuditError::Store(error),
            other => AuditError::Refused(other.to_string()),
        }
    }
}
