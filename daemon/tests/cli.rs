//! The rkmd binary's command line: every setting is documented in --help, and
//! configuration errors stop it before it touches the HSM.

use std::process::Command;

use rkm_daemon::config::SETTINGS;

fn rkmd(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rkmd"));
    command.args(args).env_clear();
    command.envs(env.iter().copied());
    command.output().unwrap()
}

#[test]
fn long_help_lists_every_setting_and_its_variable() {
    let output = rkmd(&["--help"], &[]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for setting in SETTINGS {
        assert!(help.contains(setting.key), "--help lacks {}", setting.key);
        assert!(help.contains(setting.env), "--help lacks {}", setting.env);
    }
    assert!(
        help.contains("RKM_HSM_PIN"),
        "--help lacks the PIN variable"
    );
}

#[test]
fn pin_is_not_accepted_as_an_argument() {
    let output = rkmd(&["serve", "--pin", "1234"], &[]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn bad_environment_value_stops_rkmd_naming_the_variable() {
    let output = rkmd(&["serve"], &[("RKM_HSM_WORKERS", "zero")]);
    assert_ne!(output.status.code(), Some(0));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("RKM_HSM_WORKERS"), "{message}");
}

#[test]
fn world_readable_pin_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pin = dir.path().join("pin");
    std::fs::write(&pin, "1234\n").unwrap();
    std::fs::set_permissions(&pin, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let state = dir.path().join("state");
    let output = rkmd(
        &["serve"],
        &[
            ("RKM_HSM_PIN_FILE", pin.to_str().unwrap()),
            ("RKM_STATE_DIR", state.to_str().unwrap()),
        ],
    );
    assert_ne!(output.status.code(), Some(0));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("chmod 600"), "{message}");
}

#[test]
fn missing_pin_says_where_to_put_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let output = rkmd(&["init"], &[("RKM_STATE_DIR", state.to_str().unwrap())]);
    assert_ne!(output.status.code(), Some(0));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("RKM_HSM_PIN"), "{message}");
}
