//! Writes the golden files that `tests/tests/golden_files.rs` opens and
//! verifies with every later version of rkm: two custodians' identities
//! (from fixed seeds) and cards, their share folders (envelope and key
//! record), an artefact of a two-device recovery and the audit log — made by
//! the real rkmd on SoftHSM, through the real rkm.
//!
//! ```sh
//! cargo build --bins && cargo run -p rkm-tests --example make_golden -- tests/golden/v1
//! ```
//!
//! Run once per format version, into a new folder; never over a committed
//! one: their point is that they do not change.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use rkm_proto::identity::CustodianIdentity;
use rkm_tests::custodians::{
    FAST_WORK_FACTOR, assert_ok, assert_ok_json, audit_key, create_key, enrol_all, fetch_all,
    key_id_of, open_small_recovery, path_str, small_request_file, wait_for_recovery_state,
};
use rkm_tests::{Custodian, Daemon};
use secrecy::SecretString;
use serde_json::json;

/// The identity of `name` from a fixed seed, with the test passphrase.
fn custodian_from_seed(dir: &Path, name: &str, seed_byte: u8) -> anyhow::Result<Custodian> {
    let custodian = Custodian::new(dir, name);
    let identity = CustodianIdentity::generate(name, &[seed_byte; 64])?;
    let file = identity.encrypt_with_work_factor(
        &SecretString::from(custodian.passphrase.as_str()),
        FAST_WORK_FACTOR,
    )?;
    std::fs::write(&custodian.identity, file)?;
    std::fs::write(&custodian.card, identity.card().to_json())?;
    Ok(custodian)
}

fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .context("usage: make_golden OUTPUT_DIR (e.g. tests/golden/v1)")?,
    );
    ensure!(
        !out.exists(),
        "{} exists: golden files are written once, into a new folder",
        out.display()
    );
    std::fs::create_dir_all(&out)?;
    let daemon = Daemon::start()?;
    let custodians = vec![
        custodian_from_seed(&out, "alice", 0xa1)?,
        custodian_from_seed(&out, "bob", 0xb0)?,
    ];
    enrol_all(&daemon, &custodians);
    let key_id = key_id_of(&create_key(&daemon, "golden", 2, &["alice", "bob"]));
    fetch_all(&daemon, &custodians, "golden", &[]);
    let request = small_request_file(&out, "601d");
    let opened = open_small_recovery(&daemon, "golden", &request);
    let id = opened["ceremony_id"]
        .as_str()
        .context("ceremony id")?
        .to_owned();
    for custodian in &custodians {
        assert_ok_json(&custodian.approve(&daemon, &id), "approval");
    }
    wait_for_recovery_state(&daemon, &id, "completed", Duration::from_secs(60));
    let artefact = out.join("artefact.rkma");
    assert_ok(
        &daemon.rkm(&["recovery", "collect", &id, "-o", path_str(&artefact)])?,
        "collect",
    );
    let verifier = audit_key(&daemon);
    let log = out.join("audit.log");
    assert_ok(
        &daemon.rkm(&[
            "audit",
            "fetch",
            "--out",
            path_str(&log),
            "--audit-key",
            &verifier,
        ])?,
        "audit fetch",
    );
    let mut expected = json!({
        "key_id": key_id,
        "audit_key": verifier,
        "ceremony_id": id,
        "artefact_targets": 2,
        "rkm_version": env!("CARGO_PKG_VERSION"),
    });
    for custodian in &custodians {
        let shown = assert_ok_json(
            &daemon.rkm(&[
                "custodian",
                "show",
                "--card",
                path_str(&custodian.card),
                "--output",
                "json",
            ])?,
            "custodian show",
        );
        let mut args = custodian.share_command("verify", &key_id);
        args.extend(["--output", "json"]);
        let verified = assert_ok_json(&daemon.rkm(&args)?, "share verify");
        expected[&custodian.name] = json!({ "card": shown, "share": verified });
    }
    std::fs::write(
        out.join("expected.json"),
        serde_json::to_string_pretty(&expected)? + "\n",
    )?;
    std::fs::remove_file(&request)?;
    println!("golden files in {}", out.display());
    Ok(())
}
