//! RFC 9162 §2.1.3–2.1.4 proofs: making inclusion and consistency proofs
//! from stored subtree hashes (rkmd) and checking untrusted ones (rkm),
//! bounds and lengths first.

use super::*;

/// The lengths of the two parts of an inclusion proof for `index` in a tree
/// of `size` leaves (RFC 9162 §2.1.3): the inner part below the point where
/// the paths to `index` and to `size - 1` part, and the border part above it,
/// which holds only left siblings. Requires `index < size`.
pub(super) fn inclusion_parts(index: u64, size: u64) -> (usize, usize) {
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

pub(super) fn check_root(size: u64, expected: &Hash, computed: &Hash) -> Result<(), ProofError> {
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
pub(super) struct ConsistencyShape {
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
pub(super) fn check_consistency_shape(
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
