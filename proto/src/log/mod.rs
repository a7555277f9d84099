//! The audit log's primitives: RFC 9162 Merkle hashing and proofs, C2SP
//! checkpoints, the canonical audit entry and the exported audit file.

pub mod audit_entry;
pub mod audit_file;
pub mod checkpoint;
pub mod merkle;
