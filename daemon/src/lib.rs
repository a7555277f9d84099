//! rkmd, the recovery key manager daemon: API → ceremony → (hsm, store, audit).

#![forbid(unsafe_code)]

pub mod hsm;
pub mod secrets;
