//! `rkm audit` without a daemon: the help text and usage errors (golden), and
//! the offline `verify` and `show` on synthetic signed logs — summaries,
//! JSON, and exit code 7 for a file that does not verify.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::synthetic;
use serde_json::Value;

fn rkm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rkm"))
        .args(args)
        .env_remove("RKM_SOCKET")
        .env_remove("RKM_ENDPOINT")
        .env_remove("RKM_AUDIT_KEY")
        .env("RKM_STATE_DIR", "/nonexistent/rkm-state")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A synthetic log of `entries` entries in `dir`, and its audit key.
fn synthetic_log(dir: &Path, entries: u64, every: u64) -> (std::path::PathBuf, String) {
    let file = dir.join("audit.log");
    let key = synthetic::generate(&file, entries, every).unwrap();
    (file, key.to_string())
}

#[test]
fn audit_help_lists_the_verbs_golden() {
    let output = rkm(&["audit", "--help"]);
    assert!(output.status.success());
    let help = stdout(&output);
    let commands: String = help
        .split("Commands:\n")
        .nth(1)
        .unwrap()
        .split("\n\n")
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        commands,
        "  fetch   Fetch the audit log into a file that `rkm audit verify` checks offline
  verify  Verify an audit file offline, without rkmd
  show    Show audit entries, filtered, from rkmd or from a fetched file
  prove   Prove that an entry is in the log, against the latest signed checkpoint
  note    Record an operator's note in the audit log
  help    Print this message or the help of the given subcommand(s)"
    );
    assert!(help.starts_with("Fetch, verify and inspect the signed audit log"));
    let top = stdout(&rkm(&["--help"]));
    assert!(top.contains("  audit   "), "{top}");
}

#[test]
fn audit_verb_help_names_options_and_environment() {
    for (verb, expected) in [
        (
            "fetch",
            &[
                "-o, --out <FILE>",
                "--audit-key <KEY>",
                "RKM_AUDIT_KEY",
                "atomically",
            ][..],
        ),
        (
            "verify",
            &["<FILE>", "--audit-key <KEY>", "exits with 7"][..],
        ),
        (
            "show",
            &[
                "--file <FILE>",
                "--ceremony <ID>",
                "--actor",
                "--action",
                "--since",
                "--until",
            ][..],
        ),
        ("prove", &["<INDEX>", "--audit-key <KEY>", "RFC 9162"][..]),
        ("note", &["--message <MESSAGE>", "--subject <SUBJECT>"][..]),
    ] {
        let output = rkm(&["audit", verb, "--help"]);
        assert!(output.status.success(), "{verb}");
        let help = stdout(&output);
        for part in expected {
            assert!(
                help.contains(part),
                "`rkm audit {verb} --help` lacks {part:?}:\n{help}"
            );
        }
    }
}

#[test]
fn audit_usage_errors_exit_with_2() {
    for (args, expected) in [
        (&["audit"][..], "Usage: rkm audit [OPTIONS] <COMMAND>"),
        (
            &["audit", "fetch"][..],
            "the following required arguments were not provided:\n  --out <FILE>",
        ),
        (
            &["audit", "verify", "file"][..],
            "the following required arguments were not provided:\n  --audit-key <KEY>",
        ),
        (
            &["audit", "verify", "file", "--audit-key", "not-a-key"][..],
            "invalid value 'not-a-key' for '--audit-key <KEY>': verifier key is malformed",
        ),
        (
            &["audit", "prove", "minus-one"][..],
            "invalid value 'minus-one' for '<INDEX>'",
        ),
        (
            &["audit", "note"][..],
            "the following required arguments were not provided:\n  --message <MESSAGE>",
        ),
        (
            &["audit", "show", "--since", "yesterday"][..],
            "invalid value 'yesterday' for '--since <TIME>'",
        ),
    ] {
        let output = rkm(args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "rkm {args:?}: {}",
            stderr(&output)
        );
        let message = stderr(&output);
        assert!(
            message.contains(expected),
            "rkm {args:?} should say {expected:?}: {message}"
        );
    }
    let message = stderr(&rkm(&["audit", "verify", "f", "--audit-key", "x"]));
    assert!(
        message.contains("rkm status"),
        "the error says where keys are: {message}"
    );
    let message = stderr(&rkm(&["audit", "show", "--since", "yesterday"]));
    assert!(message.contains("RFC 3339"), "{message}");
}

#[test]
fn verify_prints_a_summary_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let (file, key) = synthetic_log(dir.path(), 2500, 1000);
    let output = rkm(&["audit", "verify", path_str(&file), "--audit-key", &key]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    for part in ["verified", "entries       2500", "checkpoints   3", "root"] {
        assert!(text.contains(part), "{part:?} not in:\n{text}");
    }
    assert!(
        stderr(&output).is_empty(),
        "no progress bar without a terminal"
    );

    let output = rkm(&[
        "audit",
        "verify",
        path_str(&file),
        "--audit-key",
        &key,
        "--output",
        "json",
    ]);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["verified"], true);
    assert_eq!(report["entries"], 2500);
    assert_eq!(report["checkpoints"], 3);
    assert_eq!(report["first_time"], synthetic::entry(0).time.as_str());
    assert_eq!(report["last_time"], synthetic::entry(2499).time.as_str());
    assert_eq!(report["audit_key"], key.as_str());
}

#[test]
fn verify_of_a_tampered_file_exits_7_naming_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (file, key) = synthetic_log(dir.path(), 3000, 1000);
    let text = std::fs::read_to_string(&file).unwrap();
    let tampered = dir.path().join("tampered.log");
    std::fs::write(
        &tampered,
        text.replacen("E 1500 {\"v\":1", "E 1500 {\"v\":2", 1),
    )
    .unwrap();
    let output = rkm(&["audit", "verify", path_str(&tampered), "--audit-key", &key]);
    assert_eq!(output.status.code(), Some(7), "{}", stderr(&output));
    let message = stderr(&output);
    for part in [
        "entries 1000..2000 do not hash to the checkpoint at size 2000",
        "expected root",
        "found",
        "entry 1500",
        "version 2",
    ] {
        assert!(message.contains(part), "{part:?} not in: {message}");
    }
}

#[test]
fn verify_with_another_key_exits_7_and_a_missing_file_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = synthetic_log(dir.path(), 10, 4);
    let other = synthetic::other_key().to_string();
    let output = rkm(&["audit", "verify", path_str(&file), "--audit-key", &other]);
    assert_eq!(output.status.code(), Some(7), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("another log"),
        "{}",
        stderr(&output)
    );

    let missing = dir.path().join("missing.log");
    let output = rkm(&["audit", "verify", path_str(&missing), "--audit-key", &other]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("missing.log"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn show_filters_a_file_offline() {
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = synthetic_log(dir.path(), 120, 50);
    let json = |args: &[&str]| -> Vec<Value> {
        let mut all = vec![
            "audit",
            "show",
            "--file",
            path_str(&file),
            "--output",
            "json",
        ];
        all.extend_from_slice(args);
        let output = rkm(&all);
        assert!(output.status.success(), "{}", stderr(&output));
        serde_json::from_slice(&output.stdout).unwrap()
    };
    assert_eq!(json(&[]).len(), 120);
    let notes = json(&["--action", "audit.note"]);
    assert_eq!(notes.len(), 20);
    assert!(notes.iter().all(|e| e["action"] == "audit.note"));
    assert_eq!(json(&["--action", "ceremony.*"]).len(), 40);
    let subject = synthetic::entry(60).subject;
    let about = json(&["--ceremony", &subject]);
    assert_eq!(about.len(), 50);
    assert_eq!(about[0]["index"], 50);
    assert_eq!(
        json(&["--actor", "custodian-3", "--ceremony", &subject]).len(),
        7
    );
    let since = synthetic::entry(100).time;
    let until = synthetic::entry(110).time;
    let window = json(&["--since", &since, "--until", &until]);
    assert_eq!(window.first().unwrap()["index"], 100);
    assert_eq!(window.last().unwrap()["index"], 109);
    assert!(json(&["--actor", "nobody"]).is_empty());

    let output = rkm(&[
        "audit",
        "show",
        "--file",
        path_str(&file),
        "--action",
        "key.sign",
    ]);
    let table = stdout(&output);
    let mut lines = table.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .trim_start()
            .starts_with("INDEX  TIME")
    );
    assert_eq!(lines.count(), 20);
    assert!(table.contains("message=\"step 4 of the drill\""), "{table}");
}
