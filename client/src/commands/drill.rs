//! `rkm drill`: recovery drills. A drill runs the recovery path end to end —
//! notices, custodians' approvals with their shares, reconstitution in the
//! HSM — but the key signs a drill challenge bound to the ceremony, never a
//! command. Custodians approve with `rkm recovery approve` as for a recovery;
//! `rkm drill report` says how it went: who was notified and acknowledged,
//! who approved and when, time to quorum, time to signature, the outcome
//! (the drill signature checked against the key record) and what went wrong.

use crate::connect::stubs;
use rkm_proto::audit_entry::action;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use clap::Subcommand;
use rkm_proto::audit_entry::{AuditEntry, Outcome};
use rkm_proto::checkpoint::VerifierKey;
use rkm_proto::command::verify_drill_signature;
use rkm_proto::key_record::SignedKeyRecord;
use rkm_proto::recovery_request::RecoveryRequest;
use rkm_proto::v1::{GetAuditKeyRequest, GetKeyRequest, ListEntriesRequest, ListNoticesRequest};
use serde::Serialize;
use tonic::transport::Channel;

use crate::connect::Target;
use crate::exit::RpcResultExt as _;
use crate::output::{OutputFormat, emit, print_json};
use crate::recovery_ceremony::get_recovery;
use crate::recovery_ceremony::opening::{OpenArgs, open_ceremony, parse_expiry};
use crate::ui::recovery_state_name;

/// Recovery drills.
#[derive(Debug, Subcommand)]
pub enum DrillCommand {
    Open(DrillOpenArgs),
    Report(ReportArgs),
}

/// Open a drill ceremony for a key (operators). Custodians are notified and
/// approve with `rkm recovery approve ID`; at the quorum the key signs a
/// drill challenge, never a command.
#[derive(Debug, clap::Args)]
pub struct DrillOpenArgs {
    /// The recovery key's label or id.
    #[arg(long)]
    pub key: String,
    /// What the drill exercises, as custodians will read it.
    #[arg(long, value_name = "TEXT", default_value = "Scheduled recovery drill")]
    pub reason: String,
    /// A reference for the drill, e.g. DRILL-2026-Q4.
    #[arg(long, value_name = "REF", default_value = "DRILL")]
    pub incident: String,
    /// How long custodians may approve, e.g. 24h (at most 30 days).
    #[arg(long, value_name = "DURATION", value_parser = parse_expiry)]
    pub expires: Duration,
    /// Drill an emergency ceremony; custodians are told so.
    #[arg(long, requires = "justification")]
    pub emergency: bool,
    /// Why (with --emergency).
    #[arg(long, value_name = "TEXT", requires = "emergency")]
    pub justification: Option<String>,
}

/// Report how a drill went (operators, auditors).
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The drill's ceremony id.
    pub ceremony_id: String,
}

/// Runs one `rkm drill` command.
///
/// # Errors
/// The command's error.
pub async fn run(
    command: DrillCommand,
    target: &Target,
    output: OutputFormat,
) -> anyhow::Result<()> {
    match command {
        DrillCommand::Open(args) => open(args, target, output).await,
        DrillCommand::Report(args) => report(&args, target, output).await,
    }
}

/// The drill's request file, written here: the window is the approval
/// window, and the command a placeholder no device will ever receive.
fn drill_request(args: &DrillOpenArgs) -> anyhow::Result<String> {
    let now = SystemTime::now();
    let quoted = |text: &str| serde_json::to_string(text).context("quoting a request field");
    Ok(format!(
        "reason = {}\nincident = {}\nnot_before = \"{}\"\nnot_after = \"{}\"\n\n[command]\nkind = \"custom\"\ntype = \"rkm-drill\"\npayload = \"\"\n",
        quoted(&args.reason)?,
        quoted(&args.incident)?,
        humantime::format_rfc3339_seconds(now),
        humantime::format_rfc3339_seconds(now + args.expires),
    ))
}

async fn open(args: DrillOpenArgs, target: &Target, output: OutputFormat) -> anyhow::Result<()> {
    let request_toml = drill_request(&args)?;
    let request = RecoveryRequest::from_toml(&request_toml).context("the drill request")?;
    let open_args = OpenArgs {
        key: args.key,
        request: "(drill)".into(),
        targets: None,
        expires: args.expires,
        emergency: args.emergency,
        justification: args.justification,
        drill: true,
    };
    open_ceremony(open_args, request_toml, request, target, output).await
}

/// What `drill report --output json` prints.
#[derive(Debug, Serialize)]
pub struct DrillReport {
    pub ceremony_id: String,
    pub key_label: String,
    pub key_id: String,
    pub state: &'static str,
    /// `passed`, `failed`, or the state while the drill is not over.
    pub outcome: String,
    pub opened_by: String,
    pub opened_at: String,
    pub threshold: u32,
    pub notices: Vec<NoticeLine>,
    pub approvals: Vec<ApprovalLine>,
    /// Opening to the K-th approval.
    pub seconds_to_quorum: Option<f64>,
    /// K-th approval to the verified drill signature.
    pub seconds_to_signature: Option<f64>,
    /// Hex r‖s over the drill challenge, when signed.
    pub drill_signature: Option<String>,
    /// Checked here against the key record rkmd's audit key signed.
    pub drill_signature_verifies: bool,
    /// Refused or failed steps of the ceremony, from the audit log.
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct NoticeLine {
    pub custodian: String,
    pub sent_at: String,
    pub acknowledged_at: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ApprovalLine {
    pub custodian: String,
    pub approved_at: String,
}

fn entry_time(entry: &AuditEntry) -> Option<SystemTime> {
    humantime::parse_rfc3339(&entry.time).ok()
}

fn seconds_between(from: Option<SystemTime>, to: Option<SystemTime>) -> Option<f64> {
    Some(to?.duration_since(from?).ok()?.as_secs_f64())
}

/// The notices sent for the ceremony, in the order they were sent.
async fn drill_notices(channel: &Channel, ceremony_id: &str) -> anyhow::Result<Vec<NoticeLine>> {
    let mut notices: Vec<NoticeLine> = stubs::custodian(channel.clone())
        .list_notices(ListNoticesRequest {
            custodian: String::new(),
        })
        .await
        .rpc("listing notices")?
        .into_inner()
        .notices
        .into_iter()
        .filter(|n| n.ceremony_id == ceremony_id)
        .map(|n| NoticeLine {
            custodian: n.custodian,
            sent_at: n.sent_at,
            acknowledged_at: (!n.acknowledged_at.is_empty()).then_some(n.acknowledged_at),
        })
        .collect();
    notices.sort_by(|a, b| (&a.sent_at, &a.custodian).cmp(&(&b.sent_at, &b.custodian)));
    Ok(notices)
}

/// The audit entries whose subject is the ceremony.
async fn drill_entries(channel: &Channel, ceremony_id: &str) -> anyhow::Result<Vec<AuditEntry>> {
    let mut entries = Vec::new();
    let mut stream = stubs::audit(channel.clone())
        .list_entries(ListEntriesRequest {
            start: 0,
            end: 0,
            subject: ceremony_id.to_owned(),
        })
        .await
        .rpc("asking rkmd for the drill's audit entries")?
        .into_inner();
    while let Some(item) = stream
        .message()
        .await
        .rpc("receiving audit entries from rkmd")?
    {
        entries.push(
            AuditEntry::decode(&item.entry)
                .with_context(|| format!("entry {} from rkmd does not decode", item.index))?,
        );
    }
    Ok(entries)
}

/// When the drill was opened, reached its quorum (the K-th approval) and was
/// issued, as the audit log says.
struct Timeline<'a> {
    opened: Option<SystemTime>,
    quorum_approval: Option<SystemTime>,
    issued: Option<&'a AuditEntry>,
}

impl<'a> Timeline<'a> {
    fn of(entries: &'a [AuditEntry], threshold: u32) -> Self {
        let succeeded = |action: &'static str| {
            entries
                .iter()
                .filter(move |e| e.action == action && e.outcome == Outcome::Ok)
        };
        Timeline {
            opened: succeeded(action::RECOVERY_OPEN).next().and_then(entry_time),
            quorum_approval: succeeded(action::RECOVERY_APPROVE)
                .nth(
                    usize::try_from(threshold)
                        .unwrap_or(usize::MAX)
                        .saturating_sub(1),
                )
                .and_then(entry_time),
            issued: succeeded(action::DRILL_ISSUE).next(),
        }
    }
}

/// The refused or failed steps of the ceremony, one line each.
fn problems(entries: &[AuditEntry]) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e.outcome != Outcome::Ok)
        .map(|e| {
            let method = e
                .details
                .get("method")
                .map(|method| format!(" ({method})"))
                .unwrap_or_default();
            format!(
                "{} {} by {}{method}: {}",
                e.time,
                e.action,
                e.actor,
                e.details.get("reason").map_or("", String::as_str)
            )
        })
        .collect()
}

/// `passed` or `failed: why` once the drill is over, else its state.
fn outcome(state: &str, signature_verifies: bool, failure: &str) -> String {
    match state {
        "completed" if signature_verifies => "passed".to_owned(),
        "completed" => "failed: the drill signature does not verify".to_owned(),
        "failed" => format!("failed: {failure}"),
        other => other.to_owned(),
    }
}

async fn report(args: &ReportArgs, target: &Target, output: OutputFormat) -> anyhow::Result<()> {
    let channel = target.connect().await?;
    let summary = get_recovery(
        &mut stubs::recovery(channel.clone()),
        rkm_proto::v1::GetRecoveryRequest {
            ceremony_id: args.ceremony_id.clone(),
            ..Default::default()
        },
    )
    .await?;
    if !summary.drill {
        bail!(
            "ceremony {} is a recovery, not a drill; see it with `rkm recovery show {}`",
            summary.ceremony_id,
            summary.ceremony_id
        );
    }
    let notices = drill_notices(&channel, &summary.ceremony_id).await?;
    let entries = drill_entries(&channel, &summary.ceremony_id).await?;
    let timeline = Timeline::of(&entries, summary.threshold);
    let drill_signature = timeline
        .issued
        .and_then(|e| e.details.get("drill_signature").cloned());
    let drill_signature_verifies = match &drill_signature {
        Some(signature) => check_drill_signature(&channel, &summary, signature).await?,
        None => false,
    };
    let state = recovery_state_name(summary.state);
    let report = DrillReport {
        ceremony_id: summary.ceremony_id.clone(),
        key_label: summary.key_label.clone(),
        key_id: summary.key_id.clone(),
        state,
        outcome: outcome(state, drill_signature_verifies, &summary.failure),
        opened_by: summary.opened_by.clone(),
        opened_at: summary.opened_at.clone(),
        threshold: summary.threshold,
        notices,
        approvals: summary
            .approvals
            .iter()
            .map(|a| ApprovalLine {
                custodian: a.custodian.clone(),
                approved_at: a.approved_at.clone(),
            })
            .collect(),
        seconds_to_quorum: seconds_between(timeline.opened, timeline.quorum_approval),
        seconds_to_signature: seconds_between(
            timeline.quorum_approval,
            timeline.issued.and_then(entry_time),
        ),
        drill_signature,
        drill_signature_verifies,
        problems: problems(&entries),
    };
    match output {
        OutputFormat::Json => print_json(&report),
        OutputFormat::Text => emit(&render(&report)),
    }
}

/// Checks the drill signature against the key record, itself checked with
/// rkmd's audit key (or, for an imported key, the key that signed it).
async fn check_drill_signature(
    channel: &Channel,
    summary: &rkm_proto::v1::RecoverySummary,
    signature: &str,
) -> anyhow::Result<bool> {
    let key = stubs::key(channel.clone())
        .get_key(GetKeyRequest {
            key: summary.key_id.clone(),
        })
        .await
        .rpc("looking up the key")?
        .into_inner()
        .key
        .context("rkmd sent no key")?;
    let verifier = if key.record_audit_key.is_empty() {
        stubs::audit(channel.clone())
            .get_audit_key(GetAuditKeyRequest {})
            .await
            .rpc("asking rkmd for its audit key")?
            .into_inner()
            .verifier_key
    } else {
        key.record_audit_key
    };
    let verifier = VerifierKey::parse(&verifier).context("the audit key")?;
    let record = SignedKeyRecord::from_file(&key.signed_key_record)
        .context("the key record")?
        .verify(&verifier)
        .context("the key record does not verify")?;
    let mut bytes = [0u8; 64];
    if hex::decode_to_slice(signature, &mut bytes).is_err() {
        return Ok(false);
    }
    let digest: [u8; 32] = summary
        .request_digest
        .as_slice()
        .try_into()
        .context("the request digest")?;
    Ok(verify_drill_signature(&record, &digest, &summary.ceremony_id, &bytes).is_ok())
}

fn render(report: &DrillReport) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "drill       {} of key {} ({})",
        report.ceremony_id, report.key_label, report.key_id
    );
    let _ = writeln!(text, "outcome     {}", report.outcome);
    let _ = writeln!(
        text,
        "opened      {} by {}",
        report.opened_at, report.opened_by
    );
    let _ = writeln!(text, "notified");
    for notice in &report.notices {
        let _ = writeln!(
            text,
            "  {:<20} {}  acknowledged {}",
            notice.custodian,
            notice.sent_at,
            notice.acknowledged_at.as_deref().unwrap_or("no")
        );
    }
    let _ = writeln!(
        text,
        "approved    {} of threshold {}",
        report.approvals.len(),
        report.threshold
    );
    for approval in &report.approvals {
        let _ = writeln!(
            text,
            "  {:<20} {}",
            approval.custodian, approval.approved_at
        );
    }
    let seconds = |value: Option<f64>| value.map_or("-".to_owned(), |s| format!("{s:.3} s"));
    let _ = writeln!(text, "to quorum   {}", seconds(report.seconds_to_quorum));
    let _ = writeln!(
        text,
        "to signature {}",
        seconds(report.seconds_to_signature)
    );
    let _ = writeln!(
        text,
        "signature   {}",
        match (&report.drill_signature, report.drill_signature_verifies) {
            (None, _) => "none yet".to_owned(),
            (Some(_), true) => "verifies against the key record".to_owned(),
            (Some(_), false) => "DOES NOT VERIFY against the key record".to_owned(),
        }
    );
    if report.problems.is_empty() {
        let _ = writeln!(text, "problems    none");
    } else {
        let _ = writeln!(text, "problems");
        for problem in &report.problems {
            let _ = writeln!(text, "  {problem}");
        }
    }
    text
}
