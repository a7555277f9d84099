//! The two-person rule (`recovery.two_person_rule`), on and off, with the
//! real rkmd over TLS and operators holding their own certificates: under
//! the rule a recovery takes no approval until an operator other than the
//! one who opened it confirms it; the opener, an auditor and a second
//! confirmation are refused and audited; drills need no confirmation; a
//! ceremony keeps the rule it was opened under across a restart with the
//! setting turned off. With the rule off, nothing waits and confirming is
//! refused as needless.

use std::path::Path;
use std::time::Duration;

use rkm_tests::custodians::{
    Custodian, assert_fails, assert_ok, assert_ok_json, audit_entries,
    custodians_with_fast_identities, enrol_and_create_key, fetch_all, open_drill,
    open_small_recovery, small_request_file, wait_for_audit_entry, wait_for_recovery_state,
};
use rkm_tests::{Daemon, DaemonBuilder, STAFF_CLIENT};
use serde_json::Value;

const LABEL: &str = "fleet-root";
const RULE: &str = "RKM_RECOVERY_TWO_PERSON_RULE";
/// The dev-pki certificate of the second operator (CN rkm-operator); the
/// fixture's staff certificate (CN rkm-staff) opens the ceremonies.
const SECOND_OPERATOR: &str = "operator";

fn serving(rule: bool) -> Daemon {
    let mut daemon = DaemonBuilder::default().tls().initialised().unwrap();
    daemon.set_env(RULE, rule.to_string());
    daemon.serve().unwrap();
    daemon
}

/// A 2-of-3 key whose custodians hold their shares.
fn with_key(daemon: &Daemon, dir: &Path) -> Vec<Custodian> {
    let custodians = custodians_with_fast_identities(dir, &["alice", "bob", "carol"]);
    enrol_and_create_key(daemon, &custodians, LABEL, 2);
    fetch_all(daemon, &custodians, LABEL, &[]);
    custodians
}

/// Opens a recovery of the test key with the staff certificate.
fn open_recovery(daemon: &Daemon, dir: &Path) -> Value {
    open_small_recovery(daemon, LABEL, &small_request_file(dir, "0a1b2c"))
}

fn confirm_as(daemon: &Daemon, client: &str, id: &str) -> std::process::Output {
    daemon
        .rkm_over_tls(
            Some(client),
            &["recovery", "confirm", id, "--output", "json"],
        )
        .unwrap()
}

fn show(daemon: &Daemon, id: &str) -> Value {
    assert_ok_json(
        &daemon
            .rkm(&["recovery", "show", id, "--output", "json"])
            .unwrap(),
        "recovery show",
    )
}

/// The `recovery.confirm` entries about ceremony `id`: (actor, outcome).
fn confirm_entries(daemon: &Daemon, id: &str) -> Vec<(String, String)> {
    audit_entries(daemon, "recovery.confirm")
        .iter()
        .filter(|entry| entry["subject"] == id)
        .map(|entry| {
            (
                entry["actor"].as_str().unwrap_or_default().to_owned(),
                entry["outcome"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn with_the_rule_on_a_recovery_takes_approvals_only_after_a_second_operator_confirms() {
    let daemon = serving(true);
    let dir = tempfile::tempdir().unwrap();
    let custodians = with_key(&daemon, dir.path());

    let opened = open_recovery(&daemon, dir.path());
    let id = opened["ceremony_id"].as_str().unwrap().to_owned();
    assert_eq!(opened["awaiting_confirmation"], true, "{opened}");
    let shown = assert_ok(
        &daemon.rkm(&["recovery", "show", &id]).unwrap(),
        "recovery show",
    );
    assert!(
        shown.contains(&format!("rkm recovery confirm {id}")),
        "{shown}"
    );

    let listed = assert_ok(&daemon.rkm(&["recovery", "list"]).unwrap(), "list");
    assert!(
        listed
            .lines()
            .any(|line| line.contains(&id) && line.contains("unconfirmed")),
        "{listed}"
    );

    // Nothing moves until a second operator confirms.
    assert_fails(
        &custodians[0].approve(&daemon, &id),
        6,
        &[
            "awaits a second operator's confirmation",
            "rkm recovery confirm",
        ],
        "alice approves an unconfirmed recovery",
    );
    assert_fails(
        &confirm_as(&daemon, STAFF_CLIENT, &id),
        4,
        &["opened ceremony", "different operator"],
        "the opener confirms their own recovery",
    );
    // rkmd's own user on the socket is no operator under the rule: one
    // person could otherwise confirm as a uid what they opened by certificate.
    assert_fails(
        &daemon
            .rkm_over_socket(&["recovery", "confirm", &id])
            .unwrap(),
        4,
        &[],
        "rkmd's own user confirms on the socket",
    );
    assert_fails(
        &confirm_as(&daemon, "auditor", &id),
        4,
        &["operator"],
        "an auditor confirms",
    );
    assert_eq!(show(&daemon, &id)["awaiting_confirmation"], true);

    let confirmed = assert_ok_json(
        &confirm_as(&daemon, SECOND_OPERATOR, &id),
        "the second operator confirms",
    );
    assert_eq!(confirmed["awaiting_confirmation"], false, "{confirmed}");
    let by = confirmed["confirmed_by"].as_str().unwrap_or_default();
    assert!(by.contains("CN=rkm-operator"), "{confirmed}");
    assert_fails(
        &confirm_as(&daemon, SECOND_OPERATOR, &id),
        6,
        &["needs no confirmation", "confirmed by"],
        "a second confirmation",
    );

    // The custodians are told, and approve as usual.
    let notices = assert_ok_json(
        &daemon
            .rkm(&["notice", "list", "--custodian", "alice", "--output", "json"])
            .unwrap(),
        "notice list",
    );
    assert!(
        notices.as_array().unwrap().iter().any(|notice| {
            notice["text"].as_str().is_some_and(|text| {
                text.contains(&id) && text.contains("confirmed by a second operator")
            })
        }),
        "{notices}"
    );
    assert_ok(&custodians[0].approve(&daemon, &id), "alice approves");
    assert_ok(&custodians[1].approve(&daemon, &id), "bob approves");
    let done = wait_for_recovery_state(&daemon, &id, "completed", Duration::from_secs(120));
    assert_eq!(done["signed_count"], 2, "{done}");

    let entries = confirm_entries(&daemon, &id);
    let refused: Vec<_> = entries.iter().filter(|(_, o)| o != "ok").collect();
    let accepted: Vec<_> = entries.iter().filter(|(_, o)| o == "ok").collect();
    assert_eq!(accepted.len(), 1, "{entries:?}");
    assert!(accepted[0].0.contains("CN=rkm-operator"), "{entries:?}");
    assert!(
        refused
            .iter()
            .any(|(actor, _)| actor.contains("CN=rkm-staff")),
        "the opener's refused confirmation names them: {entries:?}"
    );
    assert!(
        refused
            .iter()
            .any(|(actor, _)| actor.contains("CN=rkm-operator")),
        "the needless second confirmation is audited: {entries:?}"
    );
}

#[test]
fn with_the_rule_on_a_drill_opens_for_approval_at_once() {
    let daemon = serving(true);
    let dir = tempfile::tempdir().unwrap();
    let custodians = with_key(&daemon, dir.path());
    let opened = open_drill(&daemon, LABEL);
    let id = opened["ceremony_id"].as_str().unwrap().to_owned();
    assert_eq!(opened["awaiting_confirmation"], false, "{opened}");
    assert_ok(&custodians[0].approve(&daemon, &id), "alice approves");
    assert_ok(&custodians[2].approve(&daemon, &id), "carol approves");
    wait_for_recovery_state(&daemon, &id, "completed", Duration::from_secs(60));
    assert_fails(
        &confirm_as(&daemon, SECOND_OPERATOR, &id),
        6,
        &["is completed and can no longer be confirmed"],
        "confirming a completed drill",
    );
}

#[test]
fn a_cancelled_or_unknown_recovery_cannot_be_confirmed() {
    let daemon = serving(true);
    let dir = tempfile::tempdir().unwrap();
    with_key(&daemon, dir.path());
    let id = open_recovery(&daemon, dir.path())["ceremony_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ok(
        &daemon
            .rkm(&["recovery", "cancel", &id, "--reason", "wrong request"])
            .unwrap(),
        "cancel",
    );
    assert_fails(
        &confirm_as(&daemon, SECOND_OPERATOR, &id),
        6,
        &["is cancelled and can no longer be confirmed"],
        "confirming a cancelled recovery",
    );
    assert_fails(
        &confirm_as(&daemon, SECOND_OPERATOR, "rec-0000000000000000"),
        5,
        &["does not exist"],
        "confirming an unknown recovery",
    );
    wait_for_audit_entry(
        &daemon,
        "recovery.confirm",
        "the refused confirmations",
        |entry| entry["subject"] == "rec-0000000000000000" && entry["outcome"] != "ok",
    );
}

#[test]
fn a_recovery_opened_under_the_rule_still_waits_after_a_restart_with_the_rule_off() {
    let mut daemon = serving(true);
    let dir = tempfile::tempdir().unwrap();
    let custodians = with_key(&daemon, dir.path());
    let id = open_recovery(&daemon, dir.path())["ceremony_id"]
        .as_str()
        .unwrap()
        .to_owned();

    daemon.stop_with("TERM").unwrap();
    daemon.set_env(RULE, "false");
    daemon.serve().unwrap();

    assert_eq!(show(&daemon, &id)["awaiting_confirmation"], true);
    assert_fails(
        &custodians[1].approve(&daemon, &id),
        6,
        &["awaits a second operator's confirmation"],
        "bob approves after the rule was turned off",
    );
    assert_ok(
        &confirm_as(&daemon, SECOND_OPERATOR, &id),
        "the second operator confirms",
    );
    assert_ok(&custodians[1].approve(&daemon, &id), "bob approves");
}

#[test]
fn with_the_rule_off_nothing_waits_and_confirming_is_refused_as_needless() {
    let daemon = serving(false);
    let dir = tempfile::tempdir().unwrap();
    let custodians = with_key(&daemon, dir.path());
    let opened = open_recovery(&daemon, dir.path());
    let id = opened["ceremony_id"].as_str().unwrap().to_owned();
    assert_eq!(opened["awaiting_confirmation"], false, "{opened}");
    assert_eq!(opened.get("confirmed_by"), None, "{opened}");

    assert_fails(
        &confirm_as(&daemon, SECOND_OPERATOR, &id),
        6,
        &["needs no confirmation", "two-person rule is off"],
        "confirming with the rule off",
    );
    // A refusal is listed once a signed checkpoint covers it.
    wait_for_audit_entry(
        &daemon,
        "recovery.confirm",
        "the needless confirmation",
        |entry| {
            entry["subject"] == id.as_str()
                && entry["outcome"] != "ok"
                && entry["actor"]
                    .as_str()
                    .is_some_and(|actor| actor.contains("CN=rkm-operator"))
        },
    );

    assert_ok(&custodians[0].approve(&daemon, &id), "alice approves");
    assert_ok(&custodians[1].approve(&daemon, &id), "bob approves");
    let done = wait_for_recovery_state(&daemon, &id, "completed", Duration::from_secs(120));
    assert_eq!(done["signed_count"], 2, "{done}");
}
