//! Share attestations between ceremonies, with the real rkmd and rkm: a
//! custodian checks their share offline and attests it (`rkm share verify
//! --attest`); `rkm status` and `rkm key show` count recent attestations
//! against the threshold and flag a quorum at risk; replayed, stale, forged,
//! misdirected and strangers' attestations, and disabled custodians', are
//! refused with a clear error and an audit entry, and change nothing.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rkm_client::connect::Target;
use rkm_client::custodian_auth::{method, signed_request};
use rkm_proto::commitment::PossessionKey;
use rkm_proto::messages::{share_attestation_message, share_receipt_message};
use rkm_proto::v1::AttestShareRequest;
use rkm_proto::v1::SubmitReceiptRequest;
use rkm_proto::v1::key_service_client::KeyServiceClient;
use rkm_tests::Daemon;
use rkm_tests::custodians::{
    Custodian, assert_fails, assert_ok, assert_ok_json, custodians_with_fast_identities,
    enrol_and_create_key, fetch_all, show_key, wait_for_audit_entry,
};
use serde_json::Value;

const LABEL: &str = "fleet-root";

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Attestations are ordered by their whole second: one per custodian per
/// second, each later than the last (the receipt included).
fn wait_for_next_second() {
    let now = unix_now();
    while unix_now() == now {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn status(daemon: &Daemon) -> Value {
    assert_ok_json(
        &daemon.rkm(&["status", "--output", "json"]).unwrap(),
        "status",
    )
}

/// An attestation by `signer`'s identity in the name of `claimed`, over
/// `claimed`'s share x and `commitment`, at `unix_time`.
fn attestation(
    signer: &Custodian,
    claimed: &Custodian,
    key_id: &str,
    commitment: &[u8; 32],
    unix_time: u64,
) -> AttestShareRequest {
    let x = claimed
        .key_record(key_id)
        .custodian(&claimed.name)
        .expect("the custodian is in the key record")
        .x;
    let message = share_attestation_message(key_id, &claimed.name, x, commitment, unix_time);
    // Proof of possession by the signer's own share.
    let envelope = signer.open_envelope(key_id);
    let possession = PossessionKey::derive(key_id, &envelope.share, &envelope.salt);
    AttestShareRequest {
        key_id: key_id.to_owned(),
        custodian: claimed.name.clone(),
        unix_time,
        signature: signer.open_identity().sign(&message).to_vec(),
        possession_proof: possession.prove(&message).to_vec(),
    }
}

/// Sends `request`; the gRPC code and message of a refusal.
/// The request travels signed, as every custodian request does, by the
/// custodian it names (one of `custodians`), so what is tested is rkmd's
/// check of the attestation inside it.
fn send(
    daemon: &Daemon,
    custodians: &[Custodian],
    request: AttestShareRequest,
) -> Result<Value, (tonic::Code, String)> {
    let sender = custodians
        .iter()
        .find(|c| c.name == request.custodian)
        .expect("the named custodian is one of the test's");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let channel = Target::Socket(daemon.socket()).connect().await.unwrap();
        let request = signed_request(
            &channel,
            &sender.open_identity(),
            method::ATTEST_SHARE,
            request,
        )
        .await
        .unwrap();
        match KeyServiceClient::new(channel).attest_share(request).await {
            Ok(response) => Ok(serde_json::json!({
                "attested_recently": response.into_inner().key.unwrap().attested_recently
            })),
            Err(status) => Err((status.code(), status.message().to_owned())),
        }
    })
}

fn refused(
    daemon: &Daemon,
    custodians: &[Custodian],
    request: AttestShareRequest,
    code: tonic::Code,
    needle: &str,
    what: &str,
) {
    match send(daemon, custodians, request) {
        Ok(value) => panic!("{what}: accepted ({value})"),
        Err((found, message)) => {
            assert_eq!(found, code, "{what}: {message}");
            assert!(
                message.contains(needle),
                "{what}: {message:?} lacks {needle:?}"
            );
        }
    }
}

#[test]
fn attestations_count_against_the_threshold_and_every_bad_one_is_refused_and_audited() {
    let daemon = Daemon::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let all = custodians_with_fast_identities(dir.path(), &["alice", "bob", "carol", "mallory"]);
    let (custodians, stranger) = (&all[..3], &all[3]);
    let key_id = enrol_and_create_key(&daemon, custodians, LABEL, 2);
    assert_ok(&stranger.enrol(&daemon), "enrol mallory");
    let (alice, bob, carol) = (&custodians[0], &custodians[1], &custodians[2]);

    // Nobody holds a checked share yet, but the custodians are within their
    // receipt window: the key awaits them and is not called at risk.
    let keys = status(&daemon)["keys"].clone();
    assert_eq!(keys[0]["label"], LABEL, "{keys}");
    assert_eq!(keys[0]["attested_recently"], 0);
    assert_eq!(keys[0]["usable_custodians"], 0);
    assert_eq!(keys[0]["threshold"], 2);
    assert_eq!(keys[0]["attestation_window_days"], 90);
    assert_eq!(keys[0]["quorum_health"], "awaiting receipts");
    assert_eq!(keys[0]["quorum_at_risk"], false);
    let text = assert_ok(&daemon.rkm(&["status"]).unwrap(), "status");
    assert!(text.contains("awaiting receipts until"), "{text}");
    assert!(!text.contains("QUORUM AT RISK"), "{text}");

    // A receipt follows the same offline check: it is the first attestation.
    fetch_all(&daemon, &custodians[..1], LABEL, &[]);
    assert_eq!(status(&daemon)["keys"][0]["attested_recently"], 1);
    // Alice checks her share again offline and attests: still one custodian.
    wait_for_next_second();
    let report = assert_ok_json(
        &alice.verify(&daemon, LABEL, &["--attest", "--output", "json"]),
        "share verify --attest",
    );
    assert_eq!(report["key_id"], key_id.as_str());
    assert_eq!(report["custodian"], "alice");
    assert_eq!(report["attested_recently"], 1);
    assert_eq!(report["quorum_health"], "awaiting receipts");
    wait_for_next_second();
    let text = assert_ok(
        &alice.verify(&daemon, LABEL, &["--attest"]),
        "share verify --attest",
    );
    assert!(
        text.contains("attested    sent; 1 of 3 custodians usable"),
        "{text}"
    );
    fetch_all(&daemon, &custodians[1..], LABEL, &[]);
    let keys = status(&daemon)["keys"].clone();
    assert_eq!(keys[0]["attested_recently"], 3);
    assert_eq!(keys[0]["quorum_health"], "healthy");
    assert_eq!(keys[0]["quorum_at_risk"], false);
    let text = assert_ok(&daemon.rkm(&["status"]).unwrap(), "status");
    assert!(!text.contains("QUORUM AT RISK"), "{text}");
    let shown = show_key(&daemon, LABEL);
    assert_eq!(shown["attested_recently"], 3, "{shown}");
    for receipt in shown["receipts"].as_array().unwrap() {
        assert!(receipt["attested_at"].is_string(), "{shown}");
        assert_eq!(receipt["attested_recently"], true, "{shown}");
    }

    // A fresh attestation over gRPC is accepted; sent again, it is a replay.
    let commitment = alice.commitment(&key_id);
    let fresh = attestation(alice, alice, &key_id, &commitment, unix_now() + 2);
    assert_eq!(
        send(&daemon, &all, fresh.clone()).unwrap()["attested_recently"],
        3
    );
    refused(
        &daemon,
        &all,
        fresh,
        tonic::Code::FailedPrecondition,
        "replayed",
        "replay",
    );
    refused(
        &daemon,
        &all,
        attestation(alice, alice, &key_id, &commitment, unix_now() - 3_600),
        tonic::Code::InvalidArgument,
        "clock",
        "an hour-old attestation",
    );
    refused(
        &daemon,
        &all,
        attestation(bob, alice, &key_id, &commitment, unix_now() + 3),
        tonic::Code::PermissionDenied,
        "not signed by custodian \"alice\"",
        "bob signing for alice",
    );
    refused(
        &daemon,
        &all,
        attestation(alice, alice, &key_id, &[0; 32], unix_now() + 3),
        tonic::Code::PermissionDenied,
        "commitment",
        "an attestation over another commitment",
    );
    // Signed by Alice, but without her share: the proof is made with none.
    let mut without_share = attestation(alice, alice, &key_id, &commitment, unix_now() + 3);
    without_share.possession_proof = vec![0; 64];
    refused(
        &daemon,
        &all,
        without_share,
        tonic::Code::PermissionDenied,
        "does not prove possession of the share",
        "an attestation without the share",
    );
    let mut stranger_request = attestation(alice, alice, &key_id, &commitment, unix_now() + 3);
    stranger_request.custodian = stranger.name.clone();
    refused(
        &daemon,
        &all,
        stranger_request,
        tonic::Code::PermissionDenied,
        "not a custodian of key fleet-root",
        "mallory, who holds no share",
    );

    // A disabled custodian's attestation does not count.
    assert_ok(
        &daemon
            .rkm(&["custodian", "disable", "carol", "--reason", "left"])
            .unwrap(),
        "disable carol",
    );
    assert_fails(
        &carol.verify(&daemon, LABEL, &["--attest"]),
        4,
        &["disabled"],
        "attest while disabled",
    );

    // Nothing refused changed the count; every attempt is in the audit log
    // (listed once a checkpoint covers it).
    // Carol's receipt still counts until the window passes; what changed
    // nothing is the refused attempts.
    assert_eq!(status(&daemon)["keys"][0]["attested_recently"], 3);
    let deadline = Instant::now() + Duration::from_secs(30);
    let entries = loop {
        let entries = assert_ok_json(
            &daemon
                .rkm(&[
                    "audit",
                    "show",
                    "--action",
                    "share.attest",
                    "--output",
                    "json",
                ])
                .unwrap(),
            "audit show",
        );
        if entries.as_array().unwrap().len() >= 9 || Instant::now() > deadline {
            break entries;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let outcomes: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes.iter().filter(|&&o| o == "ok").count(),
        3,
        "{entries}"
    );
    assert_eq!(
        outcomes.iter().filter(|&&o| o == "refused").count(),
        6,
        "{entries}"
    );
    // The disabled custodian never reaches the attestation check: the access
    // layer refuses her request and records who it was.
    // Entries show once a checkpoint covers them: wait for it.
    wait_for_audit_entry(
        &daemon,
        "access.refused",
        "carol's refused attestation",
        |entry| {
            entry["actor"] == "custodian:carol"
                && entry["outcome"] == "refused"
                && entry["details"]["reason"]
                    .as_str()
                    .unwrap_or("")
                    .contains("disabled")
        },
    );
}

#[test]
fn a_receipt_must_prove_possession_of_the_share() {
    let daemon = Daemon::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let custodians = custodians_with_fast_identities(dir.path(), &["alice", "bob"]);
    let key_id = enrol_and_create_key(&daemon, &custodians, LABEL, 2);
    let (alice, bob) = (&custodians[0], &custodians[1]);
    fetch_all(&daemon, &custodians[..1], LABEL, &[]);

    // Bob's receipt, signed by Bob, but made without Bob's share: with no
    // proof, and with a proof from Alice's share.
    let record = alice.key_record(&key_id);
    let slot = record.custodian("bob").unwrap();
    let message = share_receipt_message(&key_id, "bob", slot.x, &slot.commitment);
    let alices = alice.open_envelope(&key_id);
    let alices_key = PossessionKey::derive(&key_id, &alices.share, &alices.salt);
    for proof in [Vec::new(), alices_key.prove(&message).to_vec()] {
        let request = SubmitReceiptRequest {
            key_id: key_id.clone(),
            custodian: "bob".to_owned(),
            signature: bob.open_identity().sign(&message).to_vec(),
            possession_proof: proof,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let status = runtime
            .block_on(async {
                let channel = Target::Socket(daemon.socket()).connect().await.unwrap();
                let request = signed_request(
                    &channel,
                    &bob.open_identity(),
                    method::SUBMIT_RECEIPT,
                    request,
                )
                .await
                .unwrap();
                KeyServiceClient::new(channel).submit_receipt(request).await
            })
            .expect_err("a receipt without the share is refused");
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert!(
            status
                .message()
                .contains("does not prove possession of the share"),
            "{}",
            status.message()
        );
    }
    assert_eq!(show_key(&daemon, LABEL)["state"], "awaiting-receipts");

    // Bob's real fetch proves it and activates the key.
    fetch_all(&daemon, &custodians[1..], LABEL, &[]);
    assert_eq!(show_key(&daemon, LABEL)["state"], "active");
}
