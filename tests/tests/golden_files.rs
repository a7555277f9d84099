//! Files handed out by an earlier rkm stay readable for ever: custodians keep
//! their envelopes for years, and a dependency bump (vsss-rs, age) or a format
//! change must never strand them. `tests/golden/v1/` was made once by the
//! real rkmd and rkm (`cargo run -p rkm-tests --example make_golden`, with
//! identities from fixed seeds) and is never rewritten; every later version
//! must open and verify it, and its shares must still reconstitute the key.

use std::path::{Path, PathBuf};

use p256::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _};
use rkm_proto::checkpoint::VerifierKey;
use rkm_proto::kek_check::kek_matches;
use rkm_proto::shamir;
use rkm_proto::sharing::wrap::unwrap_pkcs8_strict;
use rkm_tests::Custodian;
use rkm_tests::custodians::{assert_fails, assert_ok, path_str, rkm_with_env};
use serde_json::Value;

const NAMES: [&str; 2] = ["alice", "bob"];

/// Every committed generation: v1 (binary identity payloads), v2 (identity
/// files that are standard age identity files inside).
const VERSIONS: [&str; 2] = ["v1", "v2"];

fn golden(version: &str) -> PathBuf {
    rkm_tests::workspace_root()
        .join("tests/golden")
        .join(version)
}

fn copy_tree(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
            // git keeps no modes: a custodian's files are theirs alone.
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
}

/// The golden files in a folder of this test's own, and who they belong to.
fn checkout(version: &str) -> (tempfile::TempDir, Value, Vec<Custodian>) {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&golden(version), dir.path());
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("expected.json")).unwrap())
            .unwrap();
    let custodians = NAMES
        .iter()
        .map(|name| Custodian::new(dir.path(), name))
        .collect();
    (dir, expected, custodians)
}

/// rkm with no rkmd anywhere: everything here is offline.
fn rkm(dir: &Path, args: &[&str]) -> std::process::Output {
    rkm_with_env(&dir.join("no-rkmd.sock"), &[], args)
}

fn json_of(output: &std::process::Output, what: &str) -> Value {
    serde_json::from_str(&assert_ok(output, what)).unwrap()
}

#[test]
fn cards_and_shares_of_every_version_open_and_verify_as_they_did() {
    for version in VERSIONS {
        cards_and_shares_open_and_verify_as_they_did(version);
    }
}

fn cards_and_shares_open_and_verify_as_they_did(version: &str) {
    let (dir, expected, custodians) = checkout(version);
    let key_id = expected["key_id"].as_str().unwrap();
    let audit_key = expected["audit_key"].as_str().unwrap();
    for custodian in &custodians {
        let want = &expected[&custodian.name];
        let card = json_of(
            &rkm(
                dir.path(),
                &[
                    "custodian",
                    "show",
                    "--card",
                    path_str(&custodian.card),
                    "--output",
                    "json",
                ],
            ),
            "custodian show --card",
        );
        assert_eq!(card, want["card"], "{}'s card", custodian.name);
        let mut args = custodian.share_command("verify", key_id);
        args.extend(["--audit-key", audit_key, "--output", "json"]);
        let verified = json_of(&rkm(dir.path(), &args), "share verify");
        for field in [
            "key_id",
            "custodian",
            "commitment",
            "threshold",
            "x",
            "checks",
        ] {
            assert_eq!(
                verified[field], want["share"][field],
                "{}'s share: {field}",
                custodian.name
            );
        }
    }
}

#[test]
fn the_shares_of_every_version_still_reconstitute_the_key_and_unwrap_it_exactly() {
    for version in VERSIONS {
        shares_still_reconstitute_the_key_and_unwrap_it_exactly(version);
    }
}

fn shares_still_reconstitute_the_key_and_unwrap_it_exactly(version: &str) {
    let (_dir, expected, custodians) = checkout(version);
    let key_id = expected["key_id"].as_str().unwrap();
    let verifier = VerifierKey::parse(expected["audit_key"].as_str().unwrap()).unwrap();
    let record = custodians[0]
        .signed_key_record(key_id)
        .verify(&verifier)
        .expect("the v1 key record verifies with its audit key");
    let shares: Vec<_> = custodians
        .iter()
        .map(|custodian| custodian.held_share(key_id))
        .collect();
    let kek = shamir::combine(&shares, record.threshold).unwrap();
    assert!(
        kek_matches(&kek, &record.kek_check_value),
        "KEK check value"
    );
    let der = unwrap_pkcs8_strict(&kek, &record.wrapped_key).unwrap();
    let key = p256::SecretKey::from_pkcs8_der(&der).unwrap();
    assert_eq!(
        key.public_key().to_public_key_der().unwrap().as_bytes(),
        record.public_key_spki.as_slice()
    );
}

#[test]
fn the_artefacts_and_audit_logs_of_every_version_verify_offline_and_a_changed_byte_does_not() {
    for version in VERSIONS {
        artefact_and_audit_log_verify_offline_and_a_changed_byte_does_not(version);
    }
}

fn artefact_and_audit_log_verify_offline_and_a_changed_byte_does_not(version: &str) {
    let (dir, expected, custodians) = checkout(version);
    let key_id = expected["key_id"].as_str().unwrap();
    let audit_key = expected["audit_key"].as_str().unwrap();
    let record = custodians[0].key_record_file(key_id);
    let artefact = dir.path().join("artefact.rkma");
    let verify_artefact = || {
        rkm(
            dir.path(),
            &[
                "artefact",
                "verify",
                path_str(&artefact),
                "--key-record",
                path_str(&record),
                "--audit-key",
                audit_key,
                "--output",
                "json",
            ],
        )
    };
    let verified = json_of(&verify_artefact(), "artefact verify");
    assert_eq!(
        verified["target_count"], expected["artefact_targets"],
        "{verified}"
    );
    let log = dir.path().join("audit.log");
    assert_ok(
        &rkm(
            dir.path(),
            &["audit", "verify", path_str(&log), "--audit-key", audit_key],
        ),
        "audit verify",
    );

    // The files are not accepted whatever they hold: one byte changed fails.
    let mut bytes = std::fs::read(&artefact).unwrap();
    let last_line = bytes[..bytes.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap();
    bytes[last_line - 10] ^= 0x01;
    std::fs::write(&artefact, bytes).unwrap();
    assert_fails(&verify_artefact(), 7, &[], "a changed golden artefact");
}
