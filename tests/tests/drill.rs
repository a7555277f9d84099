//! A recovery drill end to end with the real rkmd and rkm: opened by the
//! operator, custodians notified, a stranger not shown it, the quorum
//! approves, the key signs the drill challenge in the HSM and nothing else;
//! `rkm drill report` tells the outcome, who was notified and approved, the
//! times and what went wrong; the artefact verifies offline, carries no
//! command, and the HSM holds no key afterwards.

use std::time::Duration;

use rkm_tests::Daemon;
use rkm_tests::custodians::{
    assert_fails, assert_ok, assert_ok_json, audit_key, custodians_with_fast_identities,
    enrol_and_create_key, fetch_all, open_drill, path_str, wait_for_recovery_state,
};
use serde_json::Value;

const LABEL: &str = "fleet-root";

fn report(daemon: &Daemon, id: &str) -> Value {
    assert_ok_json(
        &daemon
            .rkm(&["drill", "report", id, "--output", "json"])
            .unwrap(),
        "drill report",
    )
}

#[test]
fn drill_signs_only_a_challenge_and_reports_who_when_and_what_went_wrong() {
    let daemon = Daemon::start_tls().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let all = custodians_with_fast_identities(dir.path(), &["alice", "bob", "carol", "mallory"]);
    let (custodians, stranger) = (&all[..3], &all[3]);
    let key_id = enrol_and_create_key(&daemon, custodians, LABEL, 2);
    assert_ok(&stranger.enrol(&daemon), "enrol mallory");
    fetch_all(&daemon, custodians, LABEL, &[]);

    let opened = open_drill(&daemon, LABEL);
    let id = opened["ceremony_id"].as_str().unwrap().to_owned();
    assert_eq!(opened["target_count"], 0, "{opened}");
    assert_eq!(opened["kind"], "drill", "{opened}");

    let listed = assert_ok(&daemon.rkm(&["recovery", "list"]).unwrap(), "list");
    assert!(
        listed.contains(&id) && listed.contains("drill challenge"),
        "{listed}"
    );

    // Custodians review it as a drill.
    let shown = assert_ok(&daemon.rkm(&["recovery", "show", &id]).unwrap(), "show");
    assert!(shown.contains("drill challenge"), "{shown}");

    // Someone who holds no share of the key is not even shown the
    // ceremony; a disabled custodian's approval is refused by rkmd, and the
    // report will say so.
    assert_fails(
        &stranger.approve(&daemon, &id),
        5,
        &["does not exist"],
        "mallory approves",
    );
    assert_ok(
        &daemon
            .rkm(&["custodian", "disable", "carol", "--reason", "on leave"])
            .unwrap(),
        "disable carol",
    );
    assert_fails(
        &custodians[2].approve(&daemon, &id),
        4,
        &["disabled"],
        "carol approves while disabled",
    );
    let first = assert_ok_json(&custodians[0].approve(&daemon, &id), "alice approves");
    assert_eq!(first["quorum_reached"], false);
    let pending = report(&daemon, &id);
    assert_eq!(pending["outcome"], "open", "{pending}");
    assert_eq!(pending["seconds_to_quorum"], Value::Null);

    std::thread::sleep(Duration::from_millis(50));
    let second = assert_ok_json(&custodians[1].approve(&daemon, &id), "bob approves");
    assert_eq!(second["quorum_reached"], true);
    let completed = wait_for_recovery_state(&daemon, &id, "completed", Duration::from_secs(60));
    assert_eq!(completed["signed_count"], 0, "{completed}");

    let done = report(&daemon, &id);
    assert_eq!(done["outcome"], "passed", "{done}");
    assert_eq!(done["drill_signature_verifies"], true);
    assert_eq!(done["key_id"], key_id.as_str());
    assert_eq!(done["threshold"], 2);
    let approvers: Vec<&str> = done["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["custodian"].as_str().unwrap())
        .collect();
    assert_eq!(approvers, ["alice", "bob"]);
    let notified: Vec<&str> = done["notices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["custodian"].as_str().unwrap())
        .collect();
    assert_eq!(notified, ["alice", "bob", "carol"]);
    assert!(done["seconds_to_quorum"].as_f64().unwrap() > 0.0, "{done}");
    assert!(
        done["seconds_to_signature"].as_f64().unwrap() >= 0.0,
        "{done}"
    );
    let problems = done["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{done}");
    assert!(
        problems[0]
            .as_str()
            .unwrap()
            .contains("access.refused by custodian:")
            && problems[0].as_str().unwrap().contains("disabled"),
        "{done}"
    );
    let text = assert_ok(&daemon.rkm(&["drill", "report", &id]).unwrap(), "report");
    assert!(
        text.contains("outcome     passed") && text.contains("verifies against the key record"),
        "{text}"
    );

    // The artefact proves the drill offline and carries no command.
    let artefact = dir.path().join("drill.rkma");
    assert_ok(
        &daemon
            .rkm(&["recovery", "collect", &id, "-o", path_str(&artefact)])
            .unwrap(),
        "collect",
    );
    let bundle = std::fs::read_to_string(&artefact).unwrap();
    assert_eq!(bundle.lines().count(), 3, "magic, header, end 0");
    assert!(bundle.ends_with("end 0\n"));
    let record = custodians[0].key_record_file(&key_id);
    let verified = assert_ok_json(
        &daemon
            .rkm(&[
                "artefact",
                "verify",
                path_str(&artefact),
                "--key-record",
                path_str(&record),
                "--audit-key",
                &audit_key(&daemon),
                "--output",
                "json",
            ])
            .unwrap(),
        "artefact verify",
    );
    assert_eq!(verified["verified"], true, "{verified}");
    assert_eq!(verified["target_count"], 0);

    // No key, KEK or share is left in the HSM.
    let status = assert_ok_json(
        &daemon.rkm(&["status", "--output", "json"]).unwrap(),
        "status",
    );
    assert_eq!(status["hsm_session_objects"], 0, "{status}");

    // A recovery is not a drill.
    assert_fails(
        &daemon
            .rkm(&["drill", "report", "rec-0000000000000000"])
            .unwrap(),
        5,
        &["rec-0000000000000000"],
        "report of an unknown ceremony",
    );
}

#[test]
fn a_drill_with_targets_is_refused_and_nothing_is_opened() {
    use rkm_client::connect::Target;
    use rkm_proto::v1::open_recovery_request::Part;
    use rkm_proto::v1::recovery_service_client::RecoveryServiceClient;
    use rkm_proto::v1::{ListRecoveriesRequest, OpenRecoveryRequest, RecoveryHeader};

    let daemon = Daemon::start_tls().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let custodians = custodians_with_fast_identities(dir.path(), &["alice", "bob"]);
    enrol_and_create_key(&daemon, &custodians, LABEL, 2);
    fetch_all(&daemon, &custodians, LABEL, &[]);
    let request_toml = "reason = \"drill\"\nincident = \"D-1\"\nnot_before = \"2026-01-01T00:00:00Z\"\nnot_after = \"2036-01-01T00:00:00Z\"\n[command]\nkind = \"custom\"\ntype = \"rkm-drill\"\npayload = \"\"\n";
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let channel = Target::Socket(daemon.socket()).connect().await.unwrap();
        let mut client = RecoveryServiceClient::new(channel);
        let messages = vec![
            OpenRecoveryRequest {
                part: Some(Part::Header(RecoveryHeader {
                    key: LABEL.to_owned(),
                    request_toml: request_toml.to_owned(),
                    expires_in_seconds: 3600,
                    emergency: false,
                    justification: String::new(),
                    drill: true,
                })),
            },
            OpenRecoveryRequest {
                part: Some(Part::TargetsChunk(b"meter-1\nmeter-2\n".to_vec())),
            },
        ];
        let status = client
            .open_recovery(tokio_stream::iter(messages))
            .await
            .expect_err("a drill with targets is refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status.message().contains("never a command") && status.message().contains("2 given"),
            "{}",
            status.message()
        );
        let listed = client
            .list_recoveries(ListRecoveriesRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(listed.recoveries.is_empty(), "{listed:?}");
    });
}
