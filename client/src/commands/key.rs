//! `rkm key`: operators run the key generation ceremony (`create`) and follow
//! it (`show`, `list`): which custodians have confirmed their share and who is
//! still missing; and restore a key into another rkmd and HSM from its signed
//! key record (`import`).

use crate::connect::stubs;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use rkm_proto::checkpoint::VerifierKey;
use rkm_proto::fingerprint::fingerprint;
use rkm_proto::key_record::{KeyRecord, SignedKeyRecord};
use rkm_proto::v1::key_service_client::KeyServiceClient;
use rkm_proto::v1::{CreateKeyRequest, GetKeyRequest, ImportKeyRequest, KeySummary};
use tonic::transport::Channel;

use crate::connect::Target;
use crate::exit::{RpcResultExt as _, VerificationFailed};
use crate::key_record_file::read_key_record;
use crate::key_report::{KeyReport, attestation_summary, list_keys};
use crate::output::{OutputFormat, emit, print_json};
use crate::trust::parse_audit_key;

/// Recovery keys: the key generation ceremony and its progress.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    Create(CreateArgs),
    Show(ShowArgs),
    List,
    Import(Box<ImportArgs>),
}

/// Run the key generation ceremony (operators).
///
/// rkmd's HSM generates the recovery key and the KEK, wraps the key, splits
/// the KEK K-of-N and seals one share to each custodian. The key becomes
/// active when every custodian has run `rkm share fetch`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// A name for the key: letters, digits, '-', '_', '.'.
    #[arg(long)]
    pub label: String,
    /// How many custodians together can use the key (K).
    #[arg(long)]
    pub threshold: u32,
    /// The custodians, comma-separated; each receives one share (N).
    #[arg(long, value_delimiter = ',', required = true, num_args = 1..)]
    pub custodians: Vec<String>,
    /// Permit a threshold of 1, so that one custodian alone could use the key.
    #[arg(long)]
    pub allow_single_custodian: bool,
}

/// Show a key: its state, threshold, and who has confirmed their share.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The key's label or id.
    pub key: String,
}

/// Restore a key into this rkmd from its signed key record (operators).
///
/// For when the HSM that generated the key is lost or replaced: this rkmd,
/// on another token, takes over the key with nothing but the key record file
/// (every custodian holds a copy: DIR/<key id>/key-record.json in their share
/// directory) and the custodians' shares, which never leave them. rkmd checks
/// the record's signature with --record-audit-key, and requires every
/// custodian the record names to be enrolled here with the same card (`rkm
/// custodian enrol CARD` first). The key is active at once; recoveries then
/// run as before, and their artefacts verify against the original public
/// key, with this rkmd's audit key and `rkm artefact verify
/// --key-record-audit-key` the old one.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The signed key record file.
    pub record_file: PathBuf,
    /// The audit key of the OLD rkmd, which signed the record (its verifier
    /// key, as its `rkmd init` or `rkm status` printed it). Take it from your
    /// own records, not from the file: the record names its signer, but only
    /// a key you trust proves the record is genuine.
    #[arg(long, value_name = "VKEY", value_parser = parse_audit_key)]
    pub record_audit_key: VerifierKey,
}

/// Runs one `rkm key` command.
///
/// # Errors
/// rkmd cannot be reached or refuses.
pub async fn run(command: KeyCommand, target: &Target, output: OutputFormat) -> anyhow::Result<()> {
    let mut client = stubs::key(target.connect().await?);
    match command {
        KeyCommand::Create(args) => {
            let response = client
                .create_key(CreateKeyRequest {
                    label: args.label.clone(),
                    threshold: args.threshold,
                    custodians: args.custodians,
                    allow_single_custodian: args.allow_single_custodian,
                })
                .await
                .map_err(|status| connection_broke_during_create(status, &args.label))
                .rpc("running the key generation ceremony")?
                .into_inner();
            let report = KeyReport::from(response.key.context("rkmd sent no key")?);
            let next = format!(
                "Each custodian now runs `rkm share fetch --key {}`; the key becomes active with the last receipt.",
                report.label
            );
            print_key(&report, output, Some(&next))
        }
        KeyCommand::Show(args) => {
            let key = client
                .get_key(GetKeyRequest { key: args.key })
                .await
                .rpc("asking rkmd for the key")?
                .into_inner()
                .key
                .context("rkmd sent no key")?;
            print_key(&KeyReport::from(key), output, None)
        }
        KeyCommand::List => {
            let keys = list_keys(&mut client).await?;
            match output {
                OutputFormat::Json => print_json(&keys),
                OutputFormat::Text => emit(&render_list(&keys)),
            }
        }
        KeyCommand::Import(args) => import(&args, &mut client, output).await,
    }
}

async fn import(
    args: &ImportArgs,
    client: &mut KeyServiceClient<Channel>,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let text = read_key_record(&args.record_file)?;
    let key = client
        .import_key(ImportKeyRequest {
            signed_key_record: text.clone(),
            record_audit_key: args.record_audit_key.to_string(),
        })
        .await;
    // rkmd checks the record too, and audits the refusal; a record that
    // does not verify here either is a verification failure (exit 7) of
    // this file, not a permission matter.
    if let Err(status) = &key
        && let Err(error) = SignedKeyRecord::from_file(&text)
            .and_then(|signed| signed.verify(&args.record_audit_key))
    {
        return Err(VerificationFailed::error(format!(
            "the key record {} does not verify with audit key {}: {error}; rkmd refused it too ({}). Check that --record-audit-key is the audit key of the rkmd that made the key, and that the file is a custodian's copy, unaltered",
            args.record_file.display(),
            args.record_audit_key,
            status.message()
        )));
    }
    let key = key
        .rpc("importing the key")?
        .into_inner()
        .key
        .context("rkmd sent no key")?;
    check_imported(&key, &text, &args.record_audit_key)?;
    let next = format!(
        "Imported. Custodians approve recoveries with the shares they hold; verify artefacts with `rkm artefact verify FILE --key-record {} --audit-key <this rkmd's> --key-record-audit-key {}`.",
        args.record_file.display(),
        args.record_audit_key
    );
    print_key(&KeyReport::from(key), output, Some(&next))
}

/// Prints one key; for people, followed by what to do next, if anything.
fn print_key(report: &KeyReport, output: OutputFormat, next: Option<&str>) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json => print_json(report),
        OutputFormat::Text => {
            let mut text = render_key(report);
            if let Some(next) = next {
                let _ = writeln!(text, "{next}");
            }
            emit(&text)
        }
    }
}

/// rkmd checked the record (signature, custodians); this checks that the key
/// it reports is the one in the file, verified with the key the operator
/// gave — not some other key it already had.
fn check_imported(
    key: &KeySummary,
    record_file: &str,
    record_audit_key: &VerifierKey,
) -> anyhow::Result<()> {
    let record: KeyRecord = SignedKeyRecord::from_file(record_file)
        .and_then(|signed| signed.verify(record_audit_key))
        .map_err(|error| {
            VerificationFailed::error(format!(
                "rkmd imported the key, but the key record does not verify here with {record_audit_key}: {error}"
            ))
        })?;
    if key.key_id != record.key_id
        || key.public_key_spki != record.public_key_spki
        || key.signed_key_record != record_file
        || VerifierKey::parse(&key.record_audit_key).ok().as_ref() != Some(record_audit_key)
    {
        return Err(VerificationFailed::error(format!(
            "rkmd reports key {} (public key {}), not the key record's {} (public key {}) signed by {record_audit_key}",
            key.key_id,
            fingerprint(&key.public_key_spki),
            record.key_id,
            fingerprint(&record.public_key_spki)
        )));
    }
    Ok(())
}

fn render_key(key: &KeyReport) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "key         {} ({})", key.label, key.key_id);
    let _ = writeln!(text, "state       {}", key.state);
    let _ = writeln!(
        text,
        "threshold   {} of {} custodians",
        key.threshold, key.custodian_count
    );
    let _ = writeln!(text, "public key  {}", key.public_key_fingerprint);
    let _ = writeln!(text, "ceremony    {}", key.ceremony_id);
    let _ = writeln!(text, "created     {}", key.created_at);
    if let Some(record_audit_key) = &key.record_audit_key {
        let _ = writeln!(text, "imported    record signed by {record_audit_key}");
    }
    let received = key.receipts.len() - key.missing.len();
    let _ = writeln!(text, "receipts    {received} of {}", key.receipts.len());
    for receipt in &key.receipts {
        match &receipt.received_at {
            Some(at) => {
                let _ = writeln!(text, "  received  {:<20} {at}", receipt.custodian);
            }
            None => {
                let _ = writeln!(text, "  missing   {}", receipt.custodian);
            }
        }
    }
    let _ = writeln!(text, "attested    {}", attestation_summary(key));
    for receipt in &key.receipts {
        let when = match (&receipt.attested_at, receipt.attested_recently) {
            (None, _) => "never".to_owned(),
            (Some(at), true) => at.clone(),
            (Some(at), false) => format!("{at} (older than the window)"),
        };
        let _ = writeln!(text, "  {:<28} {when}", receipt.custodian);
    }
    text
}

fn render_list(keys: &[KeyReport]) -> String {
    if keys.is_empty() {
        return "no keys; `rkm key create` runs a key generation ceremony\n".to_owned();
    }
    let mut text = String::new();
    for key in keys {
        let _ = writeln!(
            text,
            "{:<24} {}  {:<18} {} of {}  receipts {}/{}",
            key.label,
            key.key_id,
            key.state,
            key.threshold,
            key.custodian_count,
            key.receipts.len() - key.missing.len(),
            key.receipts.len()
        );
    }
    text
}

/// A key ceremony whose answer never came may have run to the end: say so,
/// and how to find out, instead of a bare transport error.
fn connection_broke_during_create(status: tonic::Status, label: &str) -> tonic::Status {
    if crate::exit::connection_refused(&status) {
        tonic::Status::unavailable(format!(
            "rkmd refused the connection ({}): no key ceremony ran; is rkmd running? Start it with `rkmd serve`, then run the command again",
            status.message()
        ))
    } else if crate::exit::connection_broke(&status) {
        tonic::Status::unavailable(format!(
            "the connection to rkmd broke before it answered ({}): the key ceremony may or may not have completed. `rkm key show {label}` says whether key {label:?} exists; a ceremony cut short because rkmd stopped is marked failed, and audited, when rkmd starts again",
            status.message()
        ))
    } else {
        status
    }
}
