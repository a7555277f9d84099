//! Benchmark of `rkm audit verify` against `sha256sum` on the same file in the
//! same run: generates a synthetic signed audit log (realistic ~200-byte
//! entries, a checkpoint every 1000 entries, an Ed25519 audit key), then times
//! both tools over it and measures the peak RSS of the `rkm` process.
//!
//! ```text
//! cargo bench -p rkm-client --bench audit_verify -- [--entries N] [--checkpoint-every K] [--runs R]
//! ```
//!
//! Targets (issue 3): within 3× of `sha256sum`, peak RSS under 100 MB. Exits
//! non-zero if a target is missed.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer as _, SigningKey};
use rkm_proto::audit_entry::{AuditEntry, ENTRY_VERSION, Outcome};
use rkm_proto::audit_file::AuditFileWriter;
use rkm_proto::checkpoint::{Checkpoint, VerifierKey, format_signed_note, signed_message};
use rkm_proto::merkle::{Frontier, leaf_hash};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const ORIGIN: &str = "rkm.bench/audit";
const TARGET_RATIO: f64 = 3.0;
const TARGET_RSS_KB: u64 = 100 * 1024;

struct Options {
    entries: u64,
    checkpoint_every: u64,
    runs: usize,
}

fn options() -> Result<Options> {
    let mut options = Options {
        entries: 1_000_000,
        checkpoint_every: 1000,
        runs: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> Result<u64> {
            let text = args.next().ok_or(format!("{name} needs a value"))?;
            Ok(text.parse().map_err(|e| format!("{name} {text:?}: {e}"))?)
        };
        match arg.as_str() {
            // cargo bench passes --bench to harness = false benchmarks.
            "--bench" => {}
            "--entries" => options.entries = value("--entries")?,
            "--checkpoint-every" => options.checkpoint_every = value("--checkpoint-every")?.max(1),
            "--runs" => options.runs = usize::try_from(value("--runs")?)?.max(1),
            other => {
                return Err(format!(
                    "unknown argument {other:?}; use --entries N, --checkpoint-every K, --runs R"
                )
                .into());
            }
        }
    }
    Ok(options)
}

/// A realistic entry: a ceremony step by an operator, with a request digest
/// and a message, about 200 bytes once encoded.
fn entry(index: u64) -> AuditEntry {
    const ACTIONS: [&str; 6] = [
        "ceremony.approve",
        "ceremony.open",
        "share.submit",
        "audit.note",
        "key.sign",
        "custodian.attest",
    ];
    let seconds = 1_790_000_000 + index / 10;
    let millis = (index % 10) * 100;
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    AuditEntry {
        v: ENTRY_VERSION,
        time: format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
            rest / 3600,
            rest / 60 % 60,
            rest % 60
        ),
        actor: format!("custodian-{}", index % 7),
        action: ACTIONS[(index % 6) as usize].to_owned(),
        subject: format!("cer-{:08x}", index / 50),
        outcome: Outcome::Ok,
        details: BTreeMap::from([
            (
                "digest".to_owned(),
                format!(
                    "{:016x}{:016x}",
                    index.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    index
                ),
            ),
            ("message".to_owned(), format!("step {index} of the drill")),
        ]),
    }
}

/// Writes a signed log of `entries` entries to `path`; returns its verifier key.
fn generate(path: &Path, entries: u64, every: u64) -> Result<VerifierKey> {
    let key = SigningKey::from_bytes(&[7; 32]);
    let verifier = VerifierKey::new(ORIGIN, key.verifying_key().as_bytes())?;
    let out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut writer = AuditFileWriter::create(out, ORIGIN, &verifier)?;
    let mut frontier = Frontier::new();
    for index in 0..entries {
        let bytes = entry(index).encode()?;
        writer.entry(index, &bytes)?;
        frontier.append(leaf_hash(&bytes))?;
        if frontier.size() % every == 0 || frontier.size() == entries {
            let body = Checkpoint::new(ORIGIN, frontier.size(), frontier.root(), vec![])?.to_body();
            let signature = key.sign(signed_message(&body));
            let note = format_signed_note(&body, ORIGIN, verifier.key_id(), &signature.to_bytes())?;
            writer.checkpoint(&note)?;
        }
    }
    writer.into_inner().flush()?;
    Ok(verifier)
}

/// Runs a command to completion, returning its wall time and stderr.
fn timed(command: &mut Command) -> Result<(Duration, String)> {
    let started = Instant::now();
    let output = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        return Err(format!("{command:?} failed with {}: {stderr}", output.status).into());
    }
    Ok((elapsed, stderr))
}

/// Peak RSS in KiB of `rkm audit verify`, from GNU time's `%M`.
fn peak_rss_kb(rkm: &str, file: &Path, key: &str) -> Result<u64> {
    let (_, stderr) = timed(
        Command::new("/usr/bin/time")
            .args(["-f", "%M", rkm, "audit", "verify"])
            .arg(file)
            .args(["--audit-key", key]),
    )?;
    let last = stderr.lines().last().unwrap_or_default().trim();
    Ok(last
        .parse()
        .map_err(|_| format!("GNU time printed {last:?}"))?)
}

/// Peak RSS in KiB by polling `/proc/<pid>/status` (VmHWM), when GNU time
/// is missing.
fn peak_rss_kb_polled(rkm: &str, file: &Path, key: &str) -> Result<u64> {
    let mut child = Command::new(rkm)
        .args(["audit", "verify"])
        .arg(file)
        .args(["--audit-key", key])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(status) = std::fs::read_to_string(&status_file)
            && let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:"))
        {
            let kb = line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            peak = peak.max(kb);
        }
        if child.try_wait()?.is_some() {
            return Ok(peak);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn mb_per_s(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / 1e6 / time.as_secs_f64()
}

fn main() -> Result<()> {
    let options = options()?;
    let rkm = env!("CARGO_BIN_EXE_rkm");
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("audit.log");

    let started = Instant::now();
    let key = generate(&file, options.entries, options.checkpoint_every)?.to_string();
    let bytes = std::fs::metadata(&file)?.len();
    println!(
        "generated {} entries, {} checkpoints, {:.1} MB in {:.1} s ({} bytes per line on average)",
        options.entries,
        options.entries.div_ceil(options.checkpoint_every),
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        bytes / options.entries.max(1)
    );

    // Alternate the two tools; keep the best time of each (page cache warm).
    let mut sha = Duration::MAX;
    let mut verify = Duration::MAX;
    for _ in 0..options.runs {
        sha = sha.min(timed(Command::new("sha256sum").arg(&file))?.0);
        verify = verify.min(
            timed(
                Command::new(rkm)
                    .args(["audit", "verify"])
                    .arg(&file)
                    .args(["--audit-key", &key]),
            )?
            .0,
        );
    }
    let rss = if Path::new("/usr/bin/time").exists() {
        peak_rss_kb(rkm, &file, &key)?
    } else {
        peak_rss_kb_polled(rkm, &file, &key)?
    };
    let ratio = verify.as_secs_f64() / sha.as_secs_f64();

    println!("command: rkm audit verify FILE --audit-key {key}");
    println!(
        "sha256sum          {:>8.3} s  {:>8.1} MB/s",
        sha.as_secs_f64(),
        mb_per_s(bytes, sha)
    );
    println!(
        "rkm audit verify   {:>8.3} s  {:>8.1} MB/s  ({:.0} entries/s)",
        verify.as_secs_f64(),
        mb_per_s(bytes, verify),
        options.entries as f64 / verify.as_secs_f64()
    );
    println!("ratio              {ratio:.2}x sha256sum (target <= {TARGET_RATIO}x)");
    println!(
        "peak RSS           {:.1} MB (target < {} MB)",
        rss as f64 / 1024.0,
        TARGET_RSS_KB / 1024
    );
    let mut missed = Vec::new();
    if ratio > TARGET_RATIO {
        missed.push("throughput");
    }
    if rss >= TARGET_RSS_KB {
        missed.push("memory");
    }
    if missed.is_empty() {
        println!("targets met");
        Ok(())
    } else {
        Err(format!("targets missed: {}", missed.join(", ")).into())
    }
}
