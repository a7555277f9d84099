//! The `[tls]` and `[access]` settings (see `config.rs` for the file and
//! environment rules they follow).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::guard::GuardSettings;

/// The TCP listener's TLS: required whenever `listen.tcp` is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// PEM chain of the server's certificate (server first).
    pub certificate: Option<PathBuf>,
    /// PEM PKCS#8 key of that certificate (mode 0600).
    pub private_key: Option<PathBuf>,
    /// PEM trust anchors of client certificates (the organisation's CA).
    pub client_ca: Option<PathBuf>,
}

/// Who holds which role, and how failures are treated.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessSettings {
    /// Principals (`cn:NAME`, `sha256:HEX`, `uid:N`) holding each role.
    pub admin: Vec<String>,
    pub operator: Vec<String>,
    pub auditor: Vec<String>,
    /// Authentication failures after which answers slow down.
    pub slow_after: u32,
    /// Failures within `failure_window_seconds` that lock a peer or identity out.
    pub lock_after: u32,
    pub failure_window_seconds: u64,
    pub lockout_seconds: u64,
    /// Largest clock difference accepted in a custodian's signed request.
    pub custodian_clock_skew_seconds: u64,
    /// How long a custodian's challenge stays usable.
    pub challenge_seconds: u64,
}

impl Default for AccessSettings {
    fn default() -> Self {
        Self {
            admin: Vec::new(),
            operator: Vec::new(),
            auditor: Vec::new(),
            slow_after: 3,
            lock_after: 10,
            failure_window_seconds: 60,
            lockout_seconds: 300,
            custodian_clock_skew_seconds: 300,
            challenge_seconds: 120,
        }
    }
}

impl AccessSettings {
    /// The guard's thresholds.
    pub fn guard(&self) -> GuardSettings {
        GuardSettings {
            slow_after: self.slow_after,
            lock_after: self.lock_after.max(1),
            window: Duration::from_secs(self.failure_window_seconds.max(1)),
            lockout: Duration::from_secs(self.lockout_seconds),
        }
    }
}

/// The `[recovery]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecoverySettings {
    /// A recovery (not a drill) accepts approvals only once an operator
    /// other than the one who opened it confirms it.
    pub two_person_rule: bool,
    /// Most devices one recovery may list; a longer manifest is refused at
    /// the first device past it, before it is stored.
    pub max_targets: u64,
}

/// Ten million: ten times the largest recovery benchmarked, and what the
/// state directory of a default install holds with room to spare.
pub const DEFAULT_MAX_TARGETS: u64 = 10_000_000;

impl Default for RecoverySettings {
    fn default() -> Self {
        Self {
            two_person_rule: false,
            max_targets: DEFAULT_MAX_TARGETS,
        }
    }
}

/// Splits a list setting given in the environment: comma-separated.
pub fn env_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(str::to_owned)
        .collect()
}
