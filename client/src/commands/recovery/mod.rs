//! `rkm recovery`: operators open recovery ceremonies and collect their
//! artefact; custodians review a request and approve it with their share.
//! One file per verb; what they share (reading a ceremony from rkmd,
//! checking its request digest, printing it) lives here.

pub mod approve;
pub mod collect;
pub mod open;

use std::fmt::Write as _;

use anyhow::Context as _;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rkm_proto::recovery_request::{CanonicalRequest, request_digest};
use rkm_proto::v1::recovery_service_client::RecoveryServiceClient;
use rkm_proto::v1::{
    CancelRecoveryRequest, GetRecoveryRequest, ListRecoveriesRequest, RecoveryState,
    RecoverySummary,
};
use serde::Serialize;
use tonic::transport::Channel;

use crate::connect::Target;
use crate::exit::{RpcError, RpcResultExt as _, VerificationFailed};
use crate::output::{OutputFormat, emit, print_json};

/// Recovery ceremonies: open, review, approve, collect.
#[derive(Debug, Subcommand)]
pub enum RecoveryCommand {
    Open(open::OpenArgs),
    /// List recovery ceremonies, newest first.
    List,
    Show(ShowArgs),
    Cancel(CancelArgs),
    Approve(Box<approve::ApproveArgs>),
    Collect(collect::CollectArgs),
}

/// Show one recovery ceremony: the decoded request custodians approve, its
/// digest, the target count, the approvals so far, the state and the expiry.
///
/// The request digest is recomputed here from the request rkmd holds; a
/// mismatch ends the command with exit code 7.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The ceremony id, as `rkm recovery open` and `rkm recovery list` print it.
    pub ceremony_id: String,
}

/// Cancel an open recovery ceremony (operators). Shares already submitted
/// are destroyed; no command is signed.
#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    /// The ceremony id.
    pub ceremony_id: String,
    /// Why, for the audit log.
    #[arg(long)]
    pub reason: String,
}

/// One approval as `--output json` prints it.
#[derive(Debug, Serialize)]
pub struct ApprovalReport {
    pub custodian: String,
    pub approved_at: String,
    pub commitment: String,
}

/// A recovery ceremony as `--output json` prints it.
#[derive(Debug, Serialize)]
pub struct RecoveryReport {
    pub ceremony_id: String,
    pub key_id: String,
    pub key_label: String,
    /// `recovery` or `drill`.
    pub kind: &'static str,
    pub state: &'static str,
    /// Hex SHA-256 request digest, as custodians approve it.
    pub request_digest: String,
    pub target_count: u64,
    pub threshold: u32,
    pub approval_count: usize,
    pub approvals: Vec<ApprovalReport>,
    pub opened_by: String,
    pub opened_at: String,
    pub expires_at: String,
    pub signed_count: u64,
    pub artefact_size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The age recipient shares are sealed to while the ceremony is open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ceremony_recipient: Option<String>,
    /// The canonical request (its JSON), once checked against the digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<serde_json::Value>,
    /// What custodians are shown ([`CanonicalRequest::describe`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A ceremony's state as rkm prints it.
pub fn state_name(state: i32) -> &'static str {
    match RecoveryState::try_from(state) {
        Ok(RecoveryState::Open) => "open",
        Ok(RecoveryState::Signing) => "signing",
        Ok(RecoveryState::Completed) => "completed",
        Ok(RecoveryState::Cancelled) => "cancelled",
        Ok(RecoveryState::Expired) => "expired",
        Ok(RecoveryState::Failed) => "failed",
        _ => "unknown",
    }
}

impl RecoveryReport {
    /// The report of `summary`; with `request` (already checked by
    /// [`checked_request`]) it carries the decoded request too.
    pub fn new(summary: &RecoverySummary, request: Option<&CanonicalRequest>) -> Self {
        RecoveryReport {
            ceremony_id: summary.ceremony_id.clone(),
            key_id: summary.key_id.clone(),
            key_label: summary.key_label.clone(),
            kind: if summary.drill { "drill" } else { "recovery" },
            state: state_name(summary.state),
            request_digest: hex::encode(&summary.request_digest),
            target_count: summary.target_count,
            threshold: summary.threshold,
            approval_count: summary.approvals.len(),
            approvals: summary
                .approvals
                .iter()
                .map(|approval| ApprovalReport {
                    custodian: approval.custodian.clone(),
                    approved_at: approval.approved_at.clone(),
                    commitment: hex::encode(&approval.commitment),
                })
                .collect(),
            opened_by: summary.opened_by.clone(),
            opened_at: summary.opened_at.clone(),
            expires_at: summary.expires_at.clone(),
            signed_count: summary.signed_count,
            artefact_size: summary.artefact_size,
            failure: (!summary.failure.is_empty()).then(|| summary.failure.clone()),
            ceremony_recipient: (!summary.ceremony_recipient.is_empty())
                .then(|| summary.ceremony_recipient.clone()),
            request: request.and_then(|_| serde_json::from_slice(&summary.canonical_request).ok()),
            description: request.map(CanonicalRequest::describe),
        }
    }
}

/// Decodes the canonical request rkmd holds for a ceremony and checks it:
/// it is in canonical form, its digest (recomputed here) is the digest rkmd
/// states, it names the ceremony's key and has its target count. Returns the
/// request and the digest.
///
/// # Errors
/// Any check fails ([`VerificationFailed`], exit 7): rkmd's view of the
/// ceremony cannot be trusted, so nothing may be approved or signed.
pub fn checked_request(summary: &RecoverySummary) -> anyhow::Result<(CanonicalRequest, [u8; 32])> {
    let id = &summary.ceremony_id;
    let request = CanonicalRequest::decode(&summary.canonical_request).map_err(|error| {
        VerificationFailed::error(format!(
            "the request of ceremony {id} does not decode: {error}; do not approve it"
        ))
    })?;
    let computed = request_digest(&summary.canonical_request);
    if summary.request_digest.as_slice() != computed.as_slice() {
        return Err(VerificationFailed::error(format!(
            "rkmd states request digest {} for ceremony {id}, but its request hashes to {}; do not approve it",
            hex::encode(&summary.request_digest),
            hex::encode(computed)
        )));
    }
    if request.key_id != summary.key_id {
        return Err(VerificationFailed::error(format!(
            "the request of ceremony {id} is for key {}, but rkmd says the ceremony is for {}",
            request.key_id, summary.key_id
        )));
    }
    if request.targets.count != summary.target_count {
        return Err(VerificationFailed::error(format!(
            "the request of ceremony {id} has {} targets, but rkmd says {}",
            request.targets.count, summary.target_count
        )));
    }
    Ok((request, computed))
}

/// Asks rkmd for one ceremony.
///
/// # Errors
/// rkmd cannot be reached, does not know the ceremony, or sends none.
pub async fn get_recovery(
    client: &mut RecoveryServiceClient<Channel>,
    ceremony_id: &str,
) -> anyhow::Result<RecoverySummary> {
    client
        .get_recovery(GetRecoveryRequest {
            ceremony_id: ceremony_id.to_owned(),
        })
        .await
        .rpc("asking rkmd for the recovery ceremony")?
        .into_inner()
        .recovery
        .context("rkmd sent no ceremony")
}

/// An error that exits like rkmd's refusal (6): the ceremony is in a state
/// where the command cannot act, as rkmd itself reported it.
pub fn refused(message: String) -> anyhow::Error {
    anyhow::Error::new(RpcError(tonic::Status::failed_precondition(message)))
}

/// A progress bar on stderr (drawn only when stderr is a terminal).
pub fn progress_bar(len: u64, template: &str, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    bar
}

/// Runs one `rkm recovery` command.
///
/// # Errors
/// The command's error; a request or artefact that does not verify carries
/// [`VerificationFailed`] (exit 7).
pub async fn run(
    command: RecoveryCommand,
    target: &Target,
    output: OutputFormat,
) -> anyhow::Result<()> {
    match command {
        RecoveryCommand::Open(args) => open::run(args, target, output).await,
        RecoveryCommand::Approve(args) => approve::run(*args, target, output).await,
        RecoveryCommand::Collect(args) => collect::run(args, target, output).await,
        RecoveryCommand::List => list(target, output).await,
        RecoveryCommand::Show(args) => show(&args, target, output).await,
        RecoveryCommand::Cancel(args) => cancel(args, target, output).await,
    }
}

async fn list(target: &Target, output: OutputFormat) -> anyhow::Result<()> {
    let mut client = RecoveryServiceClient::new(target.connect().await?);
    let all: Vec<RecoveryReport> = client
        .list_recoveries(ListRecoveriesRequest {})
        .await
        .rpc("listing recovery ceremonies")?
        .into_inner()
        .recoveries
        .iter()
        .map(|summary| RecoveryReport::new(summary, None))
        .collect();
    match output {
        OutputFormat::Json => print_json(&all),
        OutputFormat::Text => {
            if all.is_empty() {
                return emit("no recovery ceremonies; `rkm recovery open` opens one\n");
            }
            let mut text = String::new();
            for report in &all {
                let signs = if report.kind == "drill" {
                    "drill challenge".to_owned()
                } else {
                    format!("targets {}", report.target_count)
                };
                let _ = writeln!(
                    text,
                    "{:<22} {:<10} {:<20} approvals {}/{}  {signs}  expires {}",
                    report.ceremony_id,
                    report.state,
                    report.key_label,
                    report.approval_count,
                    report.threshold,
                    report.expires_at
                );
            }
            emit(&text)
        }
    }
}

async fn show(args: &ShowArgs, target: &Target, output: OutputFormat) -> anyhow::Result<()> {
    let mut client = RecoveryServiceClient::new(target.connect().await?);
    let summary = get_recovery(&mut client, &args.ceremony_id).await?;
    let (request, _) = checked_request(&summary)?;
    let report = RecoveryReport::new(&summary, Some(&request));
    match output {
        OutputFormat::Json => print_json(&report),
        OutputFormat::Text => emit(&render(&report)),
    }
}

async fn cancel(args: CancelArgs, target: &Target, output: OutputFormat) -> anyhow::Result<()> {
    let mut client = RecoveryServiceClient::new(target.connect().await?);
    let summary = client
        .cancel_recovery(CancelRecoveryRequest {
            ceremony_id: args.ceremony_id,
            reason: args.reason,
        })
        .await
        .rpc("cancelling the recovery ceremony")?
        .into_inner()
        .recovery
        .context("rkmd sent no ceremony")?;
    let report = RecoveryReport::new(&summary, None);
    match output {
        OutputFormat::Json => print_json(&report),
        OutputFormat::Text => emit(&format!(
            "ceremony {} is {}; its submitted shares were destroyed\n",
            report.ceremony_id, report.state
        )),
    }
}

/// The text form of a ceremony.
pub fn render(report: &RecoveryReport) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "ceremony    {}{}",
        report.ceremony_id,
        if report.kind == "drill" {
            " (drill)"
        } else {
            ""
        }
    );
    let _ = writeln!(text, "state       {}", report.state);
    let _ = writeln!(text, "key         {} ({})", report.key_label, report.key_id);
    let _ = writeln!(text, "digest      {}", report.request_digest);
    let _ = writeln!(text, "targets     {}", report.target_count);
    let _ = writeln!(
        text,
        "approvals   {} of {}",
        report.approval_count, report.threshold
    );
    for approval in &report.approvals {
        let _ = writeln!(
            text,
            "  {:<20} {}",
            approval.custodian, approval.approved_at
        );
    }
    let _ = writeln!(
        text,
        "opened      {} by {}",
        report.opened_at, report.opened_by
    );
    let _ = writeln!(text, "expires     {}", report.expires_at);
    if report.state != "open" {
        let _ = writeln!(
            text,
            "signed      {} of {} commands, artefact {} bytes",
            report.signed_count, report.target_count, report.artefact_size
        );
    }
    if let Some(failure) = &report.failure {
        let _ = writeln!(text, "failure     {failure}");
    }
    if let Some(description) = &report.description {
        let _ = writeln!(text, "request");
        for line in description.lines() {
            let _ = writeln!(text, "  {line}");
        }
    }
    text
}
