//! End to end: the real rkmd on a fresh SoftHSM token and state directory,
//! driven by the real rkm binary and ordinary gRPC tooling.

use std::os::unix::fs::PermissionsExt as _;
use std::process::Output;
use std::time::{Duration, Instant};

use rkm_client::connect::Target;
use rkm_tests::{Daemon, DaemonBuilder};
use serde_json::Value;

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn status_json(daemon: &Daemon) -> Value {
    let output = daemon.rkm(&["status", "--output", "json"]).unwrap();
    assert!(
        output.status.success(),
        "rkm status failed: {}",
        stderr(&output)
    );
    serde_json::from_slice(&output.stdout).expect("rkm status --output json prints JSON")
}

/// The fingerprint line that `rkmd init` prints.
fn init_fingerprint(init: &Output) -> String {
    stdout(init)
        .lines()
        .find_map(|line| line.trim().strip_prefix("fingerprint:"))
        .expect("rkmd init prints the audit key fingerprint")
        .trim()
        .to_owned()
}

/// Runs `rkmd serve` expecting it to refuse to start; returns its exit code
/// and log. Fails the test if it is still running after a generous bound.
fn serve_expecting_refusal(daemon: &Daemon) -> (Option<i32>, String) {
    let mut child = daemon.spawn_serve().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code(), daemon.log());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("rkmd serve kept running:\n{}", daemon.log());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn status_reports_token_and_audit_key_and_sigterm_stops_cleanly() {
    let mut daemon = DaemonBuilder::default().workers(2).uninitialised().unwrap();
    let init = daemon.rkmd(&["init"]).unwrap();
    assert!(init.status.success(), "rkmd init: {}", stderr(&init));
    assert!(
        stdout(&init).contains("created in the HSM"),
        "{}",
        stdout(&init)
    );
    let fingerprint = init_fingerprint(&init);
    daemon.serve().unwrap();

    let status = status_json(&daemon);
    assert_eq!(status["token"]["label"], "rkm");
    assert_eq!(status["token"]["model"], "SoftHSM v2");
    assert_eq!(status["hsm_workers"], 2);
    assert_eq!(
        status["hsm_session_objects"], 0,
        "no key material between ceremonies"
    );
    assert_eq!(
        status["hsm_token_objects"], 4,
        "audit key pair, checkpoint, share holding key… and nothing else: {status}"
    );
    assert_eq!(status["audit_key"]["fingerprint"], fingerprint.as_str());
    assert_eq!(
        status["audit_key"]["public_key_hex"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    let verifier = status["audit_key"]["verifier_key"].as_str().unwrap();
    assert!(verifier.starts_with("rkm.local/audit+"), "{verifier}");
    let mechanisms = status["mechanisms"].as_array().unwrap();
    assert!(mechanisms.len() >= 5);
    for mechanism in mechanisms {
        assert_eq!(mechanism["present"], true, "{mechanism}");
    }

    let text = daemon.rkm(&["status"]).unwrap();
    assert!(text.status.success());
    assert!(stdout(&text).contains(&fingerprint), "{}", stdout(&text));

    let mode = std::fs::metadata(daemon.socket())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "the socket must be private to rkmd's user");

    let exit = daemon.stop_with("TERM").unwrap();
    assert!(exit.success(), "rkmd exited with {exit} on SIGTERM");
    let log = daemon.log();
    assert!(log.contains("PKCS#11 finalized"), "{log}");
    assert!(
        !daemon.socket().exists(),
        "the socket is removed at shutdown"
    );
}

#[test]
fn audit_key_survives_restart_and_second_init_keeps_it() {
    let mut daemon = Daemon::start().unwrap();
    let before = status_json(&daemon)["audit_key"]["public_key_hex"].clone();
    daemon.stop_with("TERM").unwrap();

    let again = daemon.rkmd(&["init"]).unwrap();
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("already in the HSM (kept)"),
        "{}",
        stdout(&again)
    );
    assert!(stdout(&again).contains(&before.as_str().unwrap()[..16]));

    daemon.serve().unwrap();
    let after = status_json(&daemon)["audit_key"]["public_key_hex"].clone();
    assert_eq!(before, after, "the audit key changed across a restart");
}

#[test]
fn serve_with_wrong_pin_exits_nonzero_naming_the_pin() {
    let mut daemon = DaemonBuilder::default().initialised().unwrap();
    daemon.set_env("RKM_HSM_PIN", "wrong-pin");
    let (code, log) = serve_expecting_refusal(&daemon);
    assert_ne!(code, Some(0));
    assert!(log.contains("rejected the user PIN"), "{log}");
}

#[test]
fn serve_with_missing_module_exits_nonzero_saying_how_to_install() {
    let mut daemon = DaemonBuilder::default().initialised().unwrap();
    daemon.set_env("RKM_HSM_MODULE", "/nonexistent/libsofthsm2.so");
    let (code, log) = serve_expecting_refusal(&daemon);
    assert_ne!(code, Some(0));
    assert!(log.contains("/nonexistent/libsofthsm2.so"), "{log}");
    assert!(log.contains("softhsm-config/install.sh"), "{log}");
}

#[test]
fn serve_with_unknown_token_label_exits_nonzero_listing_labels() {
    let mut daemon = DaemonBuilder::default().initialised().unwrap();
    daemon.set_env("RKM_HSM_TOKEN_LABEL", "no-such-token");
    let (code, log) = serve_expecting_refusal(&daemon);
    assert_ne!(code, Some(0));
    assert!(log.contains("no token labelled \"no-such-token\""), "{log}");
    assert!(
        log.contains("\"rkm\""),
        "the labels present are listed: {log}"
    );
}

#[test]
fn serve_before_init_says_to_run_init() {
    let daemon = DaemonBuilder::default().uninitialised().unwrap();
    let (code, log) = serve_expecting_refusal(&daemon);
    assert_ne!(code, Some(0));
    assert!(log.contains("run `rkmd init` first"), "{log}");
}

#[test]
fn serve_against_another_token_refuses_the_foreign_audit_key() {
    let mut daemon = DaemonBuilder::default().initialised().unwrap();
    // A second token with its own audit key, in the same SoftHSM directory.
    daemon.token.init_token("other").unwrap();
    daemon.set_env("RKM_HSM_TOKEN_LABEL", "other");
    let init_other = daemon.rkmd(&["init"]).unwrap();
    assert!(
        !init_other.status.success(),
        "init bound the database to a second audit key"
    );
    assert!(
        stderr(&init_other).contains("wrong token"),
        "{}",
        stderr(&init_other)
    );
}

#[test]
fn serve_with_a_tcp_address_but_no_tls_exits_nonzero_naming_the_settings() {
    let mut daemon = DaemonBuilder::default().initialised().unwrap();
    daemon.set_env("RKM_LISTEN_TCP", "0.0.0.0:7443");
    let (code, log) = serve_expecting_refusal(&daemon);
    assert_ne!(code, Some(0));
    assert!(log.contains("listen.tcp 0.0.0.0:7443 needs TLS"), "{log}");
    assert!(log.contains("RKM_TLS_CERTIFICATE"), "{log}");
    assert!(log.contains("rkmd dev-pki DIR"), "{log}");
}

#[test]
fn status_without_daemon_exits_3_saying_it_is_not_running() {
    let daemon = DaemonBuilder::default().uninitialised().unwrap();
    let output = daemon.rkm(&["status"]).unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stderr(&output).contains("is rkmd running?"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn grpc_health_and_reflection_answer_standard_tooling() {
    let daemon = tokio::task::spawn_blocking(Daemon::start)
        .await
        .unwrap()
        .unwrap();
    let channel = Target::Socket(daemon.socket()).connect().await.unwrap();

    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "rkm.v1.SystemService".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        serving.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses
        .message()
        .await
        .unwrap()
        .expect("one reflection answer");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer: {response:?}");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"rkm.v1.SystemService".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );
    drop(daemon);
}
