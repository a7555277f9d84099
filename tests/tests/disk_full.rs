//! A full disk, for real: rkmd's state directory on its own small tmpfs
//! (root, as CI runs), so writes fail with ENOSPC from the kernel. An
//! artefact that will not fit is refused when the recovery is opened, with
//! the numbers; a disk that fills while rkmd signs fails the ceremony with
//! the cause named, destroys its held shares, leaves no half-written
//! artefact, and tells the collector; below `store.min_free_mb` actions are
//! refused in advance and the refusal itself is recorded; and the audit log
//! verifies afterwards.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rkm_tests::custodians::{
    Custodian, assert_fails, assert_ok, assert_ok_json, audit_key, custodians_with_fast_identities,
    enrol_and_create_key, fetch_all, manifest_request_files, path_str, wait_for_audit_entry,
    wait_for_recovery_state,
};
use rkm_tests::{Daemon, DaemonBuilder};

const LABEL: &str = "fleet";

struct Setup {
    daemon: Daemon,
    dir: tempfile::TempDir,
    custodians: Vec<Custodian>,
}

fn setup(filesystem_mb: u64, min_free_mb: u64) -> Setup {
    let mut daemon = DaemonBuilder::default()
        .state_filesystem_mb(filesystem_mb)
        .uninitialised()
        .unwrap();
    daemon.set_env("RKM_STORE_MIN_FREE_MB", min_free_mb.to_string());
    assert_ok(&daemon.rkmd(&["init"]).unwrap(), "rkmd init");
    daemon.serve().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let custodians = custodians_with_fast_identities(dir.path(), &["alice", "bob"]);
    enrol_and_create_key(&daemon, &custodians, LABEL, 2);
    fetch_all(&daemon, &custodians, LABEL, &[]);
    Setup {
        daemon,
        dir,
        custodians,
    }
}

impl Setup {
    fn state(&self) -> PathBuf {
        self.daemon.state_dir()
    }

    /// Bytes free on the state directory's filesystem.
    fn free(&self) -> u64 {
        let stat = rustix::fs::statvfs(self.state()).unwrap();
        stat.f_bavail * stat.f_frsize
    }

    /// Fills the state directory's filesystem until `leave` bytes are free.
    fn fill_leaving(&self, leave: u64) -> PathBuf {
        let filler = self.state().join("filler");
        let size = self.free().saturating_sub(leave);
        let chunk = vec![0xa5u8; 1 << 16];
        let mut file = std::fs::File::create(&filler).unwrap();
        let mut written = 0;
        while written < size {
            let n = (size - written).min(chunk.len() as u64) as usize;
            use std::io::Write as _;
            if file.write_all(&chunk[..n]).is_err() {
                break;
            }
            written += n as u64;
        }
        file.sync_all().ok();
        filler
    }

    fn open(&self, count: usize) -> std::process::Output {
        let (request, manifest) = manifest_request_files(self.dir.path(), count);
        self.daemon
            .rkm(&[
                "recovery",
                "open",
                "--key",
                LABEL,
                "--request",
                path_str(&request),
                "--targets",
                path_str(&manifest),
                "--expires",
                "1h",
                "--output",
                "json",
            ])
            .unwrap()
    }
}

fn artefacts(state: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(state.join("artefacts"))
        .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
        .unwrap_or_default()
}

#[test]
fn an_artefact_that_will_not_fit_is_refused_when_the_recovery_is_opened() {
    let setup = setup(32, 0);
    let free_before = setup.free();
    let refused = setup.open(100_000);
    let stderr = assert_fails(
        &refused,
        3,
        &["the artefact of 100000 commands needs", "free space there"],
        "a recovery whose artefact does not fit",
    );
    eprintln!("{stderr}");
    let listed = assert_ok(&setup.daemon.rkm(&["recovery", "list"]).unwrap(), "list");
    assert!(listed.contains("no recovery ceremonies"), "{listed}");
    wait_for_audit_entry(&setup.daemon, "recovery.open", "the refusal", |entry| {
        entry["outcome"] == "refused"
            && entry["details"]["reason"]
                .as_str()
                .is_some_and(|reason| reason.contains("the artefact of 100000 commands"))
    });
    eprintln!("free before {free_before}, after {}", setup.free());
}

#[test]
fn a_disk_that_fills_while_signing_fails_the_ceremony_naming_the_cause_and_the_log_verifies() {
    let setup = setup(48, 0);
    let opened = assert_ok_json(&setup.open(20_000), "recovery open");
    let id = opened["ceremony_id"].as_str().unwrap().to_owned();
    assert_ok_json(
        &setup.custodians[0].approve(&setup.daemon, &id),
        "first approval",
    );
    // 1.5 MiB left: the second approval commits, the 3 MiB artefact does not fit.
    let filler = setup.fill_leaving(3 << 19);
    assert_ok_json(
        &setup.custodians[1].approve(&setup.daemon, &id),
        "the approval that starts the signing",
    );
    let failed = wait_for_recovery_state(&setup.daemon, &id, "failed", Duration::from_secs(60));
    let failure = failed["failure"].as_str().unwrap_or_default().to_owned();
    eprintln!("failure: {failure}");
    assert!(
        failure.contains("full") && failure.contains("open the recovery again"),
        "{failure}"
    );
    // Nothing half-written is left to be taken for whole, and the shares
    // held for the ceremony are gone.
    assert!(
        artefacts(&setup.state()).is_empty(),
        "{:?}",
        artefacts(&setup.state())
    );
    let held: i64 = rusqlite::Connection::open(setup.state().join("rkm.sqlite3"))
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM approvals WHERE ceremony_id = ?1 AND held_share IS NOT NULL",
            [&id],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(held, 0, "held shares destroyed");
    // The collector is told, at once, why there is no artefact.
    let out = setup.dir.path().join("artefact.rkma");
    assert_fails(
        &setup
            .daemon
            .rkm(&["recovery", "collect", &id, "-o", path_str(&out)])
            .unwrap(),
        6,
        &["full", "open the recovery again"],
        "collecting a recovery that failed on a full disk",
    );
    assert!(setup.daemon.log().contains("No space left on device"));
    wait_for_audit_entry(&setup.daemon, "recovery.fail", "the failure", |entry| {
        entry["subject"] == id.as_str()
            && entry["details"]["reason"]
                .as_str()
                .is_some_and(|reason| reason.contains("full"))
    });

    // With the space back, the audit log verifies whole.
    std::fs::remove_file(filler).unwrap();
    let key = audit_key(&setup.daemon);
    let log = setup.dir.path().join("audit.log");
    assert_ok(
        &setup
            .daemon
            .rkm(&[
                "audit",
                "fetch",
                "--out",
                path_str(&log),
                "--audit-key",
                &key,
            ])
            .unwrap(),
        "audit fetch",
    );
    assert_ok(
        &setup
            .daemon
            .rkm(&["audit", "verify", path_str(&log), "--audit-key", &key])
            .unwrap(),
        "audit verify",
    );
}

#[test]
fn below_store_min_free_mb_actions_are_refused_in_advance_and_the_refusals_recorded() {
    let setup = setup(48, 3);
    let opened = assert_ok_json(&setup.open(5), "recovery open");
    let id = opened["ceremony_id"].as_str().unwrap().to_owned();
    // 2 MiB free: below the 3 MiB floor, above the reserve's threshold.
    let filler = setup.fill_leaving(2 << 20);
    let note = || {
        setup
            .daemon
            .rkm(&["audit", "note", "--message", "HSM room inspected"])
            .unwrap()
    };
    let needles = ["store.min_free_mb keeps 3 MiB free", "free space there"];
    assert_fails(&note(), 3, &needles, "an audit note below the floor");
    assert_fails(
        &setup.custodians[0].approve(&setup.daemon, &id),
        3,
        &needles,
        "an approval below the floor",
    );
    assert_fails(
        &setup.open(5),
        3,
        &needles,
        "opening a recovery below the floor",
    );
    for action in ["audit.note", "recovery.open"] {
        wait_for_audit_entry(&setup.daemon, action, "the refusal", |entry| {
            entry["outcome"] == "refused"
                && entry["details"]["reason"]
                    .as_str()
                    .is_some_and(|reason| reason.contains("store.min_free_mb"))
        });
    }
    let shown = assert_ok_json(
        &setup
            .daemon
            .rkm(&["recovery", "show", &id, "--output", "json"])
            .unwrap(),
        "recovery show",
    );
    assert_eq!(
        shown["approvals"].as_array().map(Vec::len),
        Some(0),
        "{shown}"
    );

    // Space back: the same actions go through, without a restart.
    std::fs::remove_file(filler).unwrap();
    assert_ok(&note(), "an audit note with room again");
    assert_ok_json(
        &setup.custodians[0].approve(&setup.daemon, &id),
        "an approval with room again",
    );
}
