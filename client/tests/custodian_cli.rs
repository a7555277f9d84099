//! The custodian's commands that need no rkmd: making an identity and a card,
//! showing them, and the usage errors around passphrases and share files.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn rkm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rkm"))
        .args(args)
        .env_remove("RKM_SOCKET")
        .env_remove("RKM_ENDPOINT")
        .env_remove("RKM_PASSPHRASE_FILE")
        .env_remove("RKM_SHARE_DIR")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A passphrase file only its owner may read, as rkm requires.
fn write_secret(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn path(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn passphrase_as_an_argument_is_a_usage_error() {
    let output = rkm(&[
        "custodian",
        "init",
        "--name",
        "alice",
        "--identity",
        "/tmp/never.identity",
        "--card",
        "/tmp/never.card",
        "--passphrase",
        "hunter2hunter2",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("unexpected argument '--passphrase' found"),
        "{}",
        stderr(&output)
    );
    assert!(!Path::new("/tmp/never.identity").exists());
}

#[test]
fn custodian_show_needs_an_identity_or_a_card() {
    let output = rkm(&["custodian", "show"]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("--identity") && message.contains("--card"),
        "{message}"
    );
}

#[test]
fn key_create_needs_custodians() {
    let output = rkm(&["key", "create", "--label", "k", "--threshold", "2"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--custodians"));
}

#[test]
fn custodian_init_writes_an_owner_only_identity_and_a_card_that_show_agree_on() {
    let dir = tempfile::tempdir().unwrap();
    let identity = dir.path().join("alice.identity");
    let card = dir.path().join("alice.card");
    let passphrase = dir.path().join("alice.passphrase");

    write_secret(&passphrase, "short\n");
    let init_args = [
        "custodian",
        "init",
        "--name",
        "alice",
        "--identity",
        path(&identity),
        "--card",
        path(&card),
        "--passphrase-file",
        path(&passphrase),
        "--output",
        "json",
    ];
    let output = rkm(&init_args);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("at least 12"),
        "{}",
        stderr(&output)
    );
    assert!(!identity.exists() && !card.exists());

    write_secret(&passphrase, "correct horse battery staple\n");
    let output = rkm(&init_args);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let fingerprint = report["fingerprint"].as_str().unwrap();
    assert_eq!(fingerprint.split(' ').count(), 16, "{fingerprint}");
    let mode = std::fs::metadata(&identity).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let identity_bytes = std::fs::read(&identity).unwrap();
    assert!(identity_bytes.starts_with(b"age-encryption.org/v1\n-> scrypt "));

    let card_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&card).unwrap()).unwrap();
    assert_eq!(card_json["name"], "alice");
    assert_eq!(card_json["fingerprint"], fingerprint);

    let from_card = rkm(&["custodian", "show", "--card", path(&card)]);
    assert!(from_card.status.success(), "{}", stderr(&from_card));
    assert!(String::from_utf8_lossy(&from_card.stdout).contains(fingerprint));
    let from_identity = rkm(&[
        "custodian",
        "show",
        "--identity",
        path(&identity),
        "--passphrase-file",
        path(&passphrase),
        "--output",
        "json",
    ]);
    assert!(from_identity.status.success(), "{}", stderr(&from_identity));
    let shown: serde_json::Value = serde_json::from_slice(&from_identity.stdout).unwrap();
    assert_eq!(shown["fingerprint"], fingerprint);
    assert_eq!(shown["age_recipient"], card_json["age_recipient"]);

    // Never overwritten.
    let again = rkm(&init_args);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    assert_eq!(std::fs::read(&identity).unwrap(), identity_bytes);

    // A wrong passphrase is named as such.
    let wrong = dir.path().join("wrong.passphrase");
    write_secret(&wrong, "not the passphrase at all\n");
    let output = rkm(&[
        "custodian",
        "show",
        "--identity",
        path(&identity),
        "--passphrase-file",
        path(&wrong),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("passphrase does not open the identity file"),
        "{}",
        stderr(&output)
    );

    // Verifying a share that was never fetched says how to fetch it.
    let output = rkm(&[
        "share",
        "verify",
        "--key",
        "fleet-root",
        "--identity",
        path(&identity),
        "--passphrase-file",
        path(&passphrase),
        "--share-dir",
        path(&dir.path().join("shares")),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("rkm share fetch"),
        "{}",
        stderr(&output)
    );
}
