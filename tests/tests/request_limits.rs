//! The request limits end to end, over TCP+TLS against the real rkmd: every
//! string and bytes field of every request rkmd takes, sent one byte over
//! its limit by a caller the method serves, is refused with InvalidArgument
//! naming the field and the limit, and leaves an audit entry with the
//! value's length and SHA-256; a message announced as larger than its
//! method reads is refused before it is read; and rkmd's peak memory stays
//! flat while a thousand oversized requests are refused.

use rkm_daemon::access::Role;
use rkm_daemon::access::policy::rule;
use rkm_proto::access::ACCESS_REFUSED_METADATA;
use rkm_proto::access::limits::{Leaf, METHODS, MethodLimits, leaves, method_limits};
use rkm_proto::identity::CustodianIdentity;
use rkm_tests::custodians::{assert_ok, audit_entries, custodians_with_fast_identities};
use rkm_tests::raw_grpc::{call_for_status, tls_channel};
use rkm_tests::{Daemon, DaemonBuilder};
use sha2::{Digest as _, Sha256};
use tonic::transport::Channel;

struct Callers {
    admin: Channel,
    operator: Channel,
    auditor: Channel,
    /// Custodians sign over the anonymous channel.
    nobody: Channel,
    alice: CustodianIdentity,
}

impl Callers {
    /// Sends `message` to `method` as a caller the method serves (a staff
    /// role it names, else custodian Alice, signing properly).
    async fn send(&self, method: &str, message: Vec<u8>) -> Result<(), tonic::Status> {
        let roles = rule(method).expect("a served method").roles;
        let staff = [
            (Role::Admin, &self.admin),
            (Role::Operator, &self.operator),
            (Role::Auditor, &self.auditor),
        ];
        if let Some((_, channel)) = staff.iter().find(|(role, _)| roles.contains(role)) {
            return call_for_status(channel, method, vec![message], None).await;
        }
        let challenge = if method == rkm_proto::access::GET_CHALLENGE_METHOD {
            Vec::new()
        } else {
            rkm_client::custodian_auth::challenge(&self.nobody, &self.alice)
                .await
                .expect("a challenge for alice")
        };
        let auth =
            rkm_client::custodian_auth::authorisation(&self.alice, method, &challenge, &message)
                .unwrap();
        call_for_status(&self.nobody, method, vec![message], Some(auth)).await
    }
}

fn serving_with_alice(dir: &std::path::Path) -> (Daemon, rkm_tests::Custodian) {
    let mut daemon = DaemonBuilder::default().tls().initialised().unwrap();
    daemon.serve().unwrap();
    let mut custodians = custodians_with_fast_identities(dir, &["alice"]);
    let alice = custodians.remove(0);
    assert_ok(&alice.enrol(&daemon), "custodian enrol alice");
    (daemon, alice)
}

async fn callers(daemon: &Daemon, alice: &rkm_tests::Custodian) -> Callers {
    Callers {
        admin: tls_channel(daemon, Some("admin")).await,
        operator: tls_channel(daemon, Some("operator")).await,
        auditor: tls_channel(daemon, Some("auditor")).await,
        nobody: tls_channel(daemon, None).await,
        alice: alice.open_identity(),
    }
}

#[test]
fn every_request_field_one_byte_over_its_limit_is_refused_by_name_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, alice) = serving_with_alice(dir.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cases: Vec<(&MethodLimits, Leaf)> = METHODS
        .iter()
        .flat_map(|limits| {
            leaves(limits.request)
                .into_iter()
                .map(move |leaf| (limits, leaf))
        })
        .collect();
    assert!(cases.len() > 40, "{} fields", cases.len());

    let wrong = runtime.block_on(async {
        let callers = callers(&daemon, &alice).await;
        let mut wrong = Vec::new();
        for (limits, leaf) in &cases {
            let max = leaf.max_len();
            let result = callers
                .send(limits.method, leaf.filled_message(max + 1, 1))
                .await;
            let expected = format!(
                "field `{}` of {} is {} bytes; the limit is {max} bytes",
                leaf.field.name,
                leaf.shape.name,
                max + 1
            );
            let right = match &result {
                Err(status) => {
                    status.code() == tonic::Code::InvalidArgument
                        && status.message().contains(&expected)
                        // The access layer answers unary calls itself; a
                        // client stream's refusal reaches the handler.
                        && (limits.client_streaming
                            || status
                                .metadata()
                                .get(ACCESS_REFUSED_METADATA)
                                .is_some_and(|kind| kind == "limit"))
                }
                Ok(()) => false,
            };
            if !right {
                wrong.push(format!("{} {}: {result:?}", limits.method, leaf.field.name));
            }
        }
        wrong
    });
    assert!(
        wrong.is_empty(),
        "fields over their limit not refused as expected:\n{}",
        wrong.join("\n")
    );

    // Refusals are audited as they are answered; the last may still be on
    // their way to the log.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let entries = audit_entries(&daemon, "access.refused");
        let unaudited: Vec<String> = cases
            .iter()
            .filter(|(limits, leaf)| {
                let len = leaf.max_len() + 1;
                let sha256 = hex::encode(Sha256::digest(vec![b'a'; len]));
                !entries.iter().any(|entry| {
                    let details = &entry["details"];
                    entry["outcome"] == "refused"
                        && details["method"] == limits.method
                        && details["field"] == leaf.field.name
                        && details["message"] == leaf.shape.name
                        && details["length"].as_str() == Some(len.to_string().as_str())
                        && details["limit"].as_str() == Some((len - 1).to_string().as_str())
                        && details["value_sha256"] == sha256
                        && details["value_start"]
                            .as_str()
                            .is_some_and(|start| start.starts_with("aaaa") && start.len() <= 100)
                })
            })
            .map(|(limits, leaf)| format!("{} {}", limits.method, leaf.field.name))
            .collect();
        if unaudited.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "refusals missing from the audit log:\n{}",
            unaudited.join("\n")
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    // The values themselves are nowhere in the log: only their start.
    let log = std::fs::read_to_string(daemon.log_file()).unwrap_or_default();
    assert!(
        !log.contains(&"a".repeat(1000)),
        "a refused value was logged whole"
    );
}

/// rkmd's peak resident memory (VmHWM), in KiB.
fn peak_rss_kib(daemon: &Daemon) -> u64 {
    let pid = daemon.pid().expect("rkmd runs");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

#[test]
fn oversized_messages_are_refused_before_they_are_read_and_memory_stays_flat() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, alice) = serving_with_alice(dir.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let import = method_limits("/rkm.v1.KeyService/ImportKey").unwrap();
    let open = method_limits("/rkm.v1.RecoveryService/OpenRecovery").unwrap();
    let toml = leaves(open.request)
        .into_iter()
        .find(|leaf| leaf.field.name == "request_toml")
        .unwrap();
    // A signed key record of 7 MiB: refused by name from the field's header,
    // its value hashed as it streams past, never buffered.
    let record = leaves(import.request).remove(0);
    let huge_record = record.filled_message(import.max_read() + 1, 1);
    // A message of unknown fields larger than ImportKey reads: refused once
    // that much is buffered.
    let mut unknown = Vec::new();
    prost::encoding::string::encode(9, &"u".repeat(import.max_read()), &mut unknown);
    // In a client stream: the first message's request file one byte over.
    let long_toml = toml.filled_message(toml.max_len() + 1, 1);

    runtime.block_on(async {
        let callers = callers(&daemon, &alice).await;
        let status = callers
            .send(import.method, huge_record.clone())
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains(&format!(
                "field `signed_key_record` of ImportKeyRequest is {} bytes; the limit is {} bytes",
                import.max_read() + 1,
                record.max_len()
            )),
            "{status:?}"
        );
        let status = callers.send(import.method, unknown.clone()).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains(&format!(
                "the ImportKeyRequest is {} bytes, more than the {} rkmd accepts",
                unknown.len(),
                import.max_message()
            )),
            "{status:?}"
        );

        // Both kinds of refusal, 1,000 in all, in bursts of 20 at once,
        // after a warm-up of 100: the peak must not grow with the count.
        let burst = |n: usize| {
            let callers = &callers;
            let (huge_record, long_toml) = (&huge_record, &long_toml);
            async move {
                for _ in 0..n / 20 {
                    let sends = (0..20).map(|i| async move {
                        if i % 2 == 0 {
                            callers.send(import.method, huge_record.clone()).await
                        } else {
                            callers.send(open.method, long_toml.clone()).await
                        }
                    });
                    for result in futures_util::future::join_all(sends).await {
                        assert_eq!(
                            result.unwrap_err().code(),
                            tonic::Code::InvalidArgument
                        );
                    }
                }
            }
        };
        burst(100).await;
        let warmed = peak_rss_kib(&daemon);
        burst(1000).await;
        let after = peak_rss_kib(&daemon);
        eprintln!("rkmd peak RSS: {warmed} KiB after 100 refusals, {after} KiB after 1,100");
        assert!(
            after <= warmed + 16 * 1024,
            "rkmd's peak RSS grew from {warmed} KiB to {after} KiB while refusing oversized requests"
        );
    });
    // The bursts were aggregated: far fewer entries than refusals.
    let entries = audit_entries(&daemon, "access.refused");
    assert!(
        entries.len() < 200,
        "{} audit entries for 1,100 refusals of two kinds",
        entries.len()
    );
}
