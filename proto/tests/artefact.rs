//! The artefact bundle end to end with real keys: a bundle written by
//! `ArtefactWriter` verifies offline with only the key record and the audit
//! key; one flipped byte anywhere, a cut anywhere, and every kind of forged
//! header or command line fails, naming the bad line (and for a command its
//! sequence and device); verification streams.

mod recovery_fixture;

use std::io::{self, BufRead, BufReader, Read};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rkm_proto::approval::ApprovalError;
use rkm_proto::artefact::{
    ARTEFACT_MAGIC, ArtefactError, ArtefactHeader, ArtefactWriter, CommandProblem, HeaderError,
    verify_artefact, verify_artefact_on_threads,
};
use rkm_proto::checkpoint::CheckpointError;
use rkm_proto::command::CommandError;
use rkm_proto::merkle::ProofError;
use rkm_proto::recovery_request::CeremonyKind;

use recovery_fixture::{CEREMONY_ID, Fixture, LOG_ORIGIN, device_ids, fixture};

fn verify(
    bytes: &[u8],
    fix: &Fixture,
) -> Result<rkm_proto::artefact::ArtefactSummary, ArtefactError> {
    verify_artefact(bytes, &fix.record, &fix.audit_key, |_| {})
}

/// 1-based line of byte `offset`.
fn line_of(bytes: &[u8], offset: usize) -> u64 {
    bytes[..offset].iter().filter(|&&b| b == b'\n').count() as u64 + 1
}

fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8(bytes.to_vec())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn join(lines: &[String]) -> Vec<u8> {
    let mut text = lines.join("\n");
    text.push('\n');
    text.into_bytes()
}

/// Re-encodes a (possibly tampered) header into a bundle whose S lines are
/// `targets` signed correctly for that header's digest.
fn bundle_with_header(fix: &Fixture, header: &ArtefactHeader, targets: &[String]) -> Vec<u8> {
    let mut out = format!(
        "{ARTEFACT_MAGIC}\nheader {}\n",
        STANDARD.encode(header.encode())
    );
    for (sequence, id) in targets.iter().enumerate() {
        let signature = fix.sign(&header.request_digest, sequence as u64, id);
        out.push_str(&format!("S {sequence} {id} {}\n", hex::encode(signature)));
    }
    out.push_str(&format!("end {}\n", targets.len()));
    out.into_bytes()
}

#[test]
fn artefact_valid_bundle_verifies_and_summarises() {
    let fix = fixture(3, 5, 1);
    let (bytes, header, targets) = fix.recovery_bundle(4);
    let mut seen = Vec::new();
    let summary =
        verify_artefact(&bytes[..], &fix.record, &fix.audit_key, |n| seen.push(n)).unwrap();
    assert_eq!(seen, vec![1, 2, 3, 4]);
    assert_eq!(summary.ceremony_id, CEREMONY_ID);
    assert_eq!(summary.key_id, fix.record.key_id);
    assert_eq!(summary.command_kind(), "replace-trust-anchor");
    assert_eq!(summary.target_count, 4);
    assert_eq!(summary.approvers, vec!["c1", "c2", "c3"]);
    assert_eq!(summary.request_digest, header.request_digest);
    assert_eq!(summary.checkpoint_origin, LOG_ORIGIN);
    assert_eq!(summary.checkpoint_size, 7);
    assert_eq!(summary.entry_index, 4);

    let text = lines(&bytes);
    assert_eq!(text[0], "rkm-artefact v1");
    assert!(text[1].starts_with("header "));
    assert!(text[2].starts_with(&format!("S 0 {} ", targets[0])));
    assert_eq!(text[2].len(), 2 + 1 + 1 + targets[0].len() + 1 + 128);
    assert_eq!(text.last().unwrap(), "end 4");
    assert!(bytes.ends_with(b"end 4\n"));
}

#[test]
fn artefact_header_json_has_the_fixed_field_order() {
    let fix = fixture(2, 3, 2);
    let (_, header, _) = fix.recovery_bundle(1);
    let json = String::from_utf8(header.encode()).unwrap();
    let keys = [
        "{\"ceremony_id\":",
        ",\"key_id\":",
        ",\"public_key_spki\":",
        ",\"canonical_request\":",
        ",\"request_digest\":",
        ",\"approvals\":[{\"custodian\":\"c1\",\"nonce\":",
        ",\"commitment\":",
        ",\"signature\":",
        ",\"approved_at\":",
        ",\"audit\":{\"signed_checkpoint\":",
        ",\"entry_index\":4,\"entry\":",
        ",\"inclusion_proof\":[",
        "]},\"target_count\":1}",
    ];
    let mut from = 0;
    for key in keys {
        let at = json[from..]
            .find(key)
            .unwrap_or_else(|| panic!("{key} after {from}: {json}"));
        from += at + key.len();
    }
    assert_eq!(ArtefactHeader::decode(json.as_bytes()).unwrap(), header);
}

/// Every single-byte change anywhere in the bundle fails, and the error
/// names the line the byte is on.
#[test]
fn artefact_flipped_byte_anywhere_fails_naming_its_line() {
    let fix = fixture(2, 3, 3);
    let (bytes, _, _) = fix.recovery_bundle(2);
    assert!(verify(&bytes, &fix).is_ok());
    let check = |offset: usize, mask: u8| {
        let mut tampered = bytes.clone();
        tampered[offset] ^= mask;
        let error = verify(&tampered, &fix)
            .expect_err(&format!("flip {mask:#04x} at byte {offset} was accepted"));
        assert_eq!(
            error.line(),
            line_of(&bytes, offset),
            "flip {mask:#04x} at byte {offset}: {error}"
        );
    };
    // Every byte with one mask; the command and end lines, where a change
    // could most plausibly slip through, with two more.
    let header_end = line_end(&bytes, 2);
    let mut jobs: Vec<(usize, u8)> = (0..bytes.len()).map(|offset| (offset, 0x01)).collect();
    for offset in header_end..bytes.len() {
        jobs.extend([(offset, 0x20), (offset, 0x80)]);
    }
    std::thread::scope(|scope| {
        for chunk in jobs.chunks(jobs.len().div_ceil(2)) {
            let check = &check;
            scope.spawn(move || {
                for &(offset, mask) in chunk {
                    check(offset, mask);
                }
            });
        }
    });
}

#[test]
fn artefact_cut_anywhere_fails() {
    let fix = fixture(2, 3, 4);
    let (bytes, _, _) = fix.recovery_bundle(1);
    let total_lines = lines(&bytes).len() as u64;
    for len in 0..bytes.len() {
        let error = verify(&bytes[..len], &fix).expect_err(&format!("cut at {len} accepted"));
        match error {
            ArtefactError::Truncated { line, .. } => {
                assert!(line >= 3 && line <= total_lines, "cut at {len}: {error}")
            }
            ArtefactError::NotAnArtefact { .. } | ArtefactError::Malformed { line: 2, .. } => {
                assert!(len <= line_end(&bytes, 2), "cut at {len}: {error}")
            }
            other => panic!("cut at {len}: unexpected {other}"),
        }
    }
}

/// Offset of the newline that ends 1-based line `n`.
fn line_end(bytes: &[u8], n: usize) -> usize {
    bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(n - 1)
        .unwrap()
        .0
}

#[test]
fn artefact_truncated_before_end_line_is_named() {
    let fix = fixture(2, 3, 5);
    let (bytes, _, _) = fix.recovery_bundle(3);
    let text = lines(&bytes);
    let without_end = join(&text[..text.len() - 1]);
    assert_eq!(
        verify(&without_end, &fix).unwrap_err(),
        ArtefactError::Truncated {
            line: 6,
            found: 3,
            expected: 3
        }
    );
    let two_of_three = join(&text[..4]);
    assert_eq!(
        verify(&two_of_three, &fix).unwrap_err(),
        ArtefactError::Truncated {
            line: 5,
            found: 2,
            expected: 3
        }
    );
}

#[test]
fn artefact_reordered_dropped_or_duplicated_commands_fail_at_that_line() {
    let fix = fixture(2, 3, 6);
    let (bytes, _, targets) = fix.recovery_bundle(3);
    let text = lines(&bytes);

    let mut swapped = text.clone();
    swapped.swap(3, 4);
    match verify(&join(&swapped), &fix).unwrap_err() {
        ArtefactError::Command {
            line: 4,
            sequence: 2,
            device_id,
            problem: CommandProblem::UnexpectedSequence { expected: 1 },
        } => assert_eq!(device_id, targets[2]),
        other => panic!("{other}"),
    }

    let mut dropped = text.clone();
    dropped.remove(3);
    assert!(matches!(
        verify(&join(&dropped), &fix).unwrap_err(),
        ArtefactError::Command {
            line: 4,
            sequence: 2,
            problem: CommandProblem::UnexpectedSequence { expected: 1 },
            ..
        }
    ));

    let mut duplicated = text.clone();
    duplicated.insert(3, text[3].clone());
    assert!(matches!(
        verify(&join(&duplicated), &fix).unwrap_err(),
        ArtefactError::Command {
            line: 5,
            sequence: 1,
            problem: CommandProblem::UnexpectedSequence { expected: 2 },
            ..
        }
    ));
}

#[test]
fn artefact_command_for_another_device_or_sequence_fails_signature() {
    let fix = fixture(2, 3, 7);
    let (bytes, header, targets) = fix.recovery_bundle(3);
    let mut text = lines(&bytes);
    // A valid signature, moved to another device.
    let signature = text[3].rsplit(' ').next().unwrap().to_owned();
    text[3] = format!("S 1 {} {signature}", targets[2]);
    match verify(&join(&text), &fix).unwrap_err() {
        ArtefactError::Command {
            line: 4,
            sequence: 1,
            device_id,
            problem: CommandProblem::Signature(CommandError::BadSignature),
        } => assert_eq!(device_id, "meter-000003"),
        other => panic!("{other}"),
    }
    // A high-S signature of the right command is refused.
    let mut text = lines(&bytes);
    let high = fix.sign_high_s(&header.request_digest, 1, &targets[1]);
    text[3] = format!("S 1 {} {}", targets[1], hex::encode(high));
    assert!(matches!(
        verify(&join(&text), &fix).unwrap_err(),
        ArtefactError::Command {
            line: 4,
            problem: CommandProblem::Signature(CommandError::HighS),
            ..
        }
    ));
    // Uppercase hex of the right signature is refused.
    let mut text = lines(&bytes);
    text[3] = text[3]
        .to_uppercase()
        .replacen("S 1 METER-000002", "S 1 meter-000002", 1);
    assert!(matches!(
        verify(&join(&text), &fix).unwrap_err(),
        ArtefactError::Command {
            line: 4,
            problem: CommandProblem::SignatureNotHex,
            ..
        }
    ));
}

#[test]
fn artefact_devices_not_in_the_approved_list_fail_at_the_end_line() {
    let fix = fixture(2, 3, 8);
    let (_, header, _) = fix.recovery_bundle(3);
    // Correctly signed commands for devices the custodians never approved.
    let others: Vec<String> = (0..3).map(|i| format!("rogue-{i}")).collect();
    let bytes = bundle_with_header(&fix, &header, &others);
    assert!(matches!(
        verify(&bytes, &fix).unwrap_err(),
        ArtefactError::TargetsMismatch { line: 6, .. }
    ));
}

#[test]
fn artefact_end_line_count_and_trailing_data_are_checked() {
    let fix = fixture(2, 3, 9);
    let (bytes, _, _) = fix.recovery_bundle(2);
    let mut text = lines(&bytes);
    text[4] = "end 3".to_owned();
    assert_eq!(
        verify(&join(&text), &fix).unwrap_err(),
        ArtefactError::CountMismatch {
            line: 5,
            stated: 3,
            expected: 2,
            found: 2
        }
    );
    text[4] = "end 02".to_owned();
    assert!(matches!(
        verify(&join(&text), &fix).unwrap_err(),
        ArtefactError::Malformed { line: 5, .. }
    ));
    for extra in [&b"\n"[..], b"end 2\n", b"x"] {
        let mut longer = bytes.clone();
        longer.extend_from_slice(extra);
        assert_eq!(
            verify(&longer, &fix).unwrap_err(),
            ArtefactError::TrailingData { line: 6 }
        );
    }
    let mut crlf = bytes.clone();
    let at = line_end(&bytes, 3);
    crlf.insert(at, b'\r');
    assert!(matches!(
        verify(&crlf, &fix).unwrap_err(),
        ArtefactError::Command {
            line: 3,
            problem: CommandProblem::SignatureNotHex,
            ..
        }
    ));
}

#[test]
fn artefact_wrong_magic_or_missing_header_is_named() {
    let fix = fixture(2, 3, 10);
    let (bytes, _, _) = fix.recovery_bundle(1);
    let mut text = lines(&bytes);
    text[0] = "rkm-artefact v2".to_owned();
    assert_eq!(
        verify(&join(&text), &fix).unwrap_err(),
        ArtefactError::NotAnArtefact {
            found: "rkm-artefact v2".to_owned()
        }
    );
    assert!(matches!(
        verify(b"", &fix).unwrap_err(),
        ArtefactError::NotAnArtefact { .. }
    ));
    let mut text = lines(&bytes);
    text.remove(1);
    assert!(matches!(
        verify(&join(&text), &fix).unwrap_err(),
        ArtefactError::Malformed { line: 2, .. }
    ));
}

#[test]
fn artefact_for_another_key_or_audit_key_is_refused() {
    let fix = fixture(2, 3, 11);
    let other = fixture(2, 3, 12);
    let (bytes, _, _) = fix.recovery_bundle(1);
    assert!(matches!(
        verify_artefact(&bytes[..], &other.record, &fix.audit_key, |_| {}).unwrap_err(),
        ArtefactError::Header(HeaderError::KeyIdMismatch { .. })
    ));
    assert!(matches!(
        verify_artefact(&bytes[..], &fix.record, &other.audit_key, |_| {}).unwrap_err(),
        ArtefactError::Header(HeaderError::Checkpoint(
            CheckpointError::NoSignatureByKey { .. }
        ))
    ));
}

#[test]
fn artefact_header_forgeries_are_each_named() {
    let fix = fixture(3, 5, 13);
    let targets = device_ids(2);
    let request = fix.request(CeremonyKind::Recovery, &targets);
    let good = fix.header(&request, &[0, 2, 4]);
    let header_error =
        |header: &ArtefactHeader| match verify(&bundle_with_header(&fix, header, &targets), &fix)
            .unwrap_err()
        {
            ArtefactError::Header(e) => e,
            other => panic!("expected a header error, got {other}"),
        };

    // Too few approvals, even though each is valid.
    let mut h = good.clone();
    h.approvals.pop();
    assert_eq!(
        header_error(&h),
        HeaderError::Approvals(ApprovalError::TooFew {
            found: 2,
            threshold: 3
        })
    );
    // An approval for another ceremony.
    let mut h = good.clone();
    h.approvals[1] = fix.approval(2, "rec-other", &good.request_digest);
    assert!(matches!(
        header_error(&h),
        HeaderError::Approvals(ApprovalError::BadSignature { custodian, .. }) if custodian == "c3"
    ));
    // The same custodian twice.
    let mut h = good.clone();
    h.approvals[2] = h.approvals[0].clone();
    assert!(matches!(
        header_error(&h),
        HeaderError::Approvals(ApprovalError::DuplicateCustodian { .. })
    ));
    // A changed approval time (not signed by the custodian, but bound by the
    // audit entry's approvals digest).
    let mut h = good.clone();
    h.approvals[0].approved_at = "2026-11-27T04:20:20.123Z".to_owned();
    assert!(matches!(
        header_error(&h),
        HeaderError::IssueEntry { field, .. } if field == "details.approvals_digest"
    ));
    // A request digest that is not the request's.
    let mut h = good.clone();
    h.request_digest[0] ^= 1;
    assert!(matches!(
        header_error(&h),
        HeaderError::DigestMismatch { .. }
    ));
    // Another request, digest recomputed: the approvals no longer match.
    let mut h = good.clone();
    let mut changed = request.clone();
    changed.reason = "Routine rotation".to_owned();
    h.canonical_request = changed.encode();
    h.request_digest = changed.digest();
    assert!(matches!(
        header_error(&h),
        HeaderError::Approvals(ApprovalError::BadSignature { .. })
    ));
    // Another public key.
    let mut h = good.clone();
    h.public_key_spki = fixture(2, 3, 14).record.public_key_spki;
    assert_eq!(header_error(&h), HeaderError::PublicKeyMismatch);
    // A target count that is not the request's.
    let mut h = good.clone();
    h.target_count = 3;
    assert_eq!(
        header_error(&h),
        HeaderError::TargetCountMismatch {
            header: 3,
            request: 2
        }
    );
    // An inclusion proof for another index.
    let mut h = good.clone();
    h.audit.entry_index = 5;
    assert!(matches!(
        header_error(&h),
        HeaderError::Inclusion(ProofError::RootMismatch { .. })
    ));
    // An issue entry for another ceremony, properly logged and proven.
    let mut h = good.clone();
    let entry = fix.issue_entry(
        CeremonyKind::Recovery,
        "rec-other",
        &good.request_digest,
        &good.approvals,
    );
    h.audit = fix.audit_proof(&entry);
    assert!(matches!(
        header_error(&h),
        HeaderError::IssueEntry { field, .. } if field == "subject"
    ));
    // An issue entry without the request digest.
    let mut h = good.clone();
    let mut entry = fix.issue_entry(
        CeremonyKind::Recovery,
        CEREMONY_ID,
        &good.request_digest,
        &good.approvals,
    );
    entry.details.remove("request_digest");
    h.audit = fix.audit_proof(&entry);
    assert!(matches!(
        header_error(&h),
        HeaderError::IssueEntry { field, found, .. }
            if field == "details.request_digest" && found == "(missing)"
    ));
    // A checkpoint signed by another key.
    let mut h = good.clone();
    let stranger = fixture(2, 3, 15);
    let note = stranger.signed_checkpoint(7, rkm_proto::merkle::Hash::from_bytes([0; 32]));
    h.audit.signed_checkpoint = note;
    assert!(matches!(header_error(&h), HeaderError::Checkpoint(_)));
}

#[test]
fn artefact_drill_request_never_carries_commands() {
    let fix = fixture(2, 3, 16);
    let targets = device_ids(1);
    let request = fix.request(CeremonyKind::Drill, &targets);
    let header = fix.header(&request, &[0, 1]);
    assert_eq!(
        match verify(&bundle_with_header(&fix, &header, &targets), &fix).unwrap_err() {
            ArtefactError::Header(e) => e,
            other => panic!("{other}"),
        },
        HeaderError::DrillWithCommands { target_count: 1 }
    );
    // A drill with no targets: header only, it verifies as a drill.
    let request = fix.request(CeremonyKind::Drill, &[]);
    let header = fix.header(&request, &[0, 1]);
    let bytes = fix.bundle(&header, &[]);
    let summary = verify(&bytes, &fix).unwrap();
    assert_eq!(summary.request.ceremony_kind, CeremonyKind::Drill);
    assert_eq!(summary.target_count, 0);

    // The issuing entry must carry a drill signature by the recovery key
    // over this ceremony's challenge: not missing, not another ceremony's.
    let digest = header.request_digest;
    for (signature, needle) in [
        (None, "missing"),
        (Some("00".repeat(64)), "signature"),
        (Some("zz".to_owned()), "128 hex digits"),
    ] {
        let mut entry =
            fix.issue_entry(CeremonyKind::Drill, CEREMONY_ID, &digest, &header.approvals);
        match signature {
            None => {
                entry.details.remove("drill_signature");
            }
            Some(text) => {
                entry.details.insert("drill_signature".to_owned(), text);
            }
        }
        let mut forged = header.clone();
        forged.audit = fix.audit_proof(&entry);
        match verify(&fix.bundle(&forged, &[]), &fix).unwrap_err() {
            ArtefactError::Header(HeaderError::DrillSignature(reason)) => {
                assert!(reason.contains(needle), "{reason}");
            }
            other => panic!("{other}"),
        }
    }
    let other = fix.issue_entry(CeremonyKind::Drill, "rec-other", &digest, &header.approvals);
    let mut entry = fix.issue_entry(CeremonyKind::Drill, CEREMONY_ID, &digest, &header.approvals);
    entry.details.insert(
        "drill_signature".to_owned(),
        other.details["drill_signature"].clone(),
    );
    let mut forged = header.clone();
    forged.audit = fix.audit_proof(&entry);
    assert!(matches!(
        verify(&fix.bundle(&forged, &[]), &fix).unwrap_err(),
        ArtefactError::Header(HeaderError::DrillSignature(_))
    ));
}

#[test]
fn artefact_writer_refuses_what_the_verifier_would() {
    let fix = fixture(2, 3, 17);
    let targets = device_ids(2);
    let request = fix.request(CeremonyKind::Recovery, &targets);
    let header = fix.header(&request, &[0, 1]);
    let digest = header.request_digest;
    let invalid = |result: io::Result<()>| {
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    };

    let mut writer = ArtefactWriter::new(Vec::new(), &header).unwrap();
    invalid(writer.signed(1, &targets[1], &fix.sign(&digest, 1, &targets[1])));
    invalid(writer.signed(0, &targets[0], &fix.sign_high_s(&digest, 0, &targets[0])));
    invalid(writer.signed(0, "bad id", &fix.sign(&digest, 0, "bad id")));
    invalid(writer.signed(0, &targets[0], &[0; 64]));
    writer
        .signed(0, &targets[0], &fix.sign(&digest, 0, &targets[0]))
        .unwrap();
    assert_eq!(writer.written(), 1);
    assert_eq!(
        writer.finish().unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );

    // The right count of the wrong devices.
    let mut writer = ArtefactWriter::new(Vec::new(), &header).unwrap();
    for (sequence, id) in ["x-1", "x-2"].iter().enumerate() {
        writer
            .signed(sequence as u64, id, &fix.sign(&digest, sequence as u64, id))
            .unwrap();
    }
    invalid(writer.signed(2, "x-3", &fix.sign(&digest, 2, "x-3")));
    assert_eq!(
        writer.finish().unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );

    // A header whose count is not the request's.
    let mut wrong = header.clone();
    wrong.target_count = 5;
    assert_eq!(
        ArtefactWriter::new(Vec::new(), &wrong).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
}

/// A reader that counts the bytes handed out, to show that verification
/// reports progress long before the input is read to its end.
struct Counting<R> {
    inner: R,
    read: std::rc::Rc<std::cell::Cell<usize>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n);
        Ok(n)
    }
}

#[test]
fn artefact_verification_streams_line_by_line() {
    let fix = fixture(2, 3, 18);
    let (bytes, _, _) = fix.recovery_bundle(200);
    let read = std::rc::Rc::new(std::cell::Cell::new(0));
    let input: Box<dyn BufRead> = Box::new(BufReader::with_capacity(
        256,
        Counting {
            inner: &bytes[..],
            read: read.clone(),
        },
    ));
    let mut read_at_first = None;
    let summary = verify_artefact(input, &fix.record, &fix.audit_key, |n| {
        if n == 1 {
            read_at_first = Some(read.get());
        }
    })
    .unwrap();
    assert_eq!(summary.target_count, 200);
    let read_at_first = read_at_first.unwrap();
    assert!(
        read_at_first < line_end(&bytes, 3) + 1 + 256,
        "{read_at_first} of {} bytes read before the first command was verified",
        bytes.len()
    );
    assert_eq!(read.get(), bytes.len());
}

#[test]
fn artefact_over_long_lines_are_refused_without_reading_them_whole() {
    let fix = fixture(2, 3, 19);
    let (bytes, _, _) = fix.recovery_bundle(1);
    let text = lines(&bytes);
    let long = join(&text[..2]);
    // An endless line of 'S': the verifier stops after its limit.
    let endless = io::repeat(b'S');
    let input = BufReader::new(long.as_slice().chain(endless));
    match verify_artefact(input, &fix.record, &fix.audit_key, |_| {}).unwrap_err() {
        ArtefactError::Malformed { line: 3, reason } => {
            assert!(reason.contains("longer"), "{reason}")
        }
        other => panic!("{other}"),
    }
}

/// Replaces the signature of the S line for `sequence` by that of another
/// sequence, so the line is well formed but its signature fails.
fn break_signature(text: &mut [String], sequence: usize) {
    let donor = text[2 + (sequence + 1) % (text.len() - 3)]
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned();
    let line = &mut text[2 + sequence];
    let kept = line.rsplit_once(' ').unwrap().0.to_owned();
    *line = format!("{kept} {donor}");
}

#[test]
fn artefact_first_bad_record_is_named_whatever_the_number_of_threads() {
    let fix = fixture(2, 3, 7);
    let (bytes, _, _) = fix.recovery_bundle(3_000);
    let mut text = lines(&bytes);
    // Bad signatures late, early and in between: the earliest is named.
    for sequence in [2_900, 1_777, 613, 2_001] {
        break_signature(&mut text, sequence);
    }
    let bad_signatures = join(&text);
    // A bad signature followed by a structural fault, and the reverse.
    let mut text = lines(&bytes);
    break_signature(&mut text, 1_500);
    text[2 + 2_500] = "S 2500 meter-002501".to_owned();
    let signature_first = join(&text);
    let mut text = lines(&bytes);
    break_signature(&mut text, 2_500);
    text[2 + 900] = "S 900".to_owned();
    let structure_first = join(&text);

    for threads in [1, 2, 3, 8] {
        let verify = |bytes: &[u8]| {
            verify_artefact_on_threads(bytes, &fix.record, &fix.audit_key, threads, |_| {})
        };
        let summary = verify(&bytes).unwrap_or_else(|e| panic!("{threads} threads: {e}"));
        assert_eq!(summary.target_count, 3_000);
        match verify(&bad_signatures).unwrap_err() {
            ArtefactError::Command {
                line,
                sequence: 613,
                problem: CommandProblem::Signature(CommandError::BadSignature),
                ..
            } => assert_eq!(line, 2 + 613 + 1),
            other => panic!("{threads} threads: {other}"),
        }
        match verify(&signature_first).unwrap_err() {
            ArtefactError::Command {
                sequence: 1_500,
                problem: CommandProblem::Signature(_),
                ..
            } => {}
            other => panic!("{threads} threads: {other}"),
        }
        match verify(&structure_first).unwrap_err() {
            ArtefactError::Malformed { line, .. } => assert_eq!(line, 2 + 900 + 1),
            other => panic!("{threads} threads: {other}"),
        }
    }
}
