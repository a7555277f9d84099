//! Fuzz properties of the audit log parsers: the audit file
//! (`AuditFileReader`, `verify`, `verify_reopening`, `diagnose_range`), the
//! audit entry (`AuditEntry::decode`), the checkpoint body
//! (`Checkpoint::parse_body`), the signed note (`SignedNote::parse`,
//! `open_signed_checkpoint`), the verifier key (`VerifierKey::parse`) and the
//! Merkle proof checks, fed arbitrary input and mutations of valid encodings
//! made by the crate's own writers.
//!
//! Checked: no panic, no parse slower than the budget; bodies and notes that
//! parse are exactly the text they format back to; a mutated signed note
//! opens only to the original checkpoint; a mutated audit file verifies only
//! as a prefix of the original log (dropping intermediate checkpoints or
//! cutting after one is allowed: the result is still a signed log), with
//! that prefix's root.

#[path = "common/fuzz.rs"]
mod fuzz;

use std::collections::BTreeMap;
use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer as _, SigningKey};
use proptest::prelude::*;
use rkm_proto::audit_entry::{AuditEntry, ENTRY_VERSION, Outcome};
use rkm_proto::audit_file::{
    AuditFileError, AuditFileReader, AuditFileWriter, Record, diagnose_range, verify,
    verify_reopening,
};
use rkm_proto::checkpoint::{
    Checkpoint, SignedNote, VerifierKey, format_signed_note, open_signed_checkpoint, signed_message,
};
use rkm_proto::merkle::{Frontier, Hash, leaf_hash, verify_consistency, verify_inclusion};

use fuzz::{bytes, config, mutate, mutations, texty_bytes, timed};

const ORIGIN: &str = "rkm.test/fuzz-log";
const KEY_NAME: &str = "rkm-fuzz-audit";

fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[0x5c; 32])
}

static KEY: LazyLock<VerifierKey> =
    LazyLock::new(|| VerifierKey::new(KEY_NAME, signing_key().verifying_key().as_bytes()).unwrap());

fn entry(index: u64) -> Vec<u8> {
    AuditEntry {
        v: ENTRY_VERSION,
        time: format!("2026-01-01T00:00:{index:02}.000Z"),
        actor: "rkmd".to_owned(),
        action: "audit.note".to_owned(),
        subject: format!("cer-{index}"),
        outcome: if index % 3 == 2 {
            Outcome::Refused
        } else {
            Outcome::Ok
        },
        details: BTreeMap::from([("n".to_owned(), index.to_string())]),
    }
    .encode()
    .unwrap()
}

fn sign_checkpoint(size: u64, root: Hash) -> String {
    let body = Checkpoint::new(ORIGIN, size, root, vec![])
        .unwrap()
        .to_body();
    let signature = signing_key().sign(signed_message(&body)).to_bytes();
    format_signed_note(&body, KEY_NAME, KEY.key_id(), &signature).unwrap()
}

/// A valid log: its file, its entries, and the root after each prefix.
struct Log {
    file: Vec<u8>,
    entries: Vec<Vec<u8>>,
    roots: Vec<Hash>,
}

/// Five entries with checkpoints after entries 2 and 4 and at the end.
static LOG: LazyLock<Log> = LazyLock::new(|| {
    let mut writer = AuditFileWriter::create(Vec::new(), ORIGIN, &KEY).unwrap();
    let mut frontier = Frontier::new();
    let mut entries = Vec::new();
    let mut roots = vec![frontier.root()];
    for index in 0..5 {
        let bytes = entry(index);
        writer.entry(index, &bytes).unwrap();
        frontier.append(leaf_hash(&bytes)).unwrap();
        roots.push(frontier.root());
        entries.push(bytes);
        if index == 1 || index == 3 || index == 4 {
            writer
                .checkpoint(&sign_checkpoint(frontier.size(), frontier.root()))
                .unwrap();
        }
    }
    Log {
        file: writer.into_inner(),
        entries,
        roots,
    }
});

static NOTE: LazyLock<String> = LazyLock::new(|| sign_checkpoint(42, leaf_hash(b"root")));

/// The entries of a file that reads, or `None`.
fn read_entries(file: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut reader = AuditFileReader::new(file).ok()?;
    let mut out = Vec::new();
    while let Some(record) = reader.next_record().ok()? {
        if let Record::Entry { bytes, .. } = record {
            out.push(bytes.to_vec());
        }
    }
    Some(out)
}

fn check_audit_file(file: &[u8], mutated: bool) {
    // Reading record by record never panics.
    timed("AuditFileReader", file.len(), || {
        if let Ok(mut reader) = AuditFileReader::new(file) {
            let _ = reader.header();
            while let Ok(Some(_)) = reader.next_record() {}
        }
    });
    let verified = timed("audit_file::verify", file.len(), || {
        verify(file, &KEY, ORIGIN, |_| {})
    });
    let reopened = timed("audit_file::verify_reopening", file.len(), || {
        verify_reopening(|| Ok(file), &KEY, ORIGIN, |_| {})
    });
    assert_eq!(verified.is_ok(), reopened.is_ok());
    match &reopened {
        Ok(summary) => {
            let entries = read_entries(file).expect("a verified file reads");
            let n = entries.len();
            assert_eq!(summary.entries, n as u64);
            if mutated {
                let log = &*LOG;
                assert!(
                    n <= log.entries.len() && entries[..] == log.entries[..n],
                    "a mutated audit file verified with other entries"
                );
                assert_eq!(summary.root, log.roots[n]);
            }
        }
        Err(AuditFileError::RootMismatch { start, end, .. }) => {
            let _ = timed("audit_file::diagnose_range", file.len(), || {
                diagnose_range(file, *start, *end)
            });
        }
        Err(_) => {}
    }
    let _ = timed("audit_file::diagnose_range", file.len(), || {
        diagnose_range(file, 0, u64::MAX)
    });
}

fn check_entry(bytes: &[u8]) {
    if let Ok(entry) = timed("AuditEntry::decode", bytes.len(), || {
        AuditEntry::decode(bytes)
    }) {
        let encoded = entry.encode().unwrap();
        assert_eq!(AuditEntry::decode(&encoded), Ok(entry));
    }
}

fn check_body(text: &str) {
    if let Ok(checkpoint) = timed("Checkpoint::parse_body", text.len(), || {
        Checkpoint::parse_body(text)
    }) {
        assert_eq!(checkpoint.to_body(), text, "a non-canonical body parsed");
    }
}

/// The note text a parsed note formats back to.
fn format_note(note: &SignedNote) -> String {
    let mut out = format!("{}\n", note.text());
    for sig in note.signatures() {
        let mut blob = sig.key_id.to_vec();
        blob.extend_from_slice(&sig.signature);
        out.push_str(&format!(
            "\u{2014} {} {}\n",
            sig.key_name,
            STANDARD.encode(blob)
        ));
    }
    out
}

fn check_note(text: &str, mutated_from: Option<&Checkpoint>) {
    if let Ok(note) = timed("SignedNote::parse", text.len(), || SignedNote::parse(text)) {
        assert_eq!(format_note(&note), text, "a non-canonical note parsed");
        let _ = note.verify(&KEY);
    }
    let opened = timed("open_signed_checkpoint", text.len(), || {
        open_signed_checkpoint(text, &KEY)
    });
    if let (Ok(checkpoint), Some(original)) = (opened, mutated_from) {
        assert_eq!(&checkpoint, original, "a tampered note opened");
    }
}

fn check_vkey(text: &str) {
    if let Ok(key) = timed("VerifierKey::parse", text.len(), || {
        VerifierKey::parse(text)
    }) {
        let formatted = key.to_string();
        assert_eq!(VerifierKey::parse(&formatted), Ok(key.clone()));
        // One spelling per key but for the case of the key id's hex digits,
        // which `parse` (like Go's note.NewVerifier) accepts in either case.
        let parts = |s: &str| -> Vec<String> { s.splitn(3, '+').map(str::to_owned).collect() };
        let (ours, theirs) = (parts(&formatted), parts(text));
        assert!(
            ours.len() == 3
                && theirs.len() == 3
                && ours[0] == theirs[0]
                && ours[1].eq_ignore_ascii_case(&theirs[1])
                && ours[2] == theirs[2],
            "{text:?} parsed as {formatted:?}"
        );
    }
}

fn hash_strategy() -> impl Strategy<Value = Hash> {
    any::<[u8; 32]>().prop_map(Hash::from_bytes)
}

#[test]
fn fuzz_log_seeds_are_valid() {
    let log = &*LOG;
    let summary = verify(&log.file[..], &KEY, ORIGIN, |_| {}).unwrap();
    assert_eq!(summary.entries, 5);
    assert_eq!(summary.checkpoints, 3);
    check_audit_file(&log.file, true);
    for (i, e) in log.entries.iter().enumerate() {
        assert_eq!(AuditEntry::decode(e).unwrap().encode().unwrap(), *e, "{i}");
        check_entry(e);
    }
    let original = Checkpoint::new(ORIGIN, 42, leaf_hash(b"root"), vec![]).unwrap();
    assert_eq!(open_signed_checkpoint(&NOTE, &KEY), Ok(original.clone()));
    check_note(&NOTE, Some(&original));
    check_body(&original.to_body());
    check_vkey(&KEY.to_string());
}

proptest! {
    #![proptest_config(config(64))]

    /// Arbitrary input never panics a log parser, and what parses formats
    /// back to the input.
    #[test]
    fn fuzz_log_arbitrary_input(raw in bytes(1024), text in texty_bytes(512)) {
        let mut with_header = format!("rkm-audit-log v1\norigin {ORIGIN}\naudit-key {}\n", *KEY)
            .into_bytes();
        with_header.extend_from_slice(&text);
        for input in [&raw, &text, &with_header] {
            check_audit_file(input, false);
            check_entry(input);
            let as_text = String::from_utf8_lossy(input);
            check_body(&as_text);
            check_note(&as_text, None);
            check_vkey(&as_text);
        }
    }

    /// A mutated audit file verifies only as a prefix of the original log.
    #[test]
    fn fuzz_log_mutated_audit_file(m in mutations()) {
        check_audit_file(&mutate(&LOG.file, &m), true);
    }

    /// A mutated entry decodes only to an entry that re-encodes.
    #[test]
    fn fuzz_log_mutated_entry(m in mutations(), which in 0usize..5) {
        check_entry(&mutate(&LOG.entries[which], &m));
    }

    /// A mutated signed note opens only to the original checkpoint, and a
    /// mutated body or verifier key parses only canonically.
    #[test]
    fn fuzz_log_mutated_note_body_and_key(m in mutations()) {
        let original = Checkpoint::new(ORIGIN, 42, leaf_hash(b"root"), vec![]).unwrap();
        let note = String::from_utf8_lossy(&mutate(NOTE.as_bytes(), &m)).into_owned();
        check_note(&note, Some(&original));
        check_body(&String::from_utf8_lossy(&mutate(original.to_body().as_bytes(), &m)));
        check_vkey(&String::from_utf8_lossy(&mutate(KEY.to_string().as_bytes(), &m)));
    }

    /// Proof checks take any sizes and proofs without panicking; hashing is
    /// bounded by the proof length, never by the tree size.
    #[test]
    fn fuzz_log_merkle_proofs(
        a in prop_oneof![any::<u64>(), 0u64..64],
        b in prop_oneof![any::<u64>(), 0u64..64],
        leaf in hash_strategy(),
        root1 in hash_strategy(),
        root2 in hash_strategy(),
        proof in prop::collection::vec(hash_strategy(), 0..70),
    ) {
        let _ = timed("verify_inclusion", proof.len(), || verify_inclusion(a, b, &leaf, &proof, &root1));
        let _ = timed("verify_consistency", proof.len(), || verify_consistency(a, b, &proof, &root1, &root2));
        let _ = Frontier::from_parts(a, proof.clone()).map(|f| f.root());
    }
}
