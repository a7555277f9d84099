//! What a custodian sees of recovery ceremonies, over TLS with their own
//! identity and no certificate: the ceremonies of the keys they hold a share
//! of, and nothing of other keys' ceremonies (a ceremony of another key is
//! "not found", as an unknown one is). Staff see all, or one custodian's.

use serde_json::Value;

use rkm_tests::Daemon;
use rkm_tests::custodians::{
    Custodian, assert_fails, assert_ok_json, custodians_with_fast_identities, enrol_and_create_key,
    fetch_all, open_small_recovery, small_request_file,
};

fn ceremony_ids(listed: &Value) -> Vec<String> {
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|ceremony| ceremony["ceremony_id"].as_str().unwrap().to_owned())
        .collect()
}

fn list_as(daemon: &Daemon, custodian: &Custodian) -> Value {
    let mut args = vec!["recovery", "list", "--output", "json"];
    args.extend(custodian.identity_args());
    assert_ok_json(&daemon.rkm(&args).unwrap(), "recovery list --identity")
}

fn show_as(daemon: &Daemon, custodian: &Custodian, id: &str) -> std::process::Output {
    let mut args = vec!["recovery", "show", id, "--output", "json"];
    args.extend(custodian.identity_args());
    daemon.rkm(&args).unwrap()
}

#[test]
fn a_custodian_sees_the_ceremonies_of_their_own_keys_and_nothing_of_others() {
    let daemon = Daemon::start_tls().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let all = custodians_with_fast_identities(dir.path(), &["alice", "bob", "carol", "dave"]);
    let (fleet, grid) = (&all[..2], &all[2..]);
    enrol_and_create_key(&daemon, fleet, "fleet-root", 2);
    fetch_all(&daemon, fleet, "fleet-root", &[]);
    enrol_and_create_key(&daemon, grid, "grid-root", 2);
    fetch_all(&daemon, grid, "grid-root", &[]);
    let fleet_id = open_small_recovery(
        &daemon,
        "fleet-root",
        &small_request_file(dir.path(), "0a"),
    )["ceremony_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let grid_id = open_small_recovery(&daemon, "grid-root", &small_request_file(dir.path(), "0b"))
        ["ceremony_id"]
        .as_str()
        .unwrap()
        .to_owned();

    assert_eq!(
        ceremony_ids(&list_as(&daemon, &all[0])),
        vec![fleet_id.clone()]
    );
    assert_eq!(
        ceremony_ids(&list_as(&daemon, &all[3])),
        vec![grid_id.clone()]
    );

    let shown = assert_ok_json(&show_as(&daemon, &all[0], &fleet_id), "alice shows hers");
    assert_eq!(shown["key_label"], "fleet-root", "{shown}");
    assert!(shown["description"].is_string(), "{shown}");
    let other = assert_fails(
        &show_as(&daemon, &all[0], &grid_id),
        5,
        &["does not exist", "--identity"],
        "alice shows a ceremony of a key she holds no share of",
    );
    assert!(!other.contains("grid-root"), "{other}");
    // The answer is the one for a ceremony that does not exist at all.
    let unknown = assert_fails(
        &show_as(&daemon, &all[0], "rec-0000000000000000"),
        5,
        &["does not exist"],
        "alice shows an unknown ceremony",
    );
    assert_eq!(
        other.replace(&grid_id, "ID"),
        unknown.replace("rec-0000000000000000", "ID")
    );

    // Asking to approve another key's ceremony tells nothing of it either:
    // not its key, its state or who opened it.
    let approve = assert_fails(
        &all[0].approve(&daemon, &grid_id),
        5,
        &[],
        "alice approves a ceremony of a key she holds no share of",
    );
    for secret in ["grid-root", "rkm-staff", "open"] {
        assert!(!approve.contains(secret), "{secret}: {approve}");
    }

    // Staff see every ceremony, or those of one custodian's keys.
    let staff = |args: &[&str]| {
        let mut all_args = vec!["recovery", "list", "--output", "json"];
        all_args.extend_from_slice(args);
        ceremony_ids(&assert_ok_json(
            &daemon.rkm(&all_args).unwrap(),
            "staff recovery list",
        ))
    };
    let mut every = staff(&[]);
    every.sort();
    let mut expected = vec![fleet_id.clone(), grid_id.clone()];
    expected.sort();
    assert_eq!(every, expected);
    assert_eq!(staff(&["--custodian", "carol"]), vec![grid_id]);

    // Without an identity or a certificate, nothing is listed.
    assert_fails(
        &daemon.rkm_over_tls(None, &["recovery", "list"]).unwrap(),
        4,
        &[],
        "recovery list with no credentials",
    );
}
