//! rkmd, the recovery key manager daemon: API → ceremony → (hsm, store, audit).

#![forbid(unsafe_code)]

pub mod access;
pub mod api;
pub mod audit;
pub mod ceremony;
pub mod config;
pub mod dev_pki;
pub mod error;
pub mod hsm;
pub mod process;
pub mod secrets;
pub mod server;
pub mod socket;
pub mod startup;
pub mod store;
