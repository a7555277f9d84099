//! `rkm audit`: the auditor's commands over rkmd's signed audit log — fetch it
//! into a portable file, verify that file offline, show and filter entries,
//! prove one entry's inclusion, and record an operator's note. One file per
//! verb; what they share (the latest checkpoint, checked; reading audit files
//! and naming their errors) lives here.

pub mod fetch;
pub mod note;
pub mod prove;
pub mod show;
pub mod verify;

use clap::Subcommand;
use std::path::Path;

use rkm_proto::audit_file::AuditFileError;
use rkm_proto::checkpoint::{Checkpoint, open_signed_checkpoint};
use rkm_proto::v1::GetCheckpointRequest;
use rkm_proto::v1::audit_service_client::AuditServiceClient;
use tonic::transport::Channel;

use crate::connect::Target;
use crate::exit::{RpcResultExt as _, VerificationFailed};
use crate::output::OutputFormat;
use crate::trust::TrustedLog;

/// Read buffer of the verifier: large reads keep the pass I/O-cheap.
pub(crate) const READ_BUFFER: usize = 1 << 20;

/// Fetch, verify and inspect the signed audit log.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    Fetch(fetch::FetchArgs),
    Verify(verify::VerifyArgs),
    Show(show::ShowArgs),
    Prove(prove::ProveArgs),
    Note(note::NoteArgs),
}

/// Runs one `rkm audit` command.
///
/// # Errors
///
/// The command's error; verification failures carry
/// [`VerificationFailed`] so that `rkm` exits with 7.
pub async fn run(
    command: AuditCommand,
    target: &Target,
    output: OutputFormat,
) -> anyhow::Result<()> {
    match command {
        AuditCommand::Fetch(args) => fetch::run(args, target, output).await,
        AuditCommand::Verify(args) => verify::run(&args, output),
        AuditCommand::Show(args) => show::run(args, target, output).await,
        AuditCommand::Prove(args) => prove::run(&args, target, output).await,
        AuditCommand::Note(args) => note::run(args, target, output).await,
    }
}

/// rkmd's latest checkpoint, opened with the trusted key and checked for the
/// trusted origin.
///
/// # Errors
///
/// rkmd cannot be asked, or the checkpoint does not verify
/// ([`VerificationFailed`]).
pub async fn latest_checkpoint(
    client: &mut AuditServiceClient<Channel>,
    log: &TrustedLog,
) -> anyhow::Result<(Checkpoint, String)> {
    let response = client
        .get_checkpoint(GetCheckpointRequest {})
        .await
        .rpc("asking rkmd for its latest checkpoint")?
        .into_inner();
    let note = response
        .checkpoint
        .ok_or_else(|| anyhow::anyhow!("rkmd sent no checkpoint"))?
        .signed_note;
    let checkpoint = open_signed_checkpoint(&note, &log.key)
        .and_then(|checkpoint| checkpoint.check_origin(&log.origin).map(|()| checkpoint))
        .map_err(|error| {
            VerificationFailed::error(format!("rkmd's latest checkpoint does not verify: {error}"))
        })?;
    Ok((checkpoint, note))
}

/// An error about an audit file: exit 7 if the file is wrong, 1 if it could
/// not be read.
pub(crate) fn file_error(path: &Path, error: AuditFileError) -> anyhow::Error {
    if error.is_verification_failure() {
        VerificationFailed::error(format!("{} does not verify: {error}", path.display()))
    } else {
        anyhow::Error::new(error).context(format!("cannot verify {}", path.display()))
    }
}
