//! Settings from the file and the environment, and what is refused.

use super::*;

#[test]
fn example_config_parses_and_sets_every_section() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("rkmd.example.toml");
    let settings = Settings::from_file(&path).unwrap();
    assert_eq!(settings.state_dir, PathBuf::from("/var/lib/rkm"));
    assert_eq!(settings.hsm.token_label, "rkm");
    assert_eq!(
        settings.hsm.pin_file,
        Some(PathBuf::from("/etc/rkm/hsm.pin"))
    );
    assert_eq!(settings.listen.tcp, Some("0.0.0.0:7443".parse().unwrap()));
    assert_eq!(settings.listen.socket_mode.bits(), 0o660);
    assert_eq!(
        settings.listen.socket_group,
        Some(SocketGroup::Name("rkm-admins".to_owned()))
    );
    assert_eq!(
        settings.tls.client_ca,
        Some(PathBuf::from("/etc/rkm/tls/clients-ca.pem"))
    );
    assert_eq!(settings.access.operator, vec!["cn:rkm-operator".to_owned()]);
    assert!(!settings.recovery.two_person_rule);
    assert_eq!(settings.recovery.max_targets, 10_000_000);
    assert_eq!(settings.log.format, LogFormat::Text);
    assert_eq!(settings.audit.checkpoint_interval_ms, 2000);
    assert_eq!(settings.store.max_size_mb, 0);
    settings.validate().unwrap();
}

#[test]
fn environment_overrides_the_file_for_every_setting() {
    let mut settings = Settings::default();
    let values = |name: &str| -> Option<String> {
        Some(
            match name {
                "RKM_HSM_WORKERS" => "3",
                "RKM_LISTEN_TCP" => "127.0.0.1:9000",
                "RKM_LOG_FORMAT" => "json",
                "RKM_AUDIT_CHECKPOINT_INTERVAL_MS" => "500",
                "RKM_AUDIT_MAX_BATCH" => "8",
                "RKM_STORE_MAX_SIZE_MB" => "64",
                "RKM_STORE_MIN_FREE_MB" => "5",
                "RKM_KEYS_ATTESTATION_WINDOW_DAYS" => "30",
                "RKM_ACCESS_OPERATOR" => "cn:a, uid:7",
                "RKM_ACCESS_LOCK_AFTER" => "4",
                "RKM_ACCESS_LOCKOUT_SECONDS" => "9",
                "RKM_RECOVERY_TWO_PERSON_RULE" => "true",
                "RKM_RECOVERY_MAX_TARGETS" => "2000000",
                "RKM_LISTEN_SOCKET_MODE" => "0660",
                "RKM_LISTEN_SOCKET_GROUP" => "rkm-admins",
                other => other,
            }
            .to_owned(),
        )
    };
    settings.apply_env(values).unwrap();
    assert_eq!(settings.state_dir, PathBuf::from("RKM_STATE_DIR"));
    assert_eq!(settings.hsm.token_label, "RKM_HSM_TOKEN_LABEL");
    assert_eq!(settings.hsm.workers, 3);
    assert_eq!(settings.log.format, LogFormat::Json);
    assert_eq!(settings.audit.origin, "RKM_AUDIT_ORIGIN");
    assert_eq!(settings.audit.checkpoint_interval_ms, 500);
    assert_eq!(settings.audit.max_batch, 8);
    assert_eq!(settings.store.max_size_mb, 64);
    assert_eq!(settings.store.min_free_mb, 5);
    assert_eq!(settings.keys.attestation_window_days, 30);
    assert_eq!(
        settings.access.operator,
        vec!["cn:a".to_owned(), "uid:7".to_owned()]
    );
    assert_eq!(settings.access.lock_after, 4);
    assert_eq!(settings.access.lockout_seconds, 9);
    assert!(settings.recovery.two_person_rule);
    assert_eq!(settings.recovery.max_targets, 2_000_000);
    assert_eq!(settings.listen.socket_mode.bits(), 0o660);
    assert_eq!(
        settings.listen.socket_group,
        Some(SocketGroup::Name("rkm-admins".to_owned()))
    );
    assert_eq!(
        settings.tls.client_ca,
        Some(PathBuf::from("RKM_TLS_CLIENT_CA"))
    );
}

#[test]
fn bad_environment_value_names_the_variable() {
    let mut settings = Settings::default();
    let error = settings
        .apply_env(|name| (name == "RKM_HSM_WORKERS").then(|| "many".to_owned()))
        .unwrap_err();
    assert!(error.to_string().contains("RKM_HSM_WORKERS"), "{error}");
    let error = settings
        .apply_env(|name| (name == "RKM_KEYS_ATTESTATION_WINDOW_DAYS").then(|| "0".to_owned()))
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("RKM_KEYS_ATTESTATION_WINDOW_DAYS"),
        "{error}"
    );
}

#[test]
fn socket_mode_for_other_users_is_refused_in_file_and_environment() {
    let mut settings = Settings::default();
    assert_eq!(settings.listen.socket_mode, SocketMode::OWNER_ONLY);
    let error = settings
        .apply_env(|name| (name == "RKM_LISTEN_SOCKET_MODE").then(|| "0666".to_owned()))
        .unwrap_err()
        .to_string();
    assert!(error.contains("RKM_LISTEN_SOCKET_MODE"), "{error}");
    assert!(error.contains("other users must never"), "{error}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rkmd.toml");
    std::fs::write(&path, "[listen]\nsocket_mode = \"0604\"\n").unwrap();
    let error = Settings::from_file(&path).unwrap_err().to_string();
    assert!(error.contains("other users must never"), "{error}");
    std::fs::write(
        &path,
        "[listen]\nsocket_mode = \"0660\"\nsocket_group = \"1234\"\n",
    )
    .unwrap();
    let settings = Settings::from_file(&path).unwrap();
    assert_eq!(settings.listen.socket_mode.bits(), 0o660);
    assert_eq!(settings.listen.socket_group, Some(SocketGroup::Gid(1234)));
}

#[test]
fn unknown_key_in_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rkmd.toml");
    std::fs::write(&path, "[hsm]\nmodul = \"/x.so\"\n").unwrap();
    let error = Settings::from_file(&path).unwrap_err();
    assert!(error.to_string().contains("modul"), "{error}");
}

#[test]
fn tcp_listener_without_tls_is_refused() {
    let mut settings = Settings::default();
    settings.listen.tcp = Some("127.0.0.1:7443".parse().unwrap());
    let error = settings.validate().unwrap_err();
    assert!(matches!(error, ConfigError::TcpWithoutTls { .. }));
    assert!(error.to_string().contains("rkmd dev-pki"), "{error}");
}

#[test]
fn malformed_role_entry_is_refused_at_start() {
    let mut settings = Settings::default();
    settings.access.auditor = vec!["bob".to_owned()];
    let error = settings.validate().unwrap_err().to_string();
    assert!(error.contains("access.auditor"), "{error}");
}
