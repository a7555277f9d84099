//! Recovery requests and approvals: the request file parsed strictly with
//! each refusal named, manifests split across arbitrary chunk boundaries,
//! the canonical request round trip and its refusal of any other spelling,
//! and the quorum check of custodian approvals against a real key record.

mod recovery_fixture;

use proptest::prelude::*;
use rkm_proto::approval::{
    Approval, ApprovalError, approval_message, approvals_digest, verify_approval, verify_approvals,
};
use rkm_proto::messages::SignatureError;
use rkm_proto::recovery_request::{
    CanonicalRequest, CeremonyKind, Command, MAX_REQUEST_FILE_LEN, ManifestSplitter,
    RecoveryRequest, RequestError, TargetsDigest, TargetsHasher, request_digest,
    validate_device_id,
};
use sha2::{Digest, Sha256};

use recovery_fixture::{CEREMONY_ID, device_ids, fixture, replace_anchor_command};

/// The example from the interface spec, with a real SPKI as the new anchor.
fn example_toml() -> String {
    let Command::ReplaceTrustAnchor { new_anchor, .. } = replace_anchor_command() else {
        unreachable!()
    };
    format!(
        r#"reason = "Issuing CA key compromised (INC-4711)"
incident = "INC-4711"
not_before = "2026-11-27T00:00:00Z"      # RFC 3339; the validity window of the commands
not_after  = "2026-12-04T00:00:00Z"
targets = ["meter-000001", "meter-000002"] # optional; or a manifest file given separately

[command]
kind = "replace-trust-anchor"
anchor_slot = 1
new_anchor = "{}"
"#,
        hex::encode(new_anchor)
    )
}

fn parse(text: &str) -> Result<RecoveryRequest, RequestError> {
    RecoveryRequest::from_toml(text)
}

/// The example with `from` replaced by `to` (which must occur).
fn edited(from: &str, to: &str) -> Result<RecoveryRequest, RequestError> {
    let text = example_toml();
    assert!(text.contains(from), "{from}");
    parse(&text.replacen(from, to, 1))
}

fn invalid_field(result: Result<RecoveryRequest, RequestError>) -> (&'static str, String) {
    match result {
        Err(RequestError::InvalidField { field, reason }) => (field, reason),
        other => panic!("expected InvalidField, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Request files

#[test]
fn request_example_parses() {
    let request = parse(&example_toml()).unwrap();
    assert_eq!(request.reason, "Issuing CA key compromised (INC-4711)");
    assert_eq!(request.incident, "INC-4711");
    assert_eq!(request.not_before, "2026-11-27T00:00:00Z");
    assert_eq!(request.not_after, "2026-12-04T00:00:00Z");
    assert_eq!(request.targets, vec!["meter-000001", "meter-000002"]);
    assert_eq!(request.command, replace_anchor_command());
    request.validate().unwrap();
    let mut hasher = TargetsHasher::new();
    hasher.push("meter-000001").unwrap();
    hasher.push("meter-000002").unwrap();
    assert_eq!(request.targets_digest(), hasher.finish());
}

#[test]
fn request_other_command_kinds_parse() {
    let base = example_toml();
    let head = &base[..base.find("[command]").unwrap()];
    let revoke = format!(
        "{head}[command]\nkind = \"revoke-certificate\"\nissuer = \"CN=Issuing CA 2, O=Grid\"\nserial = \"0A1B2c\"\n"
    );
    assert_eq!(
        parse(&revoke).unwrap().command,
        Command::RevokeCertificate {
            issuer: "CN=Issuing CA 2, O=Grid".to_owned(),
            serial: vec![0x0a, 0x1b, 0x2c],
        }
    );
    let custom =
        format!("{head}[command]\nkind = \"custom\"\ntype = \"set-clock\"\npayload = \"\"\n");
    assert_eq!(
        parse(&custom).unwrap().command,
        Command::Custom {
            type_name: "set-clock".to_owned(),
            payload: vec![],
        }
    );
    // Dotted keys and inline tables are the same TOML.
    let inline =
        format!("{head}command = {{ kind = \"custom\", type = \"reboot\", payload = \"00\" }}\n");
    assert_eq!(parse(&inline).unwrap().command.kind(), "custom");
}

#[test]
fn request_times_are_normalised_to_utc() {
    let request = edited(
        "not_before = \"2026-11-27T00:00:00Z\"",
        "not_before = \"2026-11-27T01:00:00.000+02:00\"",
    )
    .unwrap();
    assert_eq!(request.not_before, "2026-11-26T23:00:00Z");
    // A TOML offset date-time, unquoted.
    let request = edited(
        "not_after  = \"2026-12-04T00:00:00Z\"",
        "not_after = 2026-12-03T19:00:00-05:00",
    )
    .unwrap();
    assert_eq!(request.not_after, "2026-12-04T00:00:00Z");
    // Targets may be left out.
    let request = edited("targets = [\"meter-000001\", \"meter-000002\"]", "").unwrap();
    assert!(request.targets.is_empty());
}

#[test]
fn request_too_large_is_refused_before_parsing() {
    let mut text = example_toml();
    text.push_str(&"#".repeat(MAX_REQUEST_FILE_LEN));
    assert!(matches!(
        parse(&text),
        Err(RequestError::TooLarge {
            what: "request file",
            ..
        })
    ));
}

#[test]
fn request_toml_syntax_error_names_line() {
    match edited("incident = \"INC-4711\"", "incident = \"INC-4711") {
        Err(RequestError::Toml { line, .. }) => assert_eq!(line, 2),
        other => panic!("{other:?}"),
    }
}

#[test]
fn request_duplicate_key_is_refused() {
    match edited(
        "incident = \"INC-4711\"",
        "incident = \"INC-4711\"\nincident = \"INC-1\"",
    ) {
        Err(RequestError::Toml { line, message, .. }) => {
            assert_eq!(line, 3);
            assert!(message.contains("duplicate"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn request_unknown_key_is_named_with_line() {
    assert_eq!(
        edited(
            "incident = \"INC-4711\"",
            "incident = \"INC-4711\"\nincidnet = \"x\""
        )
        .unwrap_err(),
        RequestError::UnknownKey {
            key: "incidnet".to_owned(),
            line: 3
        }
    );
    assert_eq!(
        edited("anchor_slot = 1", "anchor_slot = 1\nslot = 2").unwrap_err(),
        RequestError::UnknownKey {
            key: "command.slot".to_owned(),
            line: 10
        }
    );
}

#[test]
fn request_missing_keys_are_named() {
    for (from, key) in [
        (
            "reason = \"Issuing CA key compromised (INC-4711)\"",
            "reason",
        ),
        ("incident = \"INC-4711\"", "incident"),
        ("not_before = \"2026-11-27T00:00:00Z\"", "not_before"),
        ("not_after  = \"2026-12-04T00:00:00Z\"", "not_after"),
        ("kind = \"replace-trust-anchor\"", "command.kind"),
        ("anchor_slot = 1", "command.anchor_slot"),
    ] {
        assert_eq!(
            edited(from, "").unwrap_err(),
            RequestError::MissingKey { key },
            "{key}"
        );
    }
    let text = example_toml();
    let without_command = &text[..text.find("[command]").unwrap()];
    assert_eq!(
        parse(without_command).unwrap_err(),
        RequestError::MissingKey { key: "command" }
    );
    let base = &text[..text.find("[command]").unwrap()];
    let revoke = format!("{base}[command]\nkind = \"revoke-certificate\"\nissuer = \"CN=x\"\n");
    assert_eq!(
        parse(&revoke).unwrap_err(),
        RequestError::MissingKey {
            key: "command.serial"
        }
    );
}

#[test]
fn request_wrong_types_are_named_with_line() {
    assert_eq!(
        edited("incident = \"INC-4711\"", "incident = 4711").unwrap_err(),
        RequestError::WrongType {
            key: "incident".to_owned(),
            expected: "a string",
            found: "integer",
            line: 2
        }
    );
    assert!(matches!(
        edited("anchor_slot = 1", "anchor_slot = \"1\"").unwrap_err(),
        RequestError::WrongType { key, found: "string", .. } if key == "command.anchor_slot"
    ));
    assert!(matches!(
        edited("targets = [\"meter-000001\", \"meter-000002\"]", "targets = \"meter-1\"").unwrap_err(),
        RequestError::WrongType { key, .. } if key == "targets"
    ));
    assert!(matches!(
        edited("\"meter-000002\"]", "2]").unwrap_err(),
        RequestError::WrongType { key, line: 5, .. } if key == "targets[1]"
    ));
    assert!(matches!(
        edited("not_before = \"2026-11-27T00:00:00Z\"", "not_before = true").unwrap_err(),
        RequestError::WrongType { key, .. } if key == "not_before"
    ));
    let text = example_toml();
    let base = &text[..text.find("[command]").unwrap()];
    assert!(matches!(
        parse(&format!("{base}command = \"replace-trust-anchor\"\n")).unwrap_err(),
        RequestError::WrongType { key, expected: "a table", .. } if key == "command"
    ));
}

#[test]
fn request_unknown_command_kind_is_named() {
    assert_eq!(
        edited("kind = \"replace-trust-anchor\"", "kind = \"wipe-device\"").unwrap_err(),
        RequestError::UnknownCommandKind {
            kind: "wipe-device".to_owned()
        }
    );
}

#[test]
fn request_parameter_of_another_kind_is_named() {
    assert_eq!(
        edited("anchor_slot = 1", "anchor_slot = 1\nserial = \"01\"").unwrap_err(),
        RequestError::KeyNotForKind {
            key: "command.serial".to_owned(),
            kind: "replace-trust-anchor",
            line: 10
        }
    );
}

#[test]
fn request_text_fields_refuse_empty_long_and_display_tricks() {
    let reason = "reason = \"Issuing CA key compromised (INC-4711)\"";
    assert_eq!(invalid_field(edited(reason, "reason = \"  \"")).0, "reason");
    let long = format!("reason = \"{}\"", "x".repeat(1025));
    assert_eq!(invalid_field(edited(reason, &long)).0, "reason");
    // A newline could forge a line of what custodians are shown.
    let (field, why) = invalid_field(edited(reason, "reason = \"ok\\ntargets: 1 device\""));
    assert_eq!(field, "reason");
    assert!(why.contains("U+000A"), "{why}");
    // Right-to-left override.
    let (_, why) = invalid_field(edited(reason, "reason = \"abc\u{202e}fed\""));
    assert!(why.contains("U+202E"), "{why}");
    assert_eq!(
        invalid_field(edited("incident = \"INC-4711\"", "incident = \"\"")).0,
        "incident"
    );
}

#[test]
fn request_command_parameters_are_checked() {
    assert_eq!(
        invalid_field(edited("anchor_slot = 1", "anchor_slot = -1")).0,
        "command.anchor_slot"
    );
    assert_eq!(
        invalid_field(edited("anchor_slot = 1", "anchor_slot = 4294967296")).0,
        "command.anchor_slot"
    );
    assert_eq!(
        edited("anchor_slot = 1", "anchor_slot = 0x10")
            .unwrap()
            .command,
        Command::ReplaceTrustAnchor {
            anchor_slot: 16,
            new_anchor: match replace_anchor_command() {
                Command::ReplaceTrustAnchor { new_anchor, .. } => new_anchor,
                _ => unreachable!(),
            }
        }
    );
    let text = example_toml();
    let anchor_line = text.lines().find(|l| l.starts_with("new_anchor")).unwrap();
    for (bad, expect) in [
        ("new_anchor = \"zz\"", "not hex"),
        ("new_anchor = \"\"", "empty"),
        ("new_anchor = \"300100\"", "not the DER"),
        // A SEQUENCE of two INTEGERs is DER, but neither SPKI nor certificate.
        ("new_anchor = \"3006020101020101\"", "not the DER"),
    ] {
        let (field, why) = invalid_field(parse(&text.replacen(anchor_line, bad, 1)));
        assert_eq!(field, "command.new_anchor");
        assert!(why.contains(expect), "{bad}: {why}");
    }
    let base = &text[..text.find("[command]").unwrap()];
    let revoke = |serial: &str| {
        parse(&format!(
            "{base}[command]\nkind = \"revoke-certificate\"\nissuer = \"CN=x\"\nserial = \"{serial}\"\n"
        ))
    };
    assert_eq!(invalid_field(revoke(&"ab".repeat(21))).0, "command.serial");
    assert_eq!(invalid_field(revoke("")).0, "command.serial");
    let custom = |type_name: &str, payload: &str| {
        parse(&format!(
            "{base}[command]\nkind = \"custom\"\ntype = \"{type_name}\"\npayload = \"{payload}\"\n"
        ))
    };
    assert_eq!(invalid_field(custom("Set Clock", "")).0, "command.type");
    assert_eq!(invalid_field(custom("-x", "")).0, "command.type");
    assert_eq!(
        invalid_field(custom("x", &"00".repeat(16 * 1024 + 1))).0,
        "command.payload"
    );
}

#[test]
fn request_times_are_checked() {
    let nb = "not_before = \"2026-11-27T00:00:00Z\"";
    for (bad, reason_part) in [
        ("not_before = \"2026-11-27T00:00:00\"", "no UTC offset"),
        ("not_before = \"2026-11-27 00:00:00Z\"", "RFC 3339"),
        ("not_before = \"2026-02-30T00:00:00Z\"", "day"),
        ("not_before = \"2026-11-27T00:00:00.5Z\"", "whole seconds"),
        ("not_before = \"2026-12-31T23:59:60Z\"", "leap second"),
        ("not_before = 2026-11-27T00:00:00", "no UTC offset"),
    ] {
        match edited(nb, bad) {
            Err(RequestError::InvalidTime {
                field: "not_before",
                reason,
                ..
            }) => assert!(reason.contains(reason_part), "{bad}: {reason}"),
            other => panic!("{bad}: {other:?}"),
        }
    }
    assert_eq!(
        edited(nb, "not_before = \"2026-12-04T00:00:00Z\"").unwrap_err(),
        RequestError::EmptyWindow {
            not_before: "2026-12-04T00:00:00Z".to_owned(),
            not_after: "2026-12-04T00:00:00Z".to_owned()
        }
    );
    assert!(matches!(
        edited(nb, "not_before = \"2027-01-01T00:00:00Z\"").unwrap_err(),
        RequestError::EmptyWindow { .. }
    ));
}

#[test]
fn request_inline_targets_are_checked() {
    let targets = "targets = [\"meter-000001\", \"meter-000002\"]";
    assert_eq!(
        edited(targets, "targets = [\"meter-000001\", \"meter 2\"]").unwrap_err(),
        RequestError::InvalidTarget {
            index: 1,
            id: "meter 2".to_owned(),
            reason: "it contains a space",
            line: 5
        }
    );
    assert_eq!(
        edited(targets, "targets = [\"meter-000001\",\n  \"meter-000001\"]").unwrap_err(),
        RequestError::DuplicateTarget {
            id: "meter-000001".to_owned(),
            line: 6
        }
    );
    assert!(matches!(
        edited(targets, "targets = [\"#meter\"]").unwrap_err(),
        RequestError::InvalidTarget { index: 0, .. }
    ));
}

#[test]
fn device_id_rule() {
    for ok in ["a", "meter-000001", "AA:BB:CC", &"x".repeat(128), "!~"] {
        validate_device_id(ok).unwrap();
    }
    for (bad, reason) in [
        ("", "it is empty"),
        (&"x".repeat(129) as &str, "it is longer than 128 bytes"),
        ("a b", "it contains a space"),
        ("a\tb", "it contains a tab"),
        ("a\u{7f}", "it contains a control character"),
        ("mètre", "it contains a byte that is not printable ASCII"),
        (
            "#1",
            "it starts with '#', which marks a comment in a manifest",
        ),
    ] {
        match validate_device_id(bad) {
            Err(RequestError::InvalidDeviceId { reason: r, .. }) => {
                assert_eq!(r, reason, "{bad:?}")
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

#[test]
fn targets_digest_is_count_and_sha256_over_lines() {
    let mut hasher = TargetsHasher::new();
    hasher.push("a").unwrap();
    hasher.push("bc").unwrap();
    assert!(hasher.push("no good").is_err());
    assert_eq!(hasher.count(), 2);
    assert_eq!(
        hasher.finish(),
        TargetsDigest {
            count: 2,
            sha256: Sha256::digest(b"a\nbc\n").into()
        }
    );
    assert_eq!(
        TargetsHasher::new().finish().sha256,
        <[u8; 32]>::from(Sha256::digest(b""))
    );
}

// ---------------------------------------------------------------------------
// Manifests

fn split_all(chunks: &[&[u8]]) -> Result<Vec<String>, RequestError> {
    let mut splitter = ManifestSplitter::new();
    let mut out = Vec::new();
    for chunk in chunks {
        splitter.push(chunk, &mut out)?;
    }
    splitter.finish(&mut out)?;
    Ok(out.into_iter().map(|(_, id)| id).collect())
}

#[test]
fn manifest_skips_comments_blank_lines_and_carriage_returns() {
    let manifest =
        b"# fleet A\r\nmeter-1\r\n\r\n   \nmeter-2\n# a comment longer than any device id: "
            .iter()
            .chain(&[b'x'; 300])
            .chain(b"\nmeter-3")
            .copied()
            .collect::<Vec<u8>>();
    assert_eq!(
        split_all(&[&manifest]).unwrap(),
        vec!["meter-1", "meter-2", "meter-3"]
    );
    assert_eq!(split_all(&[b""]).unwrap(), Vec::<String>::new());
    assert_eq!(split_all(&[b"\n\n"]).unwrap(), Vec::<String>::new());
}

#[test]
fn manifest_errors_name_the_line() {
    assert_eq!(
        split_all(&[b"meter-1\n# c\nmeter 2\n"]).unwrap_err(),
        RequestError::ManifestLine {
            line: 3,
            id: "meter 2".to_owned(),
            reason: "it contains a space"
        }
    );
    // An over-long line is refused at its newline, without buffering it.
    // Its start is quoted, so the operator sees which line it is.
    let long = vec![b'x'; 10_000];
    match split_all(&[&b"a\nb\n"[..], &long, &b"\nc\n"[..]]).unwrap_err() {
        RequestError::ManifestLine {
            line: 3,
            reason,
            id,
        } => {
            assert_eq!(reason, "it is longer than 128 bytes");
            assert_eq!(id, format!("{}…", "x".repeat(80)));
        }
        other => panic!("{other:?}"),
    }
    // An over-long line of blanks is a blank line.
    assert_eq!(
        split_all(&[&b"a\n"[..], &vec![b' '; 500], &b"\nb\n"[..]]).unwrap(),
        vec!["a", "b"]
    );
    // A last line without newline is checked too.
    assert!(matches!(
        split_all(&[b"a\n", b"b\x00"]).unwrap_err(),
        RequestError::ManifestLine { line: 2, .. }
    ));
    // A UTF-8 byte order mark is not a device id.
    assert!(matches!(
        split_all(&[b"\xef\xbb\xbfmeter-1\n"]).unwrap_err(),
        RequestError::ManifestLine { line: 1, .. }
    ));
    // A line of 128 bytes plus "\r" is fine; 129 bytes is not.
    let mut ok = vec![b'y'; 128];
    ok.extend_from_slice(b"\r\n");
    assert_eq!(split_all(&[&ok]).unwrap(), vec!["y".repeat(128)]);
    assert!(split_all(&[&[b'y'; 129][..]]).is_err());
}

#[derive(Debug, Clone)]
enum ManifestLine {
    Id(String),
    Comment(String),
    Blank(String),
}

fn manifest_line() -> impl Strategy<Value = ManifestLine> {
    prop_oneof![
        4 => "[!-~&&[^#]][!-~]{0,40}".prop_map(ManifestLine::Id),
        1 => "#[ -~]{0,200}".prop_map(ManifestLine::Comment),
        1 => "[ \t]{0,5}".prop_map(ManifestLine::Blank),
    ]
}

proptest! {
    /// However a manifest is cut into chunks, the same ids come out, and
    /// they hash like the ids pushed one by one.
    #[test]
    fn manifest_split_is_independent_of_chunk_boundaries(
        lines in proptest::collection::vec(manifest_line(), 0..40),
        crlf in proptest::collection::vec(any::<bool>(), 40),
        final_newline in any::<bool>(),
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..12),
    ) {
        let mut bytes = Vec::new();
        let mut expected = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let text = match line {
                ManifestLine::Id(id) => { expected.push(id.clone()); id }
                ManifestLine::Comment(c) => c,
                ManifestLine::Blank(b) => b,
            };
            bytes.extend_from_slice(text.as_bytes());
            if i + 1 < lines.len() || final_newline {
                bytes.extend_from_slice(if crlf[i] { b"\r\n" } else { b"\n" });
            }
        }
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks: Vec<&[u8]> = Vec::new();
        let mut last = 0;
        for point in points {
            chunks.push(&bytes[last..point]);
            last = point;
        }
        chunks.push(&bytes[last..]);
        let ids = split_all(&chunks).unwrap();
        prop_assert_eq!(&ids, &expected);

        let mut whole = TargetsHasher::new();
        for id in &expected {
            whole.push(id).unwrap();
        }
        let mut streamed = TargetsHasher::new();
        for id in &ids {
            streamed.push(id).unwrap();
        }
        prop_assert_eq!(whole.finish(), streamed.finish());
    }

    /// A bad line is named with the same line number however it is chunked.
    #[test]
    fn manifest_error_line_is_independent_of_chunking(
        good in 0usize..20,
        chunk in 1usize..17,
    ) {
        let mut bytes = Vec::new();
        for i in 0..good {
            bytes.extend_from_slice(format!("m-{i}\n").as_bytes());
        }
        bytes.extend_from_slice(b"bad id\nm-last\n");
        let chunks: Vec<&[u8]> = bytes.chunks(chunk).collect();
        match split_all(&chunks) {
            Err(RequestError::ManifestLine { line, .. }) => prop_assert_eq!(line, good as u64 + 1),
            other => prop_assert!(false, "{:?}", other),
        }
    }
}

// ---------------------------------------------------------------------------
// Canonical requests

fn sample_request() -> CanonicalRequest {
    let targets = device_ids(3);
    fixture(2, 3, 21).request(CeremonyKind::Recovery, &targets)
}

#[test]
fn canonical_request_encoding_is_fixed_compact_json() {
    let mut request = sample_request();
    request.command = Command::Custom {
        type_name: "set-clock".to_owned(),
        payload: vec![0xab, 0x01],
    };
    request.emergency = true;
    request.justification = "HSM in primary site lost".to_owned();
    let text = String::from_utf8(request.encode()).unwrap();
    assert_eq!(
        text,
        format!(
            concat!(
                "{{\"rkm_recovery_request\":1,\"ceremony_kind\":\"recovery\",\"key_id\":\"{}\",",
                "\"command\":{{\"kind\":\"custom\",\"type\":\"set-clock\",\"payload\":\"ab01\"}},",
                "\"reason\":\"Issuing CA key compromised (INC-4711)\",\"incident\":\"INC-4711\",",
                "\"not_before\":\"2026-11-27T00:00:00Z\",\"not_after\":\"2026-12-04T00:00:00Z\",",
                "\"targets\":{{\"count\":3,\"sha256\":\"{}\"}},\"emergency\":true,",
                "\"justification\":\"HSM in primary site lost\"}}"
            ),
            request.key_id,
            hex::encode(request.targets.sha256)
        )
    );
    assert_eq!(CanonicalRequest::decode(text.as_bytes()).unwrap(), request);
    let mut digest_input = b"rkm/v1/recovery-request\0".to_vec();
    digest_input.extend_from_slice(text.as_bytes());
    let expected: [u8; 32] = Sha256::digest(&digest_input).into();
    assert_eq!(request.digest(), expected);
    assert_eq!(request_digest(text.as_bytes()), expected);
}

#[test]
fn canonical_request_command_parameters_are_in_fixed_order() {
    let mut request = sample_request();
    let text = String::from_utf8(request.encode()).unwrap();
    assert!(text.contains(
        "\"command\":{\"kind\":\"replace-trust-anchor\",\"anchor_slot\":1,\"new_anchor\":\"3059"
    ));
    request.command = Command::RevokeCertificate {
        issuer: "CN=Issuing CA 2".to_owned(),
        serial: vec![0x0f],
    };
    let text = String::from_utf8(request.encode()).unwrap();
    assert!(text.contains(
        "\"command\":{\"kind\":\"revoke-certificate\",\"issuer\":\"CN=Issuing CA 2\",\"serial\":\"0f\"}"
    ));
    assert_eq!(CanonicalRequest::decode(text.as_bytes()).unwrap(), request);
}

#[test]
fn canonical_request_refuses_every_other_spelling() {
    let text = String::from_utf8(sample_request().encode()).unwrap();
    let variants = [
        text.replacen("\"incident\":", "\"incident\": ", 1),
        text.replacen(",\"incident\":\"INC-4711\"", "", 1).replacen(
            "\"reason\":",
            "\"incident\":\"INC-4711\",\"reason\":",
            1,
        ),
        text.replacen("INC-4711\"", "INC-471\\u0031\"", 1),
        text.to_uppercase(),
        format!("{text}\n"),
        format!(" {text}"),
    ];
    for variant in &variants {
        assert!(
            CanonicalRequest::decode(variant.as_bytes()).is_err(),
            "accepted {variant}"
        );
    }
    // Uppercase hex alone.
    let sha = hex::encode(sample_request().targets.sha256);
    assert_ne!(sha, sha.to_uppercase());
    let upper_hex = text.replacen(&sha, &sha.to_uppercase(), 1);
    assert_eq!(
        CanonicalRequest::decode(upper_hex.as_bytes()).unwrap_err(),
        RequestError::NotCanonical
    );
    assert_eq!(
        CanonicalRequest::decode(variants[0].as_bytes()).unwrap_err(),
        RequestError::NotCanonical
    );
    assert!(matches!(
        CanonicalRequest::decode(
            text.replacen("\"emergency\":false", "\"emergency\":false,\"extra\":1", 1)
                .as_bytes()
        )
        .unwrap_err(),
        RequestError::Malformed(_)
    ));
    assert!(matches!(
        CanonicalRequest::decode(
            text.replacen(
                "\"incident\":\"INC-4711\"",
                "\"incident\":\"INC-4711\",\"incident\":\"X\"",
                1
            )
            .as_bytes()
        )
        .unwrap_err(),
        RequestError::Malformed(_)
    ));
    assert_eq!(
        CanonicalRequest::decode(
            text.replacen(
                "\"rkm_recovery_request\":1",
                "\"rkm_recovery_request\":2",
                1
            )
            .as_bytes()
        )
        .unwrap_err(),
        RequestError::UnsupportedVersion { found: 2 }
    );
    assert!(matches!(
        CanonicalRequest::decode(&vec![b' '; 256 * 1024 + 1]).unwrap_err(),
        RequestError::TooLarge { .. }
    ));
}

#[test]
fn canonical_request_rules_are_checked() {
    let mut request = sample_request();
    request.targets = TargetsHasher::new().finish();
    assert_eq!(request.validate(), Err(RequestError::NoTargets));
    assert_eq!(
        CanonicalRequest::decode(&request.encode()).unwrap_err(),
        RequestError::NoTargets
    );
    request.ceremony_kind = CeremonyKind::Drill;
    request.validate().unwrap();

    let mut request = sample_request();
    request.emergency = true;
    assert_eq!(request.validate(), Err(RequestError::MissingJustification));
    request.emergency = false;
    request.justification = "because".to_owned();
    assert_eq!(
        request.validate(),
        Err(RequestError::UnexpectedJustification)
    );

    let mut request = sample_request();
    request.not_before = "2026-11-27T01:00:00+01:00".to_owned();
    assert!(matches!(
        request.validate(),
        Err(RequestError::InvalidTime {
            field: "not_before",
            ..
        })
    ));
    let mut request = sample_request();
    request.key_id = "rk 1".to_owned();
    assert!(matches!(
        request.validate(),
        Err(RequestError::InvalidField {
            field: "key_id",
            ..
        })
    ));
}

#[test]
fn canonical_request_from_request_file() {
    let file = RecoveryRequest::from_toml(&example_toml()).unwrap();
    let request = CanonicalRequest::from_request(
        CeremonyKind::Recovery,
        "rk-0123456789abcdef",
        &file,
        file.targets_digest(),
        true,
        "primary HSM destroyed",
    )
    .unwrap();
    assert_eq!(request.command, file.command);
    assert_eq!(request.targets.count, 2);
    assert_eq!(
        CanonicalRequest::decode(&request.encode()).unwrap(),
        request
    );
    assert_eq!(
        CanonicalRequest::from_request(
            CeremonyKind::Recovery,
            "rk-0123456789abcdef",
            &file,
            file.targets_digest(),
            true,
            "",
        )
        .unwrap_err(),
        RequestError::MissingJustification
    );
}

#[test]
fn canonical_request_description_shows_what_custodians_approve() {
    let mut request = sample_request();
    request.emergency = true;
    request.justification = "primary HSM destroyed".to_owned();
    let text = request.describe();
    for needle in [
        "RECOVERY",
        request.key_id.as_str(),
        "replace-trust-anchor",
        "  slot:       1\n",
        "SubjectPublicKeyInfo, 91 bytes",
        "3 devices",
        "Issuing CA key compromised (INC-4711)",
        "INC-4711",
        "from 2026-11-27T00:00:00Z to 2026-12-04T00:00:00Z",
        "EMERGENCY:",
        "primary HSM destroyed",
    ] {
        assert!(text.contains(needle), "{needle} missing in\n{text}");
    }
    assert!(text.ends_with('\n'));
    assert!(!text.chars().any(|c| c.is_control() && c != '\n'));

    request.ceremony_kind = CeremonyKind::Drill;
    request.command = Command::RevokeCertificate {
        issuer: "CN=Issuing CA 2".to_owned(),
        serial: vec![0x12, 0x34],
    };
    let text = request.describe();
    assert!(text.contains("drill"), "{text}");
    assert!(text.contains("no command is issued"), "{text}");
    assert!(text.contains("  serial:     1234\n"), "{text}");
}

fn text_strategy(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[A-Za-z0-9][ -~éß€]{{0,{max}}}")).unwrap()
}

fn command_strategy() -> impl Strategy<Value = Command> {
    prop_oneof![
        (any::<u32>(), 1u8..=127).prop_map(|(slot, seed)| {
            let key = p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap();
            use p256::pkcs8::EncodePublicKey;
            Command::ReplaceTrustAnchor {
                anchor_slot: slot,
                new_anchor: p256::PublicKey::from(key.verifying_key())
                    .to_public_key_der()
                    .unwrap()
                    .as_bytes()
                    .to_vec(),
            }
        }),
        (
            text_strategy(60),
            proptest::collection::vec(any::<u8>(), 1..=20)
        )
            .prop_map(|(issuer, serial)| Command::RevokeCertificate { issuer, serial }),
        (
            "[a-z0-9][a-z0-9._-]{0,20}",
            proptest::collection::vec(any::<u8>(), 0..100)
        )
            .prop_map(|(type_name, payload)| Command::Custom { type_name, payload }),
    ]
}

prop_compose! {
    fn canonical_request()(
        drill in any::<bool>(),
        command in command_strategy(),
        reason in text_strategy(80),
        incident in text_strategy(20),
        start in 0i64..4_000_000_000,
        length in 1i64..100_000_000,
        count in 1u64..u64::MAX,
        sha256 in any::<[u8; 32]>(),
        justification in proptest::option::of(text_strategy(40)),
    ) -> CanonicalRequest {
        CanonicalRequest {
            ceremony_kind: if drill { CeremonyKind::Drill } else { CeremonyKind::Recovery },
            key_id: "rk-0123456789abcdef".to_owned(),
            command,
            reason,
            incident,
            not_before: rkm_proto::recovery_request::rfc3339_from_unix(start).unwrap(),
            not_after: rkm_proto::recovery_request::rfc3339_from_unix(start + length).unwrap(),
            targets: TargetsDigest { count, sha256 },
            emergency: justification.is_some(),
            justification: justification.unwrap_or_default(),
        }
    }
}

proptest! {
    #[test]
    fn canonical_request_round_trips(request in canonical_request()) {
        request.validate().unwrap();
        let bytes = request.encode();
        let decoded = CanonicalRequest::decode(&bytes).unwrap();
        prop_assert_eq!(&decoded, &request);
        prop_assert_eq!(decoded.encode(), bytes);
        prop_assert_eq!(decoded.digest(), request.digest());
    }

    /// Any single changed byte either fails to decode or decodes to a
    /// request with another digest: nothing else spells the same request.
    #[test]
    fn canonical_request_byte_change_is_refused_or_changes_digest(
        request in canonical_request(),
        at in any::<proptest::sample::Index>(),
        to in any::<u8>(),
    ) {
        let mut bytes = request.encode();
        let i = at.index(bytes.len());
        prop_assume!(bytes[i] != to);
        bytes[i] = to;
        if let Ok(decoded) = CanonicalRequest::decode(&bytes) {
            prop_assert_ne!(decoded.digest(), request.digest());
            prop_assert_eq!(decoded.encode(), bytes);
        }
    }
}

// ---------------------------------------------------------------------------
// Approvals

#[test]
fn approvals_quorum_verifies() {
    let fix = fixture(3, 5, 31);
    let digest = [7; 32];
    let approvals = fix.approvals(&[4, 0, 2], CEREMONY_ID, &digest);
    verify_approvals(&fix.record, CEREMONY_ID, &digest, &approvals).unwrap();
    // More than k is fine.
    let approvals = fix.approvals(&[0, 1, 2, 3, 4], CEREMONY_ID, &digest);
    verify_approvals(&fix.record, CEREMONY_ID, &digest, &approvals).unwrap();
    let custodian = verify_approval(&fix.record, CEREMONY_ID, &digest, &approvals[1]).unwrap();
    assert_eq!(custodian.name, "c2");
}

#[test]
fn approvals_too_few_is_refused() {
    let fix = fixture(3, 5, 32);
    let digest = [7; 32];
    let approvals = fix.approvals(&[0, 1], CEREMONY_ID, &digest);
    assert_eq!(
        verify_approvals(&fix.record, CEREMONY_ID, &digest, &approvals),
        Err(ApprovalError::TooFew {
            found: 2,
            threshold: 3
        })
    );
    assert_eq!(
        verify_approvals(&fix.record, CEREMONY_ID, &digest, &[]),
        Err(ApprovalError::TooFew {
            found: 0,
            threshold: 3
        })
    );
}

#[test]
fn approvals_wrong_custodian_is_named() {
    let fix = fixture(2, 3, 33);
    let foreign = fixture(2, 4, 34);
    let digest = [7; 32];
    // c4 is a custodian of another key only.
    let mut approvals = fix.approvals(&[0], CEREMONY_ID, &digest);
    approvals.push(foreign.approval(3, CEREMONY_ID, &digest));
    assert_eq!(
        verify_approvals(&fix.record, CEREMONY_ID, &digest, &approvals),
        Err(ApprovalError::UnknownCustodian {
            custodian: "c4".to_owned()
        })
    );
    // c2 of another key, with that key's commitment and identity.
    let mut approvals = fix.approvals(&[0], CEREMONY_ID, &digest);
    approvals.push(foreign.approval(1, CEREMONY_ID, &digest));
    assert!(matches!(
        verify_approvals(&fix.record, CEREMONY_ID, &digest, &approvals),
        Err(ApprovalError::CommitmentMismatch { custodian, .. }) if custodian == "c2"
    ));
}

#[test]
fn approvals_duplicate_is_refused() {
    let fix = fixture(2, 3, 35);
    let digest = [7; 32];
    let mut approvals = fix.approvals(&[1], CEREMONY_ID, &digest);
    let mut again = approvals[0].clone();
    again.nonce = [0x99; 32];
    again.signature = fix.identities[1].sign(&approval_message(
        CEREMONY_ID,
        &digest,
        &again.nonce,
        &again.commitment,
    ));
    approvals.push(again);
    assert_eq!(
        verify_approvals(&fix.record, CEREMONY_ID, &digest, &approvals),
        Err(ApprovalError::DuplicateCustodian {
            custodian: "c2".to_owned()
        })
    );
}

#[test]
fn approvals_wrong_commitment_is_named() {
    let fix = fixture(2, 3, 36);
    let digest = [7; 32];
    let mut approvals = fix.approvals(&[0, 1], CEREMONY_ID, &digest);
    // Signed correctly, but over a commitment that is not the record's.
    let wrong = [0x55; 32];
    approvals[1].commitment = wrong;
    approvals[1].signature = fix.identities[1].sign(&approval_message(
        CEREMONY_ID,
        &digest,
        &approvals[1].nonce,
        &wrong,
    ));
    assert_eq!(
        verify_approvals(&fix.record, CEREMONY_ID, &digest, &approvals),
        Err(ApprovalError::CommitmentMismatch {
            custodian: "c2".to_owned(),
            expected: hex::encode(fix.record.custodians[1].commitment),
            found: hex::encode(wrong),
        })
    );
}

#[test]
fn approvals_bad_signature_is_named() {
    let fix = fixture(2, 3, 37);
    let digest = [7; 32];
    let cases: Vec<(&str, Approval)> = vec![
        ("another ceremony", fix.approval(1, "rec-9999", &digest)),
        ("another digest", fix.approval(1, CEREMONY_ID, &[8; 32])),
        ("another nonce", {
            let mut a = fix.approval(1, CEREMONY_ID, &digest);
            a.nonce[0] ^= 1;
            a
        }),
        ("another custodian's key", {
            let mut a = fix.approval(1, CEREMONY_ID, &digest);
            a.signature = fix.identities[2].sign(&approval_message(
                CEREMONY_ID,
                &digest,
                &a.nonce,
                &a.commitment,
            ));
            a
        }),
        ("a flipped bit", {
            let mut a = fix.approval(1, CEREMONY_ID, &digest);
            a.signature[10] ^= 4;
            a
        }),
    ];
    for (what, bad) in cases {
        let approvals = vec![fix.approval(0, CEREMONY_ID, &digest), bad];
        assert_eq!(
            verify_approvals(&fix.record, CEREMONY_ID, &digest, &approvals),
            Err(ApprovalError::BadSignature {
                custodian: "c2".to_owned(),
                source: SignatureError::BadSignature
            }),
            "{what}"
        );
    }
}

#[test]
fn approvals_time_must_be_rfc3339() {
    let fix = fixture(1, 1, 38);
    let digest = [7; 32];
    let mut approval = fix.approval(0, CEREMONY_ID, &digest);
    approval.approved_at = "yesterday".to_owned();
    assert_eq!(
        verify_approvals(&fix.record, CEREMONY_ID, &digest, &[approval.clone()]),
        Err(ApprovalError::InvalidTime {
            custodian: "c1".to_owned(),
            approved_at: "yesterday".to_owned()
        })
    );
    // Not signed, but part of the approvals digest.
    let before = approvals_digest(&[fix.approval(0, CEREMONY_ID, &digest)]);
    assert_ne!(before, approvals_digest(&[approval]));
}

#[test]
fn request_shown_fields_refuse_bidi_override_and_zero_width_space() {
    for c in ['\u{202e}', '\u{200b}'] {
        let code = format!("U+{:04X}", u32::from(c));
        for (field, from, to) in [
            (
                "reason",
                "reason = \"Issuing CA key compromised (INC-4711)\"",
                format!("reason = \"Issuing CA key{c} compromised\""),
            ),
            (
                "incident",
                "incident = \"INC-4711\"",
                format!("incident = \"INC{c}-4711\""),
            ),
        ] {
            let (f, why) = invalid_field(edited(from, &to));
            assert_eq!(f, field);
            assert!(why.contains(&code), "{why}");
        }
        let base = example_toml();
        let head = &base[..base.find("[command]").unwrap()];
        let revoke = format!(
            "{head}[command]\nkind = \"revoke-certificate\"\nissuer = \"CN=Issuing{c} CA\"\nserial = \"0a\"\n"
        );
        let (f, why) = invalid_field(parse(&revoke));
        assert_eq!(f, "command.issuer");
        assert!(why.contains(&code), "{why}");
        let custom = format!(
            "{head}[command]\nkind = \"custom\"\ntype = \"set{c}-clock\"\npayload = \"\"\n"
        );
        assert_eq!(invalid_field(parse(&custom)).0, "command.type");
        let targets = format!("targets = [\"meter{c}-1\"]");
        assert!(matches!(
            edited("targets = [\"meter-000001\", \"meter-000002\"]", &targets),
            Err(RequestError::InvalidTarget { index: 0, .. })
        ));
    }
}
