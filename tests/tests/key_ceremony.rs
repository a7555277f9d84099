//! The key generation ceremony end to end, with the real rkmd on a fresh
//! SoftHSM token and the real rkm: custodians make identities, operators enrol
//! them and create a key, each custodian fetches, verifies and confirms their
//! share. Refusals (bad requests, wrong passphrase, a key record that does not
//! verify, a damaged or foreign share) are clear errors that store nothing,
//! and no share or KEK byte reaches rkmd's files or log.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use rkm_proto::checkpoint::VerifierKey;
use rkm_proto::kek_check::kek_matches;
use rkm_proto::key_record::KeyRecord;
use rkm_proto::secret::Share;
use rkm_proto::shamir;
use rkm_tests::Daemon;
use rkm_tests::custodians::{
    Custodian, NAMES, assert_fails, assert_no_secret_bytes, assert_ok, assert_ok_json, audit_key,
    create_key, custodians, custodians_with_fast_identities, enrol_all, enrol_and_create_key,
    files_under, key_id_of, path_str, pick_shares, rkm_with_env, show_key, subsets, text,
};
use serde_json::Value;

fn names(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|name| name.as_str().unwrap().to_owned())
        .collect()
}

/// Writes fast identities for `names`, enrols them and creates a key with
/// threshold `k`; returns the custodians and the key id.
fn ceremony(
    daemon: &Daemon,
    dir: &Path,
    names: &[&str],
    label: &str,
    k: u8,
) -> (Vec<Custodian>, String) {
    let custodians = custodians_with_fast_identities(dir, names);
    let key_id = enrol_and_create_key(daemon, &custodians, label, k);
    (custodians, key_id)
}

#[test]
fn ceremony_three_of_five_activates_the_key_and_no_share_reaches_rkmd_files() {
    let daemon = Daemon::start_tls().unwrap();
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
        let from_card = assert_ok_json(
            &daemon
                .rkm(&[
                    "custodian",
                    "show",
                    "--card",
                    path_str(&custodian.card),
                    "--output",
                    "json",
                ])
                .unwrap(),
            "custodian show --card",
        );
        if i == 0 {
            // The identity file gives the same fingerprint (one is enough:
            // each opening costs a second of scrypt).
            let mut show = vec!["custodian", "show"];
            show.extend(custodian.identity_args());
            let shown = assert_ok(&daemon.rkm(&show).unwrap(), "custodian show --identity");
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
    assert_fails(
        &daemon
            .rkm(&[
                "custodian",
                "init",
                "--name",
                "alice",
                "--identity",
                path_str(&custodians[0].identity),
                "--card",
                path_str(&dir.path().join("other.card")),
                "--passphrase-file",
                path_str(&custodians[0].passphrase_file),
            ])
            .unwrap(),
        1,
        &["already exists"],
        "init over an existing identity",
    );

    // The operator enrols them; the fingerprints agree.
    for (custodian, fingerprint) in custodians.iter().zip(&fingerprints) {
        let enrolled = assert_ok(&custodian.enrol(&daemon), "custodian enrol");
        assert!(enrolled.contains(fingerprint.as_str()), "{enrolled}");
    }
    let listed = assert_ok_json(
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
    let created = create_key(&daemon, "fleet-root", 3, &NAMES);
    let key_id = key_id_of(&created);
    assert_eq!(created["state"], "awaiting-receipts");
    let shown = show_key(&daemon, "fleet-root");
    assert_eq!(shown["threshold"], 3);
    assert_eq!(shown["custodian_count"], 5);
    assert_eq!(names(&shown["missing"]), NAMES);
    let shown_text = assert_ok(
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
    let notices = assert_ok_json(
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
    let ack = |custodian: &Custodian, extra: &[&str]| {
        let mut args = vec!["notice", "ack", &notice_id];
        args.extend(custodian.identity_args());
        args.extend_from_slice(extra);
        daemon.rkm(&args).unwrap()
    };
    let acked = assert_ok_json(&ack(&custodians[0], &["--output", "json"]), "notice ack");
    assert!(acked["acknowledged_at"].is_string(), "{acked}");
    // bob cannot acknowledge alice's notice.
    assert_fails(
        &ack(&custodians[1], &[]),
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
        let report = assert_ok_json(&output, "share fetch");
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
        let shown = show_key(&daemon, &key_id);
        assert_eq!(shown["state"], expected_state);
        assert_eq!(names(&shown["missing"]), &NAMES[i + 1..]);
    }
    let shown_text = assert_ok(
        &daemon.rkm(&["key", "show", "fleet-root"]).unwrap(),
        "key show",
    );
    assert!(shown_text.contains("state       active"), "{shown_text}");
    assert!(shown_text.contains("receipts    5 of 5"), "{shown_text}");
    let listed = assert_ok_json(
        &daemon.rkm(&["key", "list", "--output", "json"]).unwrap(),
        "key list",
    );
    assert_eq!(listed[0]["state"], "active");

    // The envelope is gone once confirmed.
    assert_fails(
        &custodians[0].fetch(&daemon, "fleet-root", &[]),
        6,
        &["already confirmed"],
        "second fetch",
    );

    // Each custodian re-checks what they hold, offline.
    for custodian in &custodians {
        let output = custodian.verify(&daemon, "fleet-root", &[]);
        let checked = assert_ok(&output, "share verify");
        assert!(
            checked.contains("share matches its commitment"),
            "{checked}"
        );
        assert!(checked.contains("signature verifies"), "{checked}");
    }

    // The shares, decrypted here from the custodians' files: every 3-subset
    // gives the KEK of the record's check value, no pair does.
    let record: KeyRecord = custodians[0]
        .signed_key_record(&key_id)
        .verify(&VerifierKey::parse(&vkey).unwrap())
        .unwrap();
    let shares: Vec<Share> = custodians.iter().map(|c| c.held_share(&key_id)).collect();
    let mut keks = Vec::new();
    for quorum in subsets(5, 3) {
        let kek = shamir::combine(&pick_shares(&shares, &quorum), 3).unwrap();
        assert!(kek_matches(&kek, &record.kek_check_value), "{quorum:?}");
        keks.push(kek);
    }
    for pair in subsets(5, 2) {
        let wrong = shamir::combine(&pick_shares(&shares, &pair), 2).unwrap();
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
    assert_no_secret_bytes(&searched, &secrets, "after the ceremony");

    // The audit log records the ceremony step by step, and verifies offline.
    let audit_file = dir.path().join("audit.log");
    let fetched = daemon
        .rkm(&[
            "audit",
            "fetch",
            "--out",
            path_str(&audit_file),
            "--audit-key",
            &vkey,
        ])
        .unwrap();
    assert_ok(&fetched, "audit fetch");
    let verified = daemon
        .rkm(&[
            "audit",
            "verify",
            path_str(&audit_file),
            "--audit-key",
            &vkey,
        ])
        .unwrap();
    assert_ok(&verified, "audit verify");
    let entries = assert_ok_json(
        &daemon
            .rkm(&[
                "audit",
                "show",
                "--file",
                path_str(&audit_file),
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
    assert!(audit_file.is_file(), "the audit log was fetched");
    assert_no_secret_bytes(&[audit_file], &secrets, "the audit log");
}

#[test]
fn share_fetch_refusals_are_clear_and_store_nothing() {
    let daemon = Daemon::start_tls().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (custodians, key_id) = ceremony(
        &daemon,
        dir.path(),
        &["alice", "bob", "carol"],
        "fleet-test",
        2,
    );
    let (alice, bob) = (&custodians[0], &custodians[1]);

    // A wrong passphrase: alice's files with another passphrase file.
    let wrong = Custodian {
        passphrase_file: dir.path().join("wrong.passphrase"),
        ..alice.clone()
    };
    rkm_tests::write_secret_file(&wrong.passphrase_file, "not alice's passphrase at all\n");
    assert_fails(
        &wrong.fetch(&daemon, "fleet-test", &[]),
        1,
        &["passphrase does not open the identity file"],
        "wrong passphrase",
    );
    alice.assert_nothing_stored("wrong passphrase");

    // A key record that does not verify: the audit key of another rkmd.
    let other = Daemon::start().unwrap();
    let other_key = audit_key(&other);
    assert_ne!(other_key, audit_key(&daemon));
    assert_fails(
        &alice.fetch(&daemon, "fleet-test", &["--audit-key", &other_key]),
        7,
        &["key record does not verify"],
        "another rkmd's audit key",
    );
    alice.assert_nothing_stored("another rkmd's audit key");

    // Someone enrolled but not a custodian of this key.
    let dave = Custodian::with_fast_identity(dir.path(), "dave");
    assert_ok(&dave.enrol(&daemon), "enrol dave");
    assert_fails(
        &dave.fetch(&daemon, "fleet-test", &[]),
        4,
        &["not a custodian of key fleet-test"],
        "not a custodian",
    );
    dave.assert_nothing_stored("not a custodian");

    // An impostor identity that calls itself alice.
    let impostor_dir = dir.path().join("impostor");
    std::fs::create_dir(&impostor_dir).unwrap();
    let impostor = Custodian::with_fast_identity(&impostor_dir, "alice");
    assert_fails(
        &impostor.fetch(&daemon, "fleet-test", &[]),
        4,
        &["does not verify with the custodian's enrolled key"],
        "impostor",
    );
    impostor.assert_nothing_stored("impostor");

    // An unknown key.
    assert_fails(
        &alice.fetch(&daemon, "no-such-key", &[]),
        5,
        &["no-such-key"],
        "unknown key",
    );
    alice.assert_nothing_stored("unknown key");

    // After all that, the real fetches work (nothing was consumed), and the
    // environment variables stand in for the options.
    let vkey = audit_key(&daemon);
    assert_ok(
        &alice.fetch(&daemon, "fleet-test", &["--audit-key", &vkey]),
        "alice fetch",
    );
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let fetch_with_env = |custodian: &Custodian, key: &str, env: &[(&str, &str)]| {
        let mut env = env.to_vec();
        env.extend([
            ("HOME", path_str(&home)),
            ("RKM_PASSPHRASE_FILE", path_str(&custodian.passphrase_file)),
        ]);
        rkm_with_env(
            &daemon.socket(),
            &env,
            &[
                "share",
                "fetch",
                "--key",
                key,
                "--identity",
                path_str(&custodian.identity),
            ],
        )
    };
    let bob_fetch = fetch_with_env(bob, &key_id, &[("RKM_SHARE_DIR", path_str(&bob.share_dir))]);
    assert_ok(&bob_fetch, "bob fetch by key id with the environment");
    assert!(bob.key_folder(&key_id).join("share.age").exists());
    // Without RKM_SHARE_DIR, the default lives under HOME.
    let carol = &custodians[2];
    let carol_fetch = fetch_with_env(carol, "fleet-test", &[]);
    assert_ok(&carol_fetch, "carol fetch into the default share directory");
    let default_dir = home.join(".local/share/rkm/shares");
    assert!(default_dir.join(&key_id).join("key-record.json").exists());
    assert_eq!(show_key(&daemon, "fleet-test")["state"], "active");

    // alice's directory now pins this rkmd's audit key: another key is refused.
    assert_fails(
        &alice.verify(&daemon, "fleet-test", &["--audit-key", &other_key]),
        7,
        &["pins audit key"],
        "verify with another rkmd's key",
    );
}

#[test]
fn share_verify_detects_tampered_envelope_record_and_foreign_share() {
    let daemon = Daemon::start_tls().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (custodians, key_id) = ceremony(&daemon, dir.path(), &["alice", "bob"], "fleet-tamper", 2);
    let (alice, bob) = (&custodians[0], &custodians[1]);
    for custodian in &custodians {
        assert_ok(
            &custodian.fetch(&daemon, "fleet-tamper", &[]),
            "share fetch",
        );
        assert_ok(
            &custodian.verify(&daemon, "fleet-tamper", &[]),
            "share verify",
        );
    }
    // verify is offline: it works with rkmd gone.
    drop(daemon);
    let no_rkmd = dir.path().join("no-rkmd.sock");
    let daemon_gone = |custodian: &Custodian| {
        rkm_with_env(
            &no_rkmd,
            &[],
            &custodian.share_command("verify", "fleet-tamper"),
        )
    };
    assert_ok(&daemon_gone(bob), "offline verify");

    let bob_share = bob.key_folder(&key_id).join("share.age");
    let bob_record = bob.key_folder(&key_id).join("key-record.json");
    let original_share = std::fs::read(&bob_share).unwrap();
    let original_record = std::fs::read_to_string(&bob_record).unwrap();

    // A flipped bit in the envelope's payload.
    let mut tampered = original_share.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    std::fs::write(&bob_share, &tampered).unwrap();
    assert_fails(
        &daemon_gone(bob),
        7,
        &["share envelope does not open"],
        "tampered envelope",
    );

    // alice's envelope in bob's folder.
    std::fs::copy(alice.key_folder(&key_id).join("share.age"), &bob_share).unwrap();
    assert_fails(
        &daemon_gone(bob),
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
    assert_fails(
        &daemon_gone(bob),
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
    assert_fails(
        &daemon_gone(bob),
        7,
        &["key record does not verify"],
        "bad signature",
    );

    std::fs::write(&bob_record, &original_record).unwrap();
    let restored = assert_ok(&daemon_gone(bob), "verify after restoring the files");
    assert!(restored.contains("intact"), "{restored}");
}

#[test]
fn key_create_refuses_bad_thresholds_and_custodian_lists() {
    let daemon = Daemon::start_tls().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let custodians = custodians_with_fast_identities(dir.path(), &["alice", "bob", "carol"]);
    enrol_all(&daemon, &custodians);
    // The same card twice, and another card with a taken name, are refused.
    assert_fails(
        &custodians[0].enrol(&daemon),
        6,
        &["already enrolled"],
        "enrol twice",
    );
    assert_ok(
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
    // (what, label, threshold, custodians, exit code, in the message)
    let refusals: [(_, _, _, _, _, &[&str]); 9] = [
        // Custodians review the label: it may not reorder or hide what they read.
        (
            "bidi override in the label",
            "fleet\u{202E}1gol",
            "2",
            "alice,bob",
            6,
            &["is not valid", "letters, digits"],
        ),
        (
            "zero-width space in the label",
            "fle\u{200B}et",
            "2",
            "alice,bob",
            6,
            &["is not valid", "letters, digits"],
        ),
        (
            "label shaped like a key id",
            "rk-0011223344556677",
            "2",
            "alice,bob",
            6,
            &["is not valid", "key ids do"],
        ),
        (
            "K = 1",
            "k1",
            "1",
            "alice,bob",
            6,
            &["threshold of 1", "--allow-single-custodian"],
        ),
        ("K = 0", "k0", "0", "alice,bob", 6, &["threshold of 0"]),
        (
            "K > N",
            "k3",
            "3",
            "alice,bob",
            6,
            &["threshold 3 is larger than the 2 custodians"],
        ),
        (
            "unknown custodian",
            "unknown",
            "2",
            "alice,mallory",
            5,
            &[
                "custodian \"mallory\" does not exist",
                "rkm custodian enrol",
            ],
        ),
        (
            "disabled custodian",
            "disabled",
            "2",
            "alice,carol",
            6,
            &["custodian \"carol\" is disabled", "left the company"],
        ),
        (
            "duplicate custodian",
            "dup",
            "2",
            "alice,alice,bob",
            6,
            &["\"alice\" is listed twice (entries 1 and 2 of the custodian list)"],
        ),
    ];
    for (what, label, k, names, code, needles) in refusals {
        assert_fails(&create(label, k, names, &[]), code, needles, what);
    }
    let keys = assert_ok_json(
        &daemon.rkm(&["key", "list", "--output", "json"]).unwrap(),
        "key list",
    );
    assert_eq!(
        keys.as_array().unwrap().len(),
        0,
        "refusals create no key: {keys}"
    );

    // K = 1 only when asked for explicitly.
    let single = assert_ok_json(
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
    assert_fails(
        &create("single", "2", "alice,bob", &[]),
        6,
        &["already used"],
        "label in use",
    );
    // No daemon: exit 3 with a hint.
    let gone = rkm_with_env(&dir.path().join("no-rkmd.sock"), &[], &["key", "list"]);
    assert_fails(&gone, 3, &["is rkmd running?"], "no daemon");
}
