//! Tests of the audit file: reading, verifying, locating what was altered,
//! and writing.

use std::collections::BTreeMap;

use ed25519_dalek::{Signer as _, SigningKey};

use std::io;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::reader::parse_index;
use super::*;
use crate::encoding::fingerprint::signed_note_verifier_key;
use crate::log::audit_entry::AuditEntry;
use crate::log::audit_entry::{ENTRY_VERSION, Outcome};
use crate::log::checkpoint::{Checkpoint, CheckpointError};
use crate::log::checkpoint::{format_signed_note, signed_message};
use crate::log::merkle::{Frontier, Hash, leaf_hash};

const ORIGIN: &str = "rkm.test/audit";

fn signing_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn verifier(seed: u8) -> VerifierKey {
    let vkey = signed_note_verifier_key(ORIGIN, signing_key(seed).verifying_key().as_bytes());
    VerifierKey::parse(&vkey).unwrap()
}

fn sign(size: u64, root: Hash, seed: u8) -> String {
    let body = Checkpoint::new(ORIGIN, size, root, vec![])
        .unwrap()
        .to_body();
    let key = signing_key(seed);
    let signature = key.sign(signed_message(&body));
    format_signed_note(
        &body,
        ORIGIN,
        verifier(seed).key_id(),
        &signature.to_bytes(),
    )
    .unwrap()
}

fn entry(index: u64) -> Vec<u8> {
    AuditEntry {
        v: ENTRY_VERSION,
        time: format!("2026-01-01T00:{:02}:{:02}.000Z", index / 60, index % 60),
        actor: "local:uid=0".to_owned(),
        action: "audit.note".to_owned(),
        subject: String::new(),
        outcome: Outcome::Ok,
        details: BTreeMap::from([("message".to_owned(), format!("note {index}"))]),
    }
    .encode()
    .unwrap()
}

/// A valid log of `n` entries with a checkpoint after every `every`
/// entries and at the end.
fn log(n: u64, every: u64) -> String {
    let mut writer = AuditFileWriter::create(Vec::new(), ORIGIN, &verifier(7)).unwrap();
    let mut frontier = Frontier::new();
    for index in 0..n {
        let bytes = entry(index);
        writer.entry(index, &bytes).unwrap();
        frontier.append(leaf_hash(&bytes)).unwrap();
        if (index + 1) % every == 0 || index + 1 == n {
            writer
                .checkpoint(&sign(frontier.size(), frontier.root(), 7))
                .unwrap();
        }
    }
    if n == 0 {
        writer.checkpoint(&sign(0, Hash::EMPTY_ROOT, 7)).unwrap();
    }
    String::from_utf8(writer.into_inner()).unwrap()
}

fn check(text: &str) -> Result<Summary, AuditFileError> {
    verify_reopening(
        || Ok(io::Cursor::new(text.as_bytes())),
        &verifier(7),
        ORIGIN,
        |_| {},
    )
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_owned).collect()
}

fn join(lines: &[String]) -> String {
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// The 0-based line index of entry `index`.
fn entry_line(lines: &[String], index: u64) -> usize {
    let prefix = format!("E {index} ");
    lines.iter().position(|l| l.starts_with(&prefix)).unwrap()
}

/// (size, start, end) and the diagnosis of a root mismatch.
fn mismatch(error: &AuditFileError) -> ((u64, u64, u64), Option<&Diagnosis>) {
    match error {
        AuditFileError::RootMismatch {
            size,
            start,
            end,
            diagnosis,
            ..
        } => ((*size, *start, *end), diagnosis.as_deref()),
        other => panic!("not a root mismatch: {other}"),
    }
}

#[test]
fn valid_log_verifies_with_summary() {
    let text = log(10, 4);
    let summary = check(&text).unwrap();
    assert_eq!(summary.entries, 10);
    assert_eq!(summary.checkpoints, 3);
    assert_eq!(
        summary.first_time.as_deref(),
        Some("2026-01-01T00:00:00.000Z")
    );
    assert_eq!(
        summary.last_time.as_deref(),
        Some("2026-01-01T00:00:09.000Z")
    );
    let leaves: Vec<Hash> = (0..10).map(|i| leaf_hash(&entry(i))).collect();
    assert_eq!(
        summary.root,
        crate::log::merkle::root_from_leaf_hashes(&leaves)
    );
    assert_eq!(summary.bytes, text.len() as u64);
    assert_eq!(summary.lines, 3 + 10 + 3);
}

#[test]
fn empty_log_with_size_zero_checkpoint_verifies() {
    let summary = check(&log(0, 1)).unwrap();
    assert_eq!(summary.entries, 0);
    assert_eq!(summary.root, Hash::EMPTY_ROOT);
    assert_eq!(summary.first_time, None);
}

#[test]
fn reader_yields_records_verbatim() {
    let text = log(2, 10);
    let mut reader = AuditFileReader::new(text.as_bytes()).unwrap();
    assert_eq!(reader.header().origin, ORIGIN);
    assert_eq!(reader.header().audit_key, verifier(7));
    let first = entry(0);
    assert_eq!(
        reader.next_record().unwrap(),
        Some(Record::Entry {
            line: 4,
            index: 0,
            bytes: &first
        })
    );
    assert!(matches!(
        reader.next_record().unwrap(),
        Some(Record::Entry { index: 1, .. })
    ));
    assert!(matches!(
        reader.next_record().unwrap(),
        Some(Record::Checkpoint { line: 6, .. })
    ));
    assert_eq!(reader.next_record().unwrap(), None);
}

#[test]
fn flipped_byte_in_entry_is_a_root_mismatch_naming_range_and_entry() {
    let mut lines = lines(&log(10, 4));
    let at = entry_line(&lines, 5);
    // Break the JSON: the re-pass names the entry.
    lines[at] = lines[at].replacen("\"v\":1", "\"v\":1x", 1);
    let error = check(&join(&lines)).unwrap_err();
    let message = error.to_string();
    let (range, diagnosis) = mismatch(&error);
    assert_eq!(range, (8, 4, 8), "{message}");
    assert!(
        matches!(diagnosis, Some(Diagnosis::Undecodable { index: 5, .. })),
        "{message}"
    );
    assert!(
        message.contains("entries 4..8 do not hash to the checkpoint at size 8"),
        "{message}"
    );
    assert!(message.contains("expected root"), "{message}");
    assert!(message.contains("entry 5"), "{message}");
}

#[test]
fn altered_message_that_still_decodes_is_located_to_its_range() {
    let mut lines = lines(&log(10, 4));
    let at = entry_line(&lines, 2);
    lines[at] = lines[at].replacen("note 2", "note X", 1);
    let error = check(&join(&lines)).unwrap_err();
    let (range, diagnosis) = mismatch(&error);
    assert_eq!(range, (4, 0, 4), "{error}");
    assert_eq!(
        diagnosis,
        Some(&Diagnosis::NotFound { start: 0, end: 4 }),
        "{error}"
    );
}

#[test]
fn payloads_swapped_under_their_indices_are_named_by_time_order() {
    let mut lines = lines(&log(10, 10));
    let (a, b) = (entry_line(&lines, 3), entry_line(&lines, 4));
    let payload = |l: &str| l.splitn(3, ' ').nth(2).unwrap().to_owned();
    let (pa, pb) = (payload(&lines[a]), payload(&lines[b]));
    lines[a] = format!("E 3 {pb}");
    lines[b] = format!("E 4 {pa}");
    let error = check(&join(&lines)).unwrap_err();
    let (_, diagnosis) = mismatch(&error);
    assert!(
        matches!(diagnosis, Some(Diagnosis::TimeOutOfOrder { index: 4, .. })),
        "{error}"
    );
}

#[test]
fn deleted_entry_is_named_by_index() {
    let mut lines = lines(&log(10, 4));
    lines.remove(entry_line(&lines, 6));
    let error = check(&join(&lines)).unwrap_err();
    assert!(
        matches!(
            error,
            AuditFileError::EntryOutOfOrder {
                expected: 6,
                found: 7,
                ..
            }
        ),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("expected entry 6, found entry 7")
    );
}

#[test]
fn entry_deleted_right_before_a_checkpoint_is_named() {
    let mut lines = lines(&log(10, 4));
    lines.remove(entry_line(&lines, 3));
    let error = check(&join(&lines)).unwrap_err();
    assert!(
        matches!(
            error,
            AuditFileError::CheckpointMisplaced {
                size: 4,
                entries: 3,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("entry 3 is missing"), "{error}");
}

#[test]
fn swapped_entry_lines_are_named_by_index() {
    let mut lines = lines(&log(10, 4));
    let (a, b) = (entry_line(&lines, 1), entry_line(&lines, 2));
    lines.swap(a, b);
    let error = check(&join(&lines)).unwrap_err();
    assert!(
        matches!(
            error,
            AuditFileError::EntryOutOfOrder {
                expected: 1,
                found: 2,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn log_cut_after_an_entry_is_truncated() {
    let mut lines = lines(&log(10, 4));
    lines.truncate(entry_line(&lines, 9) + 1);
    let error = check(&join(&lines)).unwrap_err();
    assert!(
        matches!(
            error,
            AuditFileError::Truncated {
                start: 8,
                end: 10,
                last_checkpoint: Some(8),
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("truncated"));
}

#[test]
fn log_cut_mid_line_is_truncated_at_that_line() {
    let text = log(10, 4);
    let cut = &text[..text.len() - 5];
    let error = check(cut).unwrap_err();
    let last_line = text.lines().count() as u64;
    assert!(
        matches!(error, AuditFileError::TruncatedLine { line } if line == last_line),
        "{error}"
    );
}

#[test]
fn empty_and_header_only_files_are_refused() {
    assert!(matches!(
        check("").unwrap_err(),
        AuditFileError::MissingHeader { line: 1, .. }
    ));
    let header: String = log(0, 1)
        .lines()
        .take(3)
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(matches!(
        check(&header).unwrap_err(),
        AuditFileError::NoCheckpoint { line: 3 }
    ));
    assert!(matches!(
        check("rkm-audit-log v2\n").unwrap_err(),
        AuditFileError::UnsupportedVersion { .. }
    ));
}

/// The checkpoint line with its note edited by `edit`.
fn edit_checkpoint(line: &str, edit: impl FnOnce(String) -> String) -> String {
    let note = String::from_utf8(STANDARD.decode(&line[2..]).unwrap()).unwrap();
    format!("C {}", STANDARD.encode(edit(note)))
}

#[test]
fn forged_checkpoint_signature_is_refused_naming_size() {
    let mut lines = lines(&log(10, 4));
    let at = lines.iter().position(|l| l.starts_with("C ")).unwrap();
    lines[at] = edit_checkpoint(&lines[at], |note| {
        let (text, sig) = note.rsplit_once(' ').unwrap();
        let mut blob = STANDARD.decode(sig.trim_end()).unwrap();
        blob[10] ^= 1;
        format!("{text} {}\n", STANDARD.encode(blob))
    });
    let error = check(&join(&lines)).unwrap_err();
    assert!(
        matches!(
            error,
            AuditFileError::CheckpointSignature {
                claimed_size: Some(4),
                source: CheckpointError::BadSignature { .. },
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("claiming size 4"), "{error}");
}

#[test]
fn checkpoint_with_another_checkpoints_signature_is_refused() {
    let mut lines = lines(&log(10, 4));
    let cps: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("C "))
        .collect();
    let sig_of = |line: &str| {
        let note = String::from_utf8(STANDARD.decode(&line[2..]).unwrap()).unwrap();
        note.rsplit_once("\n\n").unwrap().1.to_owned()
    };
    let other = sig_of(&lines[cps[1]]);
    lines[cps[0]] = edit_checkpoint(&lines[cps[0]], |note| {
        format!("{}\n\n{other}", note.rsplit_once("\n\n").unwrap().0)
    });
    let error = check(&join(&lines)).unwrap_err();
    assert!(
        matches!(
            error,
            AuditFileError::CheckpointSignature {
                source: CheckpointError::BadSignature { .. },
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn swapped_checkpoint_lines_are_misplaced() {
    let mut lines = lines(&log(10, 4));
    let cps: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("C "))
        .collect();
    lines.swap(cps[0], cps[1]);
    let error = check(&join(&lines)).unwrap_err();
    assert!(
        matches!(
            error,
            AuditFileError::CheckpointMisplaced {
                size: 8,
                entries: 4,
                ..
            }
        ),
        "{error}"
    );
    assert!(
        error.to_string().contains("entries 4..8 are missing"),
        "{error}"
    );
}

#[test]
fn checkpoint_signed_by_another_key_is_refused() {
    let mut lines = lines(&log(4, 4));
    let leaves: Vec<Hash> = (0..4).map(|i| leaf_hash(&entry(i))).collect();
    let root = crate::log::merkle::root_from_leaf_hashes(&leaves);
    let last = lines.len() - 1;
    lines[last] = format!("C {}", STANDARD.encode(sign(4, root, 9)));
    let error = check(&join(&lines)).unwrap_err();
    assert!(
        matches!(
            error,
            AuditFileError::CheckpointSignature {
                source: CheckpointError::NoSignatureByKey { .. },
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn file_of_another_key_is_refused_at_the_header() {
    let error = verify(log(4, 4).as_bytes(), &verifier(9), ORIGIN, |_| {}).unwrap_err();
    assert!(
        matches!(error, AuditFileError::KeyMismatch { line: 3, .. }),
        "{error}"
    );
    let error = verify(log(4, 4).as_bytes(), &verifier(7), "other", |_| {}).unwrap_err();
    assert!(
        matches!(error, AuditFileError::OriginMismatch { line: 2, .. }),
        "{error}"
    );
}

#[test]
fn duplicated_checkpoint_does_not_increase() {
    let mut lines = lines(&log(4, 4));
    let last = lines.last().unwrap().clone();
    lines.push(last);
    let error = check(&join(&lines)).unwrap_err();
    assert!(
        matches!(
            error,
            AuditFileError::CheckpointNotIncreasing {
                size: 4,
                previous: 4,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn malformed_lines_are_named() {
    for (bad, what) in [
        ("X 1 2", "expected an entry"),
        ("E 01 {}", "leading zeros"),
        ("E 1", "must be `E <index> <entry>`"),
        ("C !!!", "base64"),
    ] {
        let mut lines = lines(&log(2, 2));
        lines.insert(3, bad.to_owned());
        let error = check(&join(&lines)).unwrap_err();
        assert!(
            matches!(error, AuditFileError::MalformedLine { line: 4, .. }),
            "{bad}: {error}"
        );
        assert!(error.to_string().contains(what), "{bad}: {error}");
    }
}

#[test]
fn overlong_line_is_refused_without_reading_it_whole() {
    let mut text = log(0, 1).lines().take(3).collect::<Vec<_>>().join("\n");
    text.push_str("\nE 0 ");
    text.push_str(&"x".repeat(MAX_LINE_LEN + 10));
    let error = check(&text).unwrap_err();
    assert!(
        matches!(error, AuditFileError::LineTooLong { line: 4, .. }),
        "{error}"
    );
    let mut text = log(0, 1).lines().take(3).collect::<Vec<_>>().join("\n");
    text.push_str("\nE 0 ");
    text.push_str(&"x".repeat(MAX_ENTRY_LEN + 100));
    text.push('\n');
    let error = check(&text).unwrap_err();
    assert!(
        matches!(error, AuditFileError::LineTooLong { what: "entry", .. }),
        "{error}"
    );
}

#[test]
fn writer_refuses_out_of_order_and_multiline_entries() {
    let mut writer = AuditFileWriter::create(Vec::new(), ORIGIN, &verifier(7)).unwrap();
    assert!(matches!(
        writer.entry(1, b"{}"),
        Err(WriteError::OutOfOrder {
            expected: 0,
            found: 1
        })
    ));
    assert!(matches!(
        writer.entry(0, b"{\n}"),
        Err(WriteError::LineBreak { index: 0 })
    ));
    writer.entry(0, b"{}").unwrap();
    assert_eq!(writer.next_index(), 1);
    assert!(AuditFileWriter::create(Vec::new(), "a\nb", &verifier(7)).is_err());
}

#[test]
fn resumed_verifier_and_writer_extend_a_file() {
    let text = log(6, 3);
    let summary = check(&text).unwrap();
    let mut verifier = summary.verifier;
    let mut writer = AuditFileWriter::resume(text.into_bytes(), summary.entries);
    let mut frontier = Frontier::new();
    for index in 0..6 {
        frontier.append(leaf_hash(&entry(index))).unwrap();
    }
    let mut line = summary.lines;
    for index in 6..9 {
        line += 1;
        verifier.entry(line, index, &entry(index)).unwrap();
        writer.entry(index, &entry(index)).unwrap();
        frontier.append(leaf_hash(&entry(index))).unwrap();
    }
    let note = sign(9, frontier.root(), 7);
    verifier.checkpoint(line + 1, &note).unwrap();
    writer.checkpoint(&note).unwrap();
    let extended = String::from_utf8(writer.into_inner()).unwrap();
    assert_eq!(check(&extended).unwrap().entries, 9);
}

#[test]
fn parse_index_is_strict() {
    assert_eq!(parse_index(b"0"), Some(0));
    assert_eq!(parse_index(b"18446744073709551615"), Some(u64::MAX));
    assert_eq!(parse_index(b"18446744073709551616"), None);
    assert_eq!(parse_index(b"00"), None);
    assert_eq!(parse_index(b"-1"), None);
    assert_eq!(parse_index(b""), None);
}
