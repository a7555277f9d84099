//! The HSM goes away while rkmd serves, and comes back: SoftHSM's token
//! directory is moved aside (its objects vanish from every session, as a
//! token pulled from its slot or an HSM partition lost would) and then put
//! back. rkmd notices on its own, says NOT_SERVING over `grpc.health.v1` and in
//! `rkm status` (exit 3), refuses every state change with exit 3 and the
//! cause — and records the refusals — then re-initialises the module when the
//! token is back, finds its objects by label, and serves again without a
//! restart. The audit log verifies afterwards, with the refusals in it.

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use rkm_client::connect::Target;
use rkm_tests::Daemon;
use rkm_tests::custodians::{
    Custodian, assert_fails, assert_ok, assert_ok_json, audit_key, custodians_with_fast_identities,
    enrol_and_create_key, fetch_all, open_manifest_recovery, open_small_recovery, path_str,
    small_request_file, wait_for_audit_entry, wait_for_recovery_state,
};
use tonic_health::pb::health_check_response::ServingStatus;

const LABEL: &str = "fleet";

/// The token's own directory under SoftHSM's token directory.
fn token_files(daemon: &Daemon) -> PathBuf {
    let tokens = daemon.token.dir().join("tokens");
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&tokens)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "one token in {}", tokens.display());
    entries.remove(0)
}

fn status(daemon: &Daemon) -> Output {
    daemon.rkm(&["status"]).unwrap()
}

/// Polls `rkm status` until it exits `code`; fails after `within`.
#[track_caller]
fn wait_for_status(daemon: &Daemon, code: i32, within: Duration) -> Output {
    let deadline = Instant::now() + within;
    loop {
        let output = status(daemon);
        if output.status.code() == Some(code) {
            return output;
        }
        assert!(
            Instant::now() < deadline,
            "rkm status did not exit {code} within {within:?}: {}\n{}\nrkmd log:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn health(daemon: &Daemon, service: &str) -> i32 {
    let socket = daemon.socket();
    let service = service.to_owned();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let channel = Target::Socket(socket).connect().await.unwrap();
            tonic_health::pb::health_client::HealthClient::new(channel)
                .check(tonic_health::pb::HealthCheckRequest { service })
                .await
                .unwrap()
                .into_inner()
                .status
        })
}

fn set_up() -> (Daemon, tempfile::TempDir, Vec<Custodian>) {
    let daemon = Daemon::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let custodians = custodians_with_fast_identities(dir.path(), &["alice", "bob"]);
    enrol_and_create_key(&daemon, &custodians, LABEL, 2);
    fetch_all(&daemon, &custodians, LABEL, &[]);
    (daemon, dir, custodians)
}

#[test]
fn a_token_that_goes_away_is_reported_refused_and_served_again_once_it_is_back() {
    let (daemon, dir, custodians) = set_up();
    let request = small_request_file(dir.path(), "0a");
    let opened = open_small_recovery(&daemon, LABEL, &request);
    let id = opened["ceremony_id"].as_str().unwrap().to_owned();
    assert_ok(&status(&daemon), "status while the token is there");
    assert_eq!(health(&daemon, ""), ServingStatus::Serving as i32);

    let files = token_files(&daemon);
    let aside = daemon.token.dir().join("aside");
    std::fs::rename(&files, &aside).unwrap();

    // Noticed without anyone asking (the probe), and said plainly.
    let down = wait_for_status(&daemon, 3, Duration::from_secs(20));
    let shown = String::from_utf8_lossy(&down.stdout).into_owned();
    let said = String::from_utf8_lossy(&down.stderr).into_owned();
    assert!(
        shown.contains("NOT SERVING since") && shown.contains("audit key"),
        "{shown}"
    );
    assert!(
        shown.contains("state changes (approvals, keys, notes) are refused"),
        "{shown}"
    );
    assert!(said.contains("rkmd's HSM is not serving"), "{said}");
    for service in ["", "rkm.v1.RecoveryService", "rkm.v1.KeyService"] {
        assert_eq!(
            health(&daemon, service),
            ServingStatus::NotServing as i32,
            "health of {service:?} during the outage"
        );
    }
    let json = assert_fails(
        &daemon.rkm(&["status", "--output", "json"]).unwrap(),
        3,
        &["HSM is not serving"],
        "status as JSON during the outage",
    );
    drop(json);

    // Every state change is refused with exit 3 and the cause: an approval
    // (whose share the HSM would hold), a key, a note, a recovery.
    let unavailable = ["the HSM is unavailable", "rkm status"];
    assert_fails(
        &custodians[0].approve(&daemon, &id),
        3,
        &unavailable,
        "an approval during the outage",
    );
    assert_fails(
        &daemon
            .rkm(&[
                "key",
                "create",
                "--label",
                "spare",
                "--threshold",
                "2",
                "--custodians",
                "alice,bob",
            ])
            .unwrap(),
        3,
        &unavailable,
        "a key ceremony during the outage",
    );
    assert_fails(
        &daemon
            .rkm(&["audit", "note", "--message", "during the outage"])
            .unwrap(),
        3,
        &["no signed audit checkpoint could cover it", "rkm status"],
        "an audit note during the outage",
    );
    let other = small_request_file(dir.path(), "0b");
    assert_fails(
        &daemon
            .rkm(&[
                "recovery",
                "open",
                "--key",
                LABEL,
                "--request",
                path_str(&other),
                "--expires",
                "1h",
            ])
            .unwrap(),
        3,
        &unavailable,
        "opening a recovery during the outage",
    );
    // Reads still answer.
    assert_ok(
        &daemon.rkm(&["key", "list"]).unwrap(),
        "key list during the outage",
    );

    // The token comes back: rkmd serves again on its own.
    std::fs::rename(&aside, &files).unwrap();
    let back = wait_for_status(&daemon, 0, Duration::from_secs(60));
    let shown = String::from_utf8_lossy(&back.stdout).into_owned();
    assert!(shown.contains("hsm         serving"), "{shown}");
    assert!(shown.contains("objects     0 session, 4 token"), "{shown}");
    assert_eq!(health(&daemon, ""), ServingStatus::Serving as i32);
    let log = daemon.log();
    assert!(log.contains("the HSM failed"), "{log}");
    assert!(log.contains("the HSM works again"), "{log}");

    // What was refused can now be done, and the recovery completes.
    assert_ok(
        &daemon
            .rkm(&["audit", "note", "--message", "after the outage"])
            .unwrap(),
        "an audit note after the outage",
    );
    assert_ok_json(&custodians[0].approve(&daemon, &id), "first approval after");
    assert_ok_json(
        &custodians[1].approve(&daemon, &id),
        "second approval after",
    );
    wait_for_recovery_state(&daemon, &id, "completed", Duration::from_secs(60));

    // The refusals are in the log, and the log verifies whole.
    for method in [
        "/rkm.v1.KeyService/CreateKey",
        "/rkm.v1.RecoveryService/OpenRecovery",
    ] {
        wait_for_audit_entry(&daemon, "access.refused", method, |entry| {
            entry["details"]["method"].as_str() == Some(method)
                && entry["details"]["refused_for"].as_str() == Some("hsm unavailable")
                && entry["details"]["reason"]
                    .as_str()
                    .is_some_and(|reason| reason.contains("the HSM is unavailable"))
        });
    }
    wait_for_audit_entry(&daemon, "audit.note", "the refused note", |entry| {
        entry["outcome"] == "refused"
            && entry["details"]["reason"]
                .as_str()
                .is_some_and(|reason| reason.contains("the HSM is unavailable"))
    });
    let key = audit_key(&daemon);
    let file = dir.path().join("audit.log");
    assert_ok(
        &daemon
            .rkm(&[
                "audit",
                "fetch",
                "--out",
                path_str(&file),
                "--audit-key",
                &key,
            ])
            .unwrap(),
        "audit fetch after the outage",
    );
    assert_ok(
        &daemon
            .rkm(&["audit", "verify", path_str(&file), "--audit-key", &key])
            .unwrap(),
        "audit verify after the outage",
    );
}

#[test]
fn a_token_lost_while_signing_fails_the_ceremony_by_name_and_the_next_one_signs() {
    let (daemon, dir, custodians) = set_up();
    let id = open_manifest_recovery(&daemon, dir.path(), LABEL, 200_000);
    assert_ok_json(&custodians[0].approve(&daemon, &id), "first approval");
    assert_ok_json(&custodians[1].approve(&daemon, &id), "second approval");
    // Wait until signing has written part of the artefact, then pull the token.
    let artefact = daemon.state_dir().join("artefacts");
    let deadline = Instant::now() + Duration::from_secs(60);
    let started = || {
        std::fs::read_dir(&artefact).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|entry| entry.metadata().is_ok_and(|m| m.len() > 64 * 1024))
        })
    };
    while !started() {
        assert!(Instant::now() < deadline, "signing never started writing");
        std::thread::sleep(Duration::from_millis(20));
    }
    let files = token_files(&daemon);
    let aside = daemon.token.dir().join("aside");
    std::fs::rename(&files, &aside).unwrap();

    let failed = wait_for_recovery_state(&daemon, &id, "failed", Duration::from_secs(60));
    let failure = failed["failure"].as_str().unwrap_or_default().to_owned();
    assert!(
        failure.contains("the HSM became unavailable while signing")
            && failure.contains("held shares were destroyed")
            && failure.contains("open the recovery again"),
        "{failure}"
    );
    let out = dir.path().join("artefact.rkma");
    assert_fails(
        &daemon
            .rkm(&["recovery", "collect", &id, "-o", path_str(&out)])
            .unwrap(),
        6,
        &["the HSM became unavailable while signing"],
        "collecting a recovery the outage failed",
    );
    assert!(!out.exists(), "no artefact is handed out");

    std::fs::rename(&aside, &files).unwrap();
    wait_for_status(&daemon, 0, Duration::from_secs(60));
    let again = small_request_file(dir.path(), "0d");
    let opened = open_small_recovery(&daemon, LABEL, &again);
    let again = opened["ceremony_id"].as_str().unwrap().to_owned();
    assert_ok_json(
        &custodians[0].approve(&daemon, &again),
        "first approval again",
    );
    assert_ok_json(
        &custodians[1].approve(&daemon, &again),
        "second approval again",
    );
    wait_for_recovery_state(&daemon, &again, "completed", Duration::from_secs(60));
    wait_for_audit_entry(&daemon, "recovery.fail", "the failure", |entry| {
        entry["subject"] == id.as_str()
    });
}

#[test]
fn a_pin_changed_during_an_outage_stops_the_retries_instead_of_locking_it() {
    let daemon = Daemon::start().unwrap();
    rkm_tests::env::use_token_in_this_process(&daemon.token);
    rkm_tests::token_objects::change_user_pin(&daemon.token, "another-pin-4711").unwrap();
    // rkmd's sessions stay logged in; the next login, after an outage, fails.
    let files = token_files(&daemon);
    let aside = daemon.token.dir().join("aside");
    std::fs::rename(&files, &aside).unwrap();
    wait_for_status(&daemon, 3, Duration::from_secs(20));
    std::fs::rename(&aside, &files).unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    let shown = loop {
        let output = status(&daemon);
        let shown = String::from_utf8_lossy(&output.stdout).into_owned();
        if shown.contains("rkmd stopped retrying") {
            assert_eq!(output.status.code(), Some(3), "{shown}");
            break shown;
        }
        assert!(Instant::now() < deadline, "{shown}\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(
        shown.contains("rejected the user PIN")
            && shown.contains("correct hsm.pin_file and restart rkmd"),
        "{shown}"
    );
    // One failed login, not one per attempt: the PIN is not locked.
    let log = daemon.log();
    let logins_refused = log
        .lines()
        .filter(|line| {
            line.contains("the HSM is still unavailable") && line.contains("rejected the user PIN")
        })
        .count();
    assert_eq!(logins_refused, 1, "{log}");
}
