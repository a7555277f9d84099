//! The rkm binary's command line: help text and usage errors, by the parts
//! that matter (the whole text is pinned in `cli_golden.rs`).

use std::process::Command;

fn rkm(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rkm"))
        .args(args)
        .env_remove("RKM_SOCKET")
        .env_remove("RKM_ENDPOINT")
        .output()
        .unwrap()
}

#[test]
fn help_lists_commands_and_connection_options() {
    let output = rkm(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for expected in ["status", "--socket", "--endpoint", "--output", "RKM_SOCKET"] {
        assert!(help.contains(expected), "help lacks {expected}:\n{help}");
    }
}

#[test]
fn unknown_command_is_a_usage_error_with_exit_code_2() {
    let output = rkm(&["launch-missiles"]);
    assert_eq!(output.status.code(), Some(2));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("launch-missiles"), "{message}");
    assert!(
        message.contains("error: unrecognized subcommand 'launch-missiles'"),
        "{message}"
    );
}

#[test]
fn bad_output_format_names_the_valid_ones() {
    let output = rkm(&["status", "--output", "yaml"]);
    assert_eq!(output.status.code(), Some(2));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("text") && message.contains("json"),
        "{message}"
    );
}

#[test]
fn socket_and_endpoint_together_are_refused() {
    let output = rkm(&[
        "status",
        "--socket",
        "/tmp/x.sock",
        "--endpoint",
        "http://127.0.0.1:1",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains(
            "the argument '--socket <SOCKET>' cannot be used with '--endpoint <ENDPOINT>'"
        ),
        "{message}"
    );
}
