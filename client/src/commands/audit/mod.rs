//! `rkm audit`: the auditor's commands over rkmd's signed audit log — fetch it
//! into a portable file, verify that file offline, show and filter entries,
//! prove one entry's inclusion, and record an operator's note. One file per
//! verb; the shared parts (trusting the audit key, progress bars) live here.

pub mod fetch;
pub mod note;
pub mod prove;
pub mod show;
pub mod verify;

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rkm_proto::checkpoint::{Checkpoint, VerifierKey, open_signed_checkpoint};
use rkm_proto::fingerprint::fingerprint;
use rkm_proto::v1::audit_service_client::AuditServiceClient;
use rkm_proto::v1::{GetAuditKeyRequest, GetCheckpointRequest};
use tonic::transport::Channel;

use crate::connect::Target;
use crate::exit::{RpcResultExt as _, VerificationFailed};
use crate::output::OutputFormat;

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

/// Parses `--audit-key`, so that a malformed key is a usage error (exit 2).
///
/// # Errors
///
/// The string is not a C2SP Ed25519 verifier key; the message says where to
/// find the right one.
pub fn parse_audit_key(text: &str) -> Result<VerifierKey, String> {
    VerifierKey::parse(text.trim()).map_err(|error| {
        format!("{error}; `rkmd init` and `rkm status` print the audit key to pass here")
    })
}

/// The audit key's fingerprint, as `rkmd init` prints it for comparison.
pub fn key_fingerprint(key: &VerifierKey) -> String {
    fingerprint(&key.public_key())
}

/// rkmd's audit key and origin, checked against the key the user trusts.
#[derive(Debug)]
pub struct TrustedLog {
    /// The key checkpoints must be signed with.
    pub key: VerifierKey,
    /// The origin checkpoints must name.
    pub origin: String,
}

/// Asks rkmd for its audit key and checks it against `trusted`, the key the
/// user gave or one already on file. Without one, trusts rkmd's key on first
/// use and says so on stderr, with the fingerprint to compare.
///
/// # Errors
///
/// rkmd cannot be asked; its key is malformed; or it differs from `trusted`
/// ([`VerificationFailed`]).
pub async fn trust_daemon_key(
    client: &mut AuditServiceClient<Channel>,
    trusted: Option<(&VerifierKey, &str)>,
) -> anyhow::Result<TrustedLog> {
    let response = client
        .get_audit_key(GetAuditKeyRequest {})
        .await
        .rpc("asking rkmd for its audit key")?
        .into_inner();
    let daemon_key = VerifierKey::parse(&response.verifier_key).map_err(|error| {
        VerificationFailed::error(format!(
            "rkmd's audit key {:?} is not a valid verifier key: {error}",
            response.verifier_key
        ))
    })?;
    if response.origin != daemon_key.name() {
        return Err(VerificationFailed::error(format!(
            "rkmd's log origin {:?} is not the name of its audit key {:?}",
            response.origin,
            daemon_key.name()
        )));
    }
    match trusted {
        Some((key, source)) if *key != daemon_key => Err(VerificationFailed::error(format!(
            "rkmd's audit key is {daemon_key} (fingerprint {}), not the trusted key {key} from {source} (fingerprint {}): refusing to trust another log's key",
            key_fingerprint(&daemon_key),
            key_fingerprint(key),
        ))),
        Some(_) => Ok(TrustedLog {
            key: daemon_key,
            origin: response.origin,
        }),
        None => {
            eprintln!(
                "rkm: trusting rkmd's audit key on first use: {daemon_key}\nrkm: fingerprint {} — compare it with the one `rkmd init` printed, and pass --audit-key to pin it",
                key_fingerprint(&daemon_key)
            );
            Ok(TrustedLog {
                key: daemon_key,
                origin: response.origin,
            })
        }
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

/// A progress bar on stderr, drawn only when stderr is a terminal.
pub fn progress_bar(len: u64, unit: Unit, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    let template = match unit {
        Unit::Bytes => "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        Unit::Entries => "{msg} [{bar:30}] {human_pos}/{human_len} entries, eta {eta}",
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    bar
}

/// What a progress bar counts.
#[derive(Debug, Clone, Copy)]
pub enum Unit {
    Bytes,
    Entries,
}
