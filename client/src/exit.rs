//! Exit codes that scripts can rely on, and the hint printed with each.

use std::process::ExitCode;

use tonic::Code;

use crate::connect::{ConnectError, SocketDenied};

/// Documented exit codes of `rkm` (README, "Exit codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Success = 0,
    Failure = 1,
    Usage = 2,
    Unavailable = 3,
    PermissionDenied = 4,
    NotFound = 5,
    Refused = 6,
    VerificationFailed = 7,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// The exit code for an error that ended a command.
pub fn classify(error: &anyhow::Error) -> Exit {
    for cause in error.chain() {
        if cause.downcast_ref::<VerificationFailed>().is_some() {
            return Exit::VerificationFailed;
        }
        if cause.downcast_ref::<SocketDenied>().is_some() {
            return Exit::PermissionDenied;
        }
        if cause.downcast_ref::<ConnectError>().is_some()
            || cause.downcast_ref::<NotServing>().is_some()
        {
            return Exit::Unavailable;
        }
        if let Some(RpcError(status)) = cause.downcast_ref::<RpcError>() {
            if connection_broke(status) {
                return Exit::Unavailable;
            }
            return match status.code() {
                Code::Unavailable | Code::DeadlineExceeded => Exit::Unavailable,
                Code::PermissionDenied | Code::Unauthenticated => Exit::PermissionDenied,
                Code::NotFound => Exit::NotFound,
                Code::InvalidArgument | Code::FailedPrecondition | Code::AlreadyExists => {
                    Exit::Refused
                }
                _ => Exit::Failure,
            };
        }
    }
    Exit::Failure
}

/// Whether `status` says the connection failed rather than rkmd refusing:
/// rkmd itself never answers Unknown or Cancelled, and a status the client's
/// transport made carries the transport's error as its source.
pub fn connection_broke(status: &tonic::Status) -> bool {
    matches!(status.code(), Code::Unknown | Code::Cancelled)
        || std::error::Error::source(status).is_some()
}

/// Whether the connection was refused outright: the request never left.
pub fn connection_refused(status: &tonic::Status) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(error) = cause {
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        cause = error.source();
    }
    false
}

/// Something that was to be verified did not verify: an audit file, a
/// checkpoint signature, a proof, a key that differs from the trusted one.
/// Ends the command with [`Exit::VerificationFailed`] (7).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct VerificationFailed(pub String);

impl VerificationFailed {
    /// An `anyhow` error that exits with code 7 and says `message`.
    pub fn error(message: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(VerificationFailed(message.into()))
    }
}

/// rkmd answered but cannot serve what it is for: its HSM is failing, or it
/// stopped in the middle of an answer.
/// Ends the command with [`Exit::Unavailable`] (3).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotServing(pub String);

impl NotServing {
    /// An `anyhow` error that exits with code 3 and says `message`.
    pub fn error(message: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(NotServing(message.into()))
    }
}

/// A gRPC error from rkmd, shown as its message (not tonic's debug form) and
/// kept whole so that [`classify`] can read its code.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.message())]
pub struct RpcError(pub tonic::Status);

/// Turns a gRPC result into an `anyhow` result with context.
pub trait RpcResultExt<T> {
    /// # Errors
    /// The call failed; the error says `doing` and rkmd's message.
    fn rpc(self, doing: &'static str) -> anyhow::Result<T>;
}

impl<T> RpcResultExt<T> for Result<T, tonic::Status> {
    fn rpc(self, doing: &'static str) -> anyhow::Result<T> {
        self.map_err(|status| anyhow::Error::new(RpcError(status)).context(doing))
    }
}
