//! `rkm recovery collect`: streams a ceremony's artefact bundle from rkmd
//! into FILE.partial while rkmd signs, resuming from the partial file's size
//! if one is there, and renames it to FILE once rkmd reports the bundle
//! complete and the sizes agree (after an fsync of the file and its folder).

use crate::connect::stubs;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, Read as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use indicatif::ProgressBar;
use rkm_proto::artefact::header_lines_digest;
use rkm_proto::v1::{CollectArtefactRequest, RecoveryState, RecoverySummary};
use serde::Serialize;

use crate::connect::Target;
use crate::exit::{NotServing, RpcResultExt as _};
use crate::output::{OutputFormat, emit, print_json};
use crate::recovery_ceremony::{get_recovery, refused};
use crate::ui::{Unit, progress_bar, recovery_state_name};

/// Lines of a bundle before its first signed command (magic, header).
const HEADER_LINES: u64 = 2;

/// Collect a ceremony's artefact bundle (operators).
///
/// The bundle is written to FILE.partial as rkmd signs, then renamed to FILE
/// when complete. An interrupted collection resumes from FILE.partial. Check
/// the result offline with `rkm artefact verify`.
#[derive(Debug, clap::Args)]
pub struct CollectArgs {
    /// The ceremony id.
    pub ceremony_id: String,
    /// The artefact file to write (never overwritten).
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub file: PathBuf,
}

/// What `collect --output json` prints.
#[derive(Debug, Serialize)]
pub struct CollectReport {
    pub ceremony_id: String,
    pub file: String,
    pub bytes: u64,
    pub commands: u64,
    /// Bytes that were already in FILE.partial and kept.
    pub resumed_from: u64,
    /// Bytes of FILE.partial dropped because they were not part of this
    /// artefact.
    pub discarded_bytes: u64,
}

/// FILE.partial.
fn partial_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Newlines in a file, to place the progress bar when resuming.
fn count_lines(path: &Path) -> anyhow::Result<u64> {
    let mut file = File::open(path)?;
    let mut buffer = vec![0u8; 1 << 20];
    let mut lines = 0u64;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            return Ok(lines);
        }
        lines += newlines(&buffer[..read]);
    }
}

fn newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

fn sync_parent(path: &Path) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("cannot sync the folder {}", dir.display()))
}

/// What FILE.partial already holds: its size, its lines, and the digest of
/// its header lines (empty when there is nothing to resume).
fn resume_point(partial: &Path) -> anyhow::Result<(u64, u64, Vec<u8>)> {
    let resumed_from = match fs::metadata(partial) {
        Ok(metadata) => metadata.len(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => 0,
        Err(error) => {
            return Err(error).with_context(|| format!("cannot read {}", partial.display()));
        }
    };
    if resumed_from == 0 {
        return Ok((0, 0, Vec::new()));
    }
    let read = || -> anyhow::Result<(u64, Vec<u8>)> {
        let header = header_lines_digest(BufReader::new(File::open(partial)?))?;
        Ok((
            count_lines(partial)?,
            header.map_or_else(Vec::new, Vec::from),
        ))
    };
    let (lines, header_sha256) =
        read().with_context(|| format!("cannot read {}", partial.display()))?;
    Ok((resumed_from, lines, header_sha256))
}

/// FILE.partial opened for appending and locked for this collector alone:
/// a second `rkm recovery collect` to the same file is refused at once
/// instead of interleaving its bytes with these. The lock lasts until the
/// file is renamed into place (or the process ends).
fn lock_partial(partial: &Path) -> anyhow::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(partial)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(refused(format!(
                "another `rkm recovery collect` is writing {}; wait for it to finish, or collect to another file",
                partial.display()
            )));
        }
        Err(std::fs::TryLockError::Error(error)) => {
            return Err(error).with_context(|| format!("cannot lock {}", partial.display()));
        }
    }
    // The collector that held the lock may have renamed the file into place
    // between our open and our lock: then we hold a lock on FILE, not on a
    // partial file.
    use std::os::unix::fs::MetadataExt as _;
    let locked = file.metadata()?;
    let now = fs::metadata(partial).ok();
    if now.is_none_or(|now| now.ino() != locked.ino() || now.dev() != locked.dev()) {
        return Err(refused(format!(
            "another `rkm recovery collect` finished {} while this one started; check the artefact it wrote",
            partial.display()
        )));
    }
    Ok(file)
}

/// Where the stream is written, and how far it has got.
struct Partial<'a> {
    path: &'a Path,
    writer: BufWriter<File>,
    offset: u64,
    lines: u64,
    /// Bytes dropped because rkmd started over.
    discarded: u64,
}

impl Partial<'_> {
    /// Appends what rkmd sent from `chunk_offset`; when rkmd starts over
    /// (offset 0), what the file held is dropped first.
    fn append(
        &mut self,
        chunk_offset: u64,
        data: &[u8],
        ceremony_id: &str,
        bar: &ProgressBar,
    ) -> anyhow::Result<()> {
        if chunk_offset == 0 && self.offset > 0 && self.discarded == 0 {
            // rkmd starts over: what FILE.partial holds is not part of this
            // artefact (signed anew after a restart, or another ceremony's).
            self.writer
                .flush()
                .and_then(|()| self.writer.get_ref().set_len(0))
                .with_context(|| format!("cannot truncate {}", self.path.display()))?;
            bar.suspend(|| {
                eprintln!(
                    "{} held {} bytes that are not part of the artefact of ceremony {ceremony_id} (rkmd signed it anew after a restart, or they are another ceremony's); collecting from the start",
                    self.path.display(),
                    self.offset
                );
            });
            self.discarded = self.offset;
            self.offset = 0;
            self.lines = 0;
        }
        if chunk_offset != self.offset {
            bail!(
                "rkmd sent bytes from offset {chunk_offset} when {} was next; run the command again to resume",
                self.offset
            );
        }
        self.writer
            .write_all(data)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        self.offset += data.len() as u64;
        self.lines += newlines(data);
        Ok(())
    }

    /// Flushes and syncs the file; returns it (still locked), the bytes it
    /// holds and how many were discarded.
    fn finish(self) -> anyhow::Result<(File, u64, u64)> {
        let file = self
            .writer
            .into_inner()
            .map_err(|error| error.into_error())
            .and_then(|file| file.sync_all().map(|()| file))
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        Ok((file, self.offset, self.discarded))
    }
}

/// Once the ceremony is completed and FILE.partial holds the whole artefact,
/// renames it to FILE (never over an existing file) and syncs the folder.
fn move_into_place(
    done: &RecoverySummary,
    offset: u64,
    partial: &Path,
    file_path: &Path,
) -> anyhow::Result<()> {
    let id = &done.ceremony_id;
    if done.state != RecoveryState::Completed as i32 {
        bail!(
            "rkmd stopped sending while ceremony {id} is {}; {offset} bytes are kept in {}: run the command again to resume",
            recovery_state_name(done.state),
            partial.display()
        );
    }
    if done.artefact_size != offset {
        bail!(
            "{} holds {offset} bytes, but the artefact of ceremony {id} is {} bytes; remove it and collect again",
            partial.display(),
            done.artefact_size
        );
    }
    if file_path.exists() {
        bail!(
            "{} appeared while collecting; the artefact stays in {}",
            file_path.display(),
            partial.display()
        );
    }
    fs::rename(partial, file_path).with_context(|| {
        format!(
            "cannot rename {} to {}",
            partial.display(),
            file_path.display()
        )
    })?;
    sync_parent(file_path)
}

/// Streams, resumes, syncs and renames.
///
/// # Errors
/// FILE exists; the partial file cannot be written or does not fit the
/// artefact; rkmd refuses (no artefact for a ceremony that is not signing or
/// completed) or the stream breaks (run again to resume).
pub async fn run(args: CollectArgs, target: &Target, output: OutputFormat) -> anyhow::Result<()> {
    let file_path = args.file;
    if file_path.exists() {
        bail!(
            "{} already exists; refusing to overwrite it (choose another file)",
            file_path.display()
        );
    }
    let partial_path = partial_path(&file_path);
    let mut client = stubs::recovery(target.connect().await?);
    let summary = get_recovery(
        &mut client,
        rkm_proto::v1::GetRecoveryRequest {
            ceremony_id: args.ceremony_id.clone(),
            ..Default::default()
        },
    )
    .await?;
    let created = !partial_path.exists();
    let file = lock_partial(&partial_path)?;
    let (resumed_from, lines, header_sha256) = resume_point(&partial_path)?;
    let stream = client
        .collect_artefact(CollectArtefactRequest {
            ceremony_id: args.ceremony_id.clone(),
            offset: resumed_from,
            header_sha256,
        })
        .await
        .rpc("collecting the artefact");
    let mut stream = match stream {
        Ok(stream) => stream.into_inner(),
        Err(error) => {
            // Refused before a byte arrived: leave no empty partial file.
            if created && resumed_from == 0 {
                let _ = fs::remove_file(&partial_path);
            }
            return Err(error);
        }
    };
    let mut partial = Partial {
        path: &partial_path,
        writer: BufWriter::with_capacity(1 << 20, file),
        offset: resumed_from,
        lines,
        discarded: 0,
    };
    let commands = |lines: u64| lines.saturating_sub(HEADER_LINES).min(summary.target_count);
    let bar = progress_bar(summary.target_count, Unit::Commands, "collecting");
    bar.set_position(commands(partial.lines));
    let mut complete_size = None;
    while let Some(chunk) = stream
        .message()
        .await
        .rpc("receiving the artefact")
        .with_context(|| {
            format!(
                "{} bytes are kept in {}; run the command again to resume",
                partial.offset,
                partial_path.display()
            )
        })?
    {
        partial.append(chunk.offset, &chunk.data, &args.ceremony_id, &bar)?;
        if chunk.total_size > 0 {
            complete_size = Some(chunk.total_size);
        }
        bar.set_position(commands(partial.lines));
    }
    let (locked, offset, discarded) = partial.finish()?;
    bar.finish_and_clear();
    let kept = || {
        format!(
            "{offset} bytes are kept in {}: run the same command again once rkmd serves, and it resumes",
            partial_path.display()
        )
    };
    let asked = get_recovery(
        &mut client,
        rkm_proto::v1::GetRecoveryRequest {
            ceremony_id: args.ceremony_id.clone(),
            ..Default::default()
        },
    )
    .await;
    let done = match asked {
        Ok(done) => done,
        // The stream carried the completed bundle's size and all of it came:
        // that is what the store would say; rkmd merely stopped since.
        Err(_) if complete_size == Some(offset) => RecoverySummary {
            state: RecoveryState::Completed as i32,
            artefact_size: offset,
            signed_count: summary.target_count,
            ..summary.clone()
        },
        // rkmd ends its streams when it stops (SIGTERM), and is gone by the
        // time it would be asked whether the bundle was whole.
        Err(error) if complete_size != Some(offset) => {
            return Err(NotServing::error(format!(
                "rkmd ended the stream before the artefact of ceremony {} was complete and no longer answers ({error:#}): it is stopping or was stopped; {}",
                args.ceremony_id,
                kept()
            )));
        }
        Err(error) => return Err(error.context(kept())),
    };
    move_into_place(&done, offset, &partial_path, &file_path)?;
    drop(locked);
    let report = CollectReport {
        ceremony_id: args.ceremony_id,
        file: file_path.display().to_string(),
        bytes: offset,
        commands: done.signed_count,
        resumed_from: if discarded > 0 { 0 } else { resumed_from },
        discarded_bytes: discarded,
    };
    print_report(&report, output)
}

fn print_report(report: &CollectReport, output: OutputFormat) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json => print_json(report),
        OutputFormat::Text => emit(&format!(
            "wrote {} ({} bytes, {} signed commands{}); check it offline with `rkm artefact verify {} --key-record FILE --audit-key KEY`\n",
            report.file,
            report.bytes,
            report.commands,
            match (report.resumed_from, report.discarded_bytes) {
                (0, 0) => String::new(),
                (0, discarded) => format!(", started over after dropping {discarded} stale bytes"),
                (resumed, _) => format!(", resumed at byte {resumed}"),
            },
            report.file
        )),
    }
}
