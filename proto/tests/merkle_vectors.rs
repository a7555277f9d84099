//! Known-answer tests of the Merkle proof code: every inclusion and
//! consistency vector of transparency-dev/merkle (shared/vectors/rfc9162-merkle,
//! read in place), the RFC 6962 reference tree of eight leaves, the empty tree
//! and the single-leaf tree.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rkm_proto::merkle::{
    Frontier, Hash, ProofError, consistency_proof, inclusion_proof, leaf_hash, node_hash,
    root_from_leaf_hashes, verify_consistency, verify_inclusion,
};
use serde::Deserialize;

/// Vectors whose `wantErr: false` case cannot be expressed with 32-byte
/// hashes, with the reason. The verifier is stricter than Go's here: it takes
/// typed `Hash`es, so a 12-byte root is refused when it is read. The meaning
/// of each case is tested with real hashes in a test of its own.
const UNREPRESENTABLE_VALID_CASES: &[(&str, &str)] = &[(
    "consistency/additional/sizes-are-equal-one-and-proof-is-empty.json",
    "its equal roots are the 12-byte string \"don't care 2\"; see \
     consistency_equal_sizes_with_equal_roots_and_empty_proof_verifies",
)];

fn vectors_dir() -> PathBuf {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/rfc9162-merkle/testdata");
    assert!(
        dir.is_dir(),
        "Merkle test vectors not found at {}: shared/ must sit beside the repository",
        dir.display()
    );
    dir
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InclusionCase {
    leaf_idx: u64,
    tree_size: u64,
    root: String,
    leaf_hash: String,
    proof: Option<Vec<String>>,
    desc: String,
    want_err: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConsistencyCase {
    size1: u64,
    size2: u64,
    root1: String,
    root2: String,
    proof: Option<Vec<String>>,
    desc: String,
    want_err: bool,
}

/// What became of one vector.
#[derive(Debug)]
enum Outcome {
    Verified,
    /// A hash was not 32 bytes, so the case never reached the verifier.
    RejectedAtParse(ProofError),
    RejectedByVerifier(ProofError),
}

fn decode_hash(b64: &str) -> Result<Hash, ProofError> {
    let bytes = STANDARD
        .decode(b64)
        .expect("vector hashes are valid base64");
    Hash::try_from_slice(&bytes)
}

fn decode_proof(proof: &Option<Vec<String>>) -> Result<Vec<Hash>, ProofError> {
    proof.iter().flatten().map(|h| decode_hash(h)).collect()
}

fn run_inclusion(case: &InclusionCase) -> Outcome {
    let parsed = (|| {
        Ok::<_, ProofError>((
            decode_hash(&case.leaf_hash)?,
            decode_proof(&case.proof)?,
            decode_hash(&case.root)?,
        ))
    })();
    match parsed {
        Err(error) => Outcome::RejectedAtParse(error),
        Ok((leaf, proof, root)) => {
            match verify_inclusion(case.leaf_idx, case.tree_size, &leaf, &proof, &root) {
                Ok(()) => Outcome::Verified,
                Err(error) => Outcome::RejectedByVerifier(error),
            }
        }
    }
}

fn run_consistency(case: &ConsistencyCase) -> Outcome {
    let parsed = (|| {
        Ok::<_, ProofError>((
            decode_hash(&case.root1)?,
            decode_hash(&case.root2)?,
            decode_proof(&case.proof)?,
        ))
    })();
    match parsed {
        Err(error) => Outcome::RejectedAtParse(error),
        Ok((root1, root2, proof)) => {
            match verify_consistency(case.size1, case.size2, &proof, &root1, &root2) {
                Ok(()) => Outcome::Verified,
                Err(error) => Outcome::RejectedByVerifier(error),
            }
        }
    }
}

/// Every JSON file under `kind` (recursively), grouped by directory, as
/// paths relative to the vectors directory.
fn vector_files(kind: &str) -> BTreeMap<PathBuf, Vec<PathBuf>> {
    let root = vectors_dir();
    let mut by_dir = BTreeMap::new();
    let mut pending = vec![root.join(kind)];
    while let Some(dir) = pending.pop() {
        let files: &mut Vec<PathBuf> = by_dir
            .entry(dir.strip_prefix(&root).unwrap().to_path_buf())
            .or_default();
        for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "json") {
                files.push(path.strip_prefix(&root).unwrap().to_path_buf());
            }
        }
        files.sort();
    }
    // A directory that only holds directories is fine; a leaf directory
    // without vectors means something was lost.
    by_dir.retain(|dir, files| !files.is_empty() || has_subdirs(&root.join(dir)));
    for (dir, files) in &by_dir {
        if !has_subdirs(&root.join(dir)) {
            assert!(!files.is_empty(), "no vectors in {}", dir.display());
        }
    }
    by_dir
}

fn has_subdirs(dir: &Path) -> bool {
    fs::read_dir(dir)
        .unwrap()
        .any(|entry| entry.unwrap().path().is_dir())
}

/// How the cases of one kind ended.
#[derive(Debug, Default)]
struct Tally {
    cases: usize,
    verified: usize,
    rejected_at_parse: usize,
    rejected_by_verifier: usize,
}

/// Checks every outcome against its `wantErr` and counts them.
fn check_outcomes(tally: &mut Tally, results: Vec<(PathBuf, String, bool, Outcome)>) {
    let mut failures = Vec::new();
    for (file, desc, want_err, outcome) in results {
        let name = file.to_string_lossy().replace('\\', "/");
        let known_unrepresentable = UNREPRESENTABLE_VALID_CASES
            .iter()
            .any(|(known, _)| *known == name);
        tally.cases += 1;
        match &outcome {
            Outcome::Verified => tally.verified += 1,
            Outcome::RejectedAtParse(_) => tally.rejected_at_parse += 1,
            Outcome::RejectedByVerifier(error) => {
                tally.rejected_by_verifier += 1;
                assert!(!error.to_string().is_empty());
            }
        }
        match (want_err, &outcome) {
            (false, Outcome::Verified) => {}
            (false, Outcome::RejectedAtParse(_)) if known_unrepresentable => {}
            (false, _) => failures.push(format!("{name} ({desc}): want success, got {outcome:?}")),
            (true, Outcome::Verified) => {
                failures.push(format!("{name} ({desc}): want an error, but it verified"))
            }
            (true, _) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} vector(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Most rejections must come from the verifier itself, not from the 32-byte
/// boundary, or the vectors would hardly test it.
fn check_tally(kind: &str, tally: &Tally) {
    println!("{kind}: {tally:?}");
    assert!(
        tally.cases >= 50,
        "only {} {kind} vectors read",
        tally.cases
    );
    assert!(tally.verified >= 5, "{kind}: {tally:?}");
    assert!(
        tally.rejected_by_verifier > 2 * tally.rejected_at_parse,
        "{kind}: {tally:?}"
    );
}

#[test]
fn inclusion_vectors_every_case_matches_want_err() {
    let mut tally = Tally::default();
    for (dir, files) in vector_files("inclusion") {
        let mut results = Vec::new();
        for file in &files {
            let text = fs::read_to_string(vectors_dir().join(file)).unwrap();
            let case: InclusionCase =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let outcome = run_inclusion(&case);
            results.push((file.clone(), case.desc, case.want_err, outcome));
        }
        assert_eq!(results.len(), files.len(), "{}", dir.display());
        check_outcomes(&mut tally, results);
    }
    check_tally("inclusion", &tally);
}

#[test]
fn consistency_vectors_every_case_matches_want_err() {
    let mut tally = Tally::default();
    for (dir, files) in vector_files("consistency") {
        let mut results = Vec::new();
        for file in &files {
            let text = fs::read_to_string(vectors_dir().join(file)).unwrap();
            let case: ConsistencyCase =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let outcome = run_consistency(&case);
            results.push((file.clone(), case.desc, case.want_err, outcome));
        }
        assert_eq!(results.len(), files.len(), "{}", dir.display());
        check_outcomes(&mut tally, results);
    }
    check_tally("consistency", &tally);
}

#[test]
fn vectors_unrepresentable_allowlist_names_existing_valid_cases() {
    // The allowlist must not outlive the vectors it excuses, and may only
    // excuse cases that really have non-32-byte hashes.
    for (name, _reason) in UNREPRESENTABLE_VALID_CASES {
        let text = fs::read_to_string(vectors_dir().join(name))
            .unwrap_or_else(|e| panic!("allowlisted vector {name}: {e}"));
        let case: ConsistencyCase = serde_json::from_str(&text).unwrap();
        assert!(!case.want_err, "{name} is no longer a valid case");
        assert!(
            matches!(
                run_consistency(&case),
                Outcome::RejectedAtParse(ProofError::HashLength { .. })
            ),
            "{name} should fail only at the 32-byte boundary"
        );
    }
}

#[test]
fn consistency_equal_sizes_with_equal_roots_and_empty_proof_verifies() {
    let root = leaf_hash(b"don't care 2");
    assert_eq!(verify_consistency(1, 1, &[], &root, &root), Ok(()));
    assert_eq!(verify_consistency(5, 5, &[], &root, &root), Ok(()));
}

#[test]
fn consistency_from_empty_tree_is_rejected_before_hashing() {
    let root = Hash::EMPTY_ROOT;
    assert_eq!(
        verify_consistency(0, 0, &[], &root, &root),
        Err(ProofError::ConsistencyFromEmptyTree { size2: 0 })
    );
    assert_eq!(
        verify_consistency(0, 3, &[], &root, &root),
        Err(ProofError::ConsistencyFromEmptyTree { size2: 3 })
    );
}

/// The eight leaves of the RFC 6962 reference tree (also used by the
/// transparency-dev/merkle vectors) and the roots at sizes 1 to 8.
fn reference_leaves() -> Vec<Hash> {
    [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|h| leaf_hash(&hex::decode(h).unwrap()))
    .collect()
}

const REFERENCE_ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

#[test]
fn root_of_reference_tree_matches_known_roots_at_every_size() {
    let leaves = reference_leaves();
    let mut frontier = Frontier::new();
    for (size, want) in (1..=8).zip(REFERENCE_ROOTS) {
        frontier.append(leaves[size - 1]).unwrap();
        assert_eq!(
            root_from_leaf_hashes(&leaves[..size]).to_hex(),
            want,
            "size {size}"
        );
        assert_eq!(frontier.root().to_hex(), want, "frontier at size {size}");
    }
}

fn reference_range_root(start: u64, end: u64) -> Result<Hash, ProofError> {
    Ok(root_from_leaf_hashes(
        &reference_leaves()[start as usize..end as usize],
    ))
}

#[test]
fn generated_proofs_equal_happy_path_vectors() {
    let mut compared = 0;
    for files in vector_files("inclusion").values() {
        for file in files.iter().filter(|f| f.ends_with("happy-path.json")) {
            let case: InclusionCase =
                serde_json::from_str(&fs::read_to_string(vectors_dir().join(file)).unwrap())
                    .unwrap();
            let proof =
                inclusion_proof(case.leaf_idx, case.tree_size, reference_range_root).unwrap();
            assert_eq!(Ok(proof), decode_proof(&case.proof), "{}", file.display());
            compared += 1;
        }
    }
    for files in vector_files("consistency").values() {
        for file in files.iter().filter(|f| f.ends_with("happy-path.json")) {
            let case: ConsistencyCase =
                serde_json::from_str(&fs::read_to_string(vectors_dir().join(file)).unwrap())
                    .unwrap();
            let proof = consistency_proof(case.size1, case.size2, reference_range_root).unwrap();
            assert_eq!(Ok(proof), decode_proof(&case.proof), "{}", file.display());
            compared += 1;
        }
    }
    assert!(compared >= 8, "only {compared} happy-path vectors compared");
}

#[test]
fn empty_tree_root_is_sha256_of_nothing_and_has_no_leaves() {
    assert_eq!(
        root_from_leaf_hashes(&[]).to_hex(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(Frontier::new().root(), Hash::EMPTY_ROOT);
    let leaf = leaf_hash(b"entry");
    assert_eq!(
        verify_inclusion(0, 0, &leaf, &[], &Hash::EMPTY_ROOT),
        Err(ProofError::IndexOutOfRange { index: 0, size: 0 })
    );
    assert_eq!(
        inclusion_proof(0, 0, reference_range_root),
        Err(ProofError::IndexOutOfRange { index: 0, size: 0 })
    );
}

#[test]
fn single_leaf_tree_root_is_the_leaf_hash_and_proof_is_empty() {
    let leaf = leaf_hash(b"data");
    assert_eq!(root_from_leaf_hashes(&[leaf]), leaf);
    assert_eq!(verify_inclusion(0, 1, &leaf, &[], &leaf), Ok(()));
    assert_eq!(
        verify_inclusion(0, 1, &leaf, &[leaf], &leaf),
        Err(ProofError::WrongProofLength {
            expected: 0,
            found: 1,
            what: "inclusion of leaf 0 in a tree of size 1".to_owned(),
        })
    );
    let other = leaf_hash(b"other");
    assert_eq!(
        verify_inclusion(0, 1, &leaf, &[], &other),
        Err(ProofError::RootMismatch {
            size: 1,
            expected: other,
            computed: leaf
        })
    );
    assert_eq!(inclusion_proof(0, 1, reference_range_root), Ok(vec![]));
}

#[test]
fn leaf_and_node_hashes_are_domain_separated() {
    // RFC 9162 §2.1.1: 0x00 before a leaf, 0x01 before two child hashes.
    let left = leaf_hash(b"");
    assert_eq!(left.to_hex(), REFERENCE_ROOTS[0]);
    let right = leaf_hash(&[0x00]);
    assert_eq!(node_hash(&left, &right).to_hex(), REFERENCE_ROOTS[1]);
    let mut concatenated = vec![];
    concatenated.extend_from_slice(left.as_bytes());
    concatenated.extend_from_slice(right.as_bytes());
    assert_ne!(leaf_hash(&concatenated), node_hash(&left, &right));
}

#[test]
fn hash_from_untrusted_slice_requires_32_bytes() {
    assert_eq!(
        Hash::try_from_slice(&[0; 31]),
        Err(ProofError::HashLength { found: 31 })
    );
    assert_eq!(
        Hash::try_from_slice(&[0; 33]),
        Err(ProofError::HashLength { found: 33 })
    );
    assert_eq!(
        Hash::try_from_slice(&[7; 32]),
        Ok(Hash::from_bytes([7; 32]))
    );
    assert_eq!(format!("{}", Hash::from_bytes([0xab; 32])), "ab".repeat(32));
}

#[test]
fn proof_errors_name_what_failed() {
    let leaf = leaf_hash(b"x");
    let message = verify_inclusion(5, 3, &leaf, &[], &leaf)
        .unwrap_err()
        .to_string();
    assert_eq!(message, "leaf index 5 is out of range for a tree of size 3");
    let message = verify_consistency(4, 2, &[], &leaf, &leaf)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("tree size 4 is larger than tree size 2"),
        "{message}"
    );
    let message = verify_inclusion(0, 8, &leaf, &[leaf], &leaf)
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "proof has 1 hashes, expected 3 for inclusion of leaf 0 in a tree of size 8"
    );
    let message = verify_inclusion(0, 1, &leaf, &[], &Hash::EMPTY_ROOT)
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        format!(
            "root hash at tree size 1 does not match: expected {}, computed {}",
            Hash::EMPTY_ROOT,
            leaf
        )
    );
}

/// Flips each bit of `hash` in turn and calls `check` with the result.
fn for_each_bit_flip(hash: &Hash, mut check: impl FnMut(Hash)) {
    for bit in 0..256 {
        let mut bytes = *hash.as_bytes();
        bytes[bit / 8] ^= 1 << (bit % 8);
        check(Hash::from_bytes(bytes));
    }
}

/// The "wrong leaf" and "wrong root1" vectors use 9-byte hashes, which never
/// reach the verifier here; flip every bit of every 32-byte input of each
/// happy path instead.
#[test]
fn happy_path_vectors_with_any_bit_flipped_are_rejected() {
    for files in vector_files("inclusion").values() {
        for file in files.iter().filter(|f| f.ends_with("happy-path.json")) {
            let case: InclusionCase =
                serde_json::from_str(&fs::read_to_string(vectors_dir().join(file)).unwrap())
                    .unwrap();
            let leaf = decode_hash(&case.leaf_hash).unwrap();
            let root = decode_hash(&case.root).unwrap();
            let proof = decode_proof(&case.proof).unwrap();
            let (index, size) = (case.leaf_idx, case.tree_size);
            assert_eq!(verify_inclusion(index, size, &leaf, &proof, &root), Ok(()));
            for_each_bit_flip(&leaf, |bad| {
                assert!(verify_inclusion(index, size, &bad, &proof, &root).is_err())
            });
            for_each_bit_flip(&root, |bad| {
                assert!(verify_inclusion(index, size, &leaf, &proof, &bad).is_err())
            });
            for i in 0..proof.len() {
                for_each_bit_flip(&proof[i], |bad| {
                    let mut proof = proof.clone();
                    proof[i] = bad;
                    assert!(verify_inclusion(index, size, &leaf, &proof, &root).is_err());
                });
            }
        }
    }
    for files in vector_files("consistency").values() {
        for file in files.iter().filter(|f| f.ends_with("happy-path.json")) {
            let case: ConsistencyCase =
                serde_json::from_str(&fs::read_to_string(vectors_dir().join(file)).unwrap())
                    .unwrap();
            let root1 = decode_hash(&case.root1).unwrap();
            let root2 = decode_hash(&case.root2).unwrap();
            let proof = decode_proof(&case.proof).unwrap();
            let (size1, size2) = (case.size1, case.size2);
            assert_eq!(
                verify_consistency(size1, size2, &proof, &root1, &root2),
                Ok(())
            );
            for_each_bit_flip(&root1, |bad| {
                assert!(
                    verify_consistency(size1, size2, &proof, &bad, &root2).is_err(),
                    "{}: root1 flipped",
                    file.display()
                )
            });
            for_each_bit_flip(&root2, |bad| {
                assert!(verify_consistency(size1, size2, &proof, &root1, &bad).is_err())
            });
            for i in 0..proof.len() {
                for_each_bit_flip(&proof[i], |bad| {
                    let mut proof = proof.clone();
                    proof[i] = bad;
                    assert!(verify_consistency(size1, size2, &proof, &root1, &root2).is_err());
                });
            }
        }
    }
}
