//! `rkm notice`: the notices rkmd recorded for custodians when a ceremony
//! opened (`list`), and a custodian's signed acknowledgement (`ack`).

use crate::connect::stubs;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use rkm_proto::messages::notice_ack_message;
use rkm_proto::v1::{AcknowledgeNoticeRequest, ListNoticesRequest, Notice};
use serde::Serialize;

use crate::connect::Target;
use crate::custodian_auth::{CustodianIdentityArgs, as_caller, method, signed_request};
use crate::exit::RpcResultExt as _;
use crate::output::{OutputFormat, emit, print_json};
use crate::passphrase::{PassphraseArgs, open_identity};

/// Notices to custodians and their acknowledgements.
#[derive(Debug, Subcommand)]
pub enum NoticeCommand {
    List(ListArgs),
    Ack(AckArgs),
}

/// List the notices rkmd sent, oldest first.
///
/// Operators and auditors see every custodian's notices; a custodian gives
/// --identity and sees their own.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only the notices to this custodian.
    #[arg(long, conflicts_with = "identity")]
    pub custodian: Option<String>,
    #[command(flatten)]
    pub custodian_identity: CustodianIdentityArgs,
}

/// Acknowledge a notice sent to you, signed with your identity.
#[derive(Debug, clap::Args)]
pub struct AckArgs {
    /// The notice id, as `rkm notice list` shows it.
    pub notice_id: String,
    /// Your identity file.
    #[arg(long, value_name = "FILE")]
    pub identity: PathBuf,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

/// A notice as `--output json` prints it.
#[derive(Debug, Serialize)]
pub struct NoticeReport {
    pub notice_id: String,
    pub ceremony_id: String,
    pub custodian: String,
    pub text: String,
    pub sent_at: String,
    pub acknowledged_at: Option<String>,
}

impl From<Notice> for NoticeReport {
    fn from(notice: Notice) -> Self {
        NoticeReport {
            notice_id: notice.notice_id,
            ceremony_id: notice.ceremony_id,
            custodian: notice.custodian,
            text: notice.text,
            sent_at: notice.sent_at,
            acknowledged_at: (!notice.acknowledged_at.is_empty()).then_some(notice.acknowledged_at),
        }
    }
}

/// Runs one `rkm notice` command.
///
/// # Errors
/// rkmd cannot be reached or refuses; the identity cannot be opened.
pub async fn run(
    command: NoticeCommand,
    target: &Target,
    output: OutputFormat,
) -> anyhow::Result<()> {
    match command {
        NoticeCommand::List(args) => {
            let channel = target.connect().await?;
            let request = as_caller(
                &channel,
                &args.custodian_identity,
                method::LIST_NOTICES,
                ListNoticesRequest {
                    custodian: args.custodian.unwrap_or_default(),
                },
                |request, name| name.clone_into(&mut request.custodian),
            )
            .await?;
            let notices: Vec<NoticeReport> = stubs::custodian(channel)
                .list_notices(request)
                .await
                .rpc("listing notices")?
                .into_inner()
                .notices
                .into_iter()
                .map(NoticeReport::from)
                .collect();
            match output {
                OutputFormat::Json => print_json(&notices),
                OutputFormat::Text => emit(&render_list(&notices)),
            }
        }
        NoticeCommand::Ack(args) => {
            let identity = open_identity(&args.identity, &args.passphrase)?;
            let signature = identity.sign(&notice_ack_message(&args.notice_id, identity.name()));
            let channel = target.connect().await?;
            let request = AcknowledgeNoticeRequest {
                notice_id: args.notice_id,
                custodian: identity.name().to_owned(),
                signature: signature.to_vec(),
            };
            let signed =
                signed_request(&channel, &identity, method::ACKNOWLEDGE_NOTICE, request).await?;
            let notice = stubs::custodian(channel)
                .acknowledge_notice(signed)
                .await
                .rpc("acknowledging the notice")?
                .into_inner()
                .notice
                .context("rkmd sent no notice")?;
            let report = NoticeReport::from(notice);
            match output {
                OutputFormat::Json => print_json(&report),
                OutputFormat::Text => emit(&format!(
                    "acknowledged {} ({}) at {}\n",
                    report.notice_id,
                    report.ceremony_id,
                    report.acknowledged_at.as_deref().unwrap_or("?")
                )),
            }
        }
    }
}

fn render_list(notices: &[NoticeReport]) -> String {
    if notices.is_empty() {
        return "no notices\n".to_owned();
    }
    let mut text = String::new();
    for notice in notices {
        let acknowledged = match &notice.acknowledged_at {
            Some(at) => format!("acknowledged {at}"),
            None => "not acknowledged".to_owned(),
        };
        let _ = writeln!(
            text,
            "{}  {}  to {}  sent {}  {acknowledged}\n    {}",
            notice.notice_id, notice.ceremony_id, notice.custodian, notice.sent_at, notice.text
        );
    }
    text
}
