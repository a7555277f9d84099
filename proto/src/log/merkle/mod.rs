//! The audit log's Merkle tree (RFC 9162 §2.1): leaf and node hashing, the
//! incremental right-edge `Frontier` that rkmd persists, proof generation from
//! stored subtree hashes, and the inclusion and consistency proof checks that
//! `rkm` runs on untrusted proofs.
//!
//! Verifiers check indices, sizes and proof lengths before they hash anything,
//! and every failure names what failed (which size, expected and computed root).

use std::fmt;

use sha2::{Digest, Sha256};

mod frontier;
mod proof;
#[cfg(test)]
mod tests;

pub use frontier::Frontier;
pub use proof::*;

/// Length in bytes of a SHA-256 hash, the only hash RFC 9162 §2.1 uses here.
pub const HASH_LEN: usize = 32;

/// Domain-separation prefix of a leaf hash (RFC 9162 §2.1.1).
const LEAF_PREFIX: u8 = 0x00;
/// Domain-separation prefix of an interior node hash (RFC 9162 §2.1.1).
const NODE_PREFIX: u8 = 0x01;

/// A SHA-256 hash in the tree: a leaf hash, a subtree hash or a root.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash([u8; HASH_LEN]);

impl Hash {
    /// The hash of the empty tree, SHA-256 of the empty string (RFC 9162 §2.1.1).
    pub const EMPTY_ROOT: Hash = Hash([
        0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9,
        0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52,
        0xb8, 0x55,
    ]);

    /// Wraps 32 bytes that are already known to be a hash.
    pub const fn from_bytes(bytes: [u8; HASH_LEN]) -> Self {
        Hash(bytes)
    }

    /// Reads a hash from untrusted bytes (a proof element off the wire, a row
    /// of the store).
    ///
    /// # Errors
    ///
    /// [`ProofError::HashLength`] unless `bytes` is exactly 32 bytes long.
    pub fn try_from_slice(bytes: &[u8]) -> Result<Self, ProofError> {
        <[u8; HASH_LEN]>::try_from(bytes)
            .map(Hash)
            .map_err(|_| ProofError::HashLength { found: bytes.len() })
    }

    /// The 32 bytes of the hash.
    pub const fn as_bytes(&self) -> &[u8; HASH_LEN] {
        &self.0
    }

    /// Lowercase hex, as in error messages and logs.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl From<[u8; HASH_LEN]> for Hash {
    fn from(bytes: [u8; HASH_LEN]) -> Self {
        Hash(bytes)
    }
}

impl From<Hash> for [u8; HASH_LEN] {
    fn from(hash: Hash) -> Self {
        hash.0
    }
}

impl AsRef<[u8]> for Hash {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({self})")
    }
}

/// Why a proof, a range or a frontier was refused. Bounds and lengths are
/// checked before any hashing, so those variants say nothing about the hashes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// A hash from untrusted input does not have 32 bytes.
    #[error("hash has {found} bytes, expected {HASH_LEN}")]
    HashLength {
        /// Length of the rejected input.
        found: usize,
    },
    /// The leaf index is not inside the tree (this includes any index in an
    /// empty tree).
    #[error("leaf index {index} is out of range for a tree of size {size}")]
    IndexOutOfRange {
        /// The leaf index asked about.
        index: u64,
        /// The tree size it was checked against.
        size: u64,
    },
    /// The older tree is larger than the newer one.
    #[error("tree size {size1} is larger than tree size {size2}: a log never shrinks")]
    SizeDecreased {
        /// Size of the tree that should be older.
        size1: u64,
        /// Size of the tree that should be newer.
        size2: u64,
    },
    /// Consistency from the empty tree proves nothing (RFC 9162 §2.1.4 defines
    /// proofs for 0 < size1 only), so it is refused rather than waved through.
    #[error("a consistency proof from the empty tree (size1 = 0) to size {size2} is meaningless")]
    ConsistencyFromEmptyTree {
        /// Size of the newer tree.
        size2: u64,
    },
    /// The proof does not have the one length that the sizes allow.
    #[error("proof has {found} hashes, expected {expected} for {what}")]
    WrongProofLength {
        /// The length that the index and sizes determine.
        expected: usize,
        /// The length received.
        found: usize,
        /// Which proof, with its parameters, e.g. "inclusion of leaf 3 in size 8".
        what: String,
    },
    /// The proof is well formed but leads to a different root.
    #[error(
        "root hash at tree size {size} does not match: expected {expected}, computed {computed}"
    )]
    RootMismatch {
        /// The tree size whose root was compared.
        size: u64,
        /// The root the caller trusts (from a signed checkpoint).
        expected: Hash,
        /// The root the proof leads to.
        computed: Hash,
    },
    /// A subtree range that is empty, reversed, or not a node of the tree
    /// (its start is not a multiple of the largest power of two in its length).
    #[error("leaf range [{start}, {end}) is not a subtree of the log")]
    InvalidRange {
        /// First leaf of the range.
        start: u64,
        /// One past the last leaf of the range.
        end: u64,
    },
    /// Persisted frontier hashes do not fit the persisted size.
    #[error("frontier of size {size} needs {expected} subtree hashes, found {found}")]
    FrontierShape {
        /// The persisted tree size.
        size: u64,
        /// Number of perfect subtrees at that size (its population count).
        expected: usize,
        /// Number of hashes supplied.
        found: usize,
    },
    /// The tree has 2^64 - 1 leaves and cannot grow.
    #[error("the tree is full: it already holds {size} leaves")]
    TreeFull {
        /// The current size.
        size: u64,
    },
}

/// The leaf hash of an entry, SHA-256(0x00 ‖ entry) (RFC 9162 §2.1.1).
///
/// The entry is hashed exactly as stored; it is never re-encoded first.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([LEAF_PREFIX]);
    hasher.update(entry);
    Hash(hasher.finalize().into())
}

/// The hash of an interior node, SHA-256(0x01 ‖ left ‖ right) (RFC 9162 §2.1.1).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([NODE_PREFIX]);
    hasher.update(left.0);
    hasher.update(right.0);
    Hash(hasher.finalize().into())
}

/// The root of the empty tree, SHA-256("") (RFC 9162 §2.1.1).
pub fn empty_root() -> Hash {
    Hash::EMPTY_ROOT
}

/// The largest power of two strictly smaller than `n`, the split point `k` of
/// RFC 9162 §2.1.1. Requires `n > 1`.
fn split_point(n: u64) -> u64 {
    debug_assert!(n > 1);
    1 << (63 - (n - 1).leading_zeros())
}

/// The Merkle Tree Hash of a list of leaf hashes, straight from the recursive
/// definition of RFC 9162 §2.1.1.
///
/// This is the reference the faster code is tested against; it is fine for
/// small trees and for tests, and holds every leaf hash in memory.
pub fn root_from_leaf_hashes(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => Hash::EMPTY_ROOT,
        [leaf] => *leaf,
        _ => {
            // The largest power of two below the length, as in `split_point`.
            let k = 1usize << (usize::BITS - 1 - (leaves.len() - 1).leading_zeros());
            node_hash(
                &root_from_leaf_hashes(&leaves[..k]),
                &root_from_leaf_hashes(&leaves[k..]),
            )
        }
    }
}

/// A perfect subtree of the log: `2^level` leaves starting at leaf
/// `index * 2^level`. Level 0 nodes are the leaf hashes themselves.
///
/// These are the hashes rkmd persists; every other hash a proof needs is built
/// from them by [`subtree_root`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// Height above the leaves, 0 to 63.
    pub level: u32,
    /// Position among the nodes of that level, from the left.
    pub index: u64,
}

impl NodeId {
    /// The leaves `[start, end)` this node covers. For a node that no tree of
    /// fewer than 2^64 leaves has (level above 63, or an index too large for
    /// its level), the bounds saturate at `u64::MAX`.
    pub fn coverage(&self) -> (u64, u64) {
        let width = 1u64.checked_shl(self.level).unwrap_or(u64::MAX);
        let start = self.index.saturating_mul(width);
        (start, start.saturating_add(width))
    }
}

/// The Merkle Tree Hash of the leaves `[start, end)` of the log, built from
/// persisted perfect subtrees: the range is split into its perfect subtrees,
/// largest first, and folded from the right (RFC 9162 §2.1.1).
///
/// The range must be a subtree of some tree of the log, which every range that
/// [`inclusion_proof`] and [`consistency_proof`] ask for is: non-empty, and
/// `start` a multiple of the largest power of two not above `end - start`.
///
/// # Errors
///
/// [`ProofError::InvalidRange`] (converted into `E`) for any other range,
/// checked before `node` is called; otherwise whatever `node` returns.
pub fn subtree_root<E, F>(start: u64, end: u64, mut node: F) -> Result<Hash, E>
where
    E: From<ProofError>,
    F: FnMut(NodeId) -> Result<Hash, E>,
{
    if start >= end {
        return Err(ProofError::InvalidRange { start, end }.into());
    }
    let len = end - start;
    let top_level = 63 - len.leading_zeros();
    if start & ((1u64 << top_level) - 1) != 0 {
        return Err(ProofError::InvalidRange { start, end }.into());
    }
    // One perfect subtree per set bit of `len`, left to right, largest first.
    let mut parts = Vec::with_capacity(len.count_ones() as usize);
    let mut offset = start;
    for level in (0..=top_level).rev() {
        if len & (1 << level) != 0 {
            parts.push(node(NodeId {
                level,
                index: offset >> level,
            })?);
            offset += 1 << level;
        }
    }
    Ok(fold_from_right(&parts))
}

/// Folds perfect subtree hashes (left to right, largest first) into the root
/// of the range they cover: the right-edge nodes of RFC 9162 §2.1.1.
fn fold_from_right(parts: &[Hash]) -> Hash {
    let mut iter = parts.iter().rev();
    let Some(last) = iter.next() else {
        return Hash::EMPTY_ROOT;
    };
    iter.fold(*last, |acc, left| node_hash(left, &acc))
}
