//! The small encodings every record shares, each in one place: hex, the text
//! rule for what custodians are shown, RFC 3339 time, the binary wire reader
//! and writer, the field-error helper and key fingerprints.

pub(crate) mod field;
pub mod fingerprint;
pub(crate) mod hex;
pub mod text;
pub mod time;
pub(crate) mod wire;
