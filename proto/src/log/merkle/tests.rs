//! Unit tests of the tree's hashing, proofs and frontier.
use super::proof::*;
use super::*;

#[test]
fn empty_root_is_sha256_of_empty_string() {
    let digest: [u8; HASH_LEN] = Sha256::digest(b"").into();
    assert_eq!(Hash::EMPTY_ROOT, Hash::from_bytes(digest));
    assert_eq!(empty_root(), Hash::from_bytes(digest));
}

#[test]
fn split_point_is_largest_power_of_two_below() {
    for (n, k) in [
        (2, 1),
        (3, 2),
        (4, 2),
        (5, 4),
        (8, 4),
        (9, 8),
        (u64::MAX, 1 << 63),
    ] {
        assert_eq!(split_point(n), k, "n = {n}");
    }
}

#[test]
fn inclusion_proof_len_at_u64_extremes_does_not_overflow() {
    // The last leaf of 2^64 - 1 is alone at level 0, under 63 left subtrees.
    assert_eq!(inclusion_proof_len(u64::MAX - 1, u64::MAX), Ok(63));
    assert_eq!(inclusion_proof_len(0, u64::MAX), Ok(64));
    assert_eq!(inclusion_proof_len(1 << 63, (1 << 63) + 1), Ok(1));
}

#[test]
fn node_coverage_saturates_instead_of_overflowing() {
    assert_eq!(NodeId { level: 3, index: 2 }.coverage(), (16, 24));
    assert_eq!(NodeId { level: 0, index: 5 }.coverage(), (5, 6));
    let top = NodeId {
        level: 63,
        index: 1,
    };
    assert_eq!(top.coverage(), (1 << 63, u64::MAX));
    let beyond = NodeId {
        level: 64,
        index: 0,
    };
    assert_eq!(beyond.coverage(), (0, u64::MAX));
}

#[test]
fn frontier_at_u64_max_refuses_append() {
    let hashes = vec![Hash::EMPTY_ROOT; 64];
    let mut frontier = Frontier::from_parts(u64::MAX, hashes).unwrap();
    assert_eq!(
        frontier.append(Hash::EMPTY_ROOT),
        Err(ProofError::TreeFull { size: u64::MAX })
    );
}
