//! The one table of rkmd's settings: its key in the file, its `RKM_*`
//! variable and its help, from which `rkmd --help` and the environment
//! parsing both read.

/// One setting: its TOML key, its environment variable and what it does. The
/// single list behind both the environment overrides and `rkmd --help`.
pub struct SettingDoc {
    pub key: &'static str,
    pub env: &'static str,
    pub help: &'static str,
}

pub const SETTINGS: &[SettingDoc] = &[
    SettingDoc {
        key: "state_dir",
        env: "RKM_STATE_DIR",
        help: "directory of the database and socket [/var/lib/rkm]",
    },
    SettingDoc {
        key: "hsm.module",
        env: "RKM_HSM_MODULE",
        help: "PKCS#11 module [/usr/lib/softhsm/libsofthsm2.so]",
    },
    SettingDoc {
        key: "hsm.token_label",
        env: "RKM_HSM_TOKEN_LABEL",
        help: "label of the HSM token [rkm]",
    },
    SettingDoc {
        key: "hsm.pin_file",
        env: "RKM_HSM_PIN_FILE",
        help: "file holding the user PIN (mode 0600); or set RKM_HSM_PIN",
    },
    SettingDoc {
        key: "hsm.workers",
        env: "RKM_HSM_WORKERS",
        help: "HSM worker sessions [number of cores]",
    },
    SettingDoc {
        key: "listen.socket",
        env: "RKM_LISTEN_SOCKET",
        help: "Unix socket for local administration [<state_dir>/rkmd.sock]",
    },
    SettingDoc {
        key: "listen.socket_mode",
        env: "RKM_LISTEN_SOCKET_MODE",
        help: "octal mode of the socket, e.g. 0660; others never get access [0600]",
    },
    SettingDoc {
        key: "listen.socket_group",
        env: "RKM_LISTEN_SOCKET_GROUP",
        help: "group of the socket, a name from /etc/group or a gid [rkmd's group]",
    },
    SettingDoc {
        key: "listen.tcp",
        env: "RKM_LISTEN_TCP",
        help: "TCP address served with TLS 1.3, e.g. 0.0.0.0:7443 [off]",
    },
    SettingDoc {
        key: "tls.certificate",
        env: "RKM_TLS_CERTIFICATE",
        help: "PEM certificate chain of the TCP listener",
    },
    SettingDoc {
        key: "tls.private_key",
        env: "RKM_TLS_PRIVATE_KEY",
        help: "PEM PKCS#8 key of that certificate (mode 0600)",
    },
    SettingDoc {
        key: "tls.client_ca",
        env: "RKM_TLS_CLIENT_CA",
        help: "PEM trust anchors of operators', auditors' and admins' certificates",
    },
    SettingDoc {
        key: "access.admin",
        env: "RKM_ACCESS_ADMIN",
        help: "who enrols custodians and imports keys: cn:NAME, sha256:HEX, uid:N, comma-separated",
    },
    SettingDoc {
        key: "access.operator",
        env: "RKM_ACCESS_OPERATOR",
        help: "who runs ceremonies (same forms) [rkmd's own uid, if no uid is listed]",
    },
    SettingDoc {
        key: "access.auditor",
        env: "RKM_ACCESS_AUDITOR",
        help: "who reads the audit log, keys and ceremonies (same forms)",
    },
    SettingDoc {
        key: "access.lock_after",
        env: "RKM_ACCESS_LOCK_AFTER",
        help: "authentication failures in a minute that lock a peer or identity out [10]",
    },
    SettingDoc {
        key: "access.lockout_seconds",
        env: "RKM_ACCESS_LOCKOUT_SECONDS",
        help: "how long a lockout lasts [300]",
    },
    SettingDoc {
        key: "recovery.two_person_rule",
        env: "RKM_RECOVERY_TWO_PERSON_RULE",
        help: "a second operator must confirm each recovery (not drills) [false]",
    },
    SettingDoc {
        key: "recovery.max_targets",
        env: "RKM_RECOVERY_MAX_TARGETS",
        help: "most devices one recovery may list [10000000]",
    },
    SettingDoc {
        key: "audit.origin",
        env: "RKM_AUDIT_ORIGIN",
        help: "checkpoint origin and audit key name [rkm.local/audit]",
    },
    SettingDoc {
        key: "audit.checkpoint_interval_ms",
        env: "RKM_AUDIT_CHECKPOINT_INTERVAL_MS",
        help: "longest wait from an entry to its signed checkpoint [2000]",
    },
    SettingDoc {
        key: "audit.max_batch",
        env: "RKM_AUDIT_MAX_BATCH",
        help: "most audit entries committed with one fsync [256]",
    },
    SettingDoc {
        key: "store.max_size_mb",
        env: "RKM_STORE_MAX_SIZE_MB",
        help: "database size limit in MiB; at it, actions are refused [0: none]",
    },
    SettingDoc {
        key: "store.min_free_mb",
        env: "RKM_STORE_MIN_FREE_MB",
        help: "free MiB the state directory keeps; below it actions are refused [64]",
    },
    SettingDoc {
        key: "keys.attestation_window_days",
        env: "RKM_KEYS_ATTESTATION_WINDOW_DAYS",
        help: "days a custodian's share attestation counts as recent [90]",
    },
    SettingDoc {
        key: "log.format",
        env: "RKM_LOG_FORMAT",
        help: "text or json [text]",
    },
    SettingDoc {
        key: "log.level",
        env: "RKM_LOG_LEVEL",
        help: "tracing filter, e.g. info or rkm_daemon=debug [info]",
    },
];
