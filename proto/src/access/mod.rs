//! How a custodian authenticates a request: the metadata entry that carries
//! [`CustodianAuth`](crate::v1::CustodianAuth), and the message its Ed25519
//! signature covers. The daemon checks it before any handler runs; the
//! client signs with the same function, so the two cannot drift.
//!
//! The signature covers the full gRPC method path, the custodian's name, the
//! daemon's single-use challenge, the time, and the SHA-256 of the exact
//! request message bytes sent in the gRPC frame. A replayed request fails on
//! the spent challenge; a reordered or edited one on the digest or method; a
//! delayed one on the time.

pub mod limits;

use sha2::{Digest as _, Sha256};

use crate::sharing::messages::message;

/// gRPC metadata key of the prost-encoded `CustodianAuth` (binary entry).
pub const CUSTODIAN_AUTH_METADATA: &str = "rkm-custodian-auth-bin";

/// Response metadata key rkmd sets when its access layer, not a handler,
/// refused a call (value: why, e.g. `unauthenticated`, `role`, `locked`).
pub const ACCESS_REFUSED_METADATA: &str = "rkm-access-refused";

/// Label of [`custodian_request_message`].
pub const CUSTODIAN_REQUEST_LABEL: &[u8] = b"rkm/v1/custodian-request\0";

/// Full gRPC path of `AccessService/GetChallenge`, the one custodian request
/// signed without a challenge.
pub const GET_CHALLENGE_METHOD: &str = "/rkm.v1.AccessService/GetChallenge";

/// Length of a daemon challenge.
pub const CHALLENGE_LEN: usize = 32;

/// SHA-256 of a request message as encoded in its gRPC frame.
pub fn request_digest(message_bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(message_bytes).into()
}

/// What a custodian signs to send the request whose message bytes hash to
/// `request_sha256` to `method` (e.g. `/rkm.v1.RecoveryService/Approve`).
pub fn custodian_request_message(
    method: &str,
    custodian: &str,
    challenge: &[u8],
    unix_time: u64,
    request_sha256: &[u8; 32],
) -> Vec<u8> {
    message(
        CUSTODIAN_REQUEST_LABEL,
        &[
            method.as_bytes(),
            custodian.as_bytes(),
            challenge,
            &unix_time.to_be_bytes(),
            request_sha256,
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_changes_the_message() {
        let digest = request_digest(b"request");
        let base = custodian_request_message("/a/B", "alice", b"c", 1, &digest);
        let variants = [
            custodian_request_message("/a/C", "alice", b"c", 1, &digest),
            custodian_request_message("/a/B", "bob", b"c", 1, &digest),
            custodian_request_message("/a/B", "alice", b"d", 1, &digest),
            custodian_request_message("/a/B", "alice", b"c", 2, &digest),
            custodian_request_message("/a/B", "alice", b"c", 1, &request_digest(b"other")),
            // Field boundaries are framed: moving a byte across them differs.
            custodian_request_message("/a/Ba", "lice", b"c", 1, &digest),
        ];
        for variant in variants {
            assert_ne!(variant, base);
        }
        assert!(base.starts_with(CUSTODIAN_REQUEST_LABEL));
    }
}
