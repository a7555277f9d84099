//! The access matrix, end to end over TCP+TLS: every RPC rkmd serves, called
//! by every kind of caller — nobody, a custodian, another custodian acting
//! for them, a disabled custodian, the admin, an operator, an auditor — and
//! connections that never get that far (a certificate from another CA, an
//! expired one, plaintext). Only the combinations in [`EXPECTED`] pass the
//! access layer; every refusal is in the audit log with the caller named;
//! and an RPC added without an entry here fails the test.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use prost::Message as _;
use rkm_proto::identity::CustodianIdentity;
use rkm_tests::custodians::{
    assert_ok, assert_ok_json, audit_entries, custodians_with_fast_identities, wait_for_audit_entry,
};
use rkm_tests::raw_grpc::{Outcome, call, naming, tls_channel};
use rkm_tests::{Daemon, DaemonBuilder};
use tonic::transport::Channel;

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Caller {
    Nobody,
    Custodian,
    /// Bob, signing a request that names Alice (where a request names one).
    OtherCustodian,
    DisabledCustodian,
    Admin,
    Operator,
    Auditor,
}

const CALLERS: [Caller; 7] = [
    Caller::Nobody,
    Caller::Custodian,
    Caller::OtherCustodian,
    Caller::DisabledCustodian,
    Caller::Admin,
    Caller::Operator,
    Caller::Auditor,
];

use Caller::{Admin, Auditor, Custodian, Nobody, Operator, OtherCustodian};

/// Health and reflection: anyone, but credentials presented are checked
/// even there, and a disabled custodian's are refused.
const EVERYONE: &[Caller] = &[Nobody, Custodian, OtherCustodian, Admin, Operator, Auditor];
const STAFF: &[Caller] = &[Admin, Operator, Auditor];
/// Staff, and a custodian acting for themselves. Bob "acting for Alice" on
/// a method whose request names no custodian is just Bob, a custodian.
const KNOWN: &[Caller] = &[Custodian, OtherCustodian, Admin, Operator, Auditor];
const ONLY_THE_CUSTODIAN: &[Caller] = &[Custodian];

/// The method, the field of its request that names the custodian acted for
/// (if any), and who may call it: the matrix as the issue and the README
/// state it, written independently of rkmd's policy table.
const EXPECTED: &[(&str, Option<u32>, &[Caller])] = &[
    ("/grpc.health.v1.Health/Check", None, EVERYONE),
    ("/grpc.health.v1.Health/Watch", None, EVERYONE),
    (
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        None,
        EVERYONE,
    ),
    (
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        None,
        EVERYONE,
    ),
    // A disabled custodian still gets a challenge, which grants nothing:
    // the request it signs is refused, and audited under its ceremony.
    (
        "/rkm.v1.AccessService/GetChallenge",
        Some(1),
        &[Custodian, Caller::DisabledCustodian],
    ),
    ("/rkm.v1.AccessService/WhoAmI", None, KNOWN),
    ("/rkm.v1.SystemService/GetStatus", None, STAFF),
    ("/rkm.v1.AuditService/GetAuditKey", None, KNOWN),
    ("/rkm.v1.AuditService/GetCheckpoint", None, STAFF),
    ("/rkm.v1.AuditService/ListCheckpoints", None, STAFF),
    ("/rkm.v1.AuditService/ListEntries", None, STAFF),
    ("/rkm.v1.AuditService/GetInclusionProof", None, STAFF),
    ("/rkm.v1.AuditService/GetConsistencyProof", None, STAFF),
    (
        "/rkm.v1.AuditService/RecordNote",
        None,
        &[Operator, Auditor],
    ),
    ("/rkm.v1.CustodianService/EnrolCustodian", None, &[Admin]),
    ("/rkm.v1.CustodianService/ListCustodians", None, STAFF),
    ("/rkm.v1.CustodianService/DisableCustodian", None, &[Admin]),
    (
        "/rkm.v1.CustodianService/ListNotices",
        Some(1),
        &[Custodian, Admin, Operator, Auditor],
    ),
    (
        "/rkm.v1.CustodianService/AcknowledgeNotice",
        Some(2),
        ONLY_THE_CUSTODIAN,
    ),
    ("/rkm.v1.KeyService/CreateKey", None, &[Operator]),
    ("/rkm.v1.KeyService/GetKey", None, KNOWN),
    ("/rkm.v1.KeyService/ListKeys", None, KNOWN),
    (
        "/rkm.v1.KeyService/FetchEnvelope",
        Some(2),
        ONLY_THE_CUSTODIAN,
    ),
    (
        "/rkm.v1.KeyService/SubmitReceipt",
        Some(2),
        ONLY_THE_CUSTODIAN,
    ),
    (
        "/rkm.v1.KeyService/AttestShare",
        Some(2),
        ONLY_THE_CUSTODIAN,
    ),
    ("/rkm.v1.KeyService/ImportKey", None, &[Admin]),
    ("/rkm.v1.RecoveryService/OpenRecovery", None, &[Operator]),
    // A custodian names themselves and sees only their own keys' ceremonies.
    (
        "/rkm.v1.RecoveryService/GetRecovery",
        Some(2),
        &[Custodian, Admin, Operator, Auditor],
    ),
    (
        "/rkm.v1.RecoveryService/ListRecoveries",
        Some(1),
        &[Custodian, Admin, Operator, Auditor],
    ),
    ("/rkm.v1.RecoveryService/CancelRecovery", None, &[Operator]),
    ("/rkm.v1.RecoveryService/ConfirmRecovery", None, &[Operator]),
    (
        "/rkm.v1.RecoveryService/GetApprovalNonce",
        Some(2),
        ONLY_THE_CUSTODIAN,
    ),
    (
        "/rkm.v1.RecoveryService/Approve",
        Some(2),
        ONLY_THE_CUSTODIAN,
    ),
    (
        "/rkm.v1.RecoveryService/CollectArtefact",
        None,
        &[Operator, Auditor],
    ),
];

/// Every method in the descriptor sets rkmd serves, plus reflection's.
fn served_methods() -> BTreeSet<String> {
    let mut methods = BTreeSet::from([
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo".to_owned(),
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo".to_owned(),
    ]);
    for set in [
        rkm_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
    ] {
        let set = prost_types::FileDescriptorSet::decode(set).expect("valid descriptor set");
        for file in set.file {
            for service in &file.service {
                for method in &service.method {
                    methods.insert(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
    }
    methods
}

#[test]
fn every_served_rpc_is_in_the_matrix() {
    let expected: BTreeSet<String> = EXPECTED.iter().map(|(m, _, _)| (*m).to_owned()).collect();
    let served = served_methods();
    let undeclared: Vec<_> = served.difference(&expected).collect();
    assert!(
        undeclared.is_empty(),
        "RPCs without a declared role: {undeclared:?}; declare each in daemon/src/access/policy.rs and in EXPECTED here"
    );
    let gone: Vec<_> = expected.difference(&served).collect();
    assert!(gone.is_empty(), "EXPECTED names RPCs not served: {gone:?}");
}

// ----- the callers -----

struct Callers {
    nobody: Channel,
    admin: Channel,
    operator: Channel,
    auditor: Channel,
    alice: CustodianIdentity,
    bob: CustodianIdentity,
    carol: CustodianIdentity,
}

impl Callers {
    /// The request and authentication `caller` sends to `method`.
    async fn prepare(
        &self,
        caller: Caller,
        method: &str,
        custodian_field: Option<u32>,
    ) -> (
        &Channel,
        Vec<u8>,
        Option<tonic::metadata::BinaryMetadataValue>,
    ) {
        let (signer, named) = match caller {
            Nobody => return (&self.nobody, Vec::new(), None),
            Admin => return (&self.admin, Vec::new(), None),
            Operator => return (&self.operator, Vec::new(), None),
            Auditor => return (&self.auditor, Vec::new(), None),
            Custodian => (&self.alice, "alice"),
            OtherCustodian => (&self.bob, "alice"),
            Caller::DisabledCustodian => (&self.carol, "carol"),
        };
        let body = custodian_field.map_or_else(Vec::new, |field| naming(field, named));
        // A challenge is signed for with an empty one; everything else
        // over a fresh challenge, which a disabled custodian cannot get:
        // theirs is then signed over nothing, and refused for who they are.
        let challenge = if method == rkm_proto::access::GET_CHALLENGE_METHOD {
            Vec::new()
        } else {
            rkm_client::custodian_auth::challenge(&self.nobody, signer)
                .await
                .unwrap_or_default()
        };
        let auth =
            rkm_client::custodian_auth::authorisation(signer, method, &challenge, &body).unwrap();
        (&self.nobody, body, Some(auth))
    }
}

/// Bob's and Carol's requests are refused as "custodian:bob" and
/// "custodian:carol"; staff by their certificate; nobody as anonymous.
fn actor_matches(caller: Caller, actor: &str) -> bool {
    match caller {
        Nobody => actor == "anonymous",
        Custodian => actor == "custodian:alice",
        OtherCustodian => actor == "custodian:bob",
        Caller::DisabledCustodian => actor == "custodian:carol",
        Admin => actor.starts_with("cert:") && actor.contains("rkm-admin"),
        Operator => actor.starts_with("cert:") && actor.contains("rkm-operator"),
        Auditor => actor.starts_with("cert:") && actor.contains("rkm-auditor"),
    }
}

fn serving_tls_with_custodians(dir: &Path) -> (Daemon, Vec<rkm_tests::Custodian>) {
    let mut daemon = DaemonBuilder::default().tls().initialised().unwrap();
    // The matrix makes hundreds of refusals on purpose: no lockout here
    // (lockouts have their own test).
    daemon.set_env("RKM_ACCESS_LOCK_AFTER", "100000");
    daemon.serve().unwrap();
    let custodians = custodians_with_fast_identities(dir, &["alice", "bob", "carol"]);
    for custodian in &custodians {
        assert_ok(&custodian.enrol(&daemon), "custodian enrol");
    }
    assert_ok(
        &daemon
            .rkm_over_tls(
                Some("admin"),
                &["custodian", "disable", "carol", "--reason", "left"],
            )
            .unwrap(),
        "custodian disable carol",
    );
    (daemon, custodians)
}

#[test]
fn only_the_allowed_callers_pass_and_every_refusal_names_its_caller() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, custodians) = serving_tls_with_custodians(dir.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (mismatches, refused) = runtime.block_on(async {
        let callers = Callers {
            nobody: tls_channel(&daemon, None).await,
            admin: tls_channel(&daemon, Some("admin")).await,
            operator: tls_channel(&daemon, Some("operator")).await,
            auditor: tls_channel(&daemon, Some("auditor")).await,
            alice: custodians[0].open_identity(),
            bob: custodians[1].open_identity(),
            carol: custodians[2].open_identity(),
        };
        let mut mismatches = Vec::new();
        let mut refused = Vec::new();
        for (method, custodian_field, allowed) in EXPECTED {
            for caller in CALLERS {
                let (channel, body, auth) = callers.prepare(caller, method, *custodian_field).await;
                let outcome = call(channel, method, body, auth).await;
                let should_pass = allowed.contains(&caller);
                match (&outcome, should_pass) {
                    (Outcome::Admitted, true) => {}
                    (
                        Outcome::Refused(
                            tonic::Code::Unauthenticated | tonic::Code::PermissionDenied,
                            _,
                        ),
                        false,
                    ) => {
                        refused.push((*method, caller));
                    }
                    _ => mismatches.push(format!("{caller:?} → {method}: {outcome:?}")),
                }
            }
        }
        (mismatches, refused)
    });
    assert!(
        mismatches.is_empty(),
        "calls the access layer decided wrongly:\n{}",
        mismatches.join("\n")
    );
    assert!(refused.len() > 100, "only {} refusals", refused.len());

    // Refusals are audited as they are answered; the last may still be
    // on their way to the log.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let entries = audit_entries(&daemon, "access.refused");
        let unaudited: Vec<String> = refused
            .iter()
            .filter(|(method, caller)| {
                !entries.iter().any(|entry| {
                    entry["details"]["method"] == *method
                        && entry["outcome"] == "refused"
                        && entry["actor"]
                            .as_str()
                            .is_some_and(|actor| actor_matches(*caller, actor))
                        && entry["details"]["peer"]
                            .as_str()
                            .is_some_and(|peer| peer.starts_with("tcp:127.0.0.1:"))
                })
            })
            .map(|(method, caller)| format!("{caller:?} → {method}"))
            .collect();
        if unaudited.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "refusals missing from the audit log (or not naming the caller):\n{}",
            unaudited.join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A client certificate signed by `issuer_dir`'s CA key, valid from
/// `not_before` to `not_after`, written as NAME.pem / NAME-key.pem there.
fn issue_client_certificate(
    issuer_dir: &Path,
    name: &str,
    not_before: SystemTime,
    not_after: SystemTime,
) {
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(issuer_dir.join("ca-key.pem")).unwrap())
            .unwrap();
    // The issuer is named as `rkmd dev-pki` names its CA; the signature
    // by the CA's key is what the daemon checks.
    let mut ca = rcgen::CertificateParams::default();
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "rkm development CA");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer = rcgen::Issuer::from_params(&ca, ca_key);
    let (certificate, key) =
        rkm_daemon::dev_pki::client_certificate(&issuer, name, not_before, not_after).unwrap();
    std::fs::write(issuer_dir.join(format!("{name}.pem")), certificate).unwrap();
    let key_path = issuer_dir.join(format!("{name}-key.pem"));
    std::fs::write(&key_path, key).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn another_ca_an_expired_certificate_and_plaintext_reach_no_rpc_and_are_audited() {
    let mut daemon = DaemonBuilder::default().tls().initialised().unwrap();
    daemon.set_env("RKM_ACCESS_LOCK_AFTER", "100000");
    daemon.serve().unwrap();
    let pki = daemon.pki_dir().unwrap().to_owned();
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);
    // An operator's certificate that expired yesterday, from the right CA.
    issue_client_certificate(&pki, "rkm-operator-expired", now - 30 * day, now - day);
    // An operator's certificate, in date, from another organisation's CA.
    let foreign = tempfile::tempdir().unwrap();
    let foreign_pki = foreign.path().join("pki");
    rkm_tests::make_dev_pki(&foreign_pki, &[]).unwrap();
    for file in ["operator.pem", "operator-key.pem"] {
        std::fs::copy(foreign_pki.join(file), pki.join(format!("foreign-{file}"))).unwrap();
    }

    for (client, reason) in [
        ("rkm-operator-expired", "client certificate expired"),
        ("foreign-operator", "not issued by a trusted CA"),
    ] {
        for method in ["status", "key list"] {
            let args: Vec<&str> = method.split(' ').collect();
            let output = daemon.rkm_over_tls(Some(client), &args).unwrap();
            assert!(
                !output.status.success(),
                "{client} reached {method}: {}",
                String::from_utf8_lossy(&output.stdout)
            );
        }
        wait_for_audit_entry(
            &daemon,
            "access.refused",
            &format!("{client}'s handshake, naming its certificate and {reason:?}"),
            |entry| {
                entry["details"]["method"] == "tls-handshake"
                    && entry["actor"].as_str().is_some_and(|actor| {
                        actor.starts_with("cert:") && actor.contains("rkm-operator")
                    })
                    && entry["details"]["reason"]
                        .as_str()
                        .is_some_and(|text| text.contains(reason))
            },
        );
    }
    // Nothing the refused certificates asked for happened.
    let keys = assert_ok_json(
        &daemon
            .rkm_over_socket(&["key", "list", "--output", "json"])
            .unwrap(),
        "key list",
    );
    assert_eq!(keys.as_array().map(Vec::len), Some(0), "{keys}");
}
