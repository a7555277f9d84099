//! The right edge of the log that rkmd persists beside the entries.

use super::*;

/// The right edge of the log: its size and the roots of its perfect subtrees,
/// largest (leftmost) first, one per set bit of the size. That is all it takes
/// to append a leaf and to compute the root, so it is what rkmd persists
/// beside the entries (a "compact range" of `[0, size)`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    hashes: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a frontier from its persisted parts.
    ///
    /// # Errors
    ///
    /// [`ProofError::FrontierShape`] unless there is exactly one hash per set
    /// bit of `size`.
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Result<Self, ProofError> {
        let expected = size.count_ones() as usize;
        if hashes.len() != expected {
            return Err(ProofError::FrontierShape {
                size,
                expected,
                found: hashes.len(),
            });
        }
        Ok(Frontier { size, hashes })
    }

    /// The number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect subtree roots, largest first, to persist with [`Self::size`].
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// The perfect subtrees, as [`NodeId`]s, whose roots [`Self::hashes`] holds.
    pub fn node_ids(&self) -> Vec<NodeId> {
        let mut ids = Vec::with_capacity(self.hashes.len());
        let mut start = 0u64;
        for level in (0..64).rev() {
            if self.size & (1 << level) != 0 {
                ids.push(NodeId {
                    level,
                    index: start >> level,
                });
                start += 1 << level;
            }
        }
        ids
    }

    /// Appends a leaf hash, merging the perfect subtrees it completes.
    /// O(log n) hashes in the worst case, two on average.
    ///
    /// # Errors
    ///
    /// [`ProofError::TreeFull`] if the tree already holds 2^64 - 1 leaves.
    pub fn append(&mut self, leaf_hash: Hash) -> Result<(), ProofError> {
        self.append_with(leaf_hash, |_, _| {})
    }

    /// Like [`Self::append`], and calls `on_node` for each perfect subtree the
    /// leaf completes, the leaf itself first: exactly the new nodes that
    /// [`subtree_root`] may later ask for, so rkmd can store them in the same
    /// transaction as the entry.
    ///
    /// # Errors
    ///
    /// [`ProofError::TreeFull`] if the tree already holds 2^64 - 1 leaves;
    /// `on_node` is then not called.
    pub fn append_with<F>(&mut self, leaf_hash: Hash, mut on_node: F) -> Result<(), ProofError>
    where
        F: FnMut(NodeId, &Hash),
    {
        let index = self.size;
        let new_size = index
            .checked_add(1)
            .ok_or(ProofError::TreeFull { size: self.size })?;
        let mut hash = leaf_hash;
        on_node(NodeId { level: 0, index }, &hash);
        // Each trailing one bit of the old size is a perfect subtree of the
        // same height as the one just completed, to its left: merge them.
        let mut level = 0;
        while (index >> level) & 1 == 1 {
            let left = self.hashes.pop().expect("one hash per set bit of the size");
            hash = node_hash(&left, &hash);
            level += 1;
            on_node(
                NodeId {
                    level,
                    index: index >> level,
                },
                &hash,
            );
        }
        self.hashes.push(hash);
        self.size = new_size;
        Ok(())
    }

    /// The root of the tree of [`Self::size`] leaves (RFC 9162 §2.1.1);
    /// [`Hash::EMPTY_ROOT`] for the empty tree.
    pub fn root(&self) -> Hash {
        fold_from_right(&self.hashes)
    }
}
