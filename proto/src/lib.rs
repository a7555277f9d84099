//! rkm's wire types (generated from `rkm/v1/*.proto`) and the pure code that
//! the daemon and the client share: encodings, fingerprints and, as the
//! product grows, signature and proof verification. No I/O, no HSM.

#![forbid(unsafe_code)]

pub mod audit_entry;
pub mod audit_file;
pub mod checkpoint;
pub mod fingerprint;
pub mod merkle;

pub mod approval;
pub mod artefact;
pub mod command;
pub mod commitment;
pub mod custodian_card;
pub mod envelope;
pub mod identity;
pub mod kek_check;
pub mod key_record;
pub mod messages;
pub mod recovery_request;
pub mod secret;
pub mod shamir;

/// Generated protobuf messages and gRPC stubs of package `rkm.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("rkm.v1");
}

/// Encoded `FileDescriptorSet` of every rkm proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("rkm_descriptor");
