//! rkm's wire types (generated from `rkm/v1/*.proto`) and the pure code that
//! the daemon and the client share: encodings, fingerprints, signature and
//! proof verification. No I/O, no HSM.

#![forbid(unsafe_code)]

pub mod access;
pub mod encoding;
pub mod log;
pub mod records;
pub mod sharing;

// The flat paths of before the folders (`rkm_proto::key_record::…`), kept for
// one release so the daemon and the client can move to the new paths at their
// own pace.
pub use encoding::fingerprint;
pub use log::{audit_entry, audit_file, checkpoint, merkle};
pub use records::{approval, artefact, command, custodian_card, key_record, recovery_request};
pub use sharing::{commitment, envelope, identity, kek_check, messages, secret, shamir};

/// Generated protobuf messages and gRPC stubs of package `rkm.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("rkm.v1");
}

/// Encoded `FileDescriptorSet` of every rkm proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("rkm_descriptor");
