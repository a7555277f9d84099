//! `rkm audit note`: an operator annotates the audit log ("HSM firmware
//! upgraded", "drill postponed"); rkmd records it as an `audit.note` entry.

use crate::connect::stubs;
use rkm_proto::v1::RecordNoteRequest;
use serde::Serialize;

use crate::connect::Target;
use crate::exit::RpcResultExt as _;
use crate::output::{OutputFormat, emit, print_json};

/// Record an operator's note in the audit log.
///
/// The note becomes an `audit.note` entry, covered by the next signed
/// checkpoint like every other entry. Prints the entry's index.
#[derive(Debug, clap::Args)]
pub struct NoteArgs {
    /// What to record, e.g. "HSM firmware upgraded to 3.2".
    #[arg(long, short)]
    pub message: String,
    /// The ceremony or key id the note is about.
    #[arg(long)]
    pub subject: Option<String>,
}

/// What `--output json` prints.
#[derive(Debug, Serialize)]
pub struct NoteReport {
    pub index: u64,
}

/// Sends the note to rkmd and prints its entry index.
///
/// # Errors
///
/// rkmd cannot be reached or refuses the note (empty, too long).
pub async fn run(args: NoteArgs, target: &Target, output: OutputFormat) -> anyhow::Result<()> {
    let channel = target.connect().await?;
    let response = stubs::audit(channel)
        .record_note(RecordNoteRequest {
            message: args.message,
            subject: args.subject.unwrap_or_default(),
        })
        .await
        .rpc("recording the note")?
        .into_inner();
    let report = NoteReport {
        index: response.index,
    };
    match output {
        OutputFormat::Json => print_json(&report),
        OutputFormat::Text => emit(&format!("recorded as audit entry {}\n", report.index)),
    }
}
