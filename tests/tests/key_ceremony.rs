//! The key generation ceremony end to end, with the real rkmd on a fresh
//! SoftHSM token and the real rkm: custodians make identities, operators enrol
//! them and create a key, each custodian fetches, verifies and confirms their
//! share. Refusals (bad requests, wrong passphrase, a key record that does not
//! verify, a damaged or foreign share) are clear errors that store nothing,
//! and no share or KEK byte reaches rkmd's files or log.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use rkm_proto::checkpoint::VerifierKey;
use rkm_proto::envelope;
use rkm_proto::identity::CustodianIdentity;
use rkm_proto::kek_check::kek_matches;
use rkm_proto::key_record::{KeyRecord, SignedKeyRecord};
use rkm_proto::secret::Share;
use rkm_proto::shamir;
use rkm_tests::Daemon;
use rkm_tests::daemon::binary;
use secrecy::SecretString;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

const NAMES: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];

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

/// Asserts failure with `code` and a standard error containing every one of
/// `needles`; returns standard error.
fn fails(output: &Output, code: i32, needles: &[&str], what: &str) -> String {
    let stderr = text(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what}: expected exit {code}:\nstdout: {}\nstderr: {stderr}",
        text(&output.stdout)
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{what}: stderr lacks {needle:?}:\n{stderr}"
        );
    }
    stderr
}

fn json(output: &Output, what: &str) -> Value {
    serde_json::from_str(&ok(output, what))
        .unwrap_or_else(|error| panic!("{what}: not JSON: {error}"))
}

fn path(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// Runs the real rkm against `daemon` with only the given extra environment
/// (HOME points into the test's directory, so nothing lands in the real one).
fn rkm_with_env(daemon: &Daemon, home: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(binary("rkm"));
    command.env_clear();
    if let Some(value) = std::env::var_os("PATH") {
        command.env("PATH", value);
    }
    command
        .env("HOME", home)
        .env("RKM_SOCKET", daemon.socket())
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("rkm runs")
}

/// One custodian's files.
#[derive(Debug)]
struct Custodian {
    name: String,
    identity: PathBuf,
    card: PathBuf,
    passphrase: String,
    passphrase_file: PathBuf,
    share_dir: PathBuf,
}

impl Custodian {
    fn new(dir: &Path, name: &str) -> Self {
        let passphrase = format!("correct horse battery staple {name}");
        let passphrase_file = dir.join(format!("{name}.passphrase"));
        std::fs::write(&passphrase_file, format!("{passphrase}\n")).unwrap();
        Custodian {
            name: name.to_owned(),
            identity: dir.join(format!("{name}.identity")),
            card: dir.join(format!("{name}.card.json")),
            passphrase,
            passphrase_file,
            share_dir: dir.join(format!("{name}-shares")),
        }
    }

    /// `rkm custodian init`; returns the fingerprint printed.
    fn init(&self, daemon: &Daemon) -> String {
        let report = json(
            &daemon
                .rkm(&[
                    "custodian",
                    "init",
                    "--name",
                    &self.name,
                    "--identity",
                    path(&self.identity),
                    "--card",
                    path(&self.card),
                    "--passphrase-file",
                    path(&self.passphrase_file),
                    "--output",
                    "json",
                ])
                .unwrap(),
            "custodian init",
        );
        report["fingerprint"].as_str().unwrap().to_owned()
    }

    /// Writes the identity and card here rather than with `rkm custodian
    /// init`, with a low scrypt work factor so that the many commands that
    /// open it stay fast. Only the refusal tests use it; the ceremony test
    /// runs the real `init`.
    fn init_fast(&self) {
        let mut seed = [0u8; 64];
        for (half, chunk) in seed.chunks_mut(32).enumerate() {
            let digest = Sha256::new()
                .chain_update(self.identity.as_os_str().as_encoded_bytes())
                .chain_update([half as u8])
                .finalize();
            chunk.copy_from_slice(&digest);
        }
        let identity = CustodianIdentity::generate(&self.name, &seed).unwrap();
        let file = identity
            .encrypt_with_work_factor(&SecretString::from(self.passphrase.as_str()), 10)
            .unwrap();
        std::fs::write(&self.identity, file).unwrap();
        std::fs::write(&self.card, identity.card().to_json()).unwrap();
    }

    fn enrol(&self, daemon: &Daemon) -> Output {
        daemon
            .rkm(&["custodian", "enrol", path(&self.card)])
            .unwrap()
    }

    fn fetch(&self, daemon: &Daemon, key: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            "share",
            "fetch",
            "--key",
            key,
            "--identity",
            path(&self.identity),
            "--passphrase-file",
            path(&self.passphrase_file),
            "--share-dir",
            path(&self.share_dir),
        ];
        args.extend_from_slice(extra);
        daemon.rkm(&args).unwrap()
    }

    fn verify(&self, daemon: &Daemon, key: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            "share",
            "verify",
            "--key",
            key,
            "--identity",
            path(&self.identity),
            "--passphrase-file",
            path(&self.passphrase_file),
            "--share-dir",
            path(&self.share_dir),
        ];
        args.extend_from_slice(extra);
        daemon.rkm(&args).unwrap()
    }

    fn open_identity(&self) -> CustodianIdentity {
        CustodianIdentity::decrypt(
            &std::fs::read(&self.identity).unwrap(),
            &SecretString::from(self.passphrase.as_str()),
        )
        .unwrap()
    }

    /// The key folder `share fetch` stored.
    fn key_folder(&self, key_id: &str) -> PathBuf {
        self.share_dir.join(key_id)
    }

    /// The share this custodian holds, decrypted here (outside rkmd).
    fn held_share(&self, key_id: &str) -> Share {
        let sealed = std::fs::read(self.key_folder(key_id).join("share.age")).unwrap();
        envelope::open(&sealed, self.open_identity().age_identity())
            .unwrap()
            .share
    }

    /// Asserts that nothing at all was stored.
    fn assert_nothing_stored(&self, what: &str) {
        if self.share_dir.exists() {
            let entries: Vec<_> = std::fs::read_dir(&self.share_dir)
                .unwrap()
                .map(|entry| entry.unwrap().file_name())
                .collect();
            assert!(entries.is_empty(), "{what}: stored {entries:?}");
        }
    }
}

fn custodians(dir: &Path, names: &[&str]) -> Vec<Custodian> {
    names.iter().map(|name| Custodian::new(dir, name)).collect()
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

fn key_json(daemon: &Daemon, key: &str) -> Value {
    json(
        &daemon
            .rkm(&["key", "show", key, "--output", "json"])
            .unwrap(),
        "key show",
    )
}

fn names(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|name| name.as_str().unwrap().to_owned())
        .collect()
}

/// Every regular file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files
}

/// The ways a secret's bytes could be written: raw, hex, base64.
fn spellings(secret: &[u8]) -> Vec<Vec<u8>> {
    vec![
        secret.to_vec(),
        hex::encode(secret).into_bytes(),
        hex::encode_upper(secret).into_bytes(),
        base64::engine::general_purpose::STANDARD
            .encode(secret)
            .into_bytes(),
        base64::engine::general_purpose::STANDARD_NO_PAD
            .encode(&secret[..30])
            .into_bytes(),
    ]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
    (0u32..1 << n)
        .filter(|mask| mask.count_ones() as usize == k)
        .map(|mask| (0..n).filter(|i| mask & (1 << i) != 0).collect())
        .collect()
}

/// Inits, enrols and creates a key with `names` and threshold `k`; returns
/// the custodians and the key id.
fn ceremony(
    daemon: &Daemon,
    dir: &Path,
    names: &[&str],
    label: &str,
    k: u8,
) -> (Vec<Custodian>, String) {
    let custodians = custodians(dir, names);
    for custodian in &custodians {
        custodian.init_fast();
        ok(&custodian.enrol(daemon), "custodian enrol");
    }
    let created = json(
        &daemon
            .rkm(&[
                "key",
                "create",
                "--label",
                label,
                "--threshold",
                &k.to_string(),
                "--custodians",
                &names.join(","),
                "--output",
                "json",
            ])
            .unwrap(),
        "key create",
    );
    let key_id = created["key_id"].as_str().unwrap().to_owned();
    (custodians, key_id)
}

#[test]
fn ceremony_three_of_five_activates_the_key_and_no_share_reaches_rkmd_files() {
    let daemon = Daemon::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let custodians = custodians(dir.path(), &NAMES);

    // Each custodian makes an identity and a card.
    let mut fingerprints = Vec::new();
    for (i, custodian) in custodians.iter().enumerate() {
        let fingerprint = custodian.init(&daemon);
        let mode = std::fs::metadata(&custodian.identity)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the identity file is owner-only");
        let from_card = json(
            &daemon
                .rkm(&[
                    "custodian",
                    "show",
                    "--card",
                    path(&custodian.card),
                    "--output",
                    "json",
                ])
                .unwrap(),
            "custodian show --card",
        );
        if i == 0 {
            // The identity file gives the same fingerprint (one is enough:
            // each opening costs a second of scrypt).
            let shown = ok(
                &daemon
                    .rkm(&[
                        "custodian",
                        "show",
                        "--identity",
                        path(&custodian.identity),
                        "--passphrase-file",
                        path(&custodian.passphrase_file),
                    ])
                    .unwrap(),
                "custodian show --identity",
            );
            assert!(shown.contains(&fingerprint), "{shown}");
        }
        assert_eq!(from_card["fingerprint"], fingerprint.as_str());
        assert_eq!(from_card["name"], custodian.name.as_str());
        assert!(
            from_card["age_recipient"]
                .as_str()
                .unwrap()
                .starts_with("age1")
        );
        fingerprints.push(fingerprint);
    }
    // Init never overwrites an identity.
    fails(
        &daemon
            .rkm(&[
                "custodian",
                "init",
                "--name",
                "alice",
                "--identity",
                path(&custodians[0].identity),
                "--card",
                path(&dir.path().join("other.card")),
                "--passphrase-file",
                path(&custodians[0].passphrase_file),
            ])
            .unwrap(),
        1,
        &["already exists"],
        "init over an existing identity",
    );

    // The operator enrols them; the fingerprints agree.
    for (custodian, fingerprint) in custodians.iter().zip(&fingerprints) {
        let enrolled = ok(&custodian.enrol(&daemon), "custodian enrol");
        assert!(enrolled.contains(fingerprint.as_str()), "{enrolled}");
    }
    let listed = json(
        &daemon
            .rkm(&["custodian", "list", "--output", "json"])
            .unwrap(),
        "custodian list",
    );
    assert_eq!(listed.as_array().unwrap().len(), 5);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["enabled"] == true)
    );

    // The ceremony: a 3-of-5 key, all five receipts missing.
    let created = json(
        &daemon
            .rkm(&[
                "key",
                "create",
                "--label",
                "fleet-root",
                "--threshold",
                "3",
                "--custodians",
                &NAMES.join(","),
                "--output",
                "json",
            ])
            .unwrap(),
        "key create",
    );
    let key_id = created["key_id"].as_str().unwrap().to_owned();
    assert_eq!(created["state"], "awaiting-receipts");
    let shown = key_json(&daemon, "fleet-root");
    assert_eq!(shown["threshold"], 3);
    assert_eq!(shown["custodian_count"], 5);
    assert_eq!(names(&shown["missing"]), NAMES);
    let shown_text = ok(
        &daemon.rkm(&["key", "show", "fleet-root"]).unwrap(),
        "key show",
    );
    for name in NAMES {
        assert!(
            shown_text.contains(&format!("missing   {name}")),
            "{shown_text}"
        );
    }

    // Each custodian was sent a notice; alice acknowledges hers.
    let notices = json(
        &daemon
            .rkm(&["notice", "list", "--custodian", "alice", "--output", "json"])
            .unwrap(),
        "notice list",
    );
    assert_eq!(notices.as_array().unwrap().len(), 1, "{notices}");
    let notice_id = notices[0]["notice_id"].as_str().unwrap().to_owned();
    assert!(
        notices[0]["text"]
            .as_str()
            .unwrap()
            .contains("rkm share fetch")
    );
    let acked = json(
        &daemon
            .rkm(&[
                "notice",
                "ack",
                &notice_id,
                "--identity",
                path(&custodians[0].identity),
                "--passphrase-file",
                path(&custodians[0].passphrase_file),
                "--output",
                "json",
            ])
            .unwrap(),
        "notice ack",
    );
    assert!(acked["acknowledged_at"].is_string(), "{acked}");
    // bob cannot acknowledge alice's notice.
    fails(
        &daemon
            .rkm(&[
                "notice",
                "ack",
                &notice_id,
                "--identity",
                path(&custodians[1].identity),
                "--passphrase-file",
                path(&custodians[1].passphrase_file),
            ])
            .unwrap(),
        4,
        &["was sent to \"alice\""],
        "bob acks alice's notice",
    );

    // Every custodian fetches, verifies and confirms their share. alice pins
    // the audit key given; the others trust rkmd's on first use.
    let vkey = audit_key(&daemon);
    for (i, custodian) in custodians.iter().enumerate() {
        let output = if i == 0 {
            custodian.fetch(
                &daemon,
                "fleet-root",
                &["--audit-key", &vkey, "--output", "json"],
            )
        } else {
            custodian.fetch(&daemon, "fleet-root", &["--output", "json"])
        };
        let report = json(&output, "share fetch");
        assert_eq!(report["key_id"], key_id.as_str());
        assert_eq!(report["custodian"], custodian.name.as_str());
        assert_eq!(report["x"], i + 1);
        assert_eq!(report["written"], true);
        assert_eq!(report["audit_key"], vkey.as_str());
        if i > 0 {
            let stderr = text(&output.stderr);
            assert!(stderr.contains("fingerprint"), "{stderr}");
        }
        let folder = custodian.key_folder(&key_id);
        for file in ["share.age", "key-record.json"] {
            let mode = std::fs::metadata(folder.join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
        let expected_state = if i == 4 {
            "active"
        } else {
            "awaiting-receipts"
        };
        assert_eq!(report["key_state"], expected_state);
        let shown = key_json(&daemon, &key_id);
        assert_eq!(shown["state"], expected_state);
        assert_eq!(names(&shown["missing"]), &NAMES[i + 1..]);
    }
    let shown_text = ok(
        &daemon.rkm(&["key", "show", "fleet-root"]).unwrap(),
        "key show",
    );
    assert!(shown_text.contains("state       active"), "{shown_text}");
    assert!(shown_text.contains("receipts    5 of 5"), "{shown_text}");
    let listed = json(
        &daemon.rkm(&["key", "list", "--output", "json"]).unwrap(),
        "key list",
    );
    assert_eq!(listed[0]["state"], "active");

    // The envelope is gone once confirmed.
    fails(
        &custodians[0].fetch(&daemon, "fleet-root", &[]),
        6,
        &["already confirmed"],
        "second fetch",
    );

    // Each custodian re-checks what they hold, offline.
    for custodian in &custodians {
        let output = custodian.verify(&daemon, "fleet-root", &[]);
        let checked = ok(&output, "share verify");
        assert!(
            checked.contains("share matches its commitment"),
            "{checked}"
        );
        assert!(checked.contains("signature verifies"), "{checked}");
    }

    // The shares, decrypted here from the custodians' files: every 3-subset
    // gives the KEK of the record's check value, no pair does.
    let record: KeyRecord = SignedKeyRecord::from_file(
        &std::fs::read_to_string(custodians[0].key_folder(&key_id).join("key-record.json"))
            .unwrap(),
    )
    .unwrap()
    .verify(&VerifierKey::parse(&vkey).unwrap())
    .unwrap();
    let shares: Vec<Share> = custodians.iter().map(|c| c.held_share(&key_id)).collect();
    let mut keks = Vec::new();
    for quorum in subsets(5, 3) {
        let subset: Vec<Share> = quorum
            .iter()
            .map(|&i| Share::new(shares[i].x(), shares[i].expose_y()).unwrap())
            .collect();
        let kek = shamir::combine(&subset, 3).unwrap();
        assert!(kek_matches(&kek, &record.kek_check_value), "{quorum:?}");
        keks.push(kek);
    }
    for pair in subsets(5, 2) {
        let subset: Vec<Share> = pair
            .iter()
            .map(|&i| Share::new(shares[i].x(), shares[i].expose_y()).unwrap())
            .collect();
        let wrong = shamir::combine(&subset, 2).unwrap();
        assert!(!kek_matches(&wrong, &record.kek_check_value), "{pair:?}");
    }

    // No share and no KEK in any file of rkmd's state directory (database,
    // WAL, socket aside), in its token directory, or in its log.
    let mut secrets: Vec<(String, Vec<u8>)> = shares
        .iter()
        .map(|share| (format!("share x={}", share.x()), share.expose_y().to_vec()))
        .collect();
    secrets.push(("KEK".to_owned(), keks[0].expose_secret().to_vec()));
    let mut searched = files_under(&daemon.state_dir());
    assert!(
        searched
            .iter()
            .any(|file| file.to_string_lossy().ends_with(".db")
                || file.to_string_lossy().contains("sqlite")),
        "the state directory holds the database: {searched:?}"
    );
    searched.extend(files_under(daemon.token.dir()));
    searched.push(daemon.log_file());
    let log = daemon.log();
    assert!(!log.is_empty(), "rkmd logged something");
    for file in &searched {
        let Ok(bytes) = std::fs::read(file) else {
            continue;
        };
        for (what, secret) in &secrets {
            for spelling in spellings(secret) {
                assert!(
                    !contains(&bytes, &spelling),
                    "{what} found in {}",
                    file.display()
                );
            }
        }
    }

    // The audit log records the ceremony step by step, and verifies offline.
    let audit_file = dir.path().join("audit.log");
    let fetched = daemon
        .rkm(&[
            "audit",
            "fetch",
            "--out",
            path(&audit_file),
            "--audit-key",
            &vkey,
        ])
        .unwrap();
    ok(&fetched, "audit fetch");
    let verified = daemon
        .rkm(&["audit", "verify", path(&audit_file), "--audit-key", &vkey])
        .unwrap();
    ok(&verified, "audit verify");
    let entries = json(
        &daemon
            .rkm(&[
                "audit",
                "show",
                "--file",
                path(&audit_file),
                "--output",
                "json",
            ])
            .unwrap(),
        "audit show",
    );
    let actions: Vec<String> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["action"].as_str().unwrap().to_owned())
        .collect();
    let count = |action: &str| actions.iter().filter(|a| *a == action).count();
    assert_eq!(count("custodian.enrol"), 5, "{actions:?}");
    assert_eq!(count("ceremony.open"), 1, "{actions:?}");
    assert_eq!(count("notice.send"), 5, "{actions:?}");
    assert!(count("key.create") >= 1, "{actions:?}");
    assert!(count("notice.ack") >= 1, "{actions:?}");
    assert!(count("envelope.fetch") >= 5, "{actions:?}");
    assert!(count("share.receipt") >= 5, "{actions:?}");
    assert_eq!(count("ceremony.complete"), 1, "{actions:?}");
    let audit_bytes = std::fs::read(&audit_file).unwrap();
    for (what, secret) in &secrets {
        for spelling in spellings(secret) {
            assert!(
                !contains(&audit_bytes, &spelling),
                "{what} in the audit log"
            );
        }
    }
}

#[test]
fn share_fetch_refusals_are_clear_and_store_nothing() {
    let daemon = Daemon::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (custodians, key_id) = ceremony(
        &daemon,
        dir.path(),
        &["alice", "bob", "carol"],
        "fleet-test",
        2,
    );
    let (alice, bob) = (&custodians[0], &custodians[1]);

    // A wrong passphrase.
    let wrong = dir.path().join("wrong.passphrase");
    std::fs::write(&wrong, "not alice's passphrase at all\n").unwrap();
    fails(
        &daemon
            .rkm(&[
                "share",
                "fetch",
                "--key",
                "fleet-test",
                "--identity",
                path(&alice.identity),
                "--passphrase-file",
                path(&wrong),
                "--share-dir",
                path(&alice.share_dir),
            ])
            .unwrap(),
        1,
        &["passphrase does not open the identity file"],
        "wrong passphrase",
    );
    alice.assert_nothing_stored("wrong passphrase");

    // A key record that does not verify: the audit key of another rkmd.
    let other = Daemon::start().unwrap();
    let other_key = audit_key(&other);
    assert_ne!(other_key, audit_key(&daemon));
    fails(
        &alice.fetch(&daemon, "fleet-test", &["--audit-key", &other_key]),
        7,
        &["key record does not verify"],
        "another rkmd's audit key",
    );
    alice.assert_nothing_stored("another rkmd's audit key");

    // Someone enrolled but not a custodian of this key.
    let dave = Custodian::new(dir.path(), "dave");
    dave.init_fast();
    ok(&dave.enrol(&daemon), "enrol dave");
    fails(
        &dave.fetch(&daemon, "fleet-test", &[]),
        4,
        &["not a custodian of key fleet-test"],
        "not a custodian",
    );
    dave.assert_nothing_stored("not a custodian");

    // An impostor identity that calls itself alice.
    let impostor_dir = dir.path().join("impostor");
    std::fs::create_dir(&impostor_dir).unwrap();
    let impostor = Custodian::new(&impostor_dir, "alice");
    impostor.init_fast();
    fails(
        &impostor.fetch(&daemon, "fleet-test", &[]),
        4,
        &["not signed by custodian \"alice\""],
        "impostor",
    );
    impostor.assert_nothing_stored("impostor");

    // An unknown key.
    fails(
        &alice.fetch(&daemon, "no-such-key", &[]),
        5,
        &["no-such-key"],
        "unknown key",
    );
    alice.assert_nothing_stored("unknown key");

    // After all that, the real fetches work (nothing was consumed), and the
    // environment variables stand in for the options.
    let vkey = audit_key(&daemon);
    ok(
        &alice.fetch(&daemon, "fleet-test", &["--audit-key", &vkey]),
        "alice fetch",
    );
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let bob_fetch = rkm_with_env(
        &daemon,
        &home,
        &[
            ("RKM_PASSPHRASE_FILE", path(&bob.passphrase_file)),
            ("RKM_SHARE_DIR", path(&bob.share_dir)),
        ],
        &[
            "share",
            "fetch",
            "--key",
            &key_id,
            "--identity",
            path(&bob.identity),
        ],
    );
    ok(&bob_fetch, "bob fetch by key id with the environment");
    assert!(bob.key_folder(&key_id).join("share.age").exists());
    // Without RKM_SHARE_DIR, the default lives under HOME.
    let carol = &custodians[2];
    let carol_fetch = rkm_with_env(
        &daemon,
        &home,
        &[("RKM_PASSPHRASE_FILE", path(&carol.passphrase_file))],
        &[
            "share",
            "fetch",
            "--key",
            "fleet-test",
            "--identity",
            path(&carol.identity),
        ],
    );
    ok(&carol_fetch, "carol fetch into the default share directory");
    let default_dir = home.join(".local/share/rkm/shares");
    assert!(default_dir.join(&key_id).join("key-record.json").exists());
    assert_eq!(key_json(&daemon, "fleet-test")["state"], "active");

    // alice's directory now pins this rkmd's audit key: another key is refused.
    fails(
        &alice.verify(&daemon, "fleet-test", &["--audit-key", &other_key]),
        7,
        &["pins audit key"],
        "verify with another rkmd's key",
    );
}

#[test]
fn share_verify_detects_tampered_envelope_record_and_foreign_share() {
    let daemon = Daemon::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (custodians, key_id) = ceremony(&daemon, dir.path(), &["alice", "bob"], "fleet-tamper", 2);
    let (alice, bob) = (&custodians[0], &custodians[1]);
    for custodian in &custodians {
        ok(
            &custodian.fetch(&daemon, "fleet-tamper", &[]),
            "share fetch",
        );
        ok(
            &custodian.verify(&daemon, "fleet-tamper", &[]),
            "share verify",
        );
    }
    // verify is offline: it works with rkmd gone.
    drop(daemon);
    let daemon_gone = |custodian: &Custodian, extra: &[&str]| {
        let mut args = vec![
            "share",
            "verify",
            "--key",
            "fleet-tamper",
            "--identity",
            path(&custodian.identity),
            "--passphrase-file",
            path(&custodian.passphrase_file),
            "--share-dir",
            path(&custodian.share_dir),
        ];
        args.extend_from_slice(extra);
        Command::new(binary("rkm"))
            .env_clear()
            .env("RKM_SOCKET", dir.path().join("no-rkmd.sock"))
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    ok(&daemon_gone(bob, &[]), "offline verify");

    let bob_share = bob.key_folder(&key_id).join("share.age");
    let bob_record = bob.key_folder(&key_id).join("key-record.json");
    let original_share = std::fs::read(&bob_share).unwrap();
    let original_record = std::fs::read_to_string(&bob_record).unwrap();

    // A flipped bit in the envelope's payload.
    let mut tampered = original_share.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    std::fs::write(&bob_share, &tampered).unwrap();
    fails(
        &daemon_gone(bob, &[]),
        7,
        &["share envelope does not open"],
        "tampered envelope",
    );

    // alice's envelope in bob's folder.
    std::fs::copy(alice.key_folder(&key_id).join("share.age"), &bob_share).unwrap();
    fails(
        &daemon_gone(bob, &[]),
        7,
        &["not sealed to this custodian identity"],
        "foreign envelope",
    );
    std::fs::write(&bob_share, &original_share).unwrap();

    // An edited key record: the threshold lowered to 1.
    let mut file: Value = serde_json::from_str(&original_record).unwrap();
    let record = file["record"].as_str().unwrap().to_owned();
    assert!(record.contains("\"threshold\":2"), "{record}");
    file["record"] = Value::String(record.replace("\"threshold\":2", "\"threshold\":1"));
    std::fs::write(&bob_record, serde_json::to_string_pretty(&file).unwrap()).unwrap();
    fails(
        &daemon_gone(bob, &[]),
        7,
        &["key record does not verify", "signature"],
        "edited key record",
    );
    // A key record signed by... nobody: a corrupted signature.
    let mut file: Value = serde_json::from_str(&original_record).unwrap();
    let signature = file["signature"].as_str().unwrap().to_owned();
    let flipped = if signature.starts_with('0') { "1" } else { "0" };
    file["signature"] = Value::String(format!("{flipped}{}", &signature[1..]));
    std::fs::write(&bob_record, serde_json::to_string_pretty(&file).unwrap()).unwrap();
    fails(
        &daemon_gone(bob, &[]),
        7,
        &["key record does not verify"],
        "bad signature",
    );

    std::fs::write(&bob_record, &original_record).unwrap();
    let restored = ok(&daemon_gone(bob, &[]), "verify after restoring the files");
    assert!(restored.contains("intact"), "{restored}");
}

#[test]
fn key_create_refuses_bad_thresholds_and_custodian_lists() {
    let daemon = Daemon::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let custodians = custodians(dir.path(), &["alice", "bob", "carol"]);
    for custodian in &custodians {
        custodian.init_fast();
        ok(&custodian.enrol(&daemon), "enrol");
    }
    // The same card twice, and another card with a taken name, are refused.
    fails(
        &custodians[0].enrol(&daemon),
        6,
        &["already enrolled"],
        "enrol twice",
    );
    ok(
        &daemon
            .rkm(&[
                "custodian",
                "disable",
                "carol",
                "--reason",
                "left the company",
            ])
            .unwrap(),
        "disable carol",
    );
    let create = |label: &str, k: &str, names: &str, extra: &[&str]| {
        let mut args = vec![
            "key",
            "create",
            "--label",
            label,
            "--threshold",
            k,
            "--custodians",
            names,
        ];
        args.extend_from_slice(extra);
        daemon.rkm(&args).unwrap()
    };
    fails(
        &create("k1", "1", "alice,bob", &[]),
        6,
        &["threshold of 1", "--allow-single-custodian"],
        "K = 1",
    );
    fails(
        &create("k0", "0", "alice,bob", &[]),
        6,
        &["threshold of 0"],
        "K = 0",
    );
    fails(
        &create("k3", "3", "alice,bob", &[]),
        6,
        &["threshold 3 is larger than the 2 custodians"],
        "K > N",
    );
    fails(
        &create("unknown", "2", "alice,mallory", &[]),
        5,
        &[
            "custodian \"mallory\" does not exist",
            "rkm custodian enrol",
        ],
        "unknown custodian",
    );
    fails(
        &create("disabled", "2", "alice,carol", &[]),
        6,
        &["custodian \"carol\" is disabled", "left the company"],
        "disabled custodian",
    );
    fails(
        &create("dup", "2", "alice,alice,bob", &[]),
        6,
        &["\"alice\" is listed twice"],
        "duplicate custodian",
    );
    let keys = json(
        &daemon.rkm(&["key", "list", "--output", "json"]).unwrap(),
        "key list",
    );
    assert_eq!(
        keys.as_array().unwrap().len(),
        0,
        "refusals create no key: {keys}"
    );

    // K = 1 only when asked for explicitly.
    let single = json(
        &create(
            "single",
            "1",
            "alice,bob",
            &["--allow-single-custodian", "--output", "json"],
        ),
        "K = 1 allowed",
    );
    assert_eq!(single["threshold"], 1);
    assert_eq!(names(&single["missing"]), ["alice", "bob"]);
    // A label in use is refused.
    fails(
        &create("single", "2", "alice,bob", &[]),
        6,
        &["already used"],
        "label in use",
    );
    // No daemon: exit 3 with a hint.
    let gone = Command::new(binary("rkm"))
        .env_clear()
        .env("RKM_SOCKET", dir.path().join("no-rkmd.sock"))
        .args(["key", "list"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    fails(&gone, 3, &["is rkmd running?"], "no daemon");
}
