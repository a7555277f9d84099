//! A custodian's signed requests over TCP+TLS, end to end. From their own
//! HOME, as if from their own machine, custodians fetch their share, attest
//! it and approve a recovery; the same signed request replayed, replayed in
//! another order, moved to another request or sent with a stale time is
//! refused and audited; repeated failures lock the caller out for a while.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rkm_client::custodian_auth::{authorisation, authorisation_at, challenge, method};
use rkm_proto::access::GET_CHALLENGE_METHOD;
use rkm_tests::binaries::{binary, with_clean_env};
use rkm_tests::custodians::{
    Custodian, assert_ok, assert_ok_json, create_key, custodians_with_fast_identities, enrol_all,
    key_id_of, path_str, wait_for_audit_entry, wait_for_recovery_state,
};
use rkm_tests::raw_grpc::{Outcome, call, naming, tls_channel};
use rkm_tests::{Daemon, DaemonBuilder};

fn serving_tls(env: &[(&str, &str)]) -> Daemon {
    let mut daemon = DaemonBuilder::default().tls().initialised().unwrap();
    for (name, value) in env {
        daemon.set_env(name, *value);
    }
    daemon.serve().unwrap();
    daemon
}

/// `rkm ARGS` as `custodian` on their own machine: their own HOME, rkmd's
/// TLS endpoint, no CA file and no certificate — rkm pins rkmd's
/// certificate on first use, and the custodian signs every request.
fn rkm_at_home(daemon: &Daemon, home: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(binary("rkm"));
    with_clean_env(&mut command)
        .env("HOME", home)
        .env("RKM_ENDPOINT", daemon.endpoint().unwrap())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running rkm")
}

#[test]
fn custodians_from_their_own_homes_fetch_attest_and_approve_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = serving_tls(&[]);
    let names = ["alice", "bob", "carol"];
    let custodians = custodians_with_fast_identities(dir.path(), &names);
    enrol_all(&daemon, &custodians);
    let key_id = key_id_of(&create_key(&daemon, "fleet-2026", 2, &names));
    let home = |custodian: &Custodian| dir.path().join(format!("{}-home", custodian.name));

    for custodian in &custodians {
        std::fs::create_dir_all(home(custodian)).unwrap();
        let mut fetch = custodian.share_command("fetch", &key_id);
        fetch.extend(["--output", "json"]);
        let fetched = assert_ok_json(
            &rkm_at_home(&daemon, &home(custodian), &fetch),
            "share fetch from the custodian's own HOME",
        );
        assert_eq!(fetched["custodian"], custodian.name.as_str(), "{fetched}");
        assert!(
            home(custodian).join(".config/rkm/known_servers").exists(),
            "rkm pinned rkmd's certificate in {}'s HOME",
            custodian.name
        );
    }
    // The receipt was the first attestation; a later one needs a later second.
    let fetched_at = unix_now();
    while unix_now() == fetched_at {
        std::thread::sleep(Duration::from_millis(20));
    }
    for custodian in &custodians {
        let mut attest = custodian.share_command("verify", &key_id);
        attest.extend(["--attest", "--output", "json"]);
        let attested = assert_ok_json(
            &rkm_at_home(&daemon, &home(custodian), &attest),
            "share verify --attest",
        );
        assert_eq!(attested["custodian"], custodian.name.as_str(), "{attested}");
    }
    let shown = assert_ok_json(
        &daemon
            .rkm_over_tls(
                Some("auditor"),
                &["key", "show", &key_id, "--output", "json"],
            )
            .unwrap(),
        "key show",
    );
    assert_eq!(shown["state"], "active", "{shown}");

    let request = dir.path().join("request.toml");
    std::fs::write(
        &request,
        "reason = \"Issuing CA 2 key compromised\"\nincident = \"INC-4711\"\nnot_before = \"2026-11-27T00:00:00Z\"\nnot_after = \"2036-12-04T00:00:00Z\"\ntargets = [\"meter-0000001\", \"meter-0000002\"]\n\n[command]\nkind = \"revoke-certificate\"\nissuer = \"CN=Issuing CA 2, O=Grid\"\nserial = \"0a1b2c\"\n",
    )
    .unwrap();
    let opened = assert_ok_json(
        &daemon
            .rkm_over_tls(
                Some("operator"),
                &[
                    "recovery",
                    "open",
                    "--key",
                    &key_id,
                    "--request",
                    path_str(&request),
                    "--expires",
                    "1h",
                    "--output",
                    "json",
                ],
            )
            .unwrap(),
        "recovery open by the operator",
    );
    let ceremony = opened["ceremony_id"].as_str().unwrap().to_owned();
    for custodian in &custodians[..2] {
        let mut approve = vec!["recovery", "approve", ceremony.as_str()];
        approve.extend(custodian.held_files_args());
        approve.extend(["--yes", "--output", "json"]);
        let approved = assert_ok_json(
            &rkm_at_home(&daemon, &home(custodian), &approve),
            "recovery approve from the custodian's own HOME",
        );
        assert_eq!(approved["custodian"], custodian.name.as_str(), "{approved}");
    }
    wait_for_recovery_state(&daemon, &ceremony, "completed", Duration::from_secs(120));
    let approvals = assert_ok_json(
        &daemon
            .rkm_over_tls(
                Some("auditor"),
                &[
                    "audit",
                    "show",
                    "--action",
                    "recovery.approve",
                    "--output",
                    "json",
                ],
            )
            .unwrap(),
        "audit show recovery.approve",
    );
    let actors: Vec<&str> = approvals
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|entry| entry["actor"].as_str())
        .collect();
    assert!(
        actors.contains(&"alice") && actors.contains(&"bob"),
        "approvals are audited by who approved, not by a socket address: {approvals}"
    );
    let opened_by = assert_ok_json(
        &daemon
            .rkm_over_tls(
                Some("auditor"),
                &[
                    "audit",
                    "show",
                    "--action",
                    "recovery.open",
                    "--output",
                    "json",
                ],
            )
            .unwrap(),
        "audit show recovery.open",
    );
    assert!(
        opened_by[0]["actor"]
            .as_str()
            .is_some_and(|actor| actor.starts_with("cert:CN=rkm-operator sha256:")),
        "the opening is audited with the operator's certificate: {opened_by}"
    );
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[track_caller]
fn assert_refused(outcome: &Outcome, needle: &str, what: &str) {
    match outcome.refusal() {
        Some(message) => assert!(message.contains(needle), "{what}: refused with {message:?}"),
        None => panic!("{what}: admitted"),
    }
}

#[test]
fn replayed_moved_and_stale_signed_requests_are_refused_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = serving_tls(&[("RKM_ACCESS_LOCK_AFTER", "1000")]);
    let custodians = custodians_with_fast_identities(dir.path(), &["alice"]);
    enrol_all(&daemon, &custodians);
    let alice = custodians[0].open_identity();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let channel = tls_channel(&daemon, None).await;
        let list = naming(1, "alice");
        let sign = |method: &str, challenge: &[u8], body: &[u8]| {
            authorisation(&alice, method, challenge, body).unwrap()
        };

        // Two requests, each over its own challenge, both honest.
        let first = challenge(&channel, &alice).await.unwrap();
        let second = challenge(&channel, &alice).await.unwrap();
        let auth_first = sign(method::LIST_NOTICES, &first, &list);
        let auth_second = sign(method::GET_AUDIT_KEY, &second, &[]);
        // Sent in the other order than asked for: each challenge is its own.
        assert_eq!(
            call(
                &channel,
                method::GET_AUDIT_KEY,
                Vec::new(),
                Some(auth_second.clone())
            )
            .await,
            Outcome::Admitted
        );
        assert_eq!(
            call(
                &channel,
                method::LIST_NOTICES,
                list.clone(),
                Some(auth_first.clone())
            )
            .await,
            Outcome::Admitted
        );
        // Replayed, in either order: each challenge was used up.
        for (method, body, auth) in [
            (method::LIST_NOTICES, list.clone(), auth_first.clone()),
            (method::GET_AUDIT_KEY, Vec::new(), auth_second.clone()),
        ] {
            assert_refused(
                &call(&channel, method, body, Some(auth)).await,
                "already used",
                &format!("{method} replayed"),
            );
        }

        // A fresh signature moved onto another method, or another request.
        let fresh = challenge(&channel, &alice).await.unwrap();
        let signed_for_list = sign(method::LIST_NOTICES, &fresh, &list);
        assert_refused(
            &call(
                &channel,
                method::GET_AUDIT_KEY,
                Vec::new(),
                Some(signed_for_list.clone()),
            )
            .await,
            "signature does not verify",
            "a signature moved to another method",
        );
        let fresh = challenge(&channel, &alice).await.unwrap();
        let signed_for_list = sign(method::LIST_NOTICES, &fresh, &list);
        let mut other_request = list.clone();
        other_request.extend(naming(2, "n-1"));
        assert_refused(
            &call(
                &channel,
                method::LIST_NOTICES,
                other_request,
                Some(signed_for_list),
            )
            .await,
            "signature does not verify",
            "a signature moved to another request",
        );

        // Signed an hour ago (or by a machine whose clock is an hour off).
        let fresh = challenge(&channel, &alice).await.unwrap();
        let stale = authorisation_at(
            &alice,
            method::LIST_NOTICES,
            &fresh,
            &list,
            unix_now() - 3600,
        );
        assert_refused(
            &call(&channel, method::LIST_NOTICES, list.clone(), Some(stale)).await,
            "from rkmd's clock",
            "a stale request",
        );
        // A challenge request itself, replayed.
        let body = naming(1, "alice");
        let asked = sign(GET_CHALLENGE_METHOD, &[], &body);
        assert_eq!(
            call(
                &channel,
                GET_CHALLENGE_METHOD,
                body.clone(),
                Some(asked.clone())
            )
            .await,
            Outcome::Admitted
        );
        assert_refused(
            &call(&channel, GET_CHALLENGE_METHOD, body, Some(asked)).await,
            "a replay",
            "a challenge request replayed",
        );
    });

    for reason in [
        "already used",
        "signature does not verify",
        "from rkmd's clock",
        "a replay",
    ] {
        wait_for_audit_entry(&daemon, "access.refused", reason, |entry| {
            entry["actor"] == "custodian:alice"
                && entry["details"]["peer"]
                    .as_str()
                    .is_some_and(|peer| peer.starts_with("tcp:127.0.0.1:"))
                && entry["details"]["reason"]
                    .as_str()
                    .is_some_and(|text| text.contains(reason))
        });
    }
}

#[test]
fn repeated_failures_lock_the_caller_out_and_the_lockout_expires() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = serving_tls(&[
        ("RKM_ACCESS_LOCK_AFTER", "3"),
        ("RKM_ACCESS_LOCKOUT_SECONDS", "3"),
    ]);
    let custodians = custodians_with_fast_identities(dir.path(), &["alice"]);
    enrol_all(&daemon, &custodians);
    let alice = custodians[0].open_identity();
    // Someone who claims to be alice with a key of their own.
    let impostor_dir = dir.path().join("impostor");
    std::fs::create_dir_all(&impostor_dir).unwrap();
    let impostor = Custodian::with_fast_identity(&impostor_dir, "alice").open_identity();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let channel = tls_channel(&daemon, None).await;
        let body = naming(1, "alice");
        for attempt in 0..3 {
            let forged = authorisation(&impostor, GET_CHALLENGE_METHOD, &[], &body).unwrap();
            assert_refused(
                &call(&channel, GET_CHALLENGE_METHOD, body.clone(), Some(forged)).await,
                "signature does not verify",
                &format!("forged attempt {attempt}"),
            );
        }
        // Locked: even alice's honest request is refused for now.
        let honest = authorisation(&alice, GET_CHALLENGE_METHOD, &[], &body).unwrap();
        assert_refused(
            &call(&channel, GET_CHALLENGE_METHOD, body.clone(), Some(honest)).await,
            "too many failed attempts",
            "alice's request during the lockout",
        );
        // And it ends.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let honest = authorisation(&alice, GET_CHALLENGE_METHOD, &[], &body).unwrap();
            let outcome = call(&channel, GET_CHALLENGE_METHOD, body.clone(), Some(honest)).await;
            if outcome == Outcome::Admitted {
                break;
            }
            assert_refused(
                &outcome,
                "too many failed attempts",
                "alice during the lockout",
            );
            assert!(Instant::now() < deadline, "the lockout never ended");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    // Both the peer's address and the identity it claimed are locked.
    for actor in ["ip:127.0.0.1", "custodian:alice"] {
        wait_for_audit_entry(&daemon, "access.lockout", actor, |entry| {
            entry["actor"] == actor && entry["details"]["failures"] == "3"
        });
    }
    let lockout_refusal = wait_for_audit_entry(
        &daemon,
        "access.refused",
        "alice refused while locked out",
        |entry| {
            entry["actor"] == "custodian:alice"
                && entry["details"]["reason"]
                    .as_str()
                    .is_some_and(|text| text.contains("too many failed attempts"))
        },
    );
    assert!(
        lockout_refusal["details"]["peer"]
            .as_str()
            .is_some_and(|peer| peer.starts_with("tcp:")),
        "{lockout_refusal}"
    );
    assert_ok(
        &daemon.rkm_over_tls(Some("auditor"), &["status"]).unwrap(),
        "status after the lockout",
    );
}
