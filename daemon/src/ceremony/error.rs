//! Why a ceremony step was refused or failed, phrased for the person who has
//! to act on it. Never carries a secret.

use rkm_proto::audit_entry::Outcome;

use super::state::CeremonyState;
use crate::audit::{AuditError, RecordError};
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
    /// Another request moved the ceremony on first (a lost race).
    #[error("ceremony {ceremony_id} is no longer {}", state.as_str())]
    NoLongerIn {
        ceremony_id: String,
        state: CeremonyState,
    },
    #[error("{0}")]
    PermissionDenied(String),
    /// Refused in advance: what it would write does not fit.
    #[error(transparent)]
    NoSpace(#[from] crate::store::space::NoSpace),
    #[error(transparent)]
    Hsm(#[from] HsmError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// rkmd is stopping: the caller should retry once it serves again.
    #[error("{0}")]
    Stopping(String),
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
            | CeremonyError::NoLongerIn { .. }
            | CeremonyError::PermissionDenied(_)
            | CeremonyError::NoSpace(_) => Outcome::Refused,
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

impl From<RecordError<CeremonyError>> for CeremonyError {
    /// A refusal inside an audited change comes back as it was raised.
    fn from(error: RecordError<CeremonyError>) -> Self {
        match error {
            RecordError::Change(error) => error,
            RecordError::Audit(error) => CeremonyError::Audit(error),
        }
    }
}

impl From<RecordError<StoreError>> for CeremonyError {
    /// A plain write refused by the store is a store failure.
    fn from(error: RecordError<StoreError>) -> Self {
        match error {
            RecordError::Change(error) => CeremonyError::Store(error),
            RecordError::Audit(error) => CeremonyError::Audit(error),
        }
    }
}
