//! `rkm recovery`: operators open recovery ceremonies and collect their
//! artefact; custodians review a request and approve it with their share.
//! One file per verb, and here the small ones (list, show, confirm, cancel); what
//! they share with `rkm drill` lives in `crate::recovery_ceremony`.

pub mod approve;
pub mod collect;
pub mod open;

use crate::connect::stubs;
use std::fmt::Write as _;

use anyhow::Context as _;
use clap::Subcommand;
use rkm_proto::v1::{CancelRecoveryRequest, ConfirmRecoveryRequest, ListRecoveriesRequest};

use crate::connect::Target;
use crate::custodian_auth::{CustodianIdentityArgs, as_caller, method};
use crate::exit::RpcResultExt as _;
use crate::output::{OutputFormat, emit, print_json};
use crate::recovery_ceremony::opening::OpenArgs;
use crate::recovery_ceremony::{RecoveryReport, checked_request, get_recovery, render};

/// Recovery ceremonies: open, review, approve, collect.
#[derive(Debug, Subcommand)]
pub enum RecoveryCommand {
    Open(OpenArgs),
    List(ListArgs),
    Show(ShowArgs),
    Confirm(ConfirmArgs),
    Cancel(CancelArgs),
    Approve(Box<approve::ApproveArgs>),
    Collect(collect::CollectArgs),
}

/// List recovery ceremonies, newest first.
///
/// Operators and auditors see every ceremony (--custodian keeps to the keys
/// one custodian holds a share of); a custodian gives --identity and sees
/// the ceremonies of their own keys.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only ceremonies on keys this custodian holds a share of.
    #[arg(long, conflicts_with = "identity")]
    pub custodian: Option<String>,
    #[command(flatten)]
    pub custodian_identity: CustodianIdentityArgs,
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
    #[command(flatten)]
    pub custodian_identity: CustodianIdentityArgs,
}

/// Confirm a recovery another operator opened (operators, two-person rule).
///
/// With `recovery.two_person_rule` on in rkmd, custodians can approve a
/// recovery only once an operator other than its opener confirms it. Read
/// the request first with `rkm recovery show`.
#[derive(Debug, clap::Args)]
pub struct ConfirmArgs {
    /// The ceremony id.
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

/// Runs one `rkm recovery` command.
///
/// # Errors
/// The command's error; a request or artefact that does not verify carries
/// [`VerificationFailed`](crate::exit::VerificationFailed) (exit 7).
pub async fn run(
    command: RecoveryCommand,
    target: &Target,
    output: OutputFormat,
) -> anyhow::Result<()> {
    match command {
        RecoveryCommand::Open(args) => open::run(args, target, output).await,
        RecoveryCommand::Approve(args) => approve::run(*args, target, output).await,
        RecoveryCommand::Collect(args) => collect::run(args, target, output).await,
        RecoveryCommand::List(args) => list(args, target, output).await,
        RecoveryCommand::Show(args) => show(&args, target, output).await,
        RecoveryCommand::Confirm(args) => confirm(args, target, output).await,
        RecoveryCommand::Cancel(args) => cancel(args, target, output).await,
    }
}

async fn list(args: ListArgs, target: &Target, output: OutputFormat) -> anyhow::Result<()> {
    let channel = target.connect().await?;
    let request = as_caller(
        &channel,
        &args.custodian_identity,
        method::LIST_RECOVERIES,
        ListRecoveriesRequest {
            custodian: args.custodian.unwrap_or_default(),
        },
        |request, name| name.clone_into(&mut request.custodian),
    )
    .await?;
    let all: Vec<RecoveryReport> = stubs::recovery(channel)
        .list_recoveries(request)
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
                let state = if report.awaiting_confirmation {
                    "unconfirmed"
                } else {
                    report.state
                };
                let _ = writeln!(
                    text,
                    "{:<22} {:<11} {:<20} approvals {}/{}  {signs}  expires {}",
                    report.ceremony_id,
                    state,
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
    let channel = target.connect().await?;
    let request = as_caller(
        &channel,
        &args.custodian_identity,
        method::GET_RECOVERY,
        rkm_proto::v1::GetRecoveryRequest {
            ceremony_id: args.ceremony_id.clone(),
            ..Default::default()
        },
        |request, name| name.clone_into(&mut request.custodian),
    )
    .await?;
    let summary = get_recovery(&mut stubs::recovery(channel), request).await?;
    let (request, _) = checked_request(&summary)?;
    let report = RecoveryReport::new(&summary, Some(&request));
    match output {
        OutputFormat::Json => print_json(&report),
        OutputFormat::Text => emit(&render(&report)),
    }
}

async fn confirm(args: ConfirmArgs, target: &Target, output: OutputFormat) -> anyhow::Result<()> {
    let mut client = stubs::recovery(target.connect().await?);
    let summary = client
        .confirm_recovery(ConfirmRecoveryRequest {
            ceremony_id: args.ceremony_id,
        })
        .await
        .rpc("confirming the recovery ceremony")?
        .into_inner()
        .recovery
        .context("rkmd sent no ceremony")?;
    let report = RecoveryReport::new(&summary, None);
    match output {
        OutputFormat::Json => print_json(&report),
        OutputFormat::Text => emit(&format!(
            "ceremony {} is confirmed; its custodians were told they may approve it before {}\n",
            report.ceremony_id, report.expires_at
        )),
    }
}

async fn cancel(args: CancelArgs, target: &Target, output: OutputFormat) -> anyhow::Result<()> {
    let mut client = stubs::recovery(target.connect().await?);
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
