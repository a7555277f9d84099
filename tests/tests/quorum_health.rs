//! Honest quorum health: `rkm status` and `rkm key show` count only the
//! custodians whose shares a quorum can use — enabled here and attested within
//! the window — and say when the key is one loss from gone or already at
//! risk. Found: with 2 of 3 custodians disabled and threshold 2, status said
//! "3 of 3 attested" and `quorum_at_risk: false`.

use rkm_tests::Daemon;
use rkm_tests::custodians::{
    assert_ok, assert_ok_json, custodians_with_fast_identities, enrol_and_create_key, fetch_all,
    show_key,
};
use serde_json::Value;

const LABEL: &str = "fleet";

fn status_key(daemon: &Daemon) -> (Value, String) {
    let json = assert_ok_json(
        &daemon.rkm(&["status", "--output", "json"]).unwrap(),
        "status",
    );
    let text = assert_ok(&daemon.rkm(&["status"]).unwrap(), "status");
    (json["keys"][0].clone(), text)
}

fn disable(daemon: &Daemon, name: &str) {
    assert_ok(
        &daemon
            .rkm(&["custodian", "disable", name, "--reason", "left the company"])
            .unwrap(),
        "custodian disable",
    );
}

#[test]
fn disabled_custodians_and_stale_attestations_do_not_count_toward_the_quorum() {
    let daemon = Daemon::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let custodians =
        custodians_with_fast_identities(dir.path(), &["alice", "bob", "carol", "dave"]);
    enrol_and_create_key(&daemon, &custodians, LABEL, 2);
    fetch_all(&daemon, &custodians, LABEL, &[]);

    let (key, text) = status_key(&daemon);
    assert_eq!(key["usable_custodians"], 4, "{key}");
    assert_eq!(key["quorum_health"], "healthy", "{key}");
    assert!(text.contains("4 of 4 custodians usable"), "{text}");

    // An attestation older than the window does not count.
    let db = rusqlite::Connection::open(daemon.state_dir().join("rkm.sqlite3")).unwrap();
    db.execute(
        "UPDATE key_custodians SET attested_unix = attested_unix - 100 * 86400 WHERE custodian = 'dave'",
        [],
    )
    .unwrap();
    let (key, _) = status_key(&daemon);
    assert_eq!(key["usable_custodians"], 3, "{key}");
    assert_eq!(key["attested_recently"], 3, "{key}");
    assert_eq!(key["quorum_health"], "healthy", "{key}");

    // A disabled custodian's approval is refused: their share does not count.
    disable(&daemon, "carol");
    let (key, text) = status_key(&daemon);
    assert_eq!(key["usable_custodians"], 2, "{key}");
    assert_eq!(key["quorum_health"], "one loss from gone", "{key}");
    assert_eq!(key["quorum_at_risk"], false, "{key}");
    assert!(
        text.contains("2 of 4 custodians usable")
            && text.contains("one more loss and the key cannot be recovered"),
        "{text}"
    );
    let shown = show_key(&daemon, LABEL);
    let carol = shown["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|receipt| receipt["custodian"] == "carol")
        .unwrap()
        .clone();
    assert_eq!(carol["enabled"], false, "{shown}");
    assert_eq!(carol["usable"], false, "{shown}");
    assert_eq!(carol["attested_recently"], true, "{shown}");

    disable(&daemon, "bob");
    let (key, text) = status_key(&daemon);
    assert_eq!(key["usable_custodians"], 1, "{key}");
    assert_eq!(key["quorum_health"], "at risk", "{key}");
    assert_eq!(key["quorum_at_risk"], true, "{key}");
    assert!(
        text.contains("1 of 4 custodians usable") && text.contains("QUORUM AT RISK"),
        "{text}"
    );
    let shown = show_key(&daemon, LABEL);
    assert_eq!(shown["quorum_health"], "at risk", "{shown}");
    assert_eq!(shown["usable_custodians"], 1, "{shown}");
}

#[test]
fn a_new_key_awaits_receipts_unless_too_few_are_left_to_send_them() {
    let daemon = Daemon::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let custodians = custodians_with_fast_identities(dir.path(), &["alice", "bob", "carol"]);
    enrol_and_create_key(&daemon, &custodians, LABEL, 2);
    let (key, text) = status_key(&daemon);
    assert_eq!(key["quorum_health"], "awaiting receipts", "{key}");
    assert_eq!(key["quorum_at_risk"], false, "{key}");
    assert!(text.contains("awaiting receipts until"), "{text}");
    let shown = show_key(&daemon, LABEL);
    assert!(shown["receipts_due"].is_string(), "{shown}");

    // With two of three disabled before they confirmed, no quorum can form.
    disable(&daemon, "bob");
    disable(&daemon, "carol");
    let (key, _) = status_key(&daemon);
    assert_eq!(key["quorum_health"], "at risk", "{key}");
    assert_eq!(key["quorum_at_risk"], true, "{key}");
}
