//! Property tests of the Merkle code over random trees of 1 to 300 leaves:
//! generated proofs verify against the reference root, any flipped bit breaks
//! them, and the `Frontier` and stored-node paths agree with the reference.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::sample::Index;
use rkm_proto::merkle::{
    Frontier, Hash, NodeId, ProofError, consistency_proof, inclusion_proof, inclusion_proof_len,
    leaf_hash, root_from_leaf_hashes, subtree_root, verify_consistency, verify_inclusion,
};

/// Random leaves: 1 to 300 entries, each its index followed by 0 to 8 random
/// bytes, hashed. The index keeps leaves distinct, so a proof that verifies
/// in the wrong place would be a hash collision, not a coincidence.
fn leaves() -> impl Strategy<Value = Vec<Hash>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..8), 1..=300).prop_map(|entries| {
        entries
            .iter()
            .enumerate()
            .map(|(i, random)| {
                let mut entry = (i as u64).to_be_bytes().to_vec();
                entry.extend_from_slice(random);
                leaf_hash(&entry)
            })
            .collect()
    })
}

/// MTH over `[start, end)` from the reference implementation.
fn reference_range(leaves: &[Hash]) -> impl FnMut(u64, u64) -> Result<Hash, ProofError> + '_ {
    |start, end| Ok(root_from_leaf_hashes(&leaves[start as usize..end as usize]))
}

/// Every perfect subtree node of the tree, as the daemon would store them
/// while appending.
fn stored_nodes(leaves: &[Hash]) -> BTreeMap<NodeId, Hash> {
    let mut nodes = BTreeMap::new();
    let mut frontier = Frontier::new();
    for leaf in leaves {
        frontier
            .append_with(*leaf, |id, hash| {
                assert!(
                    nodes.insert(id, *hash).is_none(),
                    "node {id:?} reported twice"
                );
            })
            .unwrap();
    }
    nodes
}

/// Flips each bit of `hash` in turn and calls `check` with the result.
fn for_each_bit_flip(hash: &Hash, mut check: impl FnMut(Hash)) {
    for bit in 0..256 {
        let mut bytes = *hash.as_bytes();
        bytes[bit / 8] ^= 1 << (bit % 8);
        check(Hash::from_bytes(bytes));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn inclusion_proof_generated_verifies_and_every_bit_flip_fails(
        leaves in leaves(),
        index in any::<Index>(),
    ) {
        let size = leaves.len() as u64;
        let index = index.index(leaves.len()) as u64;
        let root = root_from_leaf_hashes(&leaves);
        let leaf = leaves[index as usize];

        let proof = inclusion_proof(index, size, reference_range(&leaves)).unwrap();
        prop_assert_eq!(proof.len(), inclusion_proof_len(index, size).unwrap());
        prop_assert_eq!(verify_inclusion(index, size, &leaf, &proof, &root), Ok(()));

        for i in 0..proof.len() {
            for_each_bit_flip(&proof[i], |bad| {
                let mut mutated = proof.clone();
                mutated[i] = bad;
                assert!(verify_inclusion(index, size, &leaf, &mutated, &root).is_err());
            });
        }
        for_each_bit_flip(&root, |bad| {
            assert!(verify_inclusion(index, size, &leaf, &proof, &bad).is_err());
        });
        for_each_bit_flip(&leaf, |bad| {
            assert!(verify_inclusion(index, size, &bad, &proof, &root).is_err());
        });
    }

    #[test]
    fn inclusion_proof_for_other_index_leaf_or_tree_fails(
        leaves in leaves(),
        index in any::<Index>(),
        other in any::<Index>(),
    ) {
        let size = leaves.len() as u64;
        let index = index.index(leaves.len()) as u64;
        let other = other.index(leaves.len()) as u64;
        let root = root_from_leaf_hashes(&leaves);
        let leaf = leaves[index as usize];
        let proof = inclusion_proof(index, size, reference_range(&leaves)).unwrap();
        if other != index {
            prop_assert!(verify_inclusion(other, size, &leaf, &proof, &root).is_err());
            let other_leaf = leaves[other as usize];
            prop_assert!(verify_inclusion(index, size, &other_leaf, &proof, &root).is_err());
        }
        // A different size is caught by the length or by the root, except
        // where the proof at one size is also a proof at another (leaf 0 of 3
        // and of 4 leaves share a shape): the size is bound by the signed
        // checkpoint that supplies the root, not by the proof.
        let other_root = root_from_leaf_hashes(&leaves[..other as usize + 1]);
        if other + 1 != size {
            prop_assert!(verify_inclusion(index, other + 1, &leaf, &proof, &other_root).is_err());
        }
        let mut longer = proof.clone();
        longer.push(root);
        prop_assert!(
            matches!(
                verify_inclusion(index, size, &leaf, &longer, &root),
                Err(ProofError::WrongProofLength { .. })
            ),
            "a trailing hash is refused by length"
        );
    }

    #[test]
    fn consistency_proof_generated_verifies_and_every_bit_flip_fails(
        leaves in leaves(),
        size1 in any::<Index>(),
    ) {
        let size2 = leaves.len() as u64;
        let size1 = size1.index(leaves.len()) as u64 + 1;
        let root1 = root_from_leaf_hashes(&leaves[..size1 as usize]);
        let root2 = root_from_leaf_hashes(&leaves);

        let proof = consistency_proof(size1, size2, reference_range(&leaves)).unwrap();
        prop_assert_eq!(verify_consistency(size1, size2, &proof, &root1, &root2), Ok(()));

        for i in 0..proof.len() {
            for_each_bit_flip(&proof[i], |bad| {
                let mut mutated = proof.clone();
                mutated[i] = bad;
                assert!(verify_consistency(size1, size2, &mutated, &root1, &root2).is_err());
            });
        }
        for_each_bit_flip(&root1, |bad| {
            assert!(verify_consistency(size1, size2, &proof, &bad, &root2).is_err());
        });
        for_each_bit_flip(&root2, |bad| {
            assert!(verify_consistency(size1, size2, &proof, &root1, &bad).is_err());
        });
        if size1 < size2 {
            prop_assert!(verify_consistency(size1, size2, &proof[1..], &root1, &root2).is_err());
            prop_assert!(verify_consistency(size1, size2, &proof, &root2, &root1).is_err());
        }
    }

    #[test]
    fn frontier_root_equals_reference_root_at_every_size(leaves in leaves()) {
        let mut frontier = Frontier::new();
        prop_assert_eq!(frontier.root(), Hash::EMPTY_ROOT);
        for (i, leaf) in leaves.iter().enumerate() {
            frontier.append(*leaf).unwrap();
            prop_assert_eq!(frontier.size(), i as u64 + 1);
            prop_assert_eq!(frontier.root(), root_from_leaf_hashes(&leaves[..=i]));
            // What the daemon persists rebuilds the same frontier.
            let reloaded = Frontier::from_parts(frontier.size(), frontier.hashes().to_vec()).unwrap();
            prop_assert_eq!(&reloaded, &frontier);
            // Each persisted hash is the root of the subtree it claims to be.
            for (id, hash) in frontier.node_ids().iter().zip(frontier.hashes()) {
                let (start, end) = id.coverage();
                prop_assert_eq!(*hash, root_from_leaf_hashes(&leaves[start as usize..end as usize]));
            }
        }
    }

    #[test]
    fn proofs_from_stored_nodes_equal_proofs_from_leaves(
        leaves in leaves(),
        index in any::<Index>(),
        size1 in any::<Index>(),
    ) {
        let nodes = stored_nodes(&leaves);
        for (id, hash) in &nodes {
            let (start, end) = id.coverage();
            prop_assert_eq!(*hash, root_from_leaf_hashes(&leaves[start as usize..end as usize]));
        }
        let from_nodes = |start: u64, end: u64| {
            subtree_root(start, end, |id: NodeId| {
                nodes.get(&id).copied().ok_or(ProofError::InvalidRange { start, end })
            })
        };
        let size = leaves.len() as u64;
        let index = index.index(leaves.len()) as u64;
        let size1 = size1.index(leaves.len()) as u64 + 1;
        prop_assert_eq!(
            inclusion_proof(index, size, from_nodes),
            inclusion_proof(index, size, reference_range(&leaves))
        );
        prop_assert_eq!(
            consistency_proof(size1, size, from_nodes),
            consistency_proof(size1, size, reference_range(&leaves))
        );
        // The root at any size comes from stored nodes too.
        prop_assert_eq!(from_nodes(0, size1), Ok(root_from_leaf_hashes(&leaves[..size1 as usize])));
    }
}

proptest! {
    /// Any u64 index and sizes, any proof length: the verifiers answer with
    /// the right error and never overflow or panic.
    #[test]
    fn verifiers_on_arbitrary_u64_inputs_fail_cleanly(
        index in any::<u64>(),
        size in any::<u64>(),
        size1 in any::<u64>(),
        size2 in any::<u64>(),
        len in 0usize..70,
        seed in any::<[u8; 32]>(),
    ) {
        let junk = Hash::from_bytes(seed);
        let proof = vec![junk; len];
        match verify_inclusion(index, size, &junk, &proof, &Hash::EMPTY_ROOT) {
            Err(ProofError::IndexOutOfRange { .. }) => prop_assert!(index >= size),
            Err(ProofError::WrongProofLength { expected, found, .. }) => {
                prop_assert_eq!(found, len);
                prop_assert_eq!(Ok(expected), inclusion_proof_len(index, size));
                prop_assert!(expected <= 64);
            }
            Err(ProofError::RootMismatch { size: at, .. }) => prop_assert_eq!(at, size),
            other => prop_assert!(false, "unexpected {:?}", other),
        }
        let (small, large) = (size1.min(size2), size1.max(size2));
        for (s1, s2) in [(small, large), (small.max(1), large.max(1)), (large, small)] {
            match verify_consistency(s1, s2, &proof, &junk, &Hash::EMPTY_ROOT) {
                Err(ProofError::SizeDecreased { .. }) => prop_assert!(s1 > s2),
                Err(ProofError::ConsistencyFromEmptyTree { .. }) => prop_assert_eq!(s1, 0),
                Err(ProofError::WrongProofLength { expected, found, .. }) => {
                    prop_assert_eq!(found, len);
                    prop_assert!(expected <= 65);
                }
                Err(ProofError::RootMismatch { .. }) => {}
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
    }
}

#[test]
fn subtree_root_refuses_ranges_that_are_not_subtrees_before_loading() {
    let calls = std::cell::Cell::new(0);
    let mut load = |_: NodeId| -> Result<Hash, ProofError> {
        calls.set(calls.get() + 1);
        Ok(Hash::EMPTY_ROOT)
    };
    for (start, end) in [(3, 3), (5, 4), (1, 3), (2, 6), (4, 13)] {
        assert_eq!(
            subtree_root(start, end, &mut load),
            Err(ProofError::InvalidRange { start, end })
        );
    }
    assert_eq!(calls.get(), 0);
    assert!(subtree_root(4, 7, &mut load).is_ok());
    assert!(subtree_root(8, 13, &mut load).is_ok());
}

#[test]
fn generators_refuse_bad_sizes_before_loading_anything() {
    let mut calls = 0;
    let mut range = |_: u64, _: u64| -> Result<Hash, ProofError> {
        calls += 1;
        Ok(Hash::EMPTY_ROOT)
    };
    assert_eq!(
        inclusion_proof(7, 7, &mut range),
        Err(ProofError::IndexOutOfRange { index: 7, size: 7 })
    );
    assert_eq!(
        consistency_proof(8, 7, &mut range),
        Err(ProofError::SizeDecreased { size1: 8, size2: 7 })
    );
    assert_eq!(
        consistency_proof(0, 7, &mut range),
        Err(ProofError::ConsistencyFromEmptyTree { size2: 7 })
    );
    assert_eq!(consistency_proof(7, 7, &mut range), Ok(vec![]));
    assert_eq!(calls, 0);
}

#[test]
fn frontier_from_parts_refuses_wrong_number_of_hashes() {
    assert_eq!(
        Frontier::from_parts(6, vec![Hash::EMPTY_ROOT]),
        Err(ProofError::FrontierShape {
            size: 6,
            expected: 2,
            found: 1
        })
    );
    assert!(Frontier::from_parts(0, vec![]).is_ok());
}

#[test]
fn generators_pass_source_errors_through() {
    #[derive(Debug, PartialEq)]
    enum StoreError {
        Proof(ProofError),
        Missing(u64, u64),
    }
    impl From<ProofError> for StoreError {
        fn from(error: ProofError) -> Self {
            StoreError::Proof(error)
        }
    }
    let failing = |start, end| Err(StoreError::Missing(start, end));
    assert_eq!(
        inclusion_proof(0, 2, failing),
        Err(StoreError::Missing(1, 2))
    );
    assert_eq!(
        inclusion_proof(2, 2, failing),
        Err(StoreError::Proof(ProofError::IndexOutOfRange {
            index: 2,
            size: 2
        }))
    );
}
