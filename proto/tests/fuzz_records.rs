//! Fuzz properties of the record parsers: the custodian card
//! (`CustodianCard::parse`), the key record (`KeyRecord::decode`,
//! `SignedKeyRecord::from_file` and `verify`), the request file
//! (`RecoveryRequest::from_toml`), the manifest splitter
//! (`ManifestSplitter`), the canonical request (`CanonicalRequest::decode`)
//! and approvals (`verify_approval`), each fed arbitrary input and mutations
//! of a valid encoding made by the crate's own encoder.
//!
//! Checked: no panic, no parse slower than the budget; what parses
//! re-encodes to the same value (and, for the canonical encodings, to the
//! very input); a mutated signed or fingerprinted object never verifies as
//! anything but the original.

mod common;
#[path = "common/fuzz.rs"]
mod fuzz;
mod recovery_fixture;

use std::sync::LazyLock;
use std::time::Instant;

use proptest::prelude::*;
use proptest::sample::Index;
use rkm_proto::approval::{Approval, verify_approval};
use rkm_proto::custodian_card::CustodianCard;
use rkm_proto::key_record::{KeyRecord, SignedKeyRecord};
use rkm_proto::recovery_request::{
    CanonicalRequest, CeremonyKind, Command, ManifestSplitter, RecoveryRequest, RequestError,
    validate_device_id,
};

use common::Ceremony;
use fuzz::{bytes, config, mutate, mutations, texty_bytes, timed};
use recovery_fixture::{CEREMONY_ID, Fixture, device_ids, fixture, replace_anchor_command};

static CEREMONY: LazyLock<Ceremony> = LazyLock::new(|| common::ceremony(2, 3));
static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| fixture(2, 3, 9));

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------
// Custodian card

fn check_card(text: &str) {
    let parsed = timed("CustodianCard::parse", text.len(), || {
        CustodianCard::parse(text)
    });
    if let Ok(card) = parsed {
        assert_eq!(CustodianCard::parse(&card.to_json()), Ok(card.clone()));
        card.validate().unwrap();
    }
}

fn check_mutated_card(text: &str) {
    let original = CEREMONY.identities[0].card();
    check_card(text);
    if let Ok(card) = CustodianCard::parse(text) {
        assert_eq!(card, original, "a mutated card parsed as another card");
    }
}

// ---------------------------------------------------------------------------
// Key record

fn check_record_bytes(bytes: &[u8]) {
    let decoded = timed("KeyRecord::decode", bytes.len(), || {
        KeyRecord::decode(bytes)
    });
    if let Ok(record) = decoded {
        assert_eq!(record.encode(), bytes, "a non-canonical record decoded");
        assert_eq!(KeyRecord::decode(&record.encode()), Ok(record.clone()));
        record.validate().unwrap();
    }
}

fn check_signed_file(text: &str) {
    let c = &*CEREMONY;
    let parsed = timed("SignedKeyRecord::from_file", text.len(), || {
        SignedKeyRecord::from_file(text)
    });
    let Ok(signed) = parsed else { return };
    assert_eq!(
        SignedKeyRecord::from_file(&signed.to_file()),
        Ok(signed.clone())
    );
    let verified = timed("SignedKeyRecord::verify", signed.record.len(), || {
        signed.verify(&c.audit_key)
    });
    if let Ok(record) = verified {
        assert_eq!(record, c.record, "a tampered signed record verified");
        assert_eq!(signed.record, c.signed.record);
    }
}

// ---------------------------------------------------------------------------
// Request file

/// A TOML basic string (JSON string escapes are TOML escapes too).
fn toml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

/// The request as a request file, written independently of the parser.
fn to_toml(request: &RecoveryRequest) -> String {
    let mut out = format!(
        "reason = {}\nincident = {}\nnot_before = {}\nnot_after = {}\n",
        toml_string(&request.reason),
        toml_string(&request.incident),
        toml_string(&request.not_before),
        toml_string(&request.not_after),
    );
    if !request.targets.is_empty() {
        let ids: Vec<String> = request.targets.iter().map(|t| toml_string(t)).collect();
        out.push_str(&format!("targets = [{}]\n", ids.join(", ")));
    }
    out.push_str("\n[command]\n");
    match &request.command {
        Command::ReplaceTrustAnchor {
            anchor_slot,
            new_anchor,
        } => out.push_str(&format!(
            "kind = \"replace-trust-anchor\"\nanchor_slot = {anchor_slot}\nnew_anchor = \"{}\"\n",
            hex::encode(new_anchor)
        )),
        Command::RevokeCertificate { issuer, serial } => out.push_str(&format!(
            "kind = \"revoke-certificate\"\nissuer = {}\nserial = \"{}\"\n",
            toml_string(issuer),
            hex::encode(serial)
        )),
        Command::Custom { type_name, payload } => out.push_str(&format!(
            "kind = \"custom\"\ntype = {}\npayload = \"{}\"\n",
            toml_string(type_name),
            hex::encode(payload)
        )),
    }
    out
}

fn example_toml() -> String {
    let Command::ReplaceTrustAnchor { new_anchor, .. } = replace_anchor_command() else {
        unreachable!()
    };
    format!(
        r#"reason = "Issuing CA key compromised (INC-4711)"
incident = "INC-4711"
not_before = "2026-11-27T00:00:00Z"      # RFC 3339; the validity window of the commands
not_after  = 2026-12-04T01:00:00+01:00
targets = ["meter-000001", "meter-000002"] # optional; or a manifest file given separately

[command]
kind = "replace-trust-anchor"
anchor_slot = 0x1
new_anchor = "{}"
"#,
        hex::encode_upper(new_anchor)
    )
}

fn other_kinds_toml() -> [String; 2] {
    let base = example_toml();
    let head = &base[..base.find("[command]").unwrap()];
    [
        format!(
            "{head}[command]\nkind = \"revoke-certificate\"\nissuer = \"CN=Issuing CA 2\"\nserial = \"0A1b\"\n"
        ),
        format!("{head}[command]\nkind = \"custom\"\ntype = \"set-clock\"\npayload = \"\"\n"),
    ]
}

fn check_request_toml(text: &str) {
    let parsed = timed("RecoveryRequest::from_toml", text.len(), || {
        RecoveryRequest::from_toml(text)
    });
    if let Ok(request) = parsed {
        request.validate().unwrap();
        let again = to_toml(&request);
        assert_eq!(
            RecoveryRequest::from_toml(&again),
            Ok(request.clone()),
            "{again}"
        );
    }
}

// ---------------------------------------------------------------------------
// Manifest

/// Feeds `manifest` to a splitter in the chunks `cuts` gives; the device ids
/// or the error line. (The one place that knows the splitter's API.)
fn split(manifest: &[u8], cuts: &[Index]) -> Result<Vec<String>, u64> {
    let mut splitter = ManifestSplitter::new();
    let mut out = Vec::new();
    let mut points: Vec<usize> = cuts.iter().map(|c| c.index(manifest.len() + 1)).collect();
    points.push(0);
    points.push(manifest.len());
    points.sort_unstable();
    let line = |e: RequestError| match e {
        RequestError::ManifestLine { line, .. } => line,
        other => panic!("unexpected manifest error {other:?}"),
    };
    for pair in points.windows(2) {
        splitter
            .push(&manifest[pair[0]..pair[1]], &mut out)
            .map_err(line)?;
    }
    splitter.finish(&mut out).map_err(line)?;
    Ok(out.into_iter().map(|(_, id)| id).collect())
}

/// The manifest rule written plainly: lines split at `\n`, one trailing `\r`
/// removed, blank lines and lines starting with `#` skipped, every other
/// line a device id.
fn split_reference(manifest: &[u8]) -> Result<Vec<String>, u64> {
    let mut out = Vec::new();
    let mut lines: Vec<&[u8]> = manifest.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    for (i, line) in lines.into_iter().enumerate() {
        if line.first() == Some(&b'#') {
            continue;
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match std::str::from_utf8(line)
            .ok()
            .filter(|id| validate_device_id(id).is_ok())
        {
            Some(id) => out.push(id.to_owned()),
            None => return Err(i as u64 + 1),
        }
    }
    Ok(out)
}

fn check_manifest(manifest: &[u8], cuts: &[Index]) {
    let got = timed("ManifestSplitter", manifest.len(), || split(manifest, cuts));
    assert_eq!(got, split_reference(manifest));
    assert_eq!(got, split(manifest, &[]), "chunking changed the result");
}

/// Manifest lines: device ids, comments, blanks, long lines, bad bytes.
fn manifest() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        4 => "[!-~]{1,12}".prop_map(String::into_bytes),
        1 => "#[ -~]{0,20}".prop_map(String::into_bytes),
        1 => "[ \t\r]{0,3}".prop_map(String::into_bytes),
        1 => (120usize..140, any::<bool>()).prop_map(|(n, blank)| {
            if blank { vec![b' '; n] } else { vec![b'a'; n] }
        }),
        1 => texty_bytes(16),
    ];
    (
        prop::collection::vec((line, prop::bool::weighted(0.2)), 0..12),
        any::<bool>(),
    )
        .prop_map(|(lines, last_newline)| {
            let mut out = Vec::new();
            for (line, cr) in lines {
                out.extend_from_slice(&line);
                if cr {
                    out.push(b'\r');
                }
                out.push(b'\n');
            }
            if !last_newline {
                out.pop();
            }
            out
        })
}

// ---------------------------------------------------------------------------
// Canonical request and approvals

fn valid_requests() -> Vec<CanonicalRequest> {
    let fix = &*FIXTURE;
    let recovery = fix.request(CeremonyKind::Recovery, &device_ids(3));
    let drill = fix.request(CeremonyKind::Drill, &[]);
    let mut emergency = recovery.clone();
    emergency.emergency = true;
    emergency.justification = "substation offline".to_owned();
    emergency.command = Command::RevokeCertificate {
        issuer: "CN=Issuing CA 2".to_owned(),
        serial: vec![0x0a, 0x1b],
    };
    let mut custom = drill.clone();
    custom.command = Command::Custom {
        type_name: "set-clock".to_owned(),
        payload: vec![7; 40],
    };
    vec![recovery, drill, emergency, custom]
}

static REQUESTS: LazyLock<Vec<CanonicalRequest>> = LazyLock::new(valid_requests);

fn check_canonical(bytes: &[u8]) {
    let decoded = timed("CanonicalRequest::decode", bytes.len(), || {
        CanonicalRequest::decode(bytes)
    });
    if let Ok(request) = decoded {
        assert_eq!(request.encode(), bytes, "a non-canonical request decoded");
        request.validate().unwrap();
        let _ = request.describe();
    }
}

/// A field of an approval to change.
#[derive(Debug, Clone)]
enum ApprovalEdit {
    Nonce(Index, u8),
    Commitment(Index, u8),
    Signature(Index, u8),
    Custodian(String),
    CeremonyId(String),
    Digest(Index, u8),
    ApprovedAt(String),
}

fn approval_edit() -> impl Strategy<Value = ApprovalEdit> {
    let bit = || (any::<Index>(), 0u8..8);
    prop_oneof![
        bit().prop_map(|(i, b)| ApprovalEdit::Nonce(i, b)),
        bit().prop_map(|(i, b)| ApprovalEdit::Commitment(i, b)),
        bit().prop_map(|(i, b)| ApprovalEdit::Signature(i, b)),
        "c[0-9]{1,2}|[ -~]{0,8}".prop_map(ApprovalEdit::Custodian),
        "rec-000[0-9]|[ -~]{0,12}".prop_map(ApprovalEdit::CeremonyId),
        bit().prop_map(|(i, b)| ApprovalEdit::Digest(i, b)),
        "[0-9:TZ.+-]{0,30}".prop_map(ApprovalEdit::ApprovedAt),
    ]
}

fn check_approval(edits: &[ApprovalEdit], which: usize) {
    let fix = &*FIXTURE;
    let request = &REQUESTS[0];
    let digest = request.digest();
    let original = fix.approval(which, CEREMONY_ID, &digest);
    let mut approval: Approval = original.clone();
    let mut ceremony_id = CEREMONY_ID.to_owned();
    let mut signed_digest = digest;
    let flip = |bytes: &mut [u8], i: &Index, bit: u8| bytes[i.index(bytes.len())] ^= 1 << bit;
    for edit in edits {
        match edit {
            ApprovalEdit::Nonce(i, b) => flip(&mut approval.nonce, i, *b),
            ApprovalEdit::Commitment(i, b) => flip(&mut approval.commitment, i, *b),
            ApprovalEdit::Signature(i, b) => flip(&mut approval.signature, i, *b),
            ApprovalEdit::Custodian(name) => approval.custodian = name.clone(),
            ApprovalEdit::CeremonyId(id) => ceremony_id = id.clone(),
            ApprovalEdit::Digest(i, b) => flip(&mut signed_digest, i, *b),
            ApprovalEdit::ApprovedAt(at) => approval.approved_at = at.clone(),
        }
    }
    let verified = timed("verify_approval", 0, || {
        verify_approval(&fix.record, &ceremony_id, &signed_digest, &approval)
    });
    if verified.is_ok() {
        // Only approved_at is not signed; everything else must be the
        // original.
        assert_eq!(approval.custodian, original.custodian);
        assert_eq!(approval.nonce, original.nonce);
        assert_eq!(approval.commitment, original.commitment);
        assert_eq!(approval.signature, original.signature);
        assert_eq!(ceremony_id, CEREMONY_ID);
        assert_eq!(signed_digest, digest);
    }
}

// ---------------------------------------------------------------------------
// Fixed checks

#[test]
fn fuzz_records_seeds_are_valid() {
    let c = &*CEREMONY;
    assert_eq!(
        CustodianCard::parse(&c.identities[0].card().to_json()),
        Ok(c.identities[0].card())
    );
    check_mutated_card(&c.identities[0].card().to_json());
    check_record_bytes(&c.record.encode());
    assert!(KeyRecord::decode(&c.record.encode()).is_ok());
    check_signed_file(&c.signed.to_file());
    assert_eq!(c.signed.verify(&c.audit_key), Ok(c.record.clone()));
    for text in std::iter::once(example_toml()).chain(other_kinds_toml()) {
        RecoveryRequest::from_toml(&text).unwrap();
        check_request_toml(&text);
    }
    for request in REQUESTS.iter() {
        assert_eq!(
            CanonicalRequest::decode(&request.encode()).as_ref(),
            Ok(request)
        );
    }
    for which in 0..3 {
        check_approval(&[], which);
    }
    assert_eq!(
        split(b"a\r\n#c\n \nb", &[]),
        Ok(vec!["a".to_owned(), "b".to_owned()])
    );
}

/// A request file of at most `limit` bytes with one target per line, and
/// its number of targets.
fn request_with_targets(limit: usize) -> (String, u64) {
    let base = example_toml();
    let head_end = base.find("targets = ").unwrap();
    let tail = &base[base.find("[command]").unwrap()..];
    let mut text = base[..head_end].to_owned();
    text.push_str("targets = [\n");
    let mut count = 0u64;
    loop {
        let item = format!("\"m{count:07}\",\n");
        if text.len() + item.len() + 2 + tail.len() > limit {
            break;
        }
        text.push_str(&item);
        count += 1;
    }
    text.push_str("]\n");
    text.push_str(tail);
    (text, count)
}

fn time_request_with_targets(limit: usize) -> std::time::Duration {
    let (text, count) = request_with_targets(limit);
    let start = Instant::now();
    let parsed = RecoveryRequest::from_toml(&text).unwrap();
    let elapsed = start.elapsed();
    assert_eq!(parsed.targets.len() as u64, count);
    eprintln!(
        "request file of {} bytes with {count} targets parsed in {elapsed:?}",
        text.len()
    );
    elapsed
}

/// Found by this file: the request reader used to find each target's line
/// number by counting newlines from the start of the file
/// (`toml_reader.rs`, `TomlReader::line`), so a file listing many targets
/// took time quadratic in its size (4× the file, about 15× the time; about
/// a quarter of an hour for a file at the 1 MiB limit in a test build). This
/// prints both times; with `RKM_FUZZ_STRICT_TIME=1` it fails if the growth
/// is worse than 8× (linear is 4×).
#[test]
fn fuzz_records_request_file_targets_scale() {
    let small = time_request_with_targets(8 * 1024);
    let large = time_request_with_targets(32 * 1024);
    let growth = large.as_secs_f64() / small.as_secs_f64().max(1e-9);
    eprintln!("4x the targets took {growth:.1}x the time");
    if std::env::var_os("RKM_FUZZ_STRICT_TIME").is_some() {
        assert!(
            growth < 8.0,
            "parse time grows {growth:.1}x for 4x the input"
        );
    }
}

/// Regression test of the quadratic request reader: a request file at the
/// 1 MiB limit with one target per line (about 87,000 targets) parses
/// within the fuzz budget.
#[test]
fn fuzz_records_request_file_at_the_limit_parses_in_time() {
    let elapsed = time_request_with_targets(rkm_proto::recovery_request::MAX_REQUEST_FILE_LEN);
    assert!(elapsed <= fuzz::budget(), "{elapsed:?}");
}

proptest! {
    #![proptest_config(config(64))]

    /// Arbitrary input never panics any record parser, and what parses
    /// round-trips.
    #[test]
    fn fuzz_records_arbitrary_input(raw in bytes(1024), text in texty_bytes(1024)) {
        for input in [&raw, &text] {
            let as_text = lossy(input);
            check_card(&as_text);
            check_record_bytes(input);
            check_signed_file(&as_text);
            check_request_toml(&as_text);
            check_canonical(input);
            check_manifest(input, &[]);
        }
    }

    /// A mutated custodian card parses only as the original card (the
    /// fingerprint binds every field).
    #[test]
    fn fuzz_records_mutated_card(m in mutations(), which in 0usize..3) {
        let card = CEREMONY.identities[which].card().to_json();
        let input = lossy(&mutate(card.as_bytes(), &m));
        check_card(&input);
        if let Ok(parsed) = CustodianCard::parse(&input) {
            prop_assert_eq!(parsed, CEREMONY.identities[which].card());
        }
    }

    /// A mutated encoded record decodes only canonically.
    #[test]
    fn fuzz_records_mutated_key_record(m in mutations()) {
        check_record_bytes(&mutate(&CEREMONY.record.encode(), &m));
    }

    /// A mutated signed key record file verifies only as the original.
    #[test]
    fn fuzz_records_mutated_signed_key_record(m in mutations()) {
        let file = CEREMONY.signed.to_file();
        check_signed_file(&lossy(&mutate(file.as_bytes(), &m)));
    }

    /// A mutated request file parses only to a request that validates and
    /// survives being written out and read again.
    #[test]
    fn fuzz_records_mutated_request_toml(m in mutations(), kind in 0usize..3) {
        let mut seeds = vec![example_toml()];
        seeds.extend(other_kinds_toml());
        check_request_toml(&lossy(&mutate(seeds[kind].as_bytes(), &m)));
    }

    /// The splitter agrees with the plain rule whatever the chunking.
    #[test]
    fn fuzz_records_manifest(text in manifest(), cuts in prop::collection::vec(any::<Index>(), 0..6), m in mutations()) {
        check_manifest(&text, &cuts);
        check_manifest(&mutate(&text, &m), &cuts);
    }

    /// A mutated canonical request decodes only as its canonical encoding.
    #[test]
    fn fuzz_records_mutated_canonical_request(m in mutations(), which in 0usize..4) {
        check_canonical(&mutate(&REQUESTS[which].encode(), &m));
    }

    /// An approval with any signed field changed does not verify.
    #[test]
    fn fuzz_records_mutated_approval(edits in prop::collection::vec(approval_edit(), 1..3), which in 0usize..3) {
        check_approval(&edits, which);
    }
}
