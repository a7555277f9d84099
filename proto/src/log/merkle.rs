//! The audit log's Merkle tree (RFC 9162 §2.1): leaf and node hashing, the
//! incremental right-edge `Frontier` that rkmd persists, proof generation from
//! stored subtree hashes, and the inclusion and consistency proof checks that
//! `rkm` runs on untrusted proofs.
//!
//! Verifiers check indices, sizes and proof lengths before they hash anything,
//! and every failure names what failed (which size, expected and computed root).

use std::fmt;

use sha2::{Digest, Sha256};

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

/// The lengths of the two parts of an inclusion proof for `index` in a tree
/// of `size` leaves (RFC 9162 §2.1.3): the inner part below the point where
/// the paths to `index` and to `size - 1` part, and the border part above it,
/// which holds only left siblings. Requires `index < size`.
fn inclusion_parts(index: u64, size: u64) -> (usize, usize) {
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner as usize, border as usize)
}

/// The only valid length of an inclusion proof for `leaf_index` in a tree of
/// `tree_size` leaves.
///
/// # Errors
///
/// [`ProofError::IndexOutOfRange`] if `leaf_index >= tree_size`.
pub fn inclusion_proof_len(leaf_index: u64, tree_size: u64) -> Result<usize, ProofError> {
    if leaf_index >= tree_size {
        return Err(ProofError::IndexOutOfRange {
            index: leaf_index,
            size: tree_size,
        });
    }
    let (inner, border) = inclusion_parts(leaf_index, tree_size);
    Ok(inner + border)
}

/// The root that an inclusion proof leads to (RFC 9162 §2.1.3.2), for callers
/// that compare it themselves. Prefer [`verify_inclusion`].
///
/// # Errors
///
/// [`ProofError::IndexOutOfRange`] if `leaf_index >= tree_size`, and
/// [`ProofError::WrongProofLength`] if the proof has any length other than
/// the one the index and size determine; both before any hashing.
pub fn root_from_inclusion_proof(
    leaf_index: u64,
    tree_size: u64,
    leaf_hash: &Hash,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    let expected = inclusion_proof_len(leaf_index, tree_size)?;
    if proof.len() != expected {
        return Err(ProofError::WrongProofLength {
            expected,
            found: proof.len(),
            what: format!("inclusion of leaf {leaf_index} in a tree of size {tree_size}"),
        });
    }
    let (inner, _) = inclusion_parts(leaf_index, tree_size);
    let (inner_path, border_path) = proof.split_at(inner);
    let mut hash = *leaf_hash;
    for (level, sibling) in inner_path.iter().enumerate() {
        hash = if (leaf_index >> level) & 1 == 0 {
            node_hash(&hash, sibling)
        } else {
            node_hash(sibling, &hash)
        };
    }
    for sibling in border_path {
        hash = node_hash(sibling, &hash);
    }
    Ok(hash)
}

/// Checks that the leaf with hash `leaf_hash` is at `leaf_index` in the tree
/// of `tree_size` leaves whose root is `root` (RFC 9162 §2.1.3.2).
///
/// # Errors
///
/// [`ProofError::IndexOutOfRange`] or [`ProofError::WrongProofLength`] before
/// any hashing, then [`ProofError::RootMismatch`] if the proof leads to
/// another root.
pub fn verify_inclusion(
    leaf_index: u64,
    tree_size: u64,
    leaf_hash: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    let computed = root_from_inclusion_proof(leaf_index, tree_size, leaf_hash, proof)?;
    check_root(tree_size, root, &computed)
}

fn check_root(size: u64, expected: &Hash, computed: &Hash) -> Result<(), ProofError> {
    if expected == computed {
        Ok(())
    } else {
        Err(ProofError::RootMismatch {
            size,
            expected: *expected,
            computed: *computed,
        })
    }
}

/// The shape of a consistency proof from `size1` to `size2`, for
/// `0 < size1 < size2`: whether its first hash is the seed (the subtree hash
/// ending at `size1`, left out when `size1` is a power of two because it is
/// then `root1` itself), the inner and border lengths that follow, and the
/// seed's index on its level.
struct ConsistencyShape {
    seed_in_proof: bool,
    inner: usize,
    border: usize,
    seed_index: u64,
}

impl ConsistencyShape {
    fn new(size1: u64, size2: u64) -> Self {
        let shift = size1.trailing_zeros() as usize;
        let (inner, border) = inclusion_parts(size1 - 1, size2);
        // The paths to size1 - 1 and size2 - 1 part above level `shift`, so
        // `inner > shift` whenever size1 < size2.
        ConsistencyShape {
            seed_in_proof: !size1.is_power_of_two(),
            inner: inner - shift,
            border,
            seed_index: (size1 - 1) >> shift,
        }
    }

    fn len(&self) -> usize {
        usize::from(self.seed_in_proof) + self.inner + self.border
    }
}

/// Checks the sizes and the proof length of a consistency proof, before any
/// hashing. Returns the shape when there is something to hash.
fn check_consistency_shape(
    size1: u64,
    size2: u64,
    proof_len: usize,
) -> Result<Option<ConsistencyShape>, ProofError> {
    if size1 > size2 {
        return Err(ProofError::SizeDecreased { size1, size2 });
    }
    if size1 == 0 {
        return Err(ProofError::ConsistencyFromEmptyTree { size2 });
    }
    let shape = (size1 < size2).then(|| ConsistencyShape::new(size1, size2));
    let expected = shape.as_ref().map_or(0, ConsistencyShape::len);
    if proof_len != expected {
        return Err(ProofError::WrongProofLength {
            expected,
            found: proof_len,
            what: format!("consistency from tree size {size1} to {size2}"),
        });
    }
    Ok(shape)
}

/// The size-`size2` root that a consistency proof leads to, after checking
/// that the same proof leads to `root1` at `size1` (RFC 9162 §2.1.4.2).
/// Prefer [`verify_consistency`].
///
/// # Errors
///
/// [`ProofError::SizeDecreased`], [`ProofError::ConsistencyFromEmptyTree`] or
/// [`ProofError::WrongProofLength`] before any hashing, then
/// [`ProofError::RootMismatch`] at `size1` if the proof does not lead to
/// `root1`.
pub fn root_from_consistency_proof(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &Hash,
) -> Result<Hash, ProofError> {
    let Some(shape) = check_consistency_shape(size1, size2, proof.len())? else {
        return Ok(*root1);
    };
    let (seed, rest) = if shape.seed_in_proof {
        (proof[0], &proof[1..])
    } else {
        (*root1, proof)
    };
    let (inner_path, border_path) = rest.split_at(shape.inner);

    // Both roots grow from the seed. The old tree ends at the seed, so only
    // siblings to its left take part in it; the new tree takes them all.
    let mut old = seed;
    let mut new = seed;
    for (level, sibling) in inner_path.iter().enumerate() {
        if (shape.seed_index >> level) & 1 == 1 {
            old = node_hash(sibling, &old);
            new = node_hash(sibling, &new);
        } else {
            new = node_hash(&new, sibling);
        }
    }
    for sibling in border_path {
        old = node_hash(sibling, &old);
        new = node_hash(sibling, &new);
    }
    check_root(size1, root1, &old)?;
    Ok(new)
}

/// Checks that the tree of `size2` leaves with root `root2` extends the tree
/// of `size1` leaves with root `root1` (RFC 9162 §2.1.4.2).
///
/// Equal sizes need an empty proof and equal roots. A proof from the empty
/// tree (`size1 == 0`) is refused: RFC 9162 §2.1.4 defines none, and
/// accepting one would prove nothing.
///
/// # Errors
///
/// [`ProofError::SizeDecreased`], [`ProofError::ConsistencyFromEmptyTree`] or
/// [`ProofError::WrongProofLength`] before any hashing, then
/// [`ProofError::RootMismatch`] naming the size (`size1` or `size2`) whose
/// root did not match.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &Hash,
    root2: &Hash,
) -> Result<(), ProofError> {
    let computed = root_from_consistency_proof(size1, size2, proof, root1)?;
    check_root(size2, root2, &computed)
}

/// The inclusion proof of leaf `leaf_index` in the tree of `tree_size` leaves
/// (RFC 9162 §2.1.3.1), ordered from the leaf up.
///
/// `range_root(start, end)` must return the Merkle Tree Hash of leaves
/// `[start, end)`; every range asked for is a subtree in the sense of
/// [`subtree_root`], so the daemon can answer from persisted nodes with
/// `|s, e| subtree_root(s, e, &mut load_node)`.
///
/// # Errors
///
/// [`ProofError::IndexOutOfRange`] (converted into `E`) before `range_root` is
/// called; otherwise whatever `range_root` returns.
pub fn inclusion_proof<E, F>(
    leaf_index: u64,
    tree_size: u64,
    mut range_root: F,
) -> Result<Vec<Hash>, E>
where
    E: From<ProofError>,
    F: FnMut(u64, u64) -> Result<Hash, E>,
{
    let len = inclusion_proof_len(leaf_index, tree_size)?;
    // Walk down from the root as in the recursive definition, collecting the
    // sibling of each step; the proof lists them from the bottom up.
    let mut top_down = Vec::with_capacity(len);
    let (mut start, mut end) = (0, tree_size);
    while end - start > 1 {
        let mid = start + split_point(end - start);
        if leaf_index < mid {
            top_down.push(range_root(mid, end)?);
            end = mid;
        } else {
            top_down.push(range_root(start, mid)?);
            start = mid;
        }
    }
    top_down.reverse();
    debug_assert_eq!(top_down.len(), len);
    Ok(top_down)
}

/// The consistency proof from the tree of `size1` leaves to the tree of
/// `size2` leaves (RFC 9162 §2.1.4.1), in the order [`verify_consistency`]
/// expects. Equal sizes give an empty proof.
///
/// `range_root` is as for [`inclusion_proof`].
///
/// # Errors
///
/// [`ProofError::SizeDecreased`] or [`ProofError::ConsistencyFromEmptyTree`]
/// (converted into `E`) before `range_root` is called; otherwise whatever
/// `range_root` returns.
pub fn consistency_proof<E, F>(size1: u64, size2: u64, mut range_root: F) -> Result<Vec<Hash>, E>
where
    E: From<ProofError>,
    F: FnMut(u64, u64) -> Result<Hash, E>,
{
    if size1 > size2 {
        return Err(ProofError::SizeDecreased { size1, size2 }.into());
    }
    if size1 == 0 {
        return Err(ProofError::ConsistencyFromEmptyTree { size2 }.into());
    }
    if size1 == size2 {
        return Ok(Vec::new());
    }
    // SUBPROOF(m, D[start:end], whole) of RFC 9162 §2.1.4.1, unrolled: each
    // step appends one hash after the rest of the proof, so collect them top
    // down and reverse.
    let mut top_down = Vec::new();
    let (mut start, mut end) = (0, size2);
    let mut whole = true;
    while size1 != end {
        let mid = start + split_point(end - start);
        if size1 <= mid {
            top_down.push(range_root(mid, end)?);
            end = mid;
        } else {
            top_down.push(range_root(start, mid)?);
            start = mid;
            whole = false;
        }
    }
    if !whole {
        top_down.push(range_root(start, end)?);
    }
    top_down.reverse();
    Ok(top_down)
}

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

#[cfg(test)]
mod tests {
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
}
