//! Recovery ceremonies end to end, with the real rkmd on a fresh SoftHSM
//! token and the real rkm: five custodians, each with their own identity
//! file and share directory, hold a 3-of-5 key; an operator opens a
//! recovery, custodians approve with their shares, rkmd signs one command
//! per target and the artefact verifies offline. Refusals (replays, reused
//! nonces, foreign, disabled or late approvals, bad shares, changed
//! requests) are clear errors with an audit entry that leave the honest
//! custodians' approvals intact; kill -9 loses no approval; expiry destroys
//! the held shares; a tampered artefact fails naming the record; and no
//! share or KEK byte reaches rkmd's files or log.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use rkm_client::connect::Target;
use rkm_client::custodian_auth::{method, signed_request};
use rkm_proto::approval::approval_message;
use rkm_proto::custodian_card::parse_age_recipient;
use rkm_proto::envelope::{self, EnvelopeContents};
use rkm_proto::identity::CustodianIdentity;
use rkm_proto::kek_check::kek_matches;
use rkm_proto::secret::Share;
use rkm_proto::shamir;
use rkm_proto::v1::recovery_service_client::RecoveryServiceClient;
use rkm_proto::v1::{ApproveRequest, GetApprovalNonceRequest, GetRecoveryRequest, RecoverySummary};
use rkm_tests::Daemon;
use rkm_tests::custodians::{
    Custodian, NAMES, assert_fails, assert_no_secret_bytes, assert_no_secret_in, assert_ok,
    assert_ok_json, audit_key, contains_bytes, custodians_with_fast_identities,
    enrol_and_create_key, fetch_all, files_under, path_str, text, wait_for_recovery_state,
};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tonic::transport::Channel;

const LABEL: &str = "fleet-root";
/// How long a ceremony may take to be signed before a test fails.
const SIGNING_TIMEOUT: Duration = Duration::from_secs(180);

/// A serving rkmd with a 3-of-5 key whose custodians all hold their share.
struct Setup {
    daemon: Daemon,
    dir: tempfile::TempDir,
    custodians: Vec<Custodian>,
    key_id: String,
    audit_key: String,
}

fn setup() -> Setup {
    let daemon = Daemon::start_tls().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let custodians = custodians_with_fast_identities(dir.path(), &NAMES);
    let key_id = enrol_and_create_key(&daemon, &custodians, LABEL, 3);
    let audit_key = audit_key(&daemon);
    fetch_all(&daemon, &custodians, LABEL, &["--audit-key", &audit_key]);
    Setup {
        daemon,
        dir,
        custodians,
        key_id,
        audit_key,
    }
}

/// A revoke-certificate request file; `serial` tells requests apart.
fn request_file(dir: &Path, serial: &str, inline_targets: &[&str]) -> PathBuf {
    let file = dir.join(format!("request-{serial}.toml"));
    let targets = if inline_targets.is_empty() {
        String::new()
    } else {
        format!(
            "targets = [{}]\n",
            inline_targets
                .iter()
                .map(|t| format!("{t:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    std::fs::write(
        &file,
        format!(
            "reason = \"Issuing CA 2 key compromised\"\nincident = \"INC-4711\"\nnot_before = \"2026-11-27T00:00:00Z\"\nnot_after = \"2026-12-04T00:00:00Z\"\n{targets}\n[command]\nkind = \"revoke-certificate\"\nissuer = \"CN=Issuing CA 2, O=Grid\"\nserial = \"{serial}\"\n"
        ),
    )
    .unwrap();
    file
}

/// A manifest of `count` device ids, with a comment, a blank line and CRLF
/// line ends mixed in.
fn manifest(dir: &Path, name: &str, count: usize) -> PathBuf {
    let file = dir.join(name);
    let mut text = String::from("# meters of district 7\n\n");
    for i in 0..count {
        let end = if i % 3 == 0 { "\r\n" } else { "\n" };
        text.push_str(&format!("meter-{i:07}{end}"));
    }
    std::fs::write(&file, text).unwrap();
    file
}

/// `recovery open --key LABEL --request FILE [--targets FILE] --expires
/// DURATION`.
fn open_command<'a>(
    request: &'a Path,
    targets: Option<&'a Path>,
    expires: &'a str,
) -> Vec<&'a str> {
    let mut args = vec![
        "recovery",
        "open",
        "--key",
        LABEL,
        "--request",
        path_str(request),
        "--expires",
        expires,
    ];
    if let Some(targets) = targets {
        args.extend(["--targets", path_str(targets)]);
    }
    args
}

impl Setup {
    fn rkm(&self, args: &[&str]) -> Output {
        self.daemon.rkm(args).unwrap()
    }

    /// Opens a ceremony, asserting it opens; returns its JSON report.
    fn open(&self, request: &Path, targets: Option<&Path>, expires: &str) -> Value {
        let mut args = open_command(request, targets, expires);
        args.extend(["--output", "json"]);
        assert_ok_json(&self.rkm(&args), "recovery open")
    }

    /// Opens a ceremony for `count` manifest targets; returns its id.
    fn open_with_targets(&self, count: usize) -> String {
        let request = request_file(self.dir.path(), "0a1b2c", &[]);
        let targets = manifest(self.dir.path(), &format!("targets-{count}.txt"), count);
        let opened = self.open(&request, Some(&targets), "1h");
        assert_eq!(opened["target_count"], count as u64, "{opened}");
        opened["ceremony_id"].as_str().unwrap().to_owned()
    }

    fn show(&self, ceremony_id: &str) -> Value {
        assert_ok_json(
            &self.rkm(&["recovery", "show", ceremony_id, "--output", "json"]),
            "recovery show",
        )
    }

    /// Waits, with bounded retries, for the ceremony to reach `state`.
    fn wait_for_state(&self, ceremony_id: &str, state: &str) -> Value {
        wait_for_recovery_state(&self.daemon, ceremony_id, state, SIGNING_TIMEOUT)
    }

    /// Approves with the first `k` custodians through the CLI.
    fn approve_with(&self, ceremony_id: &str, custodians: &[usize]) {
        for (n, &i) in custodians.iter().enumerate() {
            let report = assert_ok_json(
                &self.custodians[i].approve(&self.daemon, ceremony_id),
                "recovery approve",
            );
            assert_eq!(report["custodian"], NAMES[i]);
            assert_eq!(report["approval_count"], (n + 1) as u64, "{report}");
            assert_eq!(report["threshold"], 3);
        }
    }

    fn collect(&self, ceremony_id: &str, file: &Path) -> Value {
        assert_ok_json(
            &self.rkm(&[
                "recovery",
                "collect",
                ceremony_id,
                "-o",
                path_str(file),
                "--output",
                "json",
            ]),
            "recovery collect",
        )
    }

    /// `rkm artefact verify FILE` with alice's key record copy.
    fn verify_artefact(&self, file: &Path, extra: &[&str]) -> Output {
        let record = self.custodians[0].key_record_file(&self.key_id);
        let mut args = vec![
            "artefact",
            "verify",
            path_str(file),
            "--key-record",
            path_str(&record),
            "--audit-key",
            &self.audit_key,
        ];
        args.extend_from_slice(extra);
        self.rkm(&args)
    }

    /// The audit entries about a ceremony, from rkmd.
    fn audit_entries(&self, ceremony_id: &str) -> Vec<Value> {
        assert_ok_json(
            &self.rkm(&[
                "audit",
                "show",
                "--ceremony",
                ceremony_id,
                "--output",
                "json",
            ]),
            "audit show",
        )
        .as_array()
        .unwrap()
        .clone()
    }

    /// The audit entries about a ceremony once `done` holds for them,
    /// waiting with bounded retries: an entry is listed once a signed
    /// checkpoint covers it (within the checkpoint interval, 2 s).
    fn audit_entries_once(&self, ceremony_id: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let entries = self.audit_entries(ceremony_id);
            if done(&entries) {
                return entries;
            }
            assert!(
                Instant::now() < deadline,
                "the audit log of {ceremony_id} lacks what was expected: {:#?}",
                actions(&entries)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.daemon.state_dir().join("rkm.sqlite3")).unwrap()
    }

    /// (custodian, held share present) of a ceremony's approvals.
    fn held_shares(&self, ceremony_id: &str) -> Vec<(String, bool)> {
        let db = self.db();
        let mut statement = db
            .prepare(
                "SELECT custodian, held_share IS NOT NULL FROM approvals WHERE ceremony_id = ?1 ORDER BY custodian",
            )
            .unwrap();
        statement
            .query_map([ceremony_id], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// The ceremony's state as stored, read while rkmd is down.
    fn show_offline_state(&self, ceremony_id: &str) -> String {
        self.db()
            .query_row(
                "SELECT state FROM ceremonies WHERE id = ?1",
                [ceremony_id],
                |row| row.get(0),
            )
            .unwrap()
    }

    /// Every custodian's share, decrypted here.
    fn shares(&self) -> Vec<Share> {
        self.custodians
            .iter()
            .map(|c| c.held_share(&self.key_id))
            .collect()
    }
}

fn actions(entries: &[Value]) -> Vec<(String, String)> {
    entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn count(actions: &[(String, String)], action: &str, outcome: &str) -> usize {
    actions
        .iter()
        .filter(|(a, o)| a == action && o == outcome)
        .count()
}

/// Asserts that no spelling of any of `secrets` is in rkmd's state
/// directory files or its log.
fn assert_no_secret_bytes_in_rkmd(setup: &Setup, secrets: &[(String, Vec<u8>)], when: &str) {
    let mut files = files_under(&setup.daemon.state_dir());
    files.push(setup.daemon.log_file());
    assert!(files.len() > 2, "{when}: the state directory holds files");
    assert_no_secret_bytes(&files, secrets, when);
}

// ----- gRPC-level approvals, for the refusal tests -----

/// A gRPC client that signs each request, as rkm does, as the custodian it
/// names, so the tests reach rkmd's checks of the approval inside it.
struct Grpc {
    channel: Channel,
    signers: Vec<(String, CustodianIdentity)>,
}

impl Grpc {
    fn signer(&self, name: &str) -> &CustodianIdentity {
        &self
            .signers
            .iter()
            .find(|(signer, _)| signer == name)
            .unwrap_or_else(|| panic!("{name} is not one of the test's custodians"))
            .1
    }

    async fn signed<M: prost::Message>(
        &self,
        by: &str,
        method: &'static str,
        message: M,
    ) -> tonic::Request<M> {
        signed_request(&self.channel, self.signer(by), method, message)
            .await
            .expect("rkmd issues a challenge")
    }

    async fn approve(
        &mut self,
        request: ApproveRequest,
    ) -> Result<tonic::Response<rkm_proto::v1::ApproveResponse>, tonic::Status> {
        let by = request.custodian.clone();
        let request = self.signed(&by, method::APPROVE, request).await;
        RecoveryServiceClient::new(self.channel.clone())
            .approve(request)
            .await
    }

    async fn get_approval_nonce(
        &mut self,
        request: GetApprovalNonceRequest,
    ) -> Result<tonic::Response<rkm_proto::v1::GetApprovalNonceResponse>, tonic::Status> {
        let by = request.custodian.clone();
        let request = self.signed(&by, method::GET_APPROVAL_NONCE, request).await;
        RecoveryServiceClient::new(self.channel.clone())
            .get_approval_nonce(request)
            .await
    }
}

async fn client(daemon: &Daemon, custodians: &[&Custodian]) -> Grpc {
    Grpc {
        channel: Target::Socket(daemon.socket())
            .connect()
            .await
            .expect("rkmd is reachable"),
        signers: custodians
            .iter()
            .map(|custodian| (custodian.name.clone(), custodian.open_identity()))
            .collect(),
    }
}

async fn summary(client: &mut Grpc, by: &Custodian, id: &str) -> RecoverySummary {
    let request = client
        .signed(
            &by.name,
            method::GET_RECOVERY,
            GetRecoveryRequest {
                ceremony_id: id.to_owned(),
                custodian: by.name.clone(),
            },
        )
        .await;
    RecoveryServiceClient::new(client.channel.clone())
        .get_recovery(request)
        .await
        .unwrap()
        .into_inner()
        .recovery
        .unwrap()
}

async fn nonce(client: &mut Grpc, id: &str, custodian: &str) -> [u8; 32] {
    client
        .get_approval_nonce(GetApprovalNonceRequest {
            ceremony_id: id.to_owned(),
            custodian: custodian.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .nonce
        .try_into()
        .unwrap()
}

/// An approval as rkm builds it, with each part open to forgery: the
/// ceremony and digest signed, the nonce, and the share sealed.
struct Forged<'a> {
    by: &'a Custodian,
    send_to: String,
    signed_ceremony: String,
    signed_digest: [u8; 32],
    nonce: [u8; 32],
    commitment: [u8; 32],
    share: EnvelopeContents,
    recipient: String,
}

impl Forged<'_> {
    fn request(&self) -> ApproveRequest {
        let commitment = self.commitment;
        let identity = self.by.open_identity();
        let signature = identity.sign(&approval_message(
            &self.signed_ceremony,
            &self.signed_digest,
            &self.nonce,
            &commitment,
        ));
        let recipient = parse_age_recipient(&self.recipient).unwrap();
        ApproveRequest {
            ceremony_id: self.send_to.clone(),
            custodian: self.by.name.clone(),
            nonce: self.nonce.to_vec(),
            commitment: commitment.to_vec(),
            signature: signature.to_vec(),
            sealed_share: envelope::seal(&self.share, &recipient).unwrap(),
        }
    }
}

/// An honest approval by `by` of ceremony `id`, with a fresh nonce.
async fn honest<'a>(setup: &Setup, client: &mut Grpc, by: &'a Custodian, id: &str) -> Forged<'a> {
    let current = summary(client, by, id).await;
    Forged {
        by,
        send_to: id.to_owned(),
        signed_ceremony: id.to_owned(),
        signed_digest: current.request_digest.as_slice().try_into().unwrap(),
        nonce: nonce(client, id, &by.name).await,
        commitment: by.commitment(&setup.key_id),
        share: by.open_envelope(&setup.key_id),
        recipient: current.ceremony_recipient,
    }
}

/// Sends an approval expecting a refusal with `code` and every one of
/// `needles` in its message.
async fn refused(
    client: &mut Grpc,
    request: ApproveRequest,
    code: tonic::Code,
    needles: &[&str],
    what: &str,
) {
    let status = client
        .approve(request)
        .await
        .expect_err(&format!("{what}: the approval was accepted"));
    assert_eq!(status.code(), code, "{what}: {status:?}");
    for needle in needles {
        assert!(
            status.message().contains(needle),
            "{what}: message lacks {needle:?}: {}",
            status.message()
        );
    }
}

// ----- the tests -----

#[test]
fn recovery_three_of_five_for_ten_thousand_targets_verifies_offline_and_in_the_audit_log() {
    let setup = setup();
    let request = request_file(setup.dir.path(), "0a1b2c", &[]);
    let targets = manifest(setup.dir.path(), "targets.txt", 10_000);
    let opened = setup.open(&request, Some(&targets), "24h");
    let id = opened["ceremony_id"].as_str().unwrap().to_owned();
    let digest = opened["request_digest"].as_str().unwrap().to_owned();
    assert_eq!(digest.len(), 64);
    assert_eq!(opened["state"], "open");
    assert_eq!(opened["target_count"], 10_000);
    assert_eq!(opened["approval_count"], 0);
    assert_eq!(opened["key_id"], setup.key_id.as_str());

    // What custodians review: the decoded request, the count, the digest.
    let shown = assert_ok(&setup.rkm(&["recovery", "show", &id]), "recovery show");
    for expected in [
        id.as_str(),
        digest.as_str(),
        "revoke-certificate",
        "CN=Issuing CA 2, O=Grid",
        "0a1b2c",
        "10000 devices",
        "INC-4711",
        "approvals   0 of 3",
    ] {
        assert!(
            shown.contains(expected),
            "show lacks {expected:?}:\n{shown}"
        );
    }
    let listed = assert_ok_json(
        &setup.rkm(&["recovery", "list", "--output", "json"]),
        "recovery list",
    );
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["ceremony_id"] == id.as_str() && r["state"] == "open"),
        "{listed}"
    );

    // Three custodians approve; the third completes the quorum.
    let approver = &setup.custodians[0];
    let output = approver.approve(&setup.daemon, &id);
    let report = assert_ok_json(&output, "first approval");
    assert_eq!(report["request_digest"], digest.as_str());
    assert_eq!(report["quorum_reached"], false);
    let review = text(&output.stderr);
    assert!(
        review.contains(&digest) && review.contains("10000"),
        "the custodian is shown the digest and the count:\n{review}"
    );
    for i in [1, 2] {
        let report = assert_ok_json(&setup.custodians[i].approve(&setup.daemon, &id), "approval");
        assert_eq!(report["approval_count"], (i + 1) as u64);
        assert_eq!(report["quorum_reached"], i == 2, "{report}");
    }

    // The artefact streams to disk while rkmd signs, and verifies offline.
    let artefact = setup.dir.path().join("recovery.rkma");
    let collected = setup.collect(&id, &artefact);
    assert!(artefact.exists());
    assert!(!setup.dir.path().join("recovery.rkma.partial").exists());
    assert_eq!(
        collected["bytes"].as_u64().unwrap(),
        std::fs::metadata(&artefact).unwrap().len()
    );
    assert_eq!(collected["commands"], 10_000);
    let completed = setup.show(&id);
    assert_eq!(completed["state"], "completed");
    assert_eq!(completed["signed_count"], 10_000);
    let verified = assert_ok_json(
        &setup.verify_artefact(&artefact, &["--output", "json"]),
        "artefact verify",
    );
    assert_eq!(verified["verified"], true);
    assert_eq!(verified["ceremony_id"], id.as_str());
    assert_eq!(verified["target_count"], 10_000);
    assert_eq!(verified["request_digest"], digest.as_str());
    assert_eq!(verified["command_kind"], "revoke-certificate");
    assert_eq!(
        verified["approvers"],
        serde_json::json!(["alice", "bob", "carol"])
    );
    let text_report = assert_ok(&setup.verify_artefact(&artefact, &[]), "artefact verify");
    assert!(
        text_report.contains("The artefact verifies."),
        "{text_report}"
    );
    let lines = std::fs::read_to_string(&artefact).unwrap();
    assert!(lines.starts_with("rkm-artefact v1\nheader "));
    assert!(lines.contains(" meter-0009999 "));
    assert!(lines.ends_with("end 10000\n"));

    // An interrupted collection resumes from FILE.partial.
    let resumed = setup.dir.path().join("resumed.rkma");
    let whole = std::fs::read(&artefact).unwrap();
    std::fs::write(
        setup.dir.path().join("resumed.rkma.partial"),
        &whole[..whole.len() / 2],
    )
    .unwrap();
    let report = setup.collect(&id, &resumed);
    assert_eq!(report["resumed_from"], (whole.len() / 2) as u64);
    assert_eq!(std::fs::read(&resumed).unwrap(), whole);
    assert!(!setup.dir.path().join("resumed.rkma.partial").exists());

    // A partial file whose header is not this artefact's (another run's or
    // another ceremony's) is dropped, and collection starts over.
    let restarted = setup.dir.path().join("restarted.rkma");
    let mut stale = whole[..whole.len() / 3].to_vec();
    let in_header = "rkm-artefact v1\nheader ".len() + 10;
    stale[in_header] = if stale[in_header] == b'A' { b'B' } else { b'A' };
    std::fs::write(setup.dir.path().join("restarted.rkma.partial"), &stale).unwrap();
    let output = setup.rkm(&[
        "recovery",
        "collect",
        &id,
        "-o",
        path_str(&restarted),
        "--output",
        "json",
    ]);
    let report = assert_ok_json(&output, "collect over a stale partial");
    assert_eq!(report["resumed_from"], 0);
    assert_eq!(report["discarded_bytes"], stale.len() as u64);
    assert!(
        text(&output.stderr).contains("not part of the artefact"),
        "the operator is told why: {}",
        text(&output.stderr)
    );
    assert_eq!(std::fs::read(&restarted).unwrap(), whole);

    // A second collect refuses to overwrite the file.
    assert_fails(
        &setup.rkm(&["recovery", "collect", &id, "-o", path_str(&artefact)]),
        1,
        &["already exists"],
        "collect over an existing file",
    );

    // The audit log verifies and records the whole ceremony.
    let audit_file = setup.dir.path().join("audit.rkmlog");
    assert_ok(
        &setup.rkm(&[
            "audit",
            "fetch",
            "-o",
            path_str(&audit_file),
            "--audit-key",
            &setup.audit_key,
        ]),
        "audit fetch",
    );
    assert_ok(
        &setup.rkm(&[
            "audit",
            "verify",
            path_str(&audit_file),
            "--audit-key",
            &setup.audit_key,
        ]),
        "audit verify",
    );
    let entries = assert_ok_json(
        &setup.rkm(&[
            "audit",
            "show",
            "--file",
            path_str(&audit_file),
            "--ceremony",
            &id,
            "--output",
            "json",
        ]),
        "audit show --file",
    );
    let actions = actions(entries.as_array().unwrap());
    assert_eq!(count(&actions, "recovery.open", "ok"), 1, "{actions:?}");
    assert_eq!(count(&actions, "recovery.approve", "ok"), 3, "{actions:?}");
    assert_eq!(count(&actions, "recovery.issue", "ok"), 1, "{actions:?}");
    assert_eq!(count(&actions, "recovery.complete", "ok"), 1, "{actions:?}");
    let approvers: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "recovery.approve")
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert_eq!(approvers, ["alice", "bob", "carol"]);
    let position = |action: &str| actions.iter().position(|(a, _)| a == action).unwrap();
    assert!(position("recovery.open") < position("recovery.approve"));
    assert!(position("recovery.issue") < position("recovery.complete"));
}

#[test]
fn recovery_with_one_approval_short_of_the_quorum_signs_nothing() {
    let setup = setup();
    let id = setup.open_with_targets(5);
    setup.approve_with(&id, &[0, 1]);
    let shown = setup.show(&id);
    assert_eq!(shown["state"], "open");
    assert_eq!(shown["approval_count"], 2);
    assert_eq!(shown["signed_count"], 0);
    assert_eq!(shown["artefact_size"], 0);

    let artefact = setup.dir.path().join("early.rkma");
    assert_fails(
        &setup.rkm(&["recovery", "collect", &id, "-o", path_str(&artefact)]),
        6,
        &["is open", "no artefact"],
        "collect before the quorum",
    );
    assert!(!artefact.exists());
    assert!(!setup.dir.path().join("early.rkma.partial").exists());
    let artefacts = setup.daemon.state_dir().join("artefacts");
    let written: Vec<_> = std::fs::read_dir(&artefacts)
        .map(|entries| entries.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(written.is_empty(), "rkmd wrote an artefact: {written:?}");

    // Nothing was reconstituted: no quorum, issue or completion entry. (rkm
    // status does not report the token's objects; rkmd's session objects are
    // invisible to any other process, so the audit trail is what shows it.)
    let actions = actions(&setup.audit_entries(&id));
    assert_eq!(count(&actions, "recovery.approve", "ok"), 2, "{actions:?}");
    for action in ["recovery.quorum", "recovery.issue", "recovery.complete"] {
        assert!(
            actions.iter().all(|(a, _)| a != action),
            "{action} recorded with two approvals: {actions:?}"
        );
    }
    assert_eq!(
        setup.held_shares(&id),
        [("alice".to_owned(), true), ("bob".to_owned(), true)]
    );
}

#[test]
fn recovery_refusals_are_audited_and_leave_honest_approvals_intact() {
    let setup = setup();
    let [alice, bob, carol, dave, erin] = &setup.custodians[..] else {
        unreachable!()
    };
    let frank = Custodian::with_fast_identity(setup.dir.path(), "frank");
    assert_ok(
        &setup.rkm(&["custodian", "enrol", path_str(&frank.card)]),
        "enrol a custodian who is not on the key",
    );
    let id = setup.open_with_targets(4);
    let other_request = request_file(setup.dir.path(), "ffee", &["meter-x1", "meter-x2"]);
    let other = setup.open(&other_request, None, "1h")["ceremony_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = client(&setup.daemon, &[alice, bob, carol, dave, erin, &frank]).await;
        use tonic::Code;

        // alice approves with the CLI, bob at the gRPC level.
        assert_ok_json(&alice.approve(&setup.daemon, &id), "alice approves");
        let bob_approval = honest(&setup, &mut client, bob, &id).await.request();
        client
            .approve(bob_approval.clone())
            .await
            .expect("bob's approval");

        // The same request sent twice.
        refused(
            &mut client,
            bob_approval.clone(),
            Code::FailedPrecondition,
            &["\"bob\" has already approved"],
            "replayed approval",
        )
        .await;

        // carol reuses bob's spent nonce.
        let mut reused = honest(&setup, &mut client, carol, &id).await;
        reused.nonce = bob_approval.nonce.clone().try_into().unwrap();
        refused(
            &mut client,
            reused.request(),
            Code::PermissionDenied,
            &["nonce was issued for", "\"bob\""],
            "reused nonce",
        )
        .await;

        // A nonce rkmd never issued.
        let mut made_up = honest(&setup, &mut client, carol, &id).await;
        made_up.nonce = [7; 32];
        refused(
            &mut client,
            made_up.request(),
            Code::PermissionDenied,
            &["not issued by this rkmd"],
            "made-up nonce",
        )
        .await;

        // carol's approval of the other ceremony, sent to this one: once
        // with the other ceremony's nonce, once with this one's.
        let for_other = honest(&setup, &mut client, carol, &other).await;
        let mut misdirected = honest(&setup, &mut client, carol, &other).await;
        misdirected.send_to = id.clone();
        refused(
            &mut client,
            misdirected.request(),
            Code::PermissionDenied,
            &["nonce was issued for ceremony", &other],
            "approval with another ceremony's nonce",
        )
        .await;
        let mut misdirected = honest(&setup, &mut client, carol, &id).await;
        misdirected.signed_ceremony = other.clone();
        misdirected.signed_digest = for_other.signed_digest;
        refused(
            &mut client,
            misdirected.request(),
            Code::PermissionDenied,
            &["is not a signature by \"carol\""],
            "approval signed for another ceremony",
        )
        .await;

        // A changed request: carol signs another digest than rkmd's.
        let mut changed = honest(&setup, &mut client, carol, &id).await;
        changed.signed_digest = Sha256::digest(b"another request").into();
        refused(
            &mut client,
            changed.request(),
            Code::PermissionDenied,
            &["is not a signature by \"carol\"", "if the request changed"],
            "approval of a changed request",
        )
        .await;

        // Shares that fail their commitment: bob's share sent by carol, and
        // carol's own share modified. rkmd names carol.
        let mut wrong_share = honest(&setup, &mut client, carol, &id).await;
        wrong_share.share = bob.open_envelope(&setup.key_id);
        refused(
            &mut client,
            wrong_share.request(),
            Code::InvalidArgument,
            &["share submitted by \"carol\" fails its commitment"],
            "another custodian's share",
        )
        .await;
        let mut modified = honest(&setup, &mut client, carol, &id).await;
        let mut y = *modified.share.share.expose_y();
        y[0] ^= 1;
        modified.share.share = Share::new(modified.share.share.x(), &y).unwrap();
        refused(
            &mut client,
            modified.request(),
            Code::InvalidArgument,
            &["share submitted by \"carol\" fails its commitment"],
            "a modified share",
        )
        .await;

        // A custodian who is not on the key (the nonce is refused too).
        let status = client
            .get_approval_nonce(GetApprovalNonceRequest {
                ceremony_id: id.clone(),
                custodian: "frank".to_owned(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        let mut foreign = honest(&setup, &mut client, carol, &id).await;
        foreign.by = &frank;
        refused(
            &mut client,
            foreign.request(),
            Code::PermissionDenied,
            &["\"frank\" is not a custodian of the key of ceremony"],
            "foreign custodian",
        )
        .await;

        // A disabled custodian, with the CLI.
        assert_ok(
            &setup.rkm(&[
                "custodian",
                "disable",
                "erin",
                "--reason",
                "left the company",
            ]),
            "custodian disable",
        );
        assert_fails(
            &erin.approve(&setup.daemon, &id),
            4,
            &["\"erin\" is disabled"],
            "approval by a disabled custodian",
        );

        // Nothing of the refusals was kept; the honest approvals stand.
        let current = summary(&mut client, alice, &id).await;
        let approvers: Vec<&str> = current
            .approvals
            .iter()
            .map(|a| a.custodian.as_str())
            .collect();
        assert_eq!(approvers, ["alice", "bob"]);
        assert_eq!(
            setup.held_shares(&id),
            [("alice".to_owned(), true), ("bob".to_owned(), true)]
        );

        // carol's honest approval completes the ceremony.
        let report = assert_ok_json(&carol.approve(&setup.daemon, &id), "carol approves");
        assert_eq!(report["quorum_reached"], true);
        setup.wait_for_state(&id, "completed");
        let artefact = setup.dir.path().join("after-refusals.rkma");
        setup.collect(&id, &artefact);
        assert_ok(&setup.verify_artefact(&artefact, &[]), "artefact verify");

        // Approvals after completion and after cancellation.
        let late = Forged {
            by: dave,
            send_to: id.clone(),
            signed_ceremony: id.clone(),
            signed_digest: current.request_digest.as_slice().try_into().unwrap(),
            nonce: [9; 32],
            commitment: dave.commitment(&setup.key_id),
            share: dave.open_envelope(&setup.key_id),
            recipient: current.ceremony_recipient.clone(),
        };
        refused(
            &mut client,
            late.request(),
            Code::FailedPrecondition,
            &["is completed; it takes no more approvals"],
            "approval after completion",
        )
        .await;
        assert_fails(
            &dave.approve(&setup.daemon, &id),
            6,
            &["is completed"],
            "CLI approval after completion",
        );
        assert_ok(
            &setup.rkm(&["recovery", "cancel", &other, "--reason", "wrong serial"]),
            "recovery cancel",
        );
        assert_eq!(setup.show(&other)["state"], "cancelled");
        let mut cancelled = late;
        cancelled.send_to = other.clone();
        cancelled.signed_ceremony = other.clone();
        cancelled.signed_digest = for_other.signed_digest;
        refused(
            &mut client,
            cancelled.request(),
            Code::FailedPrecondition,
            &["is cancelled; it takes no more approvals"],
            "approval after cancellation",
        )
        .await;
        assert_fails(
            &dave.approve(&setup.daemon, &other),
            6,
            &["is cancelled"],
            "CLI approval after cancellation",
        );
    });

    // Each refusal is in the audit log, naming the custodian and why.
    let expected = [
        ("bob", "has already approved"),
        ("carol", "nonce was issued for ceremony"),
        ("carol", "not issued by this rkmd"),
        ("carol", "is not a signature by"),
        ("carol", "fails its commitment"),
        ("frank", "is not a custodian of the key of ceremony"),
        ("dave", "is completed"),
    ];
    let refusals_of = |entries: &[Value]| -> Vec<(String, String)> {
        entries
            .iter()
            .filter(|e| e["action"] == "recovery.approve" && e["outcome"] == "refused")
            .map(|e| {
                (
                    e["details"]["custodian"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    e["details"]["reason"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect()
    };
    let found = |refusals: &[(String, String)], custodian: &str, reason: &str| {
        refusals
            .iter()
            .any(|(c, r)| c == custodian && r.contains(reason))
    };
    let entries = setup.audit_entries_once(&id, |entries| {
        let refusals = refusals_of(entries);
        expected.iter().all(|(c, r)| found(&refusals, c, r))
    });
    let refusals = refusals_of(&entries);
    for (custodian, reason) in expected {
        assert!(
            found(&refusals, custodian, reason),
            "no refused entry for {custodian} with {reason:?}: {refusals:#?}"
        );
    }
    assert!(refusals.len() >= 9, "{refusals:#?}");
    // A disabled custodian is stopped by the access layer, before the
    // ceremony sees the approval; the refusal names her.
    let access = assert_ok_json(
        &setup.rkm(&[
            "audit",
            "show",
            "--action",
            "access.refused",
            "--output",
            "json",
        ]),
        "audit show access.refused",
    );
    assert!(
        access
            .as_array()
            .unwrap()
            .iter()
            .any(|entry| entry["actor"] == "custodian:erin"
                && entry["details"]["reason"]
                    .as_str()
                    .unwrap_or("")
                    .contains("is disabled")),
        "{access}"
    );
    let other_refusals = actions(&setup.audit_entries_once(&other, |entries| {
        count(&actions(entries), "recovery.approve", "refused") >= 1
    }));
    assert_eq!(
        count(&other_refusals, "recovery.approve", "refused"),
        1,
        "{other_refusals:?}"
    );
    assert_eq!(
        count(&other_refusals, "recovery.cancel", "ok"),
        1,
        "{other_refusals:?}"
    );
    assert!(
        setup.held_shares(&id).iter().all(|(_, held)| !held),
        "the completed ceremony's held shares are destroyed"
    );
}

#[test]
fn recovery_survives_kill_nine_after_two_approvals_and_completes_with_the_third() {
    let mut setup = setup();
    let id = setup.open_with_targets(50);
    setup.approve_with(&id, &[0, 1]);
    let recipient_before = setup.show(&id)["ceremony_recipient"].clone();

    setup.daemon.stop_with("KILL").unwrap();
    setup.daemon.serve().unwrap();

    let shown = setup.show(&id);
    assert_eq!(shown["state"], "open");
    assert_eq!(shown["approval_count"], 2, "no approval was lost: {shown}");
    assert_ne!(
        shown["ceremony_recipient"], recipient_before,
        "the ceremony key is memory only and new after the restart"
    );
    assert_eq!(
        setup.held_shares(&id),
        [("alice".to_owned(), true), ("bob".to_owned(), true)]
    );

    let report = assert_ok_json(
        &setup.custodians[2].approve(&setup.daemon, &id),
        "third approval",
    );
    assert_eq!(report["approval_count"], 3);
    assert_eq!(report["quorum_reached"], true);
    let completed = setup.wait_for_state(&id, "completed");
    assert_eq!(completed["signed_count"], 50);
    let artefact = setup.dir.path().join("after-restart.rkma");
    setup.collect(&id, &artefact);
    let verified = assert_ok_json(
        &setup.verify_artefact(&artefact, &["--output", "json"]),
        "artefact verify",
    );
    assert_eq!(
        verified["approvers"],
        serde_json::json!(["alice", "bob", "carol"])
    );
    assert!(setup.held_shares(&id).iter().all(|(_, held)| !held));
}

#[test]
fn recovery_killed_while_signing_signs_anew_and_collect_drops_the_stale_partial() {
    const TARGETS: usize = 100_000;
    let mut setup = setup();
    let id = setup.open_with_targets(TARGETS);
    setup.approve_with(&id, &[0, 1, 2]);

    // Copy what rkmd has signed so far, as an interrupted collect would hold
    // it, then kill rkmd in the middle of signing.
    let signing = setup
        .daemon
        .state_dir()
        .join("artefacts")
        .join(format!("{id}.rkma"));
    let deadline = std::time::Instant::now() + SIGNING_TIMEOUT;
    let held = loop {
        let bytes = std::fs::read(&signing).unwrap_or_default();
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if bytes[..complete].iter().filter(|&&b| b == b'\n').count() > 500 {
            break bytes[..complete].to_vec();
        }
        assert!(std::time::Instant::now() < deadline, "rkmd signs nothing");
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    setup.daemon.stop_with("KILL").unwrap();
    assert_ne!(
        setup.show_offline_state(&id),
        "completed",
        "the kill must land mid-signing for this test to mean anything"
    );
    let artefact = setup.dir.path().join("killed.rkma");
    std::fs::write(setup.dir.path().join("killed.rkma.partial"), &held).unwrap();

    setup.daemon.serve().unwrap();
    let output = setup.rkm(&[
        "recovery",
        "collect",
        &id,
        "-o",
        path_str(&artefact),
        "--output",
        "json",
    ]);
    let report = assert_ok_json(&output, "collect after the restart");
    assert_eq!(report["commands"], TARGETS as u64);
    assert_eq!(report["resumed_from"], 0);
    assert_eq!(report["discarded_bytes"], held.len() as u64);
    let verified = assert_ok_json(
        &setup.verify_artefact(&artefact, &["--output", "json"]),
        "artefact verify",
    );
    assert_eq!(verified["target_count"], TARGETS as u64);
    assert!(setup.held_shares(&id).iter().all(|(_, held)| !held));
}

#[test]
fn recovery_expired_destroys_its_held_shares() {
    let setup = setup();
    let request = request_file(setup.dir.path(), "0a1b2c", &["meter-1", "meter-2"]);
    // A window no load can make the approval miss; the test ends it below
    // instead of racing a short one.
    let opened = setup.open(&request, None, "1h");
    let id = opened["ceremony_id"].as_str().unwrap().to_owned();
    assert_ok_json(
        &setup.custodians[0].approve(&setup.daemon, &id),
        "approval in time",
    );
    {
        let db = setup.db();
        let (state, held): (String, bool) = db
            .query_row(
                "SELECT c.state, a.held_share IS NOT NULL FROM approvals a JOIN ceremonies c ON c.id = a.ceremony_id WHERE a.ceremony_id = ?1",
                [&id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!(
            state, "open",
            "one approval short of the quorum leaves it open"
        );
        assert!(held, "an open ceremony holds the approver's share");
    }
    assert_eq!(setup.held_shares(&id), [("alice".to_owned(), true)]);

    // End the window in the past: rkmd's sweeper reads `expires_at` from the
    // database every second, so this is what the end of a real window looks
    // like to it.
    {
        let db = setup.db();
        db.busy_timeout(Duration::from_secs(10)).unwrap();
        let moved = db
            .execute(
                "UPDATE ceremonies SET expires_at = ?2 WHERE id = ?1 AND state = 'open'",
                [id.as_str(), "2000-01-01T00:00:00Z"],
            )
            .unwrap();
        assert_eq!(
            moved, 1,
            "the open ceremony's window was moved into the past"
        );
    }

    // The sweeper expires it within a few seconds, with nobody looking.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (state, held): (String, i64) = setup
            .db()
            .query_row(
                "SELECT c.state, (SELECT COUNT(*) FROM approvals a WHERE a.ceremony_id = c.id AND a.held_share IS NOT NULL) FROM ceremonies c WHERE c.id = ?1",
                [&id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        if state == "expired" {
            assert_eq!(held, 0, "an expired ceremony keeps no held share");
            break;
        }
        assert_eq!(
            state, "open",
            "ceremony {id} went to {state} instead of expiring"
        );
        assert!(
            Instant::now() < deadline,
            "ceremony {id} did not expire within 30 s of its window ending: {state}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(setup.held_shares(&id), [("alice".to_owned(), false)]);
    assert_eq!(setup.show(&id)["state"], "expired");
    assert_fails(
        &setup.custodians[1].approve(&setup.daemon, &id),
        6,
        &["is expired"],
        "approval after expiry",
    );
    let entries =
        setup.audit_entries_once(&id, |e| e.iter().any(|e| e["action"] == "recovery.expire"));
    let expire = entries
        .iter()
        .find(|e| e["action"] == "recovery.expire")
        .expect("the expiry is audited");
    assert_eq!(expire["details"]["held_shares"], "destroyed");
}

#[test]
fn recovery_artefact_tampered_anywhere_fails_verification_naming_the_record() {
    let setup = setup();
    let id = setup.open_with_targets(20);
    setup.approve_with(&id, &[0, 2, 4]);
    let artefact = setup.dir.path().join("good.rkma");
    setup.collect(&id, &artefact);
    assert_ok(
        &setup.verify_artefact(&artefact, &[]),
        "the untouched artefact verifies",
    );
    let original = std::fs::read(&artefact).unwrap();
    let line_start = |n: usize| -> usize {
        if n == 1 {
            return 0;
        }
        original
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(n - 2)
            .unwrap()
            .0
            + 1
    };
    let tampered = setup.dir.path().join("tampered.rkma");
    let flip = |at: usize| {
        let mut bytes = original.clone();
        bytes[at] ^= 0x01;
        std::fs::write(&tampered, bytes).unwrap();
        setup.verify_artefact(&tampered, &[])
    };

    // Named positions: the magic, the header, a device id, a signature, a
    // sequence number and the end line.
    let s_line = 2 + 5; // the S line of sequence 4 is line 7
    let end_line = 2 + 20 + 1;
    let signature_at = line_start(s_line + 1) - 2;
    let cases: [(&str, usize, Vec<String>); 6] = [
        ("magic", 3, vec!["line 1".into()]),
        ("header", line_start(2) + 500, vec!["line 2".into()]),
        (
            "device id",
            line_start(s_line) + "S 4 meter-00000".len(),
            vec![format!("line {s_line}")],
        ),
        (
            "signature",
            signature_at,
            vec![format!(
                "line {s_line} (sequence 4, device \"meter-0000004\")"
            )],
        ),
        (
            "sequence",
            line_start(s_line) + 2,
            vec![format!("line {s_line}")],
        ),
        (
            "end line",
            line_start(end_line) + 4,
            vec![format!("line {end_line}")],
        ),
    ];
    for (what, at, needles) in &cases {
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        let mut all = vec!["does not verify"];
        all.extend(needles);
        assert_fails(&flip(*at), 7, &all, what);
    }
    let json_failure = flip(signature_at);
    assert_eq!(json_failure.status.code(), Some(7));
    let report: Value = serde_json::from_slice(
        &setup
            .verify_artefact(&tampered, &["--output", "json"])
            .stdout,
    )
    .unwrap();
    assert_eq!(report["verified"], false);
    assert_eq!(report["line"], s_line as u64);

    // One byte anywhere: a sweep across the whole bundle.
    let step = original.len() / 40;
    for at in (0..original.len()).step_by(step.max(1)) {
        let output = flip(at);
        assert_eq!(
            output.status.code(),
            Some(7),
            "flipping byte {at} went unnoticed: {}",
            text(&output.stdout)
        );
        assert!(
            text(&output.stderr).contains("line "),
            "{}",
            text(&output.stderr)
        );
    }
    let last = original.len() - 1;
    assert_fails(&flip(last), 7, &["line"], "the final newline");

    // A truncated bundle is named as such.
    std::fs::write(&tampered, &original[..line_start(end_line)]).unwrap();
    assert_fails(
        &setup.verify_artefact(&tampered, &[]),
        7,
        &["truncated"],
        "truncated",
    );
    // A key record that is not the audit key's is refused before the bundle.
    let mut record =
        std::fs::read_to_string(setup.custodians[0].key_record_file(&setup.key_id)).unwrap();
    let at = record.find("\"signature\": \"").unwrap() + "\"signature\": \"".len();
    let digit = if record.as_bytes()[at] == b'0' {
        "1"
    } else {
        "0"
    };
    record.replace_range(at..at + 1, digit);
    let bad_record = setup.dir.path().join("bad-record.json");
    std::fs::write(&bad_record, record).unwrap();
    assert_fails(
        &setup.rkm(&[
            "artefact",
            "verify",
            path_str(&artefact),
            "--key-record",
            path_str(&bad_record),
            "--audit-key",
            &setup.audit_key,
        ]),
        7,
        &["key record"],
        "a bad key record",
    );
}

#[test]
fn recovery_leaves_no_share_or_kek_bytes_in_state_or_log() {
    let setup = setup();
    let shares = setup.shares();
    let kek = shamir::combine(&shares[..3], 3).unwrap();
    let record = setup.custodians[0].key_record(&setup.key_id);
    assert!(kek_matches(&kek, &record.kek_check_value));
    let mut secrets: Vec<(String, Vec<u8>)> = shares
        .iter()
        .zip(NAMES)
        .map(|(share, name)| (format!("{name}'s share"), share.expose_y().to_vec()))
        .collect();
    secrets.push(("the KEK".to_owned(), kek.expose_secret().to_vec()));

    let id = setup.open_with_targets(10);
    setup.approve_with(&id, &[1, 3]);
    // Two shares are held (encrypted under the HSM's holding key).
    assert_eq!(
        setup.held_shares(&id),
        [("bob".to_owned(), true), ("dave".to_owned(), true)]
    );
    assert_no_secret_bytes_in_rkmd(&setup, &secrets, "while two shares are held");

    assert_ok_json(
        &setup.custodians[4].approve(&setup.daemon, &id),
        "third approval",
    );
    setup.wait_for_state(&id, "completed");
    let artefact = setup.dir.path().join("done.rkma");
    setup.collect(&id, &artefact);
    assert!(setup.held_shares(&id).iter().all(|(_, held)| !held));
    assert_no_secret_bytes_in_rkmd(&setup, &secrets, "after the ceremony");

    // Nor is any in what rkm printed, from enrolment and share fetch to the
    // collect, in JSON (its most detailed output: rkm keeps no log) and as
    // text for people.
    for args in [
        vec!["recovery", "show", id.as_str()],
        vec!["key", "show", LABEL],
        vec!["status"],
        vec!["audit", "show", "--output", "json"],
    ] {
        assert_ok(&setup.rkm(&args), &args.join(" "));
    }
    let printed = setup.daemon.client_transcript();
    assert!(
        printed.len() > 10_000 && contains_bytes(&printed, id.as_bytes()),
        "the transcript holds the ceremony's output ({} bytes)",
        printed.len()
    );
    assert_no_secret_in(&printed, &secrets, "in rkm's output");
}

#[test]
fn recovery_open_refuses_a_bad_manifest_line_and_approve_without_a_terminal_needs_yes() {
    let setup = setup();
    let request = request_file(setup.dir.path(), "0a1b2c", &[]);

    // A bad line deep in a large manifest: the whole request is refused,
    // naming the line, and rkmd keeps nothing it had staged.
    let bad = setup.dir.path().join("bad-manifest.txt");
    let mut body = String::new();
    for i in 0..200_000 {
        body.push_str(&format!("meter-{i:07}\n"));
    }
    body.push_str("meter 200000\n");
    std::fs::write(&bad, body).unwrap();
    assert_fails(
        &setup.rkm(&open_command(&request, Some(&bad), "1h")),
        6,
        &[
            "manifest line 200001",
            "it contains a space",
            "nothing was opened",
        ],
        "a bad manifest line",
    );
    let listed = assert_ok_json(
        &setup.rkm(&["recovery", "list", "--output", "json"]),
        "list",
    );
    assert_eq!(listed, serde_json::json!([]));
    let staged: i64 = setup
        .db()
        .query_row("SELECT COUNT(*) FROM recovery_targets", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(staged, 0, "rkmd dropped the targets it had staged");

    // An emergency is shown as one, with its justification.
    let targets = manifest(setup.dir.path(), "targets.txt", 3);
    let open_emergency = |extra: &[&str]| {
        let mut args = open_command(&request, Some(&targets), "1h");
        args.push("--emergency");
        args.extend_from_slice(extra);
        setup.rkm(&args)
    };
    let opened = assert_ok_json(
        &open_emergency(&[
            "--justification",
            "CA 2 key seen in the wild",
            "--output",
            "json",
        ]),
        "emergency open",
    );
    assert!(
        opened["description"]
            .as_str()
            .unwrap()
            .contains("EMERGENCY:    CA 2 key seen in the wild"),
        "{opened}"
    );
    assert_eq!(opened["request"]["emergency"], true);
    assert_fails(
        &open_emergency(&[]),
        2,
        &["--justification"],
        "an emergency without a justification",
    );
    let id = opened["ceremony_id"].as_str().unwrap();

    // Without a terminal and without --yes, nothing is approved.
    let alice = &setup.custodians[0];
    let mut approve = vec!["recovery", "approve", id];
    approve.extend(alice.held_files_args());
    let output = setup.rkm(&approve);
    let stderr = assert_fails(
        &output,
        1,
        &["no terminal", "--yes"],
        "approve without --yes",
    );
    assert!(
        stderr.contains(opened["request_digest"].as_str().unwrap()),
        "{stderr}"
    );
    assert_eq!(setup.show(id)["approval_count"], 0);
}

#[test]
fn two_collectors_to_one_file_never_mix_their_bytes_and_another_file_gets_its_own_copy() {
    let setup = setup();
    let id = setup.open_with_targets(20_000);
    let collect = |file: &Path| {
        setup.rkm(&[
            "recovery",
            "collect",
            &id,
            "-o",
            path_str(file),
            "--output",
            "json",
        ])
    };

    // A collector holds FILE.partial: another is refused at once and
    // leaves the file as it was.
    let held = setup.dir.path().join("held.rkma");
    let held_partial = setup.dir.path().join("held.rkma.partial");
    let holder = std::fs::File::create(&held_partial).unwrap();
    holder.try_lock().unwrap();
    std::fs::write(&held_partial, b"bytes of the first collector").unwrap();
    assert_fails(
        &collect(&held),
        6,
        &[
            "another `rkm recovery collect` is writing",
            "held.rkma.partial",
            "collect to another file",
        ],
        "a second collector to a locked partial file",
    );
    assert_eq!(
        std::fs::read(&held_partial).unwrap(),
        b"bytes of the first collector"
    );
    drop(holder);

    // Two collectors to one file while rkmd signs, and one to another file.
    setup.approve_with(&id, &[0, 1, 2]);
    let same = setup.dir.path().join("same.rkma");
    let other = setup.dir.path().join("other.rkma");
    let (first, second, third) = std::thread::scope(|scope| {
        let first = scope.spawn(|| collect(&same));
        let second = scope.spawn(|| collect(&same));
        let third = scope.spawn(|| collect(&other));
        (
            first.join().unwrap(),
            second.join().unwrap(),
            third.join().unwrap(),
        )
    });
    let succeeded = [&first, &second]
        .iter()
        .filter(|output| output.status.success())
        .count();
    assert_eq!(
        succeeded,
        1,
        "exactly one collector to one file succeeds:\n{}\n{}",
        text(&first.stderr),
        text(&second.stderr)
    );
    let loser = if first.status.success() {
        &second
    } else {
        &first
    };
    let said = text(&loser.stderr);
    assert!(
        said.contains("another `rkm recovery collect` is writing")
            || said.contains("already exists"),
        "{said}"
    );
    assert_ok(&third, "a collector to another file");
    for file in [&same, &other] {
        assert_ok(&setup.verify_artefact(file, &[]), "artefact verify");
    }
    assert_eq!(
        std::fs::read(&same).unwrap(),
        std::fs::read(&other).unwrap(),
        "both files hold the one bundle"
    );
}
