//! Tests of signed checkpoints: body round trips and strict parsing (C2SP
//! tlog-checkpoint), signing with a fixed Ed25519 key and opening with its
//! verifier key, every kind of tampering, and known answers from Go's
//! golang.org/x/mod/sumdb/note tests (C2SP signed-note).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer as _, SigningKey};
use rkm_proto::checkpoint::{
    Checkpoint, CheckpointError, MAX_NOTE_LEN, MAX_SIGNATURES, SignedNote, VerifierKey,
    format_signed_note, open_signed_checkpoint, signed_message,
};
use rkm_proto::fingerprint::signed_note_verifier_key;
use rkm_proto::merkle::{Hash, leaf_hash};

const ORIGIN: &str = "rkm.example/audit";

fn audit_key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

fn verifier_for(name: &str, key: &SigningKey) -> VerifierKey {
    VerifierKey::new(name, key.verifying_key().as_bytes()).unwrap()
}

fn sample_checkpoint() -> Checkpoint {
    Checkpoint::new(ORIGIN, 42, leaf_hash(b"root"), vec![]).unwrap()
}

/// Signs `body` as the HSM would (over exactly the body bytes) and formats
/// the note.
fn sign_note(body: &str, name: &str, key: &SigningKey) -> String {
    let signature = key.sign(signed_message(body));
    let key_id = verifier_for(name, key).key_id();
    format_signed_note(body, name, key_id, &signature.to_bytes()).unwrap()
}

/// The note with the signature blob of its first signature line replaced by
/// `edit(blob)`.
fn with_edited_signature(note: &str, edit: impl FnOnce(&mut Vec<u8>)) -> String {
    let (text, sigs) = note.rsplit_once("\n\n").unwrap();
    let (prefix, b64) = sigs.trim_end_matches('\n').rsplit_once(' ').unwrap();
    let mut blob = STANDARD.decode(b64).unwrap();
    edit(&mut blob);
    format!("{text}\n\n{prefix} {}\n", STANDARD.encode(blob))
}

#[test]
fn body_formats_as_c2sp_checkpoint_and_parses_back() {
    let root = Hash::from_bytes([0xab; 32]);
    let checkpoint = Checkpoint::new(ORIGIN, 1234, root, vec![]).unwrap();
    let body = checkpoint.to_body();
    assert_eq!(
        body,
        format!("{ORIGIN}\n1234\n{}\n", STANDARD.encode([0xab; 32]))
    );
    assert_eq!(Checkpoint::parse_body(&body), Ok(checkpoint));
}

#[test]
fn body_with_extensions_and_empty_tree_round_trips() {
    let checkpoint = Checkpoint::new(
        ORIGIN,
        0,
        Hash::EMPTY_ROOT,
        vec!["ext one".to_owned(), "— two".to_owned()],
    )
    .unwrap();
    let body = checkpoint.to_body();
    assert_eq!(
        body,
        format!("{ORIGIN}\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\next one\n— two\n")
    );
    let parsed = Checkpoint::parse_body(&body).unwrap();
    assert_eq!(parsed, checkpoint);
    assert_eq!(parsed.extensions(), ["ext one", "— two"]);
    assert_eq!(parsed.size(), 0);
    assert_eq!(parsed.root(), &Hash::EMPTY_ROOT);
}

#[test]
fn body_parses_the_c2sp_spec_example() {
    let body =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
    let checkpoint = Checkpoint::parse_body(body).unwrap();
    assert_eq!(checkpoint.origin(), "example.com/behind-the-sofa");
    assert_eq!(checkpoint.size(), 20852163);
    assert_eq!(checkpoint.to_body(), body);
}

#[test]
fn body_malformed_lines_are_rejected_with_the_failing_line() {
    let root = STANDARD.encode([1u8; 32]);
    let cases: Vec<(String, CheckpointError)> = vec![
        (
            format!("{ORIGIN}\n12\n{root}"),
            CheckpointError::NotNewlineTerminated,
        ),
        (
            format!("\n12\n{root}\n"),
            CheckpointError::EmptyLine { line: 1 },
        ),
        (
            format!("{ORIGIN}\n"),
            CheckpointError::MissingLine { line: "tree size" },
        ),
        (
            format!("{ORIGIN}\n12\n"),
            CheckpointError::MissingLine { line: "root hash" },
        ),
        (
            format!("{ORIGIN}\n\n{root}\n"),
            CheckpointError::EmptyLine { line: 2 },
        ),
        (
            format!("{ORIGIN}\n12\n\n"),
            CheckpointError::EmptyLine { line: 3 },
        ),
        (
            format!("{ORIGIN}\n12\n{root}\n\n"),
            CheckpointError::EmptyLine { line: 4 },
        ),
        (
            format!("{ORIGIN}\n012\n{root}\n"),
            CheckpointError::InvalidSize {
                found: "012".to_owned(),
                reason: "it has a leading zero",
            },
        ),
        (
            format!("{ORIGIN}\n00\n{root}\n"),
            CheckpointError::InvalidSize {
                found: "00".to_owned(),
                reason: "it has a leading zero",
            },
        ),
        (
            format!("{ORIGIN}\n+12\n{root}\n"),
            CheckpointError::InvalidSize {
                found: "+12".to_owned(),
                reason: "it is not a decimal number",
            },
        ),
        (
            format!("{ORIGIN}\n-1\n{root}\n"),
            CheckpointError::InvalidSize {
                found: "-1".to_owned(),
                reason: "it is not a decimal number",
            },
        ),
        (
            format!("{ORIGIN}\n 12\n{root}\n"),
            CheckpointError::InvalidSize {
                found: " 12".to_owned(),
                reason: "it is not a decimal number",
            },
        ),
        (
            format!("{ORIGIN}\n18446744073709551616\n{root}\n"),
            CheckpointError::InvalidSize {
                found: "18446744073709551616".to_owned(),
                reason: "it is larger than 2^64 - 1",
            },
        ),
    ];
    for (body, want) in cases {
        assert_eq!(Checkpoint::parse_body(&body), Err(want), "body {body:?}");
    }
    // The largest size parses.
    let max = format!("{ORIGIN}\n18446744073709551615\n{root}\n");
    assert_eq!(Checkpoint::parse_body(&max).unwrap().size(), u64::MAX);
}

#[test]
fn body_root_must_be_canonical_base64_of_32_bytes() {
    let good = STANDARD.encode([1u8; 32]);
    let short = STANDARD.encode([1u8; 31]);
    let long = STANDARD.encode([1u8; 33]);
    let unpadded = good.trim_end_matches('=').to_owned();
    // 32 bytes leave two spare bits in the last character; setting one gives
    // a second spelling of nearly the same bytes, which must be refused.
    let mut noncanonical = good.clone().into_bytes();
    let last = noncanonical.len() - 2;
    noncanonical[last] = if noncanonical[last] == b'E' {
        b'F'
    } else {
        b'B'
    };
    let noncanonical = String::from_utf8(noncanonical).unwrap();
    let url_safe = format!("{}_-=", &good[..good.len() - 3]);
    for root in [
        short,
        long,
        unpadded,
        noncanonical,
        url_safe,
        "not base64!".to_owned(),
    ] {
        let body = format!("{ORIGIN}\n5\n{root}\n");
        match Checkpoint::parse_body(&body) {
            Err(CheckpointError::InvalidRoot { found, .. }) => assert_eq!(found, root),
            other => panic!("root {root:?}: want InvalidRoot, got {other:?}"),
        }
    }
    let hex_root = hex::encode([1u8; 32]);
    assert!(matches!(
        Checkpoint::parse_body(&format!("{ORIGIN}\n5\n{hex_root}\n")),
        Err(CheckpointError::InvalidRoot { .. })
    ));
}

#[test]
fn body_with_control_character_or_oversized_is_rejected_first() {
    let body = format!("{ORIGIN}\r\n5\n{}\n", STANDARD.encode([1u8; 32]));
    assert_eq!(
        Checkpoint::parse_body(&body),
        Err(CheckpointError::ControlCharacter {
            byte: b'\r',
            offset: ORIGIN.len()
        })
    );
    let huge = format!(
        "{}\n5\n{}\n",
        "o".repeat(MAX_NOTE_LEN),
        STANDARD.encode([1u8; 32])
    );
    assert!(matches!(
        Checkpoint::parse_body(&huge),
        Err(CheckpointError::NoteTooLarge {
            max: MAX_NOTE_LEN,
            ..
        })
    ));
}

#[test]
fn checkpoint_new_refuses_fields_that_cannot_be_lines() {
    let root = Hash::EMPTY_ROOT;
    assert!(matches!(
        Checkpoint::new("", 0, root, vec![]),
        Err(CheckpointError::InvalidField {
            field: "origin",
            ..
        })
    ));
    assert!(matches!(
        Checkpoint::new("a\nb", 0, root, vec![]),
        Err(CheckpointError::InvalidField {
            field: "origin",
            ..
        })
    ));
    assert!(matches!(
        Checkpoint::new("a", 0, root, vec![String::new()]),
        Err(CheckpointError::InvalidField {
            field: "extension line",
            ..
        })
    ));
}

#[test]
fn checkpoint_check_origin_names_both_origins() {
    let checkpoint = sample_checkpoint();
    assert_eq!(checkpoint.check_origin(ORIGIN), Ok(()));
    let error = checkpoint.check_origin("other.example/log").unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("checkpoint origin is {ORIGIN:?}, expected \"other.example/log\"")
    );
}

#[test]
fn signed_checkpoint_opens_with_its_verifier_key() {
    let key = audit_key();
    let checkpoint = sample_checkpoint();
    let body = checkpoint.to_body();
    let note = sign_note(&body, ORIGIN, &key);
    assert!(note.starts_with(&format!("{body}\n\u{2014} {ORIGIN} ")));
    assert!(note.ends_with('\n'));

    let vkey_text = signed_note_verifier_key(ORIGIN, key.verifying_key().as_bytes());
    let vkey = VerifierKey::parse(&vkey_text).unwrap();
    assert_eq!(vkey, verifier_for(ORIGIN, &key));
    assert_eq!(vkey.to_string(), vkey_text);
    assert_eq!(vkey.name(), ORIGIN);
    assert_eq!(vkey.public_key(), key.verifying_key().to_bytes());

    assert_eq!(open_signed_checkpoint(&note, &vkey), Ok(checkpoint));
    let parsed = SignedNote::parse(&note).unwrap();
    assert_eq!(parsed.text(), body);
    assert_eq!(parsed.signatures().len(), 1);
    assert_eq!(parsed.signatures()[0].key_id, vkey.key_id());
    assert_eq!(parsed.signatures()[0].signature.len(), 64);
}

#[test]
fn signed_message_is_exactly_the_body() {
    let body = sample_checkpoint().to_body();
    assert_eq!(signed_message(&body), body.as_bytes());
    assert_eq!(signed_message(&body).last(), Some(&b'\n'));
}

#[test]
fn signed_checkpoint_with_flipped_body_byte_is_rejected() {
    let key = audit_key();
    let vkey = verifier_for(ORIGIN, &key);
    let note = sign_note(&sample_checkpoint().to_body(), ORIGIN, &key);
    // "42" becomes "43": still a well-formed checkpoint, but not the signed one.
    let tampered = note.replacen("\n42\n", "\n43\n", 1);
    assert_ne!(tampered, note);
    assert_eq!(
        open_signed_checkpoint(&tampered, &vkey),
        Err(CheckpointError::BadSignature {
            key: format!("{ORIGIN}+{}", hex::encode(vkey.key_id())),
            reason: "Ed25519 verification failed".to_owned(),
        })
    );
    // Any flipped bit of the origin line, likewise.
    let mut bytes = note.clone().into_bytes();
    bytes[0] ^= 0x01;
    let tampered = String::from_utf8(bytes).unwrap();
    assert!(matches!(
        open_signed_checkpoint(&tampered, &vkey),
        Err(CheckpointError::BadSignature { .. })
    ));
}

#[test]
fn signed_checkpoint_with_flipped_signature_byte_is_rejected() {
    let key = audit_key();
    let vkey = verifier_for(ORIGIN, &key);
    let note = sign_note(&sample_checkpoint().to_body(), ORIGIN, &key);
    for position in [4, 20, 40, 67] {
        let tampered = with_edited_signature(&note, |blob| blob[position] ^= 0x80);
        assert!(
            matches!(
                open_signed_checkpoint(&tampered, &vkey),
                Err(CheckpointError::BadSignature { .. })
            ),
            "flip at byte {position}"
        );
    }
    let truncated = with_edited_signature(&note, |blob| blob.truncate(67));
    assert!(matches!(
        open_signed_checkpoint(&truncated, &vkey),
        Err(CheckpointError::BadSignature { reason, .. }) if reason == "it has 63 bytes, expected 64"
    ));
}

#[test]
fn signed_checkpoint_by_another_key_is_rejected_as_missing_our_signature() {
    let ours = verifier_for(ORIGIN, &audit_key());
    let intruder = SigningKey::from_bytes(&[9u8; 32]);
    let note = sign_note(&sample_checkpoint().to_body(), ORIGIN, &intruder);
    // Same name, other key: the key ID differs, so the line is not ours.
    assert_eq!(
        open_signed_checkpoint(&note, &ours),
        Err(CheckpointError::NoSignatureByKey {
            key: format!("{ORIGIN}+{}", hex::encode(ours.key_id())),
            others: 1,
        })
    );
    // Other key claiming our key ID: it is ours by name and ID, so it must
    // verify, and does not.
    let forged = with_edited_signature(&note, |blob| blob[..4].copy_from_slice(&ours.key_id()));
    assert!(matches!(
        open_signed_checkpoint(&forged, &ours),
        Err(CheckpointError::BadSignature { .. })
    ));
}

#[test]
fn signed_checkpoint_other_signatures_are_ignored_but_a_bad_one_of_ours_rejects() {
    let key = audit_key();
    let vkey = verifier_for(ORIGIN, &key);
    let witness = SigningKey::from_bytes(&[3u8; 32]);
    let body = sample_checkpoint().to_body();
    let ours = sign_note(&body, ORIGIN, &key);
    let theirs = sign_note(&body, "witness.example/w1", &witness);
    let our_line = ours.rsplit_once("\n\n").unwrap().1;
    let their_line = theirs.rsplit_once("\n\n").unwrap().1;
    // An unverifiable signature by an unknown key, and one by a witness.
    let junk_line = "\u{2014} unknown.example AAAAAAAAAAA=\n";

    let both = format!("{body}\n{junk_line}{their_line}{our_line}");
    assert_eq!(
        open_signed_checkpoint(&both, &vkey),
        Ok(sample_checkpoint())
    );
    let witness_key = verifier_for("witness.example/w1", &witness);
    assert_eq!(
        open_signed_checkpoint(&both, &witness_key),
        Ok(sample_checkpoint())
    );
    // Our signature twice is fine; a good one and a bad one of ours is not.
    let twice = format!("{body}\n{our_line}{our_line}");
    assert!(open_signed_checkpoint(&twice, &vkey).is_ok());
    let bad_line = with_edited_signature(&ours, |blob| blob[10] ^= 1);
    let bad_line = bad_line.rsplit_once("\n\n").unwrap().1;
    let mixed = format!("{body}\n{our_line}{bad_line}");
    assert!(matches!(
        open_signed_checkpoint(&mixed, &vkey),
        Err(CheckpointError::BadSignature { .. })
    ));
    // Without ours at all.
    let only_theirs = format!("{body}\n{junk_line}{their_line}");
    assert!(matches!(
        open_signed_checkpoint(&only_theirs, &vkey),
        Err(CheckpointError::NoSignatureByKey { others: 2, .. })
    ));
}

#[test]
fn signed_checkpoint_with_malformed_body_fails_after_the_signature() {
    let key = audit_key();
    let vkey = verifier_for(ORIGIN, &key);
    let root = STANDARD.encode([1u8; 32]);
    let bad_size = sign_note(&format!("{ORIGIN}\n007\n{root}\n"), ORIGIN, &key);
    assert!(matches!(
        open_signed_checkpoint(&bad_size, &vkey),
        Err(CheckpointError::InvalidSize { .. })
    ));
    let bad_root = sign_note(&format!("{ORIGIN}\n7\n{}\n", &root[1..]), ORIGIN, &key);
    assert!(matches!(
        open_signed_checkpoint(&bad_root, &vkey),
        Err(CheckpointError::InvalidRoot { .. })
    ));
}

#[test]
fn verifier_key_with_wrong_key_id_is_rejected() {
    let key = audit_key();
    let good = signed_note_verifier_key(ORIGIN, key.verifying_key().as_bytes());
    let (name, rest) = good.split_once('+').unwrap();
    let (id, encoded) = rest.split_once('+').unwrap();
    let wrong_id = format!(
        "{name}+{}+{encoded}",
        if id == "00000000" {
            "00000001"
        } else {
            "00000000"
        }
    );
    assert_eq!(
        VerifierKey::parse(&wrong_id),
        Err(CheckpointError::KeyIdMismatch {
            name: ORIGIN.to_owned(),
            stated: wrong_id.split('+').nth(1).unwrap().to_owned(),
            computed: id.to_owned(),
        })
    );
    // The same key under another name has another ID.
    let renamed = format!("other.example+{id}+{encoded}");
    assert!(matches!(
        VerifierKey::parse(&renamed),
        Err(CheckpointError::KeyIdMismatch { .. })
    ));
}

#[test]
fn verifier_key_malformed_shapes_are_rejected() {
    let key = audit_key();
    let good = signed_note_verifier_key(ORIGIN, key.verifying_key().as_bytes());
    assert!(VerifierKey::parse(&good).is_ok());
    let (_, rest) = good.split_once('+').unwrap();
    let (id, encoded) = rest.split_once('+').unwrap();
    let mut ecdsa = STANDARD.decode(encoded).unwrap();
    ecdsa[0] = 0x02;
    let cases = [
        String::new(),
        format!("{ORIGIN}+{id}"),
        format!("{good}+extra"),
        format!("+{id}+{encoded}"),
        format!("has space+{id}+{encoded}"),
        format!("{ORIGIN}+{}+{encoded}", &id[..7]),
        format!("{ORIGIN}+zzzzzzzz+{encoded}"),
        format!("{ORIGIN}+{id}+{}", &encoded[..encoded.len() - 4]),
        format!("{ORIGIN}+{id}+{}", STANDARD.encode(&ecdsa)),
        format!("{ORIGIN}+{id}+"),
    ];
    for vkey in cases {
        assert!(VerifierKey::parse(&vkey).is_err(), "{vkey:?} was accepted");
    }
    assert_eq!(
        VerifierKey::parse(&format!("{ORIGIN}+{id}+{}", STANDARD.encode(&ecdsa))),
        Err(CheckpointError::UnsupportedSignatureType { found: 0x02 })
    );
}

#[test]
fn verifier_key_refuses_small_order_public_key() {
    // The identity point encodes as 1 followed by zeros.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert!(matches!(
        VerifierKey::new(ORIGIN, &identity),
        Err(CheckpointError::InvalidPublicKey { .. })
    ));
}

#[test]
fn note_parse_limits_are_checked_before_parsing() {
    let key = audit_key();
    let body = sample_checkpoint().to_body();
    let note = sign_note(&body, ORIGIN, &key);
    let line = note.rsplit_once("\n\n").unwrap().1;

    let at_limit = format!("{body}\n{}", line.repeat(MAX_SIGNATURES));
    assert!(SignedNote::parse(&at_limit).is_ok());
    // One line too many is refused even if that line is garbage.
    let over = format!("{at_limit}garbage\n");
    assert_eq!(
        SignedNote::parse(&over),
        Err(CheckpointError::TooManySignatures {
            found: MAX_SIGNATURES + 1,
            max: MAX_SIGNATURES
        })
    );
    let huge = format!("{}\n{note}", "x".repeat(MAX_NOTE_LEN));
    assert_eq!(
        SignedNote::parse(&huge),
        Err(CheckpointError::NoteTooLarge {
            size: huge.len(),
            max: MAX_NOTE_LEN
        })
    );
    let with_tab = note.replacen(ORIGIN, "rkm.example/\taudit", 1);
    assert!(matches!(
        SignedNote::parse(&with_tab),
        Err(CheckpointError::ControlCharacter { byte: b'\t', .. })
    ));
}

#[test]
fn format_signed_note_refuses_what_could_not_be_parsed_back() {
    let signature = [0u8; 64];
    assert_eq!(
        format_signed_note("no newline", ORIGIN, [0; 4], &signature),
        Err(CheckpointError::NotNewlineTerminated)
    );
    assert!(matches!(
        format_signed_note("text\n", "bad name", [0; 4], &signature),
        Err(CheckpointError::InvalidKeyName { .. })
    ));
    assert!(matches!(
        format_signed_note("text\n", "a+b", [0; 4], &signature),
        Err(CheckpointError::InvalidKeyName { .. })
    ));
}

// Known answers from golang.org/x/mod/sumdb/note (note_test.go), which
// implements C2SP signed-note.

const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const PETER_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                       then you don't know what your problem is.\n";
const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIG: &str = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

#[test]
fn go_sumdb_note_signing_matches_known_output() {
    // PRIVATE+KEY+<name>+<key id>+<base64(0x01 ‖ seed)>; base64 may hold '+'.
    let encoded = PETER_SKEY.splitn(5, '+').nth(4).unwrap();
    let seed = STANDARD.decode(encoded).unwrap();
    assert_eq!(seed[0], 0x01, "Ed25519 signature type");
    let key = SigningKey::from_bytes(&seed[1..].try_into().unwrap());
    let vkey = VerifierKey::parse(PETER_VKEY).unwrap();
    assert_eq!(vkey.public_key(), key.verifying_key().to_bytes());
    assert_eq!(hex::encode(vkey.key_id()), "c74f20a3");

    let signature = key.sign(signed_message(GO_TEXT));
    let note = format_signed_note(
        GO_TEXT,
        "PeterNeumann",
        vkey.key_id(),
        &signature.to_bytes(),
    )
    .unwrap();
    assert_eq!(note, format!("{GO_TEXT}\n{PETER_SIG}"));
}

#[test]
fn go_sumdb_note_opens_with_each_known_key_and_ignores_the_other() {
    let note = format!("{GO_TEXT}\n{PETER_SIG}{ENOCH_SIG}");
    let parsed = SignedNote::parse(&note).unwrap();
    assert_eq!(parsed.signatures().len(), 2);
    assert_eq!(parsed.signatures()[1].key_name, "EnochRoot");
    for text in [PETER_VKEY, ENOCH_VKEY] {
        let vkey: VerifierKey = text.parse().unwrap();
        assert_eq!(vkey.to_string(), text);
        assert_eq!(parsed.verify(&vkey), Ok(GO_TEXT), "{vkey}");
    }
    // Not a checkpoint: the signature verifies, then the body is refused.
    let peter = VerifierKey::parse(PETER_VKEY).unwrap();
    assert!(matches!(
        open_signed_checkpoint(&note, &peter),
        Err(CheckpointError::InvalidSize { .. })
    ));
}

#[test]
fn go_sumdb_note_bad_messages_are_rejected() {
    let peter = VerifierKey::parse(PETER_VKEY).unwrap();
    let bad_messages = [
        GO_TEXT.to_owned(),
        format!("{GO_TEXT}\n"),
        format!("{GO_TEXT}\n{}", PETER_SIG.trim_end_matches('\n')),
        format!("\u{1}{GO_TEXT}\n{PETER_SIG}"),
        format!(
            "{GO_TEXT}\n\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
        ),
        format!("{GO_TEXT}\n{PETER_SIG}Unexpected line.\n"),
        format!("{GO_TEXT}\n{}", PETER_SIG.repeat(101)),
    ];
    for message in bad_messages {
        assert!(
            SignedNote::parse(&message).is_err(),
            "accepted malformed note:\n{message}"
        );
    }
    // "ABCD" inside Peter's signature keeps the key ID and breaks the rest.
    let broken = format!("{GO_TEXT}\n{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
    assert!(matches!(
        SignedNote::parse(&broken).unwrap().verify(&peter),
        Err(CheckpointError::BadSignature { .. })
    ));
    // Another name, or another key ID, is another key.
    let misnamed = PETER_SIG.replace("PeterNeumann", "CarmenSandiego");
    let wrong_id = PETER_SIG.replace("x08g", "xxxx");
    for sig in [misnamed, wrong_id] {
        let note = SignedNote::parse(&format!("{GO_TEXT}\n{sig}")).unwrap();
        assert_eq!(
            note.verify(&peter),
            Err(CheckpointError::NoSignatureByKey {
                key: "PeterNeumann+c74f20a3".to_owned(),
                others: 1
            })
        );
    }
}

#[test]
fn go_sumdb_verifier_key_manglings_are_rejected() {
    assert!(VerifierKey::parse(PETER_VKEY).is_ok());
    let bytes = PETER_VKEY.as_bytes();
    for start in 0..=bytes.len() {
        for end in start + 1..=bytes.len() {
            if (start, end) != (0, bytes.len()) {
                let part = &PETER_VKEY[start..end];
                assert!(VerifierKey::parse(part).is_err(), "accepted {part:?}");
            }
        }
    }
    for i in 0..bytes.len() {
        let mut mangled = bytes.to_vec();
        mangled[i] += 1;
        let mangled = String::from_utf8(mangled).unwrap();
        assert!(
            VerifierKey::parse(&mangled).is_err(),
            "accepted {mangled:?}"
        );
    }
    // Wrong key length and unknown algorithm, each with a matching key ID.
    for vkey in [
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ] {
        assert!(VerifierKey::parse(vkey).is_err(), "accepted {vkey:?}");
    }
}

#[test]
fn errors_name_the_key_and_the_failure() {
    let peter = VerifierKey::parse(PETER_VKEY).unwrap();
    let note = SignedNote::parse(&format!("{GO_TEXT}\n{ENOCH_SIG}")).unwrap();
    assert_eq!(
        note.verify(&peter).unwrap_err().to_string(),
        "no signature by key PeterNeumann+c74f20a3; the note has 1 signature(s) by other keys"
    );
    let broken = format!("{GO_TEXT}\n{}", PETER_SIG.replace("x08go/ZJ", "x08go/ZK"));
    assert_eq!(
        SignedNote::parse(&broken)
            .unwrap()
            .verify(&peter)
            .unwrap_err()
            .to_string(),
        "signature by key PeterNeumann+c74f20a3 does not verify: Ed25519 verification failed"
    );
}

/// Base64 keys often hold '+': the verifier key splits at the first two only.
#[test]
fn verifier_key_whose_base64_holds_plus_signs_parses() {
    for seed in 0u8..=255 {
        let public = ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
            .verifying_key()
            .to_bytes();
        let vkey = rkm_proto::fingerprint::signed_note_verifier_key("rkm.local/audit", &public);
        let parsed = rkm_proto::checkpoint::VerifierKey::parse(&vkey)
            .unwrap_or_else(|e| panic!("{vkey}: {e}"));
        assert_eq!(parsed.public_key(), public);
    }
}
