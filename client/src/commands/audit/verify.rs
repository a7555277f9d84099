//! `rkm audit verify FILE --audit-key KEY`: the auditor's offline check of a
//! fetched audit file, in one streaming pass and flat memory, without rkmd.

use std::fmt::Write as _;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rkm_proto::audit_file::{self, Summary};
use rkm_proto::checkpoint::VerifierKey;
use serde::Serialize;

use super::{READ_BUFFER, file_error};
use crate::output::{OutputFormat, emit, print_json};
use crate::trust::{key_fingerprint, parse_audit_key};
use crate::ui::{Unit, progress_bar};

/// Verify an audit file offline, without rkmd.
///
/// Every entry is hashed as written; every checkpoint's signature, origin,
/// size and root is checked; the last checkpoint must cover every entry.
/// Prints a summary, or exits with 7 naming the first entry or checkpoint
/// that fails, with the expected and the found value.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The audit file, as `rkm audit fetch` writes it.
    pub file: PathBuf,
    /// The trusted audit key (C2SP verifier key `<origin>+<key id>+<key>`),
    /// as `rkmd init` and `rkm status` print it. Never taken from the file.
    #[arg(long, value_name = "KEY", env = "RKM_AUDIT_KEY", value_parser = parse_audit_key)]
    pub audit_key: VerifierKey,
}

/// The summary of a file that verifies, as `--output json` prints it.
#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub file: String,
    pub verified: bool,
    pub origin: String,
    pub audit_key: String,
    pub fingerprint: String,
    pub entries: u64,
    pub checkpoints: u64,
    pub first_time: Option<String>,
    pub last_time: Option<String>,
    pub root: String,
    pub bytes: u64,
}

/// What `--output json` prints for a file that does not verify.
#[derive(Debug, Serialize)]
struct FailureReport<'a> {
    file: String,
    verified: bool,
    error: &'a str,
}

/// Verifies the file and prints its summary.
///
/// # Errors
///
/// The key is malformed or the file cannot be read; the file does not verify
/// ([`VerificationFailed`](crate::exit::VerificationFailed)).
pub fn run(args: &VerifyArgs, output: OutputFormat) -> anyhow::Result<()> {
    let key = &args.audit_key;
    let summary = match verify_file(&args.file, key) {
        Ok(summary) => summary,
        Err(error) => {
            if output == OutputFormat::Json {
                print_json(&FailureReport {
                    file: args.file.display().to_string(),
                    verified: false,
                    error: &format!("{error:#}"),
                })?;
            }
            return Err(error);
        }
    };
    let report = VerifyReport {
        file: args.file.display().to_string(),
        verified: true,
        origin: summary.origin.clone(),
        audit_key: key.to_string(),
        fingerprint: key_fingerprint(key),
        entries: summary.entries,
        checkpoints: summary.checkpoints,
        first_time: summary.first_time.clone(),
        last_time: summary.last_time.clone(),
        root: summary.root.to_hex(),
        bytes: summary.bytes,
    };
    match output {
        OutputFormat::Json => print_json(&report),
        OutputFormat::Text => emit(&render_text(&report)),
    }
}

/// Verifies an audit file against `key` (and its name as the origin), with a
/// progress bar, naming the first altered entry when a root does not match.
///
/// # Errors
///
/// The file cannot be opened or read; it does not verify
/// ([`VerificationFailed`](crate::exit::VerificationFailed), naming the file).
pub fn verify_file(path: &Path, key: &VerifierKey) -> anyhow::Result<Summary> {
    let open = || File::open(path).map(|file| BufReader::with_capacity(READ_BUFFER, file));
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    let bar = progress_bar(len, Unit::Bytes, "verifying");
    let result =
        audit_file::verify_reopening(open, key, key.name(), |bytes| bar.set_position(bytes));
    bar.finish_and_clear();
    result.map_err(|error| file_error(path, error))
}

fn render_text(report: &VerifyReport) -> String {
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(text, "{}: verified", report.file);
    let _ = writeln!(text, "  origin        {}", report.origin);
    let _ = writeln!(text, "  audit key     {}", report.audit_key);
    let _ = writeln!(text, "  fingerprint   {}", report.fingerprint);
    let _ = writeln!(text, "  entries       {}", report.entries);
    let _ = writeln!(text, "  checkpoints   {}", report.checkpoints);
    let _ = writeln!(
        text,
        "  first entry   {}",
        report.first_time.as_deref().unwrap_or("-")
    );
    let _ = writeln!(
        text,
        "  last entry    {}",
        report.last_time.as_deref().unwrap_or("-")
    );
    let _ = writeln!(text, "  root          {}", report.root);
    text
}
