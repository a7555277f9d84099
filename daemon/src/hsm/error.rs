//! What can go wrong at the HSM boundary, phrased for the operator who has to
//! fix it. PKCS#11 return values are mapped here, once (see parsec's
//! `providers/pkcs11/utils.rs` for the same idea).

use std::path::PathBuf;

use cryptoki::error::{Error as CryptokiError, RvError};

/// Errors of the HSM layer. None of them carries secret material.
#[derive(Debug, thiserror::Error)]
pub enum HsmError {
    #[error(
        "PKCS#11 module {} does not exist: install softhsm2 with softhsm-config/install.sh or set hsm.module (RKM_HSM_MODULE) to your HSM's PKCS#11 library",
        path.display()
    )]
    ModuleMissing { path: PathBuf },

    #[error("PKCS#11 module {} could not be loaded: {detail}; check that it is a PKCS#11 library for this architecture", path.display())]
    ModuleLoad { path: PathBuf, detail: String },

    #[error(
        "no token labelled {label:?} in this HSM; tokens present: {}; set hsm.token_label (RKM_HSM_TOKEN_LABEL) to one of them or initialise the token",
        list_or_none(available)
    )]
    TokenNotFound {
        label: String,
        available: Vec<String>,
    },

    #[error(
        "{count} tokens are labelled {label:?}; rkm finds its token by label, so give each token a unique label"
    )]
    TokenLabelAmbiguous { label: String, count: usize },

    #[error(
        "the HSM rejected the user PIN for token {label:?}; check the PIN file (hsm.pin_file) or RKM_HSM_PIN"
    )]
    WrongPin { label: String },

    #[error(
        "the user PIN of token {label:?} is locked after too many wrong attempts; the token's security officer must unlock it"
    )]
    PinLocked { label: String },

    #[error(
        "token {label:?} does not support {mechanism}, which rkm needs to {purpose}; use an HSM that has it"
    )]
    MechanismUnsupported {
        label: String,
        mechanism: &'static str,
        purpose: &'static str,
    },

    #[error(
        "the wrapped key blob does not unwrap under this KEK: the blob is damaged or was wrapped under another KEK"
    )]
    UnwrapFailed,

    #[error(
        "a held share does not decrypt under the holding key: it was changed, or belongs to another ceremony or custodian"
    )]
    HeldDataInvalid,

    #[error("{what}: expected {expected}, found {found}")]
    InvalidInput {
        what: &'static str,
        expected: String,
        found: String,
    },

    #[error(
        "{count} objects are labelled {label:?} in the token where rkm expects one; remove the duplicates"
    )]
    ObjectAmbiguous { label: String, count: usize },

    #[error("no {what} in the token; run `rkmd init` first")]
    ObjectMissing { what: &'static str },

    #[error("the token no longer shows rkm's {what}")]
    TokenObjectMissing { what: &'static str },

    #[error(
        "the {what} was loaded into the HSM before rkmd re-initialised it after an outage, and is gone: run the step from its start again"
    )]
    ObjectLost { what: &'static str },

    #[error(
        "the HSM is unavailable ({cause}); rkmd retries on its own and `rkm status` shows when it serves again: run this step again then"
    )]
    Unavailable { cause: String },

    #[error("the HSM's queue is full ({capacity} jobs waiting); retry shortly")]
    Busy { capacity: usize },

    #[error("the HSM layer has shut down")]
    ShutDown,

    #[error(
        "the HSM session was lost during {operation} and this operation is not retried automatically; check the HSM and run the step again"
    )]
    SessionLost { operation: &'static str },

    #[error("the HSM returned a value rkm cannot interpret for {what}: {detail}")]
    Malformed { what: &'static str, detail: String },

    #[error("PKCS#11 {function} failed: {rv}")]
    Pkcs11 { function: String, rv: String },

    #[error("the token failed: PKCS#11 {function} returned {rv}")]
    TokenFailed { function: String, rv: String },
}

impl HsmError {
    /// Whether this says the token itself is gone or broken, not just this
    /// operation: the start of an outage.
    pub fn means_token_failed(&self) -> bool {
        matches!(
            self,
            HsmError::TokenFailed { .. }
                | HsmError::TokenObjectMissing { .. }
                | HsmError::TokenNotFound { .. }
                | HsmError::WrongPin { .. }
                | HsmError::PinLocked { .. }
        )
    }

    /// Whether a client should wait and retry rather than change its request.
    pub fn is_unavailable(&self) -> bool {
        self.means_token_failed()
            || matches!(
                self,
                HsmError::Unavailable { .. }
                    | HsmError::Busy { .. }
                    | HsmError::ShutDown
                    | HsmError::SessionLost { .. }
                    | HsmError::ObjectLost { .. }
            )
    }
}

fn list_or_none(labels: &[String]) -> String {
    if labels.is_empty() {
        "none (initialise one with softhsm2-util --init-token or your HSM's tools)".to_owned()
    } else {
        labels
            .iter()
            .map(|label| format!("{label:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The return value of a failed PKCS#11 call, if it was one.
pub(crate) fn return_value(error: &CryptokiError) -> Option<RvError> {
    match error {
        CryptokiError::Pkcs11(rv, _) => Some(*rv),
        _ => None,
    }
}

/// Whether `error` means the session (or its login) is gone, so that
/// reopening it may help.
pub(crate) fn is_session_lost(error: &CryptokiError) -> bool {
    matches!(
        return_value(error),
        Some(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::UserNotLoggedIn
        )
    )
}

/// Whether `error` says the handle names no object (any more).
pub(crate) fn is_handle_invalid(error: &CryptokiError) -> bool {
    matches!(
        return_value(error),
        Some(RvError::ObjectHandleInvalid | RvError::KeyHandleInvalid)
    )
}

/// Whether `error` is about the device rather than the operation.
fn is_device_failure(rv: RvError) -> bool {
    matches!(
        rv,
        RvError::DeviceError
            | RvError::DeviceMemory
            | RvError::DeviceRemoved
            | RvError::TokenNotPresent
            | RvError::TokenNotRecognized
            | RvError::CryptokiNotInitialized
            | RvError::SessionHandleInvalid
            | RvError::SessionClosed
            | RvError::UserNotLoggedIn
            | RvError::SlotIdInvalid
    )
}

impl From<CryptokiError> for HsmError {
    fn from(error: CryptokiError) -> Self {
        match error {
            CryptokiError::Pkcs11(rv, function) if is_device_failure(rv) => HsmError::TokenFailed {
                function: format!("{function:?}"),
                rv: format!("{rv:?}"),
            },
            CryptokiError::Pkcs11(rv, function) => HsmError::Pkcs11 {
                function: format!("{function:?}"),
                rv: format!("{rv:?}"),
            },
            other => HsmError::Pkcs11 {
                function: "binding".to_owned(),
                rv: other.to_string(),
            },
        }
    }
}
