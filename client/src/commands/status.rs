//! `rkm status`: what rkmd runs on — its HSM token, the mechanisms rkm needs,
//! the audit key's fingerprint, the store's record counts, and per key how
//! many custodians attested their share recently against the threshold.

use crate::connect::stubs;
use rkm_proto::v1::GetStatusRequest;
use serde::Serialize;

use std::fmt::Write as _;

use crate::connect::Target;
use crate::exit::{NotServing, RpcResultExt as _};
use crate::key_report::{attestation_summary, list_keys};
use crate::output::{OutputFormat, emit, print_json};

/// The status as `--output json` prints it.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub version: String,
    pub token: TokenReport,
    pub mechanisms: Vec<MechanismReport>,
    pub audit_key: AuditKeyReport,
    pub counts: std::collections::BTreeMap<String, u64>,
    pub hsm_workers: u32,
    pub hsm_session_objects: u64,
    pub hsm_token_objects: u64,
    pub started_at_unix: u64,
    pub hsm_health: HsmHealthReport,
    /// Per key, how many custodians attested their share recently.
    pub keys: Vec<KeyAttestationReport>,
}

/// Whether rkmd's HSM serves, and if not since when and why.
#[derive(Debug, Serialize)]
pub struct HsmHealthReport {
    pub serving: bool,
    pub cause: String,
    pub failing_since_unix: u64,
    pub attempts: u32,
    pub last_attempt: String,
    pub next_attempt_seconds: Option<u32>,
}

/// A key's recent share attestations against its threshold.
#[derive(Debug, Serialize)]
pub struct KeyAttestationReport {
    pub label: String,
    pub key_id: String,
    pub threshold: u32,
    pub custodians: usize,
    pub attested_recently: u32,
    pub attestation_window_days: u32,
    /// Enabled and attested within the window: the shares a quorum can use.
    pub usable_custodians: u32,
    pub quorum_health: &'static str,
    pub quorum_at_risk: bool,
    #[serde(skip)]
    pub summary: String,
}

#[derive(Debug, Serialize)]
pub struct TokenReport {
    pub label: String,
    pub manufacturer: String,
    pub model: String,
    pub serial_number: String,
    pub library: String,
}

#[derive(Debug, Serialize)]
pub struct MechanismReport {
    pub name: String,
    pub purpose: String,
    pub present: bool,
}

#[derive(Debug, Serialize)]
pub struct AuditKeyReport {
    pub public_key_hex: String,
    pub fingerprint: String,
    pub verifier_key: String,
}

/// Asks rkmd for its status and prints it.
///
/// # Errors
/// rkmd cannot be reached or answers with an error.
pub async fn run(target: &Target, output: OutputFormat) -> anyhow::Result<()> {
    let channel = target.connect().await?;
    let response = stubs::system(channel.clone())
        .get_status(GetStatusRequest {})
        .await
        .rpc("asking rkmd for its status")?
        .into_inner();
    let keys = list_keys(&mut stubs::key(channel))
        .await?
        .into_iter()
        .map(|key| KeyAttestationReport {
            summary: attestation_summary(&key),
            label: key.label,
            key_id: key.key_id,
            threshold: key.threshold,
            custodians: key.custodian_count,
            attested_recently: key.attested_recently,
            attestation_window_days: key.attestation_window_days,
            usable_custodians: key.usable_custodians,
            quorum_health: key.quorum_health,
            quorum_at_risk: key.quorum_at_risk,
        })
        .collect();
    let token = response.token.unwrap_or_default();
    // An rkmd from before health reporting serves whenever it answers.
    let health = response
        .hsm_health
        .unwrap_or(rkm_proto::v1::HsmHealthStatus {
            serving: true,
            ..Default::default()
        });
    let audit_key = response.audit_key.unwrap_or_default();
    let report = StatusReport {
        version: response.version,
        token: TokenReport {
            label: token.label,
            manufacturer: token.manufacturer,
            model: token.model,
            serial_number: token.serial_number,
            library: format!("{} {}", token.library_description, token.library_version),
        },
        mechanisms: response
            .mechanisms
            .into_iter()
            .map(|m| MechanismReport {
                name: m.name,
                purpose: m.purpose,
                present: m.present,
            })
            .collect(),
        audit_key: AuditKeyReport {
            public_key_hex: hex_encode(&audit_key.public_key),
            fingerprint: audit_key.fingerprint,
            verifier_key: audit_key.verifier_key,
        },
        counts: response
            .counts
            .into_iter()
            .map(|c| (c.kind, c.count))
            .collect(),
        hsm_workers: response.hsm_workers,
        hsm_session_objects: response.hsm_session_objects,
        hsm_token_objects: response.hsm_token_objects,
        started_at_unix: response.started_at_unix,
        hsm_health: HsmHealthReport {
            serving: health.serving,
            cause: health.cause,
            failing_since_unix: health.failing_since_unix,
            attempts: health.attempts,
            last_attempt: health.last_attempt,
            next_attempt_seconds: health.next_attempt_seconds,
        },
        keys,
    };
    match output {
        OutputFormat::Json => print_json(&report)?,
        OutputFormat::Text => emit(&render_text(&report))?,
    }
    if report.hsm_health.serving {
        Ok(())
    } else {
        Err(NotServing::error(format!(
            "rkmd's HSM is not serving ({}): rkmd refuses state changes until it works again and retries on its own",
            report.hsm_health.cause
        )))
    }
}

fn render_health(text: &mut String, health: &HsmHealthReport) {
    if health.serving {
        let _ = writeln!(text, "hsm         serving");
        return;
    }
    let since = std::time::UNIX_EPOCH + std::time::Duration::from_secs(health.failing_since_unix);
    let down = std::time::SystemTime::now()
        .duration_since(since)
        .map_or(0, |down| down.as_secs());
    let _ = writeln!(
        text,
        "hsm         NOT SERVING since {} ({down} s): {}",
        rkm_proto::encoding::time::format_rfc3339_seconds(since),
        health.cause
    );
    let next = match health.next_attempt_seconds {
        Some(seconds) => format!("next in {seconds} s"),
        None => "rkmd stopped retrying".to_owned(),
    };
    if health.attempts > 0 {
        let _ = writeln!(
            text,
            "            attempts to reconnect: {}, the latest: {}; {next}",
            health.attempts, health.last_attempt
        );
    } else {
        let _ = writeln!(text, "            reconnecting; {next}");
    }
    let _ = writeln!(
        text,
        "            state changes (approvals, keys, notes) are refused until the HSM serves again"
    );
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn render_text(report: &StatusReport) -> String {
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(text, "rkmd {}", report.version);
    let _ = writeln!(
        text,
        "token       {} — {} {} (serial {})",
        report.token.label,
        report.token.manufacturer,
        report.token.model,
        report.token.serial_number
    );
    let _ = writeln!(text, "library     {}", report.token.library);
    render_health(&mut text, &report.hsm_health);
    let _ = writeln!(text, "workers     {} HSM sessions", report.hsm_workers);
    let _ = writeln!(
        text,
        "objects     {} session, {} token",
        report.hsm_session_objects, report.hsm_token_objects
    );
    let _ = writeln!(text, "audit key   {}", report.audit_key.fingerprint);
    let _ = writeln!(text, "verifier    {}", report.audit_key.verifier_key);
    let _ = writeln!(text, "mechanisms");
    for mechanism in &report.mechanisms {
        let mark = if mechanism.present {
            "ok     "
        } else {
            "MISSING"
        };
        let _ = writeln!(
            text,
            "  {mark} {:<28} {}",
            mechanism.name, mechanism.purpose
        );
    }
    if !report.counts.is_empty() {
        let _ = writeln!(text, "records");
        for (kind, count) in &report.counts {
            let _ = writeln!(text, "  {kind:<20} {count}");
        }
    }
    if !report.keys.is_empty() {
        let _ = writeln!(text, "share attestations");
        for key in &report.keys {
            let _ = writeln!(text, "  {:<20} {}", key.label, key.summary);
        }
    }
    text
}
