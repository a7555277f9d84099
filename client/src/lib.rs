//! rkm, the client of custodians, operators and auditors: connecting to rkmd,
//! the commands, and exit codes that scripts can rely on.

#![forbid(unsafe_code)]

pub mod atomic_file;
pub mod commands;
pub mod connect;
pub mod custodian_auth;
pub mod exit;
pub mod key_record_file;
pub mod key_report;
pub mod output;
pub mod passphrase;
pub mod recovery_ceremony;
pub mod share_store;
pub mod trust;
pub mod ui;
