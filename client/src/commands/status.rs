//! `rkm status`: what rkmd runs on — its HSM token, the mechanisms rkm needs,
//! the audit key's fingerprint, the store's record counts, and per key how
//! many custodians attested their share recently against the threshold.

use crate::connect::stubs;
use rkm_proto::v1::GetStatusRequest;
use serde::Serialize;

use std::fmt::Write as _;

use crate::connect::Target;
use crate::exit::RpcResultExt as _;
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
    /// Per key, how many custodians attested their share recently.
    pub keys: Vec<KeyAttestationReport>,
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
            quorum_at_risk: key.quorum_at_risk,
        })
        .collect();
    let token = response.token.unwrap_or_default();
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
        keys,
    };
    match output {
        OutputFormat::Json => print_json(&report),
        OutputFormat::Text => emit(&render_text(&report)),
    }
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
