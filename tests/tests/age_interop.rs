//! A custodian who holds only Debian's `age` opens their share in one step:
//! `age -d -i IDENTITY share.age` — the identity file is an age
//! passphrase-encrypted file around a standard age identity file — and the
//! share inside decodes by the layout in docs/FORMATS.md §3.2.
//! `age` asks for the passphrase on a terminal only, so it runs under
//! `script`, which gives it one.

use std::io::Write as _;
use std::process::{Command, Stdio};

use rkm_tests::Daemon;
use rkm_tests::custodians::{
    custodians_with_fast_identities, enrol_and_create_key, fetch_all, path_str,
};

fn age_binary() -> &'static str {
    let found = Command::new("age").arg("--version").output();
    assert!(
        found.is_ok_and(|output| output.status.success()),
        "Debian's age is missing: softhsm-config/install.sh installs it"
    );
    "age"
}

/// `age ARGS` on a pseudo-terminal, `passphrase` typed at its prompt.
fn age_on_a_terminal(args: &[&str], passphrase: &str) -> std::process::Output {
    let command = std::iter::once(age_binary())
        .chain(args.iter().copied())
        .map(|arg| format!("'{arg}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs");
    // Typed once age is waiting at its prompt; a terminal keeps early input.
    std::thread::sleep(std::time::Duration::from_millis(500));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{passphrase}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn stock_age_opens_a_share_with_the_custodians_identity_file() {
    let daemon = Daemon::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let custodians = custodians_with_fast_identities(dir.path(), &["alice", "bob"]);
    let key_id = enrol_and_create_key(&daemon, &custodians, "fleet", 2);
    fetch_all(&daemon, &custodians, "fleet", &[]);
    let alice = &custodians[0];
    let sealed = alice.key_folder(&key_id).join("share.age");
    let opened = dir.path().join("share.bin");

    let output = age_on_a_terminal(
        &[
            "-d",
            "-i",
            path_str(&alice.identity),
            "-o",
            path_str(&opened),
            path_str(&sealed),
        ],
        &alice.passphrase,
    );
    assert!(
        opened.exists(),
        "age -d -i identity share.age failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // The layout of docs/FORMATS.md §3.2, read here by hand.
    let payload = std::fs::read(&opened).unwrap();
    assert_eq!(&payload[..8], b"RKMSHARE");
    assert_eq!(payload[8], 1, "envelope version");
    let mut at = 9;
    let mut text = |payload: &[u8]| {
        let len = usize::from(u16::from_be_bytes([payload[at], payload[at + 1]]));
        let value = String::from_utf8(payload[at + 2..at + 2 + len].to_vec()).unwrap();
        at += 2 + len;
        value
    };
    assert_eq!(text(&payload), key_id);
    assert_eq!(text(&payload), "alice");
    let held = alice.held_share(&key_id);
    assert_eq!(payload[at], 2, "threshold");
    assert_eq!(payload[at + 1], held.x(), "share x");
    assert_eq!(&payload[at + 2..at + 34], held.expose_y(), "share y");
    assert_eq!(payload.len(), at + 2 + 32 + 32, "nothing after the salt");
}
