//! rkmd stopped (SIGTERM) while `rkm recovery collect` streams the artefact:
//! the collector says that rkmd stopped, keeps what it has, exits 3, and the
//! same command after the restart resumes and yields a verifying bundle.

use std::time::{Duration, Instant};

use rkm_tests::Daemon;
use rkm_tests::custodians::{
    assert_fails, assert_ok, assert_ok_json, custodians_with_fast_identities, enrol_and_create_key,
    fetch_all, open_manifest_recovery, path_str, text,
};

const LABEL: &str = "fleet";

#[test]
fn a_collector_attached_when_rkmd_stops_keeps_its_bytes_and_resumes_after_the_restart() {
    let mut daemon = Daemon::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let custodians = custodians_with_fast_identities(dir.path(), &["alice", "bob"]);
    let key_id = enrol_and_create_key(&daemon, &custodians, LABEL, 2);
    fetch_all(&daemon, &custodians, LABEL, &[]);
    let id = open_manifest_recovery(&daemon, dir.path(), LABEL, 50_000);
    for custodian in &custodians {
        assert_ok_json(&custodian.approve(&daemon, &id), "approval");
    }
    let out = dir.path().join("artefact.rkma");
    let partial = dir.path().join("artefact.rkma.partial");
    let collector = daemon
        .command("rkm")
        .args(["recovery", "collect", &id, "-o", path_str(&out)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&partial).map_or(0, |m| m.len()) < 64 * 1024 {
        assert!(Instant::now() < deadline, "the collector received nothing");
        std::thread::sleep(Duration::from_millis(10));
    }
    daemon.stop_with("TERM").unwrap();
    let stopped = collector.wait_with_output().unwrap();
    let said = assert_fails(
        &stopped,
        3,
        &[
            "rkmd is stopping",
            "bytes are kept in",
            "run the same collect again once rkmd serves, and it resumes",
        ],
        "a collector whose rkmd stopped",
    );
    assert!(
        !said.contains("No such file or directory (os error 2)\n"),
        "{said}"
    );
    assert!(!out.exists(), "no artefact is taken for whole");
    let kept = std::fs::metadata(&partial).unwrap().len();
    assert!(kept > 0, "the bytes received are kept");

    daemon.serve().unwrap();
    let collected = assert_ok_json(
        &daemon
            .rkm(&[
                "recovery",
                "collect",
                &id,
                "-o",
                path_str(&out),
                "--output",
                "json",
            ])
            .unwrap(),
        "collect after the restart",
    );
    assert_eq!(collected["commands"], 50_000, "{collected}");
    let record = custodians[0].key_record_file(&key_id);
    let verified = daemon
        .rkm(&[
            "artefact",
            "verify",
            path_str(&out),
            "--key-record",
            path_str(&record),
            "--audit-key",
            &rkm_tests::custodians::audit_key(&daemon),
        ])
        .unwrap();
    assert_ok(&verified, "artefact verify");
    eprintln!("kept {kept} bytes at the stop; {}", text(&verified.stdout));
}
