//! Restoring a key into another rkmd and HSM, end to end with the real
//! binaries: daemon A runs a 2-of-3 key ceremony and every custodian fetches
//! their share; then A, its token and its database are gone. Daemon B, on a
//! fresh token with fresh state and its own audit key (under another origin,
//! so that the custodians' pins stay apart), enrols the same cards and
//! imports the key record with A's audit key (`rkm key import`). Two
//! custodians approve a recovery on B with the shares and key record copies
//! they stored from A; the artefact verifies with B's audit key and, for the
//! record, A's (`--key-record-audit-key`), against the original public key.
//! Imports with the wrong audit key, an unenrolled custodian or a second
//! time are refused.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use base64::Engine as _;
use rkm_proto::identity::CustodianIdentity;
use rkm_proto::key_record::{KeyRecord, SignedKeyRecord};
use rkm_tests::custodians::wait_for_recovery_state;
use rkm_tests::{Daemon, DaemonBuilder};
use secrecy::SecretString;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

const NAMES: [&str; 3] = ["alice", "bob", "carol"];
const LABEL: &str = "fleet-root";
const TARGETS: usize = 100;
/// How long a ceremony may take to be signed before the test fails.
const SIGNING_TIMEOUT: Duration = Duration::from_secs(180);
/// Daemon B's audit log origin (A keeps the default `rkm.local/audit`).
const ORIGIN_B: &str = "rkm-b.local/audit";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts success; returns standard output.
fn ok(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({:?}):\nstdout: {}\nstderr: {}",
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// Asserts failure with `code` and a standard error containing `needle`.
fn fails(output: &Output, code: i32, needle: &str, what: &str) {
    let stderr = text(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what}: expected exit {code}:\nstdout: {}\nstderr: {stderr}",
        text(&output.stdout)
    );
    assert!(
        stderr.contains(needle),
        "{what}: stderr lacks {needle:?}:\n{stderr}"
    );
}

fn json(output: &Output, what: &str) -> Value {
    serde_json::from_str(&ok(output, what))
        .unwrap_or_else(|error| panic!("{what}: not JSON: {error}"))
}

fn path(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// One custodian's files: identity, card, passphrase file, share directory.
struct Custodian {
    identity: PathBuf,
    card: PathBuf,
    passphrase_file: PathBuf,
    share_dir: PathBuf,
}

impl Custodian {
    /// Writes the identity (scrypt work factor 4, so that opening it stays
    /// fast) and the card.
    fn new(dir: &Path, name: &str) -> Self {
        let passphrase = format!("correct horse battery staple {name}");
        let passphrase_file = dir.join(format!("{name}.passphrase"));
        rkm_tests::write_secret_file(&passphrase_file, format!("{passphrase}\n"));
        let custodian = Custodian {
            identity: dir.join(format!("{name}.identity")),
            card: dir.join(format!("{name}.card.json")),
            passphrase_file,
            share_dir: dir.join(format!("{name}-shares")),
        };
        let mut seed = [0u8; 64];
        for (half, chunk) in seed.chunks_mut(32).enumerate() {
            let digest = Sha256::new()
                .chain_update(custodian.identity.as_os_str().as_encoded_bytes())
                .chain_update([half as u8])
                .finalize();
            chunk.copy_from_slice(&digest);
        }
        let identity = CustodianIdentity::generate(name, &seed).unwrap();
        let file = identity
            .encrypt_with_work_factor(&SecretString::from(passphrase.as_str()), 4)
            .unwrap();
        std::fs::write(&custodian.identity, file).unwrap();
        std::fs::write(&custodian.card, identity.card().to_json()).unwrap();
        custodian
    }

    fn key_record_file(&self, key_id: &str) -> PathBuf {
        self.share_dir.join(key_id).join("key-record.json")
    }

    fn enrol(&self, daemon: &Daemon) {
        ok(
            &daemon
                .rkm(&["custodian", "enrol", path(&self.card)])
                .unwrap(),
            "custodian enrol",
        );
    }

    fn fetch(&self, daemon: &Daemon, audit_key: &str) {
        ok(
            &daemon
                .rkm(&[
                    "share",
                    "fetch",
                    "--key",
                    LABEL,
                    "--identity",
                    path(&self.identity),
                    "--passphrase-file",
                    path(&self.passphrase_file),
                    "--share-dir",
                    path(&self.share_dir),
                    "--audit-key",
                    audit_key,
                ])
                .unwrap(),
            "share fetch",
        );
    }

    /// `rkm recovery approve ID --yes` with this custodian's stored files.
    fn approve(&self, daemon: &Daemon, ceremony_id: &str) -> Value {
        json(
            &daemon
                .rkm(&[
                    "recovery",
                    "approve",
                    ceremony_id,
                    "--identity",
                    path(&self.identity),
                    "--passphrase-file",
                    path(&self.passphrase_file),
                    "--share-dir",
                    path(&self.share_dir),
                    "--yes",
                    "--output",
                    "json",
                ])
                .unwrap(),
            "recovery approve",
        )
    }
}

fn audit_key(daemon: &Daemon) -> String {
    let status = json(
        &daemon.rkm(&["status", "--output", "json"]).unwrap(),
        "status",
    );
    status["audit_key"]["verifier_key"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A revoke-certificate request for `count` manifest targets.
fn request_files(dir: &Path, count: usize) -> (PathBuf, PathBuf) {
    let request = dir.join("request.toml");
    std::fs::write(
        &request,
        "reason = \"Issuing CA 2 key compromised\"\nincident = \"INC-4711\"\nnot_before = \"2026-11-27T00:00:00Z\"\nnot_after = \"2026-12-04T00:00:00Z\"\n\n[command]\nkind = \"revoke-certificate\"\nissuer = \"CN=Issuing CA 2, O=Grid\"\nserial = \"0a1b2c\"\n",
    )
    .unwrap();
    let targets = dir.join("targets.txt");
    let manifest: String = (0..count).map(|i| format!("meter-{i:07}\n")).collect();
    std::fs::write(&targets, manifest).unwrap();
    (request, targets)
}

#[test]
fn a_key_restored_into_another_hsm_recovers_and_verifies_against_its_original_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let custodians: Vec<Custodian> = NAMES
        .iter()
        .map(|name| Custodian::new(dir.path(), name))
        .collect();

    // Daemon A: the key generation ceremony; every custodian holds a share.
    let daemon_a = Daemon::start_tls().unwrap();
    for custodian in &custodians {
        custodian.enrol(&daemon_a);
    }
    let created = json(
        &daemon_a
            .rkm(&[
                "key",
                "create",
                "--label",
                LABEL,
                "--threshold",
                "2",
                "--custodians",
                &NAMES.join(","),
                "--output",
                "json",
            ])
            .unwrap(),
        "key create",
    );
    let key_id = created["key_id"].as_str().unwrap().to_owned();
    let audit_key_a = audit_key(&daemon_a);
    for custodian in &custodians {
        custodian.fetch(&daemon_a, &audit_key_a);
    }
    let record_file = custodians[2].key_record_file(&key_id);
    let record = KeyRecord::decode(
        &SignedKeyRecord::from_file(&std::fs::read_to_string(&record_file).unwrap())
            .unwrap()
            .record,
    )
    .unwrap();
    assert_eq!(record.key_id, key_id);
    let original_spki = hex::encode(&record.public_key_spki);
    let token_a = daemon_a.token.config_file();
    drop(daemon_a); // its process, token and state directory are gone
    assert!(!token_a.exists(), "daemon A's token outlived it");

    // Daemon B: another token, another state, its own audit key and origin.
    let mut daemon_b = DaemonBuilder::default().tls().uninitialised().unwrap();
    daemon_b.set_env("RKM_AUDIT_ORIGIN", ORIGIN_B);
    ok(&daemon_b.rkmd(&["init"]).unwrap(), "rkmd init (B)");
    daemon_b.serve().unwrap();
    let audit_key_b = audit_key(&daemon_b);
    assert_ne!(audit_key_a, audit_key_b);
    assert!(
        audit_key_b.starts_with(ORIGIN_B),
        "B's audit key {audit_key_b} is not named {ORIGIN_B}"
    );
    let import = |record_audit_key: &str| {
        daemon_b
            .rkm(&[
                "key",
                "import",
                path(&record_file),
                "--record-audit-key",
                record_audit_key,
                "--output",
                "json",
            ])
            .unwrap()
    };

    // Refused while carol is not enrolled on B.
    custodians[0].enrol(&daemon_b);
    custodians[1].enrol(&daemon_b);
    fails(
        &import(&audit_key_a),
        6,
        "carol",
        "import, carol not enrolled",
    );
    custodians[2].enrol(&daemon_b);

    // Refused with an audit key that did not sign the record (B's own):
    // a verification failure, found before anything is sent.
    fails(
        &import(&audit_key_b),
        7,
        "does not verify",
        "import with the wrong record audit key",
    );

    // Two imports of the record at once: one key, one audited refusal.
    let (first, second) = std::thread::scope(|scope| {
        let first = scope.spawn(|| import(&audit_key_a));
        let second = scope.spawn(|| import(&audit_key_a));
        (first.join().unwrap(), second.join().unwrap())
    });
    let (winner, loser) = if first.status.success() {
        (first, second)
    } else {
        (second, first)
    };
    fails(&loser, 6, "already", "the concurrent second import");
    let imported = json(&winner, "key import");
    // `audit show` lists what a signed checkpoint covers; the refusal's
    // checkpoint follows within audit.checkpoint_interval_ms.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let import_entries = loop {
        let entries = json(
            &daemon_b
                .rkm(&[
                    "audit",
                    "show",
                    "--action",
                    "key.import",
                    "--output",
                    "json",
                ])
                .unwrap(),
            "audit show",
        );
        if entries.as_array().unwrap().len() >= 4 || std::time::Instant::now() > deadline {
            break entries;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let outcomes: Vec<&str> = import_entries
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes.iter().filter(|&&o| o == "ok").count(),
        1,
        "one import took effect: {import_entries}"
    );
    assert_eq!(
        outcomes.len(),
        4,
        "the refusals (carol missing, wrong audit key, the concurrent import) are audited: {import_entries}"
    );

    assert_eq!(imported["key_id"], key_id.as_str(), "{imported}");
    assert_eq!(imported["label"], LABEL);
    assert_eq!(imported["state"], "active");
    assert_eq!(imported["threshold"], 2);
    assert_eq!(imported["public_key_spki"], original_spki.as_str());
    assert_eq!(imported["record_audit_key"], audit_key_a.as_str());
    let shown = json(
        &daemon_b
            .rkm(&["key", "show", LABEL, "--output", "json"])
            .unwrap(),
        "key show",
    );
    assert_eq!(shown["public_key_spki"], original_spki.as_str());
    assert_eq!(shown["record_audit_key"], audit_key_a.as_str());

    // Refused a second time.
    fails(&import(&audit_key_a), 6, "already", "second import");

    // A recovery on B with the shares and key records stored from A.
    let (request, targets) = request_files(dir.path(), TARGETS);
    let opened = json(
        &daemon_b
            .rkm(&[
                "recovery",
                "open",
                "--key",
                LABEL,
                "--request",
                path(&request),
                "--targets",
                path(&targets),
                "--expires",
                "1h",
                "--output",
                "json",
            ])
            .unwrap(),
        "recovery open",
    );
    assert_eq!(opened["target_count"], TARGETS as u64, "{opened}");
    let ceremony_id = opened["ceremony_id"].as_str().unwrap().to_owned();
    for (n, custodian) in custodians[..2].iter().enumerate() {
        let approved = custodian.approve(&daemon_b, &ceremony_id);
        assert_eq!(approved["custodian"], NAMES[n]);
        assert_eq!(approved["approval_count"], (n + 1) as u64, "{approved}");
    }
    wait_for_recovery_state(&daemon_b, &ceremony_id, "completed", SIGNING_TIMEOUT);
    let artefact = dir.path().join("artefact.rkma");
    ok(
        &daemon_b
            .rkm(&[
                "recovery",
                "collect",
                &ceremony_id,
                "-o",
                path(&artefact),
                "--output",
                "json",
            ])
            .unwrap(),
        "recovery collect",
    );

    // The artefact carries the original public key.
    let bundle = std::fs::read_to_string(&artefact).unwrap();
    let header = bundle
        .lines()
        .nth(1)
        .and_then(|line| line.strip_prefix("header "))
        .expect("line 2 of a bundle is its header");
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        header["public_key_spki"],
        original_spki.as_str(),
        "{header}"
    );

    // It verifies offline with B's audit key for the checkpoint and A's for
    // the record (alice's copy), and not with B's alone.
    let verify = |extra: &[&str]| {
        let record = custodians[0].key_record_file(&key_id);
        let mut args = vec![
            "artefact",
            "verify",
            path(&artefact),
            "--key-record",
            path(&record),
            "--audit-key",
            &audit_key_b,
            "--output",
            "json",
        ];
        args.extend_from_slice(extra);
        daemon_b.rkm(&args).unwrap()
    };
    let verified = json(
        &verify(&["--key-record-audit-key", &audit_key_a]),
        "artefact verify",
    );
    assert_eq!(verified["verified"], true, "{verified}");
    assert_eq!(verified["key_id"], key_id.as_str());
    assert_eq!(verified["target_count"], TARGETS as u64);
    assert_eq!(verified["checkpoint_origin"], ORIGIN_B);
    assert_eq!(verified["key_record_audit_key"], audit_key_a.as_str());
    assert_eq!(verified["approvers"], serde_json::json!(["alice", "bob"]));
    fails(
        &verify(&[]),
        7,
        "--key-record-audit-key",
        "artefact verify without the record's audit key",
    );
    // A's key alone does not verify B's checkpoint.
    let output = daemon_b
        .rkm(&[
            "artefact",
            "verify",
            path(&artefact),
            "--key-record",
            path(&record_file),
            "--audit-key",
            &audit_key_a,
        ])
        .unwrap();
    assert_eq!(output.status.code(), Some(7), "{}", text(&output.stderr));
}
