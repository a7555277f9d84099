//! The gRPC front end: tonic services, and the one place where daemon errors
//! become `tonic::Status` (detail logged, a safe message returned).

pub mod access;
pub mod audit;
pub mod custodian;
pub mod key;
pub mod recovery;
pub mod system;

use std::pin::Pin;

use tokio_stream::Stream;
use tonic::Status;

use crate::access::{Caller, Identity};
use crate::audit::AuditError;
use crate::ceremony::CeremonyError;
use crate::hsm::HsmError;
use crate::store::StoreError;

/// What a server-streaming RPC answers with.
pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Maps an HSM error to the status a client should act on.
pub fn hsm_status(error: HsmError) -> Status {
    tracing::warn!(%error, "HSM operation failed");
    match error {
        _ if error.is_unavailable() => Status::unavailable(error.to_string()),
        HsmError::UnwrapFailed | HsmError::ObjectMissing { .. } => {
            Status::failed_precondition(error.to_string())
        }
        HsmError::InvalidInput { .. } => Status::invalid_argument(error.to_string()),
        _ => Status::internal("the HSM failed; see the rkmd log"),
    }
}

/// Maps a store error to a status; the detail stays in the log.
pub fn store_status(error: StoreError) -> Status {
    tracing::error!(%error, "store operation failed");
    if error.is_disk_full() {
        return Status::unavailable(
            "rkmd's state directory is full (the database could not grow): nothing of the action was kept; free disk space there, then retry",
        );
    }
    Status::internal("the daemon's store failed; see the rkmd log")
}

/// Maps an audit error to a status.
pub fn audit_status(error: AuditError) -> Status {
    match error {
        AuditError::NoSpace(_) | AuditError::CheckpointUnavailable { .. } => {
            tracing::warn!(%error, "an action was refused in advance");
            Status::unavailable(error.to_string())
        }
        AuditError::NotDurable(_) | AuditError::ShutDown => {
            tracing::error!(%error, "audit log refused an action");
            Status::unavailable(error.to_string())
        }
        AuditError::OutOfRange { .. }
        | AuditError::Proof(_)
        | AuditError::Origin { .. }
        | AuditError::Entry(_) => Status::invalid_argument(error.to_string()),
        AuditError::Hsm(error) => hsm_status(error),
        AuditError::Store(error) => store_status(error),
        AuditError::Tampered(_) | AuditError::Tree(_) => {
            tracing::error!(%error, "audit log failure");
            Status::internal("the audit log failed; see the rkmd log")
        }
    }
}

/// The caller the access layer established. A request that did not pass
/// through the layer (none does in rkmd) is anonymous.
pub fn caller<T>(request: &tonic::Request<T>) -> Caller {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or(Caller {
            identity: Identity::Anonymous,
            peer: "unknown".to_owned(),
            roles: Vec::new(),
        })
}

/// How audit entries name the caller of `request`.
pub fn actor<T>(request: &tonic::Request<T>) -> String {
    caller(request).actor()
}

/// Maps a ceremony error to the status a client should act on.
pub fn ceremony_status(error: CeremonyError) -> Status {
    match error {
        CeremonyError::InvalidArgument(_) => Status::invalid_argument(error.to_string()),
        CeremonyError::NotFound { .. } => Status::not_found(error.to_string()),
        CeremonyError::FailedPrecondition(_) | CeremonyError::NoLongerIn { .. } => {
            Status::failed_precondition(error.to_string())
        }
        CeremonyError::PermissionDenied(_) => Status::permission_denied(error.to_string()),
        CeremonyError::NoSpace(_) | CeremonyError::Stopping(_) => {
            Status::unavailable(error.to_string())
        }
        CeremonyError::Hsm(error) => hsm_status(error),
        CeremonyError::Audit(error) => audit_status(error),
        CeremonyError::Store(error) => store_status(error),
        CeremonyError::Internal(_) => {
            tracing::error!(%error, "ceremony failed");
            Status::internal("the ceremony failed; see the rkmd log")
        }
    }
}
