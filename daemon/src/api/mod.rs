//! The gRPC front end: tonic services, and the one place where daemon errors
//! become `tonic::Status` (detail logged, a safe message returned).

pub mod system;

use tonic::Status;

use crate::hsm::HsmError;
use crate::store::StoreError;

/// Maps an HSM error to the status a client should act on.
pub fn hsm_status(error: HsmError) -> Status {
    tracing::warn!(%error, "HSM operation failed");
    match error {
        HsmError::Busy { .. } | HsmError::ShutDown | HsmError::SessionLost { .. } => {
            Status::unavailable(error.to_string())
        }
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
    Status::internal("the daemon's store failed; see the rkmd log")
}
