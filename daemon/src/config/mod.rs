//! rkmd's settings: one TOML file, every setting also from an `RKM_*`
//! environment variable (the environment wins). The HSM PIN comes from a file
//! or the environment only, never from the command line.

mod settings_doc;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::access::settings::env_list;
pub use crate::access::settings::{AccessSettings, RecoverySettings, TlsSettings};
use crate::secrets::UserPin;
use crate::socket::{SocketGroup, SocketMode};

/// Environment variable that holds the HSM user PIN itself.
pub const PIN_ENV: &str = "RKM_HSM_PIN";

/// Errors in rkmd's configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration file {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{env}={value:?} is not a valid {key}: {reason}")]
    Env {
        env: &'static str,
        key: &'static str,
        value: String,
        reason: String,
    },
    #[error(
        "no HSM PIN: set hsm.pin_file (RKM_HSM_PIN_FILE) to a file that holds it, or RKM_HSM_PIN"
    )]
    PinMissing,
    #[error("cannot read the HSM PIN file {}: {source}", path.display())]
    PinFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the HSM PIN file {} is readable by other users (mode {mode:o}); run chmod 600 on it", path.display())]
    PinFileExposed { path: PathBuf, mode: u32 },
    #[error("the HSM PIN is empty; put the PIN in {source_name}")]
    PinEmpty { source_name: String },
    #[error(
        "listen.tcp {addr} needs TLS: set tls.certificate, tls.private_key and tls.client_ca (RKM_TLS_CERTIFICATE, RKM_TLS_PRIVATE_KEY, RKM_TLS_CLIENT_CA); `rkmd dev-pki DIR` makes a development set"
    )]
    TcpWithoutTls { addr: SocketAddr },
    #[error("{0}")]
    Access(#[from] crate::access::roles::PrincipalError),
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// All of rkmd's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Directory of the database and, by default, the socket.
    pub state_dir: PathBuf,
    pub hsm: HsmSettings,
    pub listen: ListenSettings,
    pub audit: AuditSettings,
    pub store: StoreSettings,
    pub keys: KeySettings,
    pub log: LogSettings,
    pub tls: TlsSettings,
    pub access: AccessSettings,
    pub recovery: RecoverySettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeySettings {
    /// A custodian's share attestation counts as recent for this many days;
    /// a key with fewer recent attestations than its threshold is shown as
    /// a quorum at risk.
    pub attestation_window_days: u32,
}

impl Default for KeySettings {
    fn default() -> Self {
        Self {
            attestation_window_days: 90,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// Largest size of the database in MiB (0: no limit). At the limit every
    /// state-changing action is refused, because its audit entry cannot be
    /// written.
    pub max_size_mb: u64,
    /// Free space in MiB the state directory keeps: below it state-changing
    /// actions (and artefacts that would not fit) are refused in advance;
    /// refusals and failures are still recorded.
    pub min_free_mb: u64,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            max_size_mb: 0,
            min_free_mb: 64,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HsmSettings {
    /// Path of the PKCS#11 module.
    pub module: PathBuf,
    /// Label of the token (tokens are found by label, never by slot).
    pub token_label: String,
    /// File that holds the user PIN.
    pub pin_file: Option<PathBuf>,
    /// Number of HSM worker sessions.
    pub workers: usize,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenSettings {
    /// Unix socket path; defaults to `<state_dir>/rkmd.sock`.
    pub socket: Option<PathBuf>,
    /// Permission bits of the socket, an octal string; never any for others.
    pub socket_mode: SocketMode,
    /// Group the socket is given (name or numeric gid); rkmd's own if unset.
    pub socket_group: Option<SocketGroup>,
    /// Optional loopback TCP address.
    pub tcp: Option<SocketAddr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Origin line of checkpoints and name of the audit key in signed notes.
    pub origin: String,
    /// Longest time from an entry to the signed checkpoint that covers it.
    pub checkpoint_interval_ms: u64,
    /// Most entries committed together with one fsync.
    pub max_batch: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `rkm_daemon=debug,info`.
    pub level: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from("/var/lib/rkm"),
            hsm: HsmSettings::default(),
            listen: ListenSettings::default(),
            audit: AuditSettings::default(),
            store: StoreSettings::default(),
            keys: KeySettings::default(),
            log: LogSettings::default(),
            tls: TlsSettings::default(),
            access: AccessSettings::default(),
            recovery: RecoverySettings::default(),
        }
    }
}

impl Default for HsmSettings {
    fn default() -> Self {
        Self {
            module: PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"),
            token_label: "rkm".to_owned(),
            pin_file: None,
            workers: std::thread::available_parallelism().map_or(2, usize::from),
        }
    }
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            origin: "rkm.local/audit".to_owned(),
            checkpoint_interval_ms: 2000,
            max_batch: 256,
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

pub use settings_doc::{SETTINGS, SettingDoc};

/// Text for `rkmd --help` listing every setting and its variable.
pub fn settings_help() -> String {
    let mut help = String::from(
        "Settings (TOML file given with --config or RKM_CONFIG; each also from the environment, which wins):\n",
    );
    for setting in SETTINGS {
        help.push_str(&format!(
            "  {:<29} {:<33} {}\n",
            setting.key, setting.env, setting.help
        ));
    }
    help.push_str(&format!(
        "  {:<29} {:<33} the HSM user PIN itself (never a command-line argument)\n",
        "", PIN_ENV
    ));
    help
}

impl Settings {
    /// Reads `path` (if given) and applies the `RKM_*` environment.
    ///
    /// # Errors
    /// The file cannot be read or parsed, or a variable has a bad value.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut settings = match path {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        settings.apply_env(|name| std::env::var(name).ok())?;
        Ok(settings)
    }

    /// Parses a TOML configuration file.
    ///
    /// # Errors
    /// The file cannot be read or is not valid rkmd TOML.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|error| ConfigError::Parse {
            path: path.to_owned(),
            message: error.to_string(),
        })
    }

    /// Overrides settings from variables that `lookup` finds.
    ///
    /// # Errors
    /// A variable has a value that is not valid for its setting.
    pub fn apply_env(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        for setting in SETTINGS {
            let Some(value) = lookup(setting.env) else {
                continue;
            };
            let invalid = |reason: String| ConfigError::Env {
                env: setting.env,
                key: setting.key,
                value: value.clone(),
                reason,
            };
            match setting.key {
                "state_dir" => self.state_dir = PathBuf::from(&value),
                "hsm.module" => self.hsm.module = PathBuf::from(&value),
                "hsm.token_label" => self.hsm.token_label = value.clone(),
                "hsm.pin_file" => self.hsm.pin_file = Some(PathBuf::from(&value)),
                "hsm.workers" => {
                    self.hsm.workers = value
                        .parse()
                        .ok()
                        .filter(|workers| *workers > 0)
                        .ok_or_else(|| invalid("expected a whole number above 0".to_owned()))?;
                }
                "listen.socket" => self.listen.socket = Some(PathBuf::from(&value)),
                "listen.socket_mode" => {
                    self.listen.socket_mode =
                        SocketMode::parse(&value).map_err(|e| invalid(e.to_string()))?;
                }
                "listen.socket_group" => {
                    self.listen.socket_group =
                        Some(SocketGroup::parse(&value).map_err(|e| invalid(e.to_string()))?);
                }
                "listen.tcp" => {
                    self.listen.tcp = Some(value.parse().map_err(|e| invalid(format!("{e}")))?);
                }
                "tls.certificate" => self.tls.certificate = Some(PathBuf::from(&value)),
                "tls.private_key" => self.tls.private_key = Some(PathBuf::from(&value)),
                "tls.client_ca" => self.tls.client_ca = Some(PathBuf::from(&value)),
                "access.admin" => self.access.admin = env_list(&value),
                "access.operator" => self.access.operator = env_list(&value),
                "access.auditor" => self.access.auditor = env_list(&value),
                "access.lock_after" => {
                    self.access.lock_after = value
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| invalid("expected a whole number above 0".to_owned()))?;
                }
                "access.lockout_seconds" => {
                    self.access.lockout_seconds =
                        value.parse().map_err(|e| invalid(format!("{e}")))?;
                }
                "recovery.two_person_rule" => {
                    self.recovery.two_person_rule = match value.as_str() {
                        "true" | "1" | "yes" => true,
                        "false" | "0" | "no" => false,
                        _ => return Err(invalid("expected true or false".to_owned())),
                    };
                }
                "recovery.max_targets" => {
                    self.recovery.max_targets = value
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| invalid("expected a whole number above 0".to_owned()))?;
                }
                "audit.origin" => self.audit.origin = value.clone(),
                "audit.checkpoint_interval_ms" => {
                    self.audit.checkpoint_interval_ms =
                        value.parse().map_err(|e| invalid(format!("{e}")))?;
                }
                "audit.max_batch" => {
                    self.audit.max_batch = value
                        .parse()
                        .ok()
                        .filter(|batch| *batch > 0)
                        .ok_or_else(|| invalid("expected a whole number above 0".to_owned()))?;
                }
                "keys.attestation_window_days" => {
                    self.keys.attestation_window_days =
                        value.parse().ok().filter(|days| *days > 0).ok_or_else(|| {
                            invalid("expected a whole number of days above 0".to_owned())
                        })?;
                }
                "store.min_free_mb" => {
                    self.store.min_free_mb = value.parse().map_err(|e| invalid(format!("{e}")))?;
                }
                "store.max_size_mb" => {
                    self.store.max_size_mb = value.parse().map_err(|e| invalid(format!("{e}")))?;
                }
                "log.format" => {
                    self.log.format = match value.as_str() {
                        "text" => LogFormat::Text,
                        "json" => LogFormat::Json,
                        _ => return Err(invalid("expected text or json".to_owned())),
                    };
                }
                "log.level" => self.log.level = value.clone(),
                other => unreachable!("setting {other} has no override"),
            }
        }
        Ok(())
    }

    /// Settings of the audit log.
    pub fn audit_config(&self) -> crate::audit::AuditConfig {
        crate::audit::AuditConfig {
            origin: self.audit.origin.clone(),
            checkpoint_interval: std::time::Duration::from_millis(
                self.audit.checkpoint_interval_ms,
            ),
            max_batch: self.audit.max_batch,
        }
    }

    /// The Unix socket path.
    pub fn socket_path(&self) -> PathBuf {
        self.listen
            .socket
            .clone()
            .unwrap_or_else(|| self.state_dir.join("rkmd.sock"))
    }

    /// Checks settings that parse but cannot be served safely.
    ///
    /// # Errors
    /// A TCP listener without TLS settings; a malformed role entry.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(addr) = self.listen.tcp {
            let tls = &self.tls;
            if tls.certificate.is_none() || tls.private_key.is_none() || tls.client_ca.is_none() {
                return Err(ConfigError::TcpWithoutTls { addr });
            }
        }
        self.role_map()?;
        Ok(())
    }

    /// The configured role assignments.
    ///
    /// # Errors
    /// A malformed entry.
    pub fn role_map(
        &self,
    ) -> Result<crate::access::roles::RoleMap, crate::access::roles::PrincipalError> {
        use crate::access::Role;
        crate::access::roles::RoleMap::from_settings(
            [
                (Role::Admin, &self.access.admin),
                (Role::Operator, &self.access.operator),
                (Role::Auditor, &self.access.auditor),
            ],
            rustix::process::getuid().as_raw(),
            !self.recovery.two_person_rule,
        )
    }

    /// The HSM user PIN, from `RKM_HSM_PIN` or `hsm.pin_file`.
    ///
    /// # Errors
    /// Neither is set, the file cannot be read or is readable by others, or
    /// the PIN is empty.
    pub fn read_pin(&self) -> Result<UserPin, ConfigError> {
        if let Ok(value) = std::env::var(PIN_ENV) {
            let pin = UserPin::from_env_value(value);
            if pin.is_empty() {
                return Err(ConfigError::PinEmpty {
                    source_name: PIN_ENV.to_owned(),
                });
            }
            return Ok(pin);
        }
        let path = self.hsm.pin_file.as_ref().ok_or(ConfigError::PinMissing)?;
        let metadata = std::fs::metadata(path).map_err(|source| ConfigError::PinFile {
            path: path.clone(),
            source,
        })?;
        let mode = std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o777;
        if mode & 0o007 != 0 {
            return Err(ConfigError::PinFileExposed {
                path: path.clone(),
                mode,
            });
        }
        let pin = UserPin::from_file(path).map_err(|source| ConfigError::PinFile {
            path: path.clone(),
            source,
        })?;
        if pin.is_empty() {
            return Err(ConfigError::PinEmpty {
                source_name: path.display().to_string(),
            });
        }
        Ok(pin)
    }
}

#[cfg(test)]
mod tests;
