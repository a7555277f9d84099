//! `rkm artefact verify`: checks a recovery artefact bundle offline, with
//! nothing but the bundle, a copy of the key record and the trusted audit
//! key: the key record's signature, then the bundle streaming (header,
//! approvals, audit proof, every signed command, the end line), naming the
//! first bad record.
//!
//! A key restored into another rkmd (`rkm key import`, after its HSM was lost
//! or replaced) keeps the key record the OLD rkmd's audit key signed, while
//! its artefacts carry checkpoints of the NEW rkmd's audit log. The two keys
//! vouch for different things, so each is given separately:
//! `--key-record-audit-key` for the record (which recovery public key, which
//! custodians, what threshold) and `--audit-key` for the checkpoint that
//! proves the issue was logged. Both must be trusted out of band; neither is
//! taken from the files being checked.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use indicatif::ProgressBar;
use rkm_proto::artefact::{ArtefactError, ArtefactSummary, verify_artefact};
use rkm_proto::checkpoint::VerifierKey;
use rkm_proto::key_record::SignedKeyRecord;
use serde::Serialize;

use crate::exit::VerificationFailed;
use crate::key_record_file::read_key_record;
use crate::output::{OutputFormat, emit, print_json};
use crate::trust::parse_audit_key;
use crate::ui::{Unit, progress_bar};

/// Recovery artefact bundles.
#[derive(Debug, Subcommand)]
pub enum ArtefactCommand {
    Verify(Box<VerifyArgs>),
}

/// Verify an artefact bundle offline (anyone, e.g. before distributing it).
///
/// Checks the key record with the audit key, then every line of the bundle:
/// the header (key, request digest, the custodians' approvals against the
/// key record and its threshold, the audit checkpoint and the inclusion
/// proof of the entry that issued it), each signed command against the
/// recovery public key, and the end line. Exit code 7 names the first bad
/// record.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The artefact bundle, as `rkm recovery collect` wrote it.
    pub file: PathBuf,
    /// A copy of the key record (every custodian holds one, e.g.
    /// DIR/<key id>/key-record.json in their share directory).
    #[arg(long, value_name = "FILE")]
    pub key_record: PathBuf,
    /// The trusted audit key (verifier key, as `rkmd init` printed it) of
    /// the rkmd that issued the artefact: its audit checkpoint must verify
    /// with it.
    #[arg(long, value_name = "KEY", env = "RKM_AUDIT_KEY", value_parser = parse_audit_key)]
    pub audit_key: VerifierKey,
    /// The trusted audit key that signed the key record, when it is not
    /// --audit-key: for a key restored into another rkmd (`rkm key import`),
    /// the OLD rkmd's audit key. Default: --audit-key. Only the key record is
    /// checked with it; the artefact's checkpoint still needs --audit-key.
    #[arg(long, value_name = "KEY", value_parser = parse_audit_key)]
    pub key_record_audit_key: Option<VerifierKey>,
}

/// What `verify --output json` prints.
#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub file: String,
    pub verified: bool,
    #[serde(flatten)]
    pub summary: Option<SummaryReport>,
    /// The audit key the key record was verified with, when it is not the
    /// artefact's (a restored key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_record_audit_key: Option<String>,
    /// The first bad record's line (1-based), when it fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A verified bundle.
#[derive(Debug, Serialize)]
pub struct SummaryReport {
    pub ceremony_id: String,
    pub key_id: String,
    pub command_kind: &'static str,
    pub request_digest: String,
    pub target_count: u64,
    pub approvers: Vec<String>,
    pub checkpoint_origin: String,
    pub checkpoint_size: u64,
    pub entry_index: u64,
    pub request: serde_json::Value,
    pub description: String,
}

impl From<&ArtefactSummary> for SummaryReport {
    fn from(summary: &ArtefactSummary) -> Self {
        SummaryReport {
            ceremony_id: summary.ceremony_id.clone(),
            key_id: summary.key_id.clone(),
            command_kind: summary.command_kind(),
            request_digest: hex::encode(summary.request_digest),
            target_count: summary.target_count,
            approvers: summary.approvers.clone(),
            checkpoint_origin: summary.checkpoint_origin.clone(),
            checkpoint_size: summary.checkpoint_size,
            entry_index: summary.entry_index,
            request: serde_json::from_slice(&summary.request.encode())
                .unwrap_or(serde_json::Value::Null),
            description: summary.request.describe(),
        }
    }
}

/// Counts the bytes read, for the progress bar.
struct Counting<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.bar.inc(read as u64);
        Ok(read)
    }
}

/// Runs one `rkm artefact` command (offline).
///
/// # Errors
/// A file cannot be read; the key record or the bundle does not verify
/// ([`VerificationFailed`], exit 7).
pub fn run(command: ArtefactCommand, output: OutputFormat) -> anyhow::Result<()> {
    match command {
        ArtefactCommand::Verify(args) => verify(&args, output),
    }
}

fn verify(args: &VerifyArgs, output: OutputFormat) -> anyhow::Result<()> {
    let text = read_key_record(&args.key_record)?;
    let record_audit_key = args
        .key_record_audit_key
        .as_ref()
        .unwrap_or(&args.audit_key);
    let record = SignedKeyRecord::from_file(&text)
        .and_then(|signed| signed.verify(record_audit_key))
        .map_err(|error| {
            VerificationFailed::error(format!(
                "the key record {} does not verify with audit key {record_audit_key}: {error}{}",
                args.key_record.display(),
                if args.key_record_audit_key.is_none() {
                    " (a key restored into another rkmd has its record signed by the old rkmd's audit key: give it as --key-record-audit-key)"
                } else {
                    ""
                }
            ))
        })?;
    let other_record_key =
        (record_audit_key != &args.audit_key).then(|| record_audit_key.to_string());
    let file = File::open(&args.file)
        .with_context(|| format!("cannot open the artefact {}", args.file.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = progress_bar(size, Unit::Bytes, "verifying");
    let input = BufReader::with_capacity(
        1 << 20,
        Counting {
            inner: file,
            bar: bar.clone(),
        },
    );
    let result = verify_artefact(input, &record, &args.audit_key, |_| {});
    bar.finish_and_clear();
    let file_name = args.file.display().to_string();
    match result {
        Ok(summary) => {
            let report = VerifyReport {
                file: file_name,
                verified: true,
                summary: Some(SummaryReport::from(&summary)),
                key_record_audit_key: other_record_key,
                line: None,
                error: None,
            };
            match output {
                OutputFormat::Json => print_json(&report),
                OutputFormat::Text => emit(&render(&report)),
            }
        }
        Err(error) => {
            if output == OutputFormat::Json {
                print_json(&failure_report(file_name.clone(), &error))?;
            }
            Err(VerificationFailed::error(format!(
                "{file_name} does not verify: {error}"
            )))
        }
    }
}

fn failure_report(file: String, error: &ArtefactError) -> VerifyReport {
    VerifyReport {
        file,
        verified: false,
        summary: None,
        key_record_audit_key: None,
        line: Some(error.line()),
        error: Some(error.to_string()),
    }
}

fn render(report: &VerifyReport) -> String {
    let mut text = String::new();
    let Some(summary) = &report.summary else {
        return text;
    };
    let _ = writeln!(text, "artefact    {}", report.file);
    let _ = writeln!(text, "ceremony    {}", summary.ceremony_id);
    let _ = writeln!(text, "key         {}", summary.key_id);
    if let Some(record_audit_key) = &report.key_record_audit_key {
        let _ = writeln!(text, "key record  signed by {record_audit_key}");
    }
    let _ = writeln!(text, "digest      {}", summary.request_digest);
    let _ = writeln!(
        text,
        "commands    {} {} command(s), every signature valid",
        summary.target_count, summary.command_kind
    );
    let _ = writeln!(text, "approved by {}", summary.approvers.join(", "));
    let _ = writeln!(
        text,
        "audit       entry {} proven in checkpoint {} of {}",
        summary.entry_index, summary.checkpoint_size, summary.checkpoint_origin
    );
    let _ = writeln!(text, "request");
    for line in summary.description.lines() {
        let _ = writeln!(text, "  {line}");
    }
    text.push_str("The artefact verifies.\n");
    text
}
