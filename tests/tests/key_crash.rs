//! rkmd killed (SIGKILL) in the middle of `rkm key create`, at a spread of
//! moments, then started again: the token holds only rkm's own objects
//! (listed through PKCS#11), the store says plainly whether the key exists,
//! an interrupted ceremony is failed and audited at the next start, and the
//! operator's retry either succeeds or says that the first attempt did.
//! Also: what a crash inside `C_CreateObject` leaves of a checkpoint object is
//! found and removed at start.

use std::time::Duration;

use rkm_tests::custodians::{
    assert_fails, assert_ok, assert_ok_json, audit_entries, custodians_with_fast_identities,
    enrol_all, text,
};
use rkm_tests::env::use_token_in_this_process;
use rkm_tests::token_objects::{
    expect_only_rkm_objects, list_token_objects, plant_half_made_data_object,
};
use rkm_tests::{Daemon, DaemonBuilder};

fn create(daemon: &Daemon, label: &str) -> std::process::Child {
    daemon
        .command("rkm")
        .args(["key", "create", "--label", label, "--threshold", "2"])
        .args(["--custodians", "alice,bob", "--output", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_half_made_checkpoint_object_is_removed_when_rkmd_starts() {
    let mut daemon = DaemonBuilder::default().initialised().unwrap();
    use_token_in_this_process(&daemon.token);
    plant_half_made_data_object(&daemon.token).unwrap();
    let planted = list_token_objects(&daemon.token).unwrap();
    assert!(
        planted
            .iter()
            .any(|o| o.label.is_empty() && o.class == "CKO_DATA"),
        "{planted:#?}"
    );

    daemon.serve().unwrap();
    daemon.stop_with("TERM").unwrap();
    expect_only_rkm_objects(&daemon.token).unwrap();
    assert!(
        daemon.log().contains("removed half-made data objects"),
        "{}",
        daemon.log()
    );
    daemon.serve().unwrap();
    let starts = audit_entries(&daemon, "daemon.start");
    assert!(
        starts
            .iter()
            .any(|entry| entry["details"]["half_made_objects_removed"].as_str() == Some("1")),
        "{starts:#?}"
    );
}

#[test]
fn rkmd_killed_during_key_create_leaves_no_orphan_and_says_whether_the_key_exists() {
    let mut daemon = Daemon::start().unwrap();
    use_token_in_this_process(&daemon.token);
    let dir = tempfile::tempdir().unwrap();
    let custodians = custodians_with_fast_identities(dir.path(), &["alice", "bob"]);
    enrol_all(&daemon, &custodians);

    let mut created = 0;
    let mut interrupted = 0;
    for (round, delay_ms) in [0u64, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 20, 40, 80, 150]
        .into_iter()
        .enumerate()
    {
        let label = format!("fleet-{round}");
        let client = create(&daemon, &label);
        std::thread::sleep(Duration::from_millis(delay_ms));
        daemon.stop_with("KILL").unwrap();
        let answered = client.wait_with_output().unwrap();
        let said = text(&answered.stderr);
        // Whatever the client saw, it is never the bare exit 1 of a
        // transport error: it succeeded, or it exits 3 saying what to check.
        match answered.status.code() {
            Some(0) => {}
            Some(3) => assert!(
                said.contains("is rkmd running") || said.contains(&format!("rkm key show {label}")),
                "round {round} ({delay_ms} ms): {said}"
            ),
            other => panic!("round {round} ({delay_ms} ms): exit {other:?}: {said}"),
        }

        eprintln!(
            "round {round} ({delay_ms} ms): exit {:?} {}",
            answered.status.code(),
            said.lines().next().unwrap_or("")
        );
        daemon.serve().unwrap();
        let shown = daemon
            .rkm(&["key", "show", &label, "--output", "json"])
            .unwrap();
        let retry = daemon
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
            .unwrap();
        match shown.status.code() {
            Some(0) => {
                created += 1;
                assert_fails(
                    &retry,
                    6,
                    &[
                        "if you are retrying an interrupted `rkm key create`, that ceremony completed",
                        &format!("rkm key show {label}"),
                    ],
                    "retrying a create that completed",
                );
            }
            Some(5) => {
                assert_ne!(
                    answered.status.code(),
                    Some(0),
                    "round {round}: reported created but not stored"
                );
                interrupted += 1;
                assert_ok(&retry, "retrying a create that never completed");
            }
            other => panic!(
                "round {round}: key show exit {other:?}: {}",
                text(&shown.stderr)
            ),
        }

        daemon.stop_with("TERM").unwrap();
        let listed = expect_only_rkm_objects(&daemon.token)
            .unwrap_or_else(|error| panic!("round {round} ({delay_ms} ms): {error}"));
        drop(listed);
        daemon.serve().unwrap();
    }
    eprintln!("{created} creates completed before the kill, {interrupted} were cut short");

    // Every ceremony cut short was failed, with the reason, at the next start.
    let failed = audit_entries(&daemon, "ceremony.fail");
    let cut_short = failed
        .iter()
        .filter(|entry| entry["details"]["interrupted"].as_str() == Some("true"))
        .count();
    let opened = audit_entries(&daemon, "ceremony.open").len();
    let keys = assert_ok_json(
        &daemon.rkm(&["key", "list", "--output", "json"]).unwrap(),
        "key list",
    );
    let stored = keys.as_array().map_or(0, Vec::len);
    assert_eq!(
        opened,
        stored + cut_short,
        "each ceremony opened ended with a key or as interrupted: {failed:#?}"
    );
}
