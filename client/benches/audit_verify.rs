//! Benchmark of `rkm audit verify` against `sha256sum` on the same file in the
//! same run: generates a synthetic signed audit log (realistic ~200-byte
//! entries, a checkpoint every 1000 entries, an Ed25519 audit key), then times
//! both tools over it and measures the peak RSS of the `rkm` process.
//!
//! ```text
//! cargo bench -p rkm-client --bench audit_verify -- [--entries N] [--checkpoint-every K] [--runs R] [--keep FILE]
//! ```
//!
//! `--keep FILE` writes the log there and leaves it (e.g. to watch the
//! progress bar of `rkm audit verify` in a terminal).
//!
//! Targets (issue 3): within 3× of `sha256sum`, peak RSS under 100 MB. Exits
//! non-zero if a target is missed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../tests/common/synthetic.rs"]
mod synthetic;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;
const TARGET_RATIO: f64 = 3.0;
const TARGET_RSS_KB: u64 = 100 * 1024;

struct Options {
    entries: u64,
    checkpoint_every: u64,
    runs: usize,
    keep: Option<std::path::PathBuf>,
}

fn options() -> Result<Options> {
    let mut options = Options {
        entries: 1_000_000,
        checkpoint_every: 1000,
        runs: 3,
        keep: None,
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
            "--keep" => options.keep = Some(args.next().ok_or("--keep needs a file")?.into()),
            other => {
                return Err(format!(
                    "unknown argument {other:?}; use --entries N, --checkpoint-every K, --runs R, --keep FILE"
                )
                .into());
            }
        }
    }
    Ok(options)
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
    let file = options
        .keep
        .clone()
        .unwrap_or_else(|| dir.path().join("audit.log"));

    let started = Instant::now();
    let key = synthetic::generate(&file, options.entries, options.checkpoint_every)?.to_string();
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
