//! Bad input as a new user or a hostile caller gives it, each finding of the
//! "bad input" issue with the exit code, the message and, where the refusal
//! reaches rkmd, its audit entry: a device listed twice in a recovery
//! request is refused naming both places (it would get two signed
//! commands); an over-long manifest line is quoted from its start; a
//! passphrase file others can read is refused with the chmod to run.

use std::path::Path;

use rkm_tests::custodians::{
    assert_fails, assert_ok, custodians_with_fast_identities, enrol_and_create_key, fetch_all,
    path_str, small_request_file, wait_for_audit_entry,
};
use rkm_tests::{Daemon, write_secret_file};
use sha2::Digest as _;

const LABEL: &str = "fleet-root";

/// A serving rkmd with an active 2-of-2 key.
fn with_key(dir: &Path) -> Daemon {
    let daemon = Daemon::start().unwrap();
    let custodians = custodians_with_fast_identities(dir, &["alice", "bob"]);
    enrol_and_create_key(&daemon, &custodians, LABEL, 2);
    fetch_all(&daemon, &custodians, LABEL, &[]);
    daemon
}

fn open_with_manifest(daemon: &Daemon, request: &Path, manifest: &Path) -> std::process::Output {
    daemon
        .rkm(&[
            "recovery",
            "open",
            "--key",
            LABEL,
            "--request",
            path_str(request),
            "--targets",
            path_str(manifest),
            "--expires",
            "1h",
        ])
        .unwrap()
}

/// A request with no inline targets.
fn request_without_targets(dir: &Path) -> std::path::PathBuf {
    let file = small_request_file(dir, "0c");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("targets = [\"meter-1\", \"meter-2\"]\n", "");
    std::fs::write(&file, text).unwrap();
    file
}

fn assert_nothing_opened(daemon: &Daemon) {
    let listed = assert_ok(&daemon.rkm(&["recovery", "list"]).unwrap(), "list");
    assert!(listed.contains("no recovery ceremonies"), "{listed}");
}

#[test]
fn a_manifest_longer_than_recovery_max_targets_is_refused_at_the_first_device_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = with_key(dir.path());
    daemon.stop_with("TERM").unwrap();
    daemon.set_env("RKM_RECOVERY_MAX_TARGETS", "1000");
    daemon.serve().unwrap();
    let request = request_without_targets(dir.path());
    let manifest = |count: usize| {
        let file = dir.path().join(format!("devices-{count}.txt"));
        let lines: String = (0..count).map(|i| format!("meter-{i}\n")).collect();
        std::fs::write(&file, format!("# one district\n{lines}")).unwrap();
        file
    };
    assert_fails(
        &open_with_manifest(&daemon, &request, &manifest(1001)),
        6,
        &[
            "manifest line 1002",
            "more than 1000 devices",
            "recovery.max_targets",
            "split the devices over several recoveries",
        ],
        "a manifest of 1,001 devices with recovery.max_targets = 1000",
    );
    assert_nothing_opened(&daemon);
    wait_for_audit_entry(&daemon, "recovery.open", "the refused request", |entry| {
        entry["outcome"] == "refused"
            && entry["details"]["reason"]
                .as_str()
                .is_some_and(|reason| reason.contains("more than 1000 devices"))
    });
    assert_ok(
        &open_with_manifest(&daemon, &request, &manifest(1000)),
        "a manifest of exactly 1,000 devices",
    );
}

#[test]
fn a_device_listed_twice_is_refused_naming_both_places_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = with_key(dir.path());
    let manifest = dir.path().join("devices.txt");
    std::fs::write(&manifest, "# district 7\nmeter-1\nmeter-2\n\nmeter-1\n").unwrap();
    let request = request_without_targets(dir.path());
    assert_fails(
        &open_with_manifest(&daemon, &request, &manifest),
        6,
        &[
            "device \"meter-1\" is listed twice",
            "manifest line 2",
            "manifest line 5",
            "remove one",
        ],
        "a manifest listing meter-1 twice",
    );
    assert_nothing_opened(&daemon);
    wait_for_audit_entry(&daemon, "recovery.open", "the refused request", |entry| {
        entry["outcome"] == "refused"
            && entry["details"]["reason"]
                .as_str()
                .is_some_and(|reason| reason.contains("listed twice"))
    });

    // Listed once in the request and once in the manifest.
    let inline = small_request_file(dir.path(), "0d");
    let manifest = dir.path().join("more.txt");
    std::fs::write(&manifest, "meter-3\nmeter-2\n").unwrap();
    assert_fails(
        &open_with_manifest(&daemon, &inline, &manifest),
        6,
        &[
            "\"meter-2\"",
            "`targets` entry 2 of the request",
            "manifest line 2",
        ],
        "meter-2 in the request and in the manifest",
    );
    assert_nothing_opened(&daemon);
}

#[test]
fn an_over_long_manifest_line_is_quoted_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = with_key(dir.path());
    let manifest = dir.path().join("devices.txt");
    let mut text = b"meter-1\nmeter-2-".to_vec();
    text.extend(std::iter::repeat_n(b'7', 10 * 1024 * 1024));
    text.extend(b"\nmeter-3\n");
    std::fs::write(&manifest, text).unwrap();
    let stderr = assert_fails(
        &open_with_manifest(&daemon, &request_without_targets(dir.path()), &manifest),
        6,
        &["line 2", "\"meter-2-777", "longer than 128 bytes"],
        "a manifest with a 10 MB line",
    );
    assert!(stderr.len() < 2048, "the excerpt is bounded: {stderr}");
    assert_nothing_opened(&daemon);
}

#[test]
fn a_passphrase_file_others_can_read_is_refused_with_the_chmod_to_run() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start().unwrap();
    let passphrase = dir.path().join("passphrase");
    let identity = dir.path().join("alice.identity");
    write_secret_file(&passphrase, "correct horse battery staple\n");
    std::fs::set_permissions(&passphrase, std::fs::Permissions::from_mode(0o644)).unwrap();
    let init = |identity: &Path| {
        daemon
            .rkm(&[
                "custodian",
                "init",
                "--name",
                "alice",
                "--identity",
                path_str(identity),
                "--card",
                path_str(&dir.path().join("alice.card")),
                "--passphrase-file",
                path_str(&passphrase),
            ])
            .unwrap()
    };
    let stderr = assert_fails(
        &init(&identity),
        1,
        &["can be read by others (mode 0644)", "chmod 600"],
        "custodian init with a 0644 passphrase file",
    );
    assert!(!stderr.contains("correct horse"), "{stderr}");
    assert!(!identity.exists(), "no identity was written");

    std::fs::set_permissions(&passphrase, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_ok(&init(&identity), "custodian init after chmod 600");
}

/// `rkm status` on `daemon`'s socket as a user the socket does not admit:
/// `nobody` when the test runs as root (root passes every permission
/// check), else this user after `deny` took the permission away.
fn status_as_another_user(daemon: &Daemon) -> std::process::Output {
    use std::os::unix::process::CommandExt as _;
    let mut command = std::process::Command::new(rkm_tests::binaries::binary("rkm"));
    rkm_tests::binaries::with_clean_env(&mut command);
    command.env("RKM_SOCKET", daemon.socket()).arg("status");
    if rustix::process::getuid().is_root() {
        command.uid(65534).gid(65534);
    }
    command.output().unwrap()
}

#[test]
fn a_socket_the_user_may_not_open_exits_4_saying_so_not_that_rkmd_is_down() {
    use std::os::unix::fs::PermissionsExt as _;
    let daemon = Daemon::start().unwrap();
    let as_root = rustix::process::getuid().is_root();
    let state = daemon.state_dir();
    let set_mode = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    // The state directory is shut to the user (0700 of another user).
    if !as_root {
        set_mode(&state, 0o000);
    }
    let shut_directory = status_as_another_user(&daemon);
    set_mode(&state, 0o700);
    // The directory is open, but the socket is not (0600 of another user).
    set_mode(&state, 0o755);
    if !as_root {
        set_mode(&daemon.socket(), 0o000);
    }
    let shut_socket = status_as_another_user(&daemon);
    set_mode(&daemon.socket(), 0o600);
    set_mode(&state, 0o700);
    for (output, what) in [
        (shut_directory, "a state directory the user may not enter"),
        (shut_socket, "a socket the user may not open"),
    ] {
        let stderr = assert_fails(
            &output,
            4,
            &["permission denied on rkmd's socket", "listen.socket_group"],
            what,
        );
        assert!(
            !stderr.contains("is rkmd running") && !stderr.contains("does not exist"),
            "{what}: {stderr}"
        );
    }
    assert_ok(&daemon.rkm(&["status"]).unwrap(), "status as rkmd's user");
}

#[test]
fn a_truncated_key_record_in_the_share_directory_is_named_as_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start().unwrap();
    let custodians = custodians_with_fast_identities(dir.path(), &["alice", "bob"]);
    let key_id = enrol_and_create_key(&daemon, &custodians, LABEL, 2);
    fetch_all(&daemon, &custodians, LABEL, &[]);
    let record = custodians[0].key_record_file(&key_id);
    let text = std::fs::read(&record).unwrap();
    std::fs::write(&record, &text[..text.len() / 2]).unwrap();
    let stderr = assert_fails(
        &custodians[0].verify(&daemon, LABEL, &[]),
        7,
        &["damaged", &record.display().to_string(), "rkm share fetch"],
        "share verify with a truncated key record",
    );
    assert!(!stderr.contains("no share for key"), "{stderr}");
}

#[test]
fn oversized_names_and_labels_get_a_clear_bounded_refusal_that_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start().unwrap();
    let custodians = custodians_with_fast_identities(dir.path(), &["alice", "bob"]);
    for custodian in &custodians {
        assert_ok(&custodian.enrol(&daemon), "enrol");
    }
    // Refused from the field's header, before the value is buffered: the
    // field and the limit named, exit 6, audited with length and digest.
    let label = "l".repeat(100 * 1024);
    let stderr = assert_fails(
        &daemon
            .rkm(&[
                "key",
                "create",
                "--label",
                &label,
                "--threshold",
                "2",
                "--custodians",
                "alice,bob",
            ])
            .unwrap(),
        6,
        &["field `label` of CreateKeyRequest is 102400 bytes; the limit is 64 bytes"],
        "key create with a 100 KB label",
    );
    assert!(stderr.len() < 4096, "{} bytes: {stderr:.300}", stderr.len());
    assert!(!stderr.contains("h2 protocol error"), "{stderr:.300}");

    let name = "n".repeat(20_000);
    let stderr = assert_fails(
        &daemon
            .rkm(&["custodian", "disable", &name, "--reason", "gone"])
            .unwrap(),
        6,
        &["field `name` of DisableCustodianRequest is 20000 bytes; the limit is 64 bytes"],
        "custodian disable with a 20,000-byte name",
    );
    assert!(stderr.len() < 4096, "{} bytes: {stderr:.300}", stderr.len());

    // Both refusals are in the log, the long values by start, length and
    // digest.
    let recorded = |field: &str, value: &str| {
        let sha256 = hex::encode(sha2::Sha256::digest(value.as_bytes()));
        wait_for_audit_entry(&daemon, "access.refused", field, |entry| {
            let details = &entry["details"];
            details["field"] == field
                && details["length"].as_str() == Some(value.len().to_string().as_str())
                && details["value_sha256"] == sha256
                && details["value_start"] == value[..64]
        });
    };
    recorded("label", &label);
    recorded("name", &name);
}
