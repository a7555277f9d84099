//! `rkm audit fetch -o FILE`: copies rkmd's audit log — entries verbatim and
//! signed checkpoints — into a portable file, or extends an existing one after
//! verifying it and proving that rkmd's log is consistent with it (RFC 9162
//! §2.1.4), so a rewritten history is caught. Everything rkmd sends is
//! verified before the file is replaced, atomically.

use crate::connect::stubs;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rkm_proto::audit_file::{
    self, AuditFileError, AuditFileReader, AuditFileWriter, LogVerifier, VerifiedCheckpoint,
};
use rkm_proto::checkpoint::{VerifierKey, open_signed_checkpoint};
use rkm_proto::merkle::{Hash, verify_consistency};
use rkm_proto::v1::audit_service_client::AuditServiceClient;
use rkm_proto::v1::{GetConsistencyProofRequest, ListCheckpointsRequest, ListEntriesRequest};
use serde::Serialize;
use tonic::transport::Channel;

use super::{READ_BUFFER, file_error, latest_checkpoint};
use crate::connect::Target;
use crate::exit::{RpcResultExt as _, VerificationFailed};
use crate::output::{OutputFormat, emit, print_json};
use crate::trust::{TrustedLog, key_fingerprint, parse_audit_key, trust_daemon_key};
use crate::ui::{Unit, progress_bar};

/// Fetch the audit log into a file that `rkm audit verify` checks offline.
///
/// If FILE exists it is verified first, then extended: rkmd must prove that
/// its log is consistent with FILE's last checkpoint, else the history was
/// rewritten (exit 7). Everything rkmd sends is verified before FILE is
/// replaced, atomically: it is never left half-written.
#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// The audit file to write, or to extend if it exists.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub file: PathBuf,
    /// The trusted audit key; rkmd's must be this one. Without it, the key in
    /// an existing FILE is trusted, else rkmd's key on first use (its
    /// fingerprint is printed for you to compare).
    #[arg(long, value_name = "KEY", env = "RKM_AUDIT_KEY", value_parser = parse_audit_key)]
    pub audit_key: Option<VerifierKey>,
}

/// What `--output json` prints.
#[derive(Debug, Serialize)]
pub struct FetchReport {
    pub file: String,
    pub origin: String,
    pub audit_key: String,
    pub fingerprint: String,
    /// Size of the file's last checkpoint before the fetch, if it existed.
    pub previous_size: Option<u64>,
    /// Size of the file's last checkpoint now.
    pub size: u64,
    pub root: String,
    pub new_entries: u64,
    pub new_checkpoints: u64,
    /// True if the file already held rkmd's latest checkpoint.
    pub up_to_date: bool,
}

/// Fetches, verifies and writes.
///
/// # Errors
///
/// rkmd cannot be reached; the file cannot be read or written; the file, the
/// key, a checkpoint, a proof or the entries do not verify
/// ([`VerificationFailed`]).
pub async fn run(args: FetchArgs, target: &Target, output: OutputFormat) -> anyhow::Result<()> {
    let path = args.file;
    let exists = path.exists();
    let trusted = trusted_key(&path, exists, args.audit_key)?;
    let mut client = stubs::audit(target.connect().await?);
    let log = trust_daemon_key(
        &mut client,
        trusted.as_ref().map(|(key, source)| (key, source.as_str())),
    )
    .await?;
    let (latest, latest_note) = latest_checkpoint(&mut client, &log).await?;
    let latest_size = latest.size();

    let (dir, temp) = temporary_file(&path)?;
    let mut out = BufWriter::with_capacity(READ_BUFFER, temp.as_file());
    let (mut verifier, previous, line) = start_file(&path, exists, &log, &mut out)?;
    let previous_size = previous.as_ref().map(|c| c.size);
    let fetched = |size: u64, root: &Hash, new_entries: u64, new_checkpoints: u64| FetchReport {
        file: path.display().to_string(),
        origin: log.origin.clone(),
        audit_key: log.key.to_string(),
        fingerprint: key_fingerprint(&log.key),
        previous_size,
        size,
        root: root.to_hex(),
        new_entries,
        new_checkpoints,
        up_to_date: previous_size == Some(size) && new_entries == 0,
    };
    if let Some(previous) = &previous {
        check_consistency(&mut client, &path, previous, latest_size, latest.root()).await?;
        if previous.size == latest_size {
            drop(out);
            return report(output, fetched(previous.size, &previous.root, 0, 0));
        }
    }

    let from = verifier.size();
    let mut writer = AuditFileWriter::resume(&mut out, from);
    let checkpoints = list_checkpoints(&mut client, &log, from, latest_size, &latest_note).await?;
    let new = Latest {
        size: latest_size,
        note: &latest_note,
        checkpoints,
    };
    let (last, new_checkpoints) =
        append_new(&mut client, &mut verifier, &mut writer, new, line).await?;
    writer
        .into_inner()
        .flush()
        .with_context(|| format!("cannot write {}", temp.path().display()))?;
    drop(out);
    replace_durably(temp, &path, &dir)?;
    report(
        output,
        fetched(last.size, &last.root, last.size - from, new_checkpoints),
    )
}

/// The key to hold rkmd's key to: `--audit-key`, else the one an existing
/// file names; with where it came from, for the message if they differ.
fn trusted_key(
    path: &Path,
    exists: bool,
    given: Option<VerifierKey>,
) -> anyhow::Result<Option<(VerifierKey, String)>> {
    Ok(match given {
        Some(key) => Some((key, "--audit-key".to_owned())),
        None if exists => Some((read_file_key(path)?, path.display().to_string())),
        None => None,
    })
}

/// A temporary file beside `path` (so that the rename is atomic) with the
/// mode the result should have, and the folder both are in.
fn temporary_file(path: &Path) -> anyhow::Result<(PathBuf, tempfile::NamedTempFile)> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "audit".to_owned());
    let temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".part")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    // The new file keeps the old one's mode; a first fetch is readable by all
    // (entries never hold a secret), not the temporary file's 0600.
    let permissions = match std::fs::metadata(path) {
        Ok(metadata) => metadata.permissions(),
        Err(_) => std::fs::Permissions::from_mode(0o644),
    };
    temp.as_file()
        .set_permissions(permissions)
        .with_context(|| format!("cannot set the mode of {}", temp.path().display()))?;
    Ok((dir, temp))
}

/// Starts the new file: a copy of the existing one, verified while it is
/// copied in one read (so what is extended is exactly what was verified), or
/// a fresh header. Returns the verifier, the file's last checkpoint, and the
/// number of lines written.
fn start_file(
    path: &Path,
    exists: bool,
    log: &TrustedLog,
    out: &mut impl Write,
) -> anyhow::Result<(LogVerifier, Option<VerifiedCheckpoint>, u64)> {
    if exists {
        let summary = verify_and_copy(path, log, out)?;
        let previous = summary.last_checkpoint.clone();
        return Ok((summary.verifier, Some(previous), summary.lines));
    }
    AuditFileWriter::create(out, &log.origin, &log.key)?;
    Ok((
        LogVerifier::new(log.key.clone(), log.origin.clone()),
        None,
        3,
    ))
}

/// What is to be fetched: up to rkmd's latest checkpoint, with the
/// checkpoints before it.
struct Latest<'a> {
    size: u64,
    note: &'a str,
    checkpoints: VecDeque<(u64, String)>,
}

/// Streams the entries after the verifier's size up to `latest`, verifying
/// each and each checkpoint as it falls due, and writes them after `line`.
/// Returns the last checkpoint and how many checkpoints were written.
async fn append_new(
    client: &mut AuditServiceClient<Channel>,
    verifier: &mut LogVerifier,
    writer: &mut AuditFileWriter<impl Write>,
    latest: Latest<'_>,
    mut line: u64,
) -> anyhow::Result<(VerifiedCheckpoint, u64)> {
    let Latest {
        size: latest_size,
        note: latest_note,
        mut checkpoints,
    } = latest;
    let from = verifier.size();
    let mut new_checkpoints = 0u64;
    let daemon_error = |error: AuditFileError| {
        VerificationFailed::error(format!(
            "what rkmd sent does not verify (at line {} of the new file): {error}",
            error_line(&error).map_or_else(|| "?".to_owned(), |line| line.to_string())
        ))
    };

    if from == 0 && latest_size == 0 {
        // An empty log: the file holds its size-0 checkpoint.
        line += 1;
        verifier
            .checkpoint(line, latest_note)
            .map_err(daemon_error)?;
        writer.checkpoint(latest_note)?;
        new_checkpoints += 1;
        checkpoints.clear();
    }

    let mut stream = client
        .list_entries(ListEntriesRequest {
            start: from,
            end: latest_size,
            subject: String::new(),
        })
        .await
        .rpc("asking rkmd for audit entries")?
        .into_inner();
    let bar = progress_bar(latest_size - from, Unit::Entries, "fetching");
    while let Some(entry) = stream
        .message()
        .await
        .rpc("receiving audit entries from rkmd")?
    {
        if entry.index >= latest_size {
            bar.finish_and_clear();
            return Err(VerificationFailed::error(format!(
                "rkmd sent entry {} beyond its checkpoint at size {latest_size}",
                entry.index
            )));
        }
        line += 1;
        verifier
            .entry(line, entry.index, &entry.entry)
            .map_err(daemon_error)?;
        writer.entry(entry.index, &entry.entry)?;
        while checkpoints
            .front()
            .is_some_and(|(size, _)| *size == verifier.size())
        {
            let (_, note) = checkpoints.pop_front().expect("peeked");
            line += 1;
            verifier.checkpoint(line, &note).map_err(daemon_error)?;
            writer.checkpoint(&note)?;
            new_checkpoints += 1;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if verifier.size() != latest_size {
        return Err(VerificationFailed::error(format!(
            "rkmd sent entries up to {}, but its checkpoint is at size {latest_size}",
            verifier.size()
        )));
    }
    let last = verifier.finish(line).map_err(daemon_error)?.clone();
    Ok((last, new_checkpoints))
}

/// Replaces `path` with the finished temporary file, durably: the file is
/// synced, renamed over `path`, and the folder synced.
fn replace_durably(temp: tempfile::NamedTempFile, path: &Path, dir: &Path) -> anyhow::Result<()> {
    temp.as_file()
        .sync_all()
        .with_context(|| format!("cannot write {}", temp.path().display()))?;
    temp.persist(path)
        .map_err(|error| error.error)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    // The rename is durable once the directory is.
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))
}

/// The audit key an existing file names, to trust when none is given.
fn read_file_key(path: &Path) -> anyhow::Result<VerifierKey> {
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let reader =
        AuditFileReader::new(BufReader::new(file)).map_err(|error| file_error(path, error))?;
    Ok(reader.header().audit_key.clone())
}

/// Copies everything read from `inner` to `copy`.
struct Tee<R, W> {
    inner: R,
    copy: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.copy
            .write_all(&buf[..read])
            .map_err(|error| io::Error::other(format!("writing the new file: {error}")))?;
        Ok(read)
    }
}

/// Verifies the existing file while copying it into `out`.
fn verify_and_copy(
    path: &Path,
    log: &TrustedLog,
    out: &mut impl Write,
) -> anyhow::Result<audit_file::Summary> {
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = progress_bar(len, Unit::Bytes, "verifying");
    let reader = BufReader::with_capacity(
        READ_BUFFER,
        Tee {
            inner: file,
            copy: out,
        },
    );
    let result = audit_file::verify(reader, &log.key, &log.origin, |bytes| {
        bar.set_position(bytes);
    });
    bar.finish_and_clear();
    result.map_err(|error| {
        let error = audit_file::diagnose_error(error, || {
            File::open(path).map(|file| BufReader::with_capacity(READ_BUFFER, file))
        });
        file_error(path, error)
    })
}

/// Checks that rkmd's latest tree extends the file's last checkpoint.
async fn check_consistency(
    client: &mut AuditServiceClient<Channel>,
    path: &Path,
    previous: &VerifiedCheckpoint,
    size: u64,
    root: &Hash,
) -> anyhow::Result<()> {
    let rewritten = |detail: String| {
        VerificationFailed::error(format!(
            "history rewritten: rkmd's checkpoint at size {size} is not consistent with the checkpoint at size {} in {}: {detail}",
            previous.size,
            path.display()
        ))
    };
    if size < previous.size {
        return Err(rewritten(format!(
            "rkmd's log is shorter than the file's ({size} < {} entries): it was rolled back or replaced",
            previous.size
        )));
    }
    if size == previous.size {
        return if *root == previous.root {
            Ok(())
        } else {
            Err(rewritten(format!(
                "the same size has two roots, {} in the file and {root} at rkmd",
                previous.root
            )))
        };
    }
    if previous.size == 0 {
        // The empty tree is a prefix of every tree; there is nothing to prove.
        return Ok(());
    }
    let response = client
        .get_consistency_proof(GetConsistencyProofRequest {
            from_size: previous.size,
            to_size: size,
        })
        .await
        .rpc("asking rkmd for a consistency proof")?
        .into_inner();
    let proof = response
        .hashes
        .iter()
        .map(|hash| Hash::try_from_slice(hash))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| rewritten(error.to_string()))?;
    verify_consistency(previous.size, size, &proof, &previous.root, root)
        .map_err(|error| rewritten(error.to_string()))
}

/// rkmd's signed checkpoints with sizes in `(after, up_to]`, one per size,
/// oldest first, ending with the latest checkpoint. Signatures are checked
/// when each is reached, with the entries it covers.
async fn list_checkpoints(
    client: &mut AuditServiceClient<Channel>,
    log: &TrustedLog,
    after: u64,
    up_to: u64,
    latest_note: &str,
) -> anyhow::Result<VecDeque<(u64, String)>> {
    let mut stream = client
        .list_checkpoints(ListCheckpointsRequest {
            after_size: after,
            up_to_size: up_to,
        })
        .await
        .rpc("asking rkmd for its checkpoints")?
        .into_inner();
    let mut checkpoints: VecDeque<(u64, String)> = VecDeque::new();
    while let Some(checkpoint) = stream
        .message()
        .await
        .rpc("receiving checkpoints from rkmd")?
    {
        // The size field is only a hint for ordering: the note is what is verified.
        let size = checkpoint.size;
        if size <= after || size > up_to {
            continue;
        }
        match checkpoints.back() {
            Some((last, _)) if size < *last => {
                return Err(VerificationFailed::error(format!(
                    "rkmd listed its checkpoint at size {size} after the one at size {last}"
                )));
            }
            Some((last, note)) if size == *last => {
                same_root(log, note, &checkpoint.signed_note, size)?;
            }
            _ => checkpoints.push_back((size, checkpoint.signed_note)),
        }
    }
    match checkpoints.back() {
        Some((last, note)) if *last == up_to => same_root(log, note, latest_note, up_to)?,
        _ => checkpoints.push_back((up_to, latest_note.to_owned())),
    }
    Ok(checkpoints)
}

/// Two signed checkpoints of one size must have one root: two roots would be
/// a fork of the log.
fn same_root(log: &TrustedLog, first: &str, second: &str, size: u64) -> anyhow::Result<()> {
    let open = |note: &str| {
        open_signed_checkpoint(note, &log.key).map_err(|error| {
            VerificationFailed::error(format!(
                "rkmd's checkpoint at size {size} does not verify: {error}"
            ))
        })
    };
    let (a, b) = (open(first)?, open(second)?);
    if a.root() == b.root() {
        Ok(())
    } else {
        Err(VerificationFailed::error(format!(
            "rkmd signed two roots for size {size}: {} and {} — the log is forked",
            a.root(),
            b.root()
        )))
    }
}

/// The line an error names, if any.
fn error_line(error: &AuditFileError) -> Option<u64> {
    match error {
        AuditFileError::EntryOutOfOrder { line, .. }
        | AuditFileError::CheckpointSignature { line, .. }
        | AuditFileError::CheckpointOrigin { line, .. }
        | AuditFileError::CheckpointMisplaced { line, .. }
        | AuditFileError::CheckpointNotIncreasing { line, .. }
        | AuditFileError::RootMismatch { line, .. }
        | AuditFileError::Truncated { line, .. }
        | AuditFileError::MalformedLine { line, .. } => Some(*line),
        _ => None,
    }
}

fn report(output: OutputFormat, report: FetchReport) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json => print_json(&report),
        OutputFormat::Text => emit(&render_text(&report)),
    }
}

fn render_text(report: &FetchReport) -> String {
    let mut text = String::new();
    // Writing to a String cannot fail.
    if report.up_to_date {
        let _ = writeln!(
            text,
            "{}: up to date, verified at size {}",
            report.file, report.size
        );
    } else {
        let _ = writeln!(
            text,
            "{}: fetched {} entries and {} checkpoints, verified up to size {}",
            report.file, report.new_entries, report.new_checkpoints, report.size
        );
    }
    if let Some(previous) = report.previous_size
        && previous > 0
        && previous < report.size
    {
        let _ = writeln!(
            text,
            "  consistent with the checkpoint at size {previous} already in the file"
        );
    }
    let _ = writeln!(text, "  origin        {}", report.origin);
    let _ = writeln!(text, "  audit key     {}", report.audit_key);
    let _ = writeln!(text, "  fingerprint   {}", report.fingerprint);
    let _ = writeln!(text, "  root          {}", report.root);
    text
}
