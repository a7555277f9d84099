//! The daemon's top-level error: each module's error converted once.

use std::path::PathBuf;

use crate::audit::AuditError;
use crate::config::ConfigError;
use crate::hsm::HsmError;
use crate::process::HardeningError;
use crate::store::StoreError;

/// Why `rkmd init` or `rkmd serve` stopped.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Hsm(#[from] HsmError),
    #[error(transparent)]
    Hardening(#[from] HardeningError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Ceremony(Box<crate::ceremony::CeremonyError>),
    #[error("the state directory {} is not initialised; run `rkmd init` first", state_dir.display())]
    NotInitialised { state_dir: PathBuf },
    #[error(
        "token {label:?} has no rkm audit key; rkmd is pointed at the wrong token, or run `rkmd init`"
    )]
    AuditKeyMissing { label: String },
    #[error(
        "token {label:?} holds audit key {token_fingerprint}, but this database was initialised with audit key {store_fingerprint}: rkmd is pointed at the wrong token or the wrong state directory"
    )]
    AuditKeyMismatch {
        label: String,
        token_fingerprint: String,
        store_fingerprint: String,
    },
    #[error(transparent)]
    Socket(#[from] crate::socket::SocketError),
    #[error("cannot listen on {what}: {source}")]
    Listen {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] crate::access::tls::TlsSetupError),
    #[error("the gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

impl From<crate::audit::RecordError<StoreError>> for DaemonError {
    fn from(error: crate::audit::RecordError<StoreError>) -> Self {
        DaemonError::Audit(error.into())
    }
}
