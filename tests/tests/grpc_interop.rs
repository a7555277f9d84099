//! End to end: a stock Python `grpcio` client, with default options, on
//! rkmd's Unix socket. grpcio sends the percent-encoded socket path as
//! `:authority`, which HTTP/2 servers refuse unless rkmd accepts any
//! authority on the socket (daemon/src/socket/authority.rs).
//!
//! The client and its packages come from tests/python/ (`install.sh` puts
//! the pinned `requirements.txt` into `tests/python/.venv`; the project's
//! `softhsm-config/install.sh` runs it). Under `CI=true` a missing grpcio
//! fails the test; elsewhere the test says how to install it and passes.

use std::path::PathBuf;
use std::process::Command;

use rkm_tests::{Daemon, workspace_root};

const MODULES: &str = "import grpc, grpc_health.v1, grpc_reflection.v1alpha";

/// A Python with grpcio: the project's venv first, then the system's.
fn python_with_grpcio() -> Option<PathBuf> {
    let venv = workspace_root().join("tests/python/.venv/bin/python3");
    [venv, PathBuf::from("python3")].into_iter().find(|python| {
        Command::new(python)
            .args(["-c", MODULES])
            .output()
            .is_ok_and(|output| output.status.success())
    })
}

#[test]
fn stock_grpcio_client_gets_health_and_both_reflections_on_the_socket() {
    let Some(python) = python_with_grpcio() else {
        let how = "install it with tests/python/install.sh (softhsm-config/install.sh runs it)";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no Python with grpcio found: {how}"
        );
        eprintln!("SKIPPED: no Python with grpcio found; {how}");
        return;
    };
    let daemon = Daemon::start().unwrap();
    let script = workspace_root().join("tests/python/health_check.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg(daemon.socket())
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{} failed:\n{printed}{}\nrkmd log:\n{}",
        script.display(),
        String::from_utf8_lossy(&output.stderr),
        daemon.log()
    );
    let lines: Vec<&str> = printed.lines().collect();
    assert!(lines.contains(&r#"health "" SERVING"#), "{printed}");
    assert!(
        lines.contains(&r#"health "rkm.v1.RecoveryService" SERVING"#),
        "{printed}"
    );
    for version in ["v1", "v1alpha"] {
        let services: Vec<&str> = lines
            .iter()
            .find_map(|line| line.strip_prefix(&format!("reflection {version} ")))
            .unwrap_or_else(|| panic!("no reflection {version} line in:\n{printed}"))
            .split(' ')
            .collect();
        for service in [
            "grpc.health.v1.Health",
            "rkm.v1.AccessService",
            "rkm.v1.AuditService",
            "rkm.v1.CustodianService",
            "rkm.v1.KeyService",
            "rkm.v1.RecoveryService",
            "rkm.v1.SystemService",
        ] {
            assert!(
                services.contains(&service),
                "reflection {version} lacks {service}: {services:?}"
            );
        }
        let own = format!("grpc.reflection.{version}.ServerReflection");
        assert!(services.contains(&own.as_str()), "{services:?}");
    }
}
