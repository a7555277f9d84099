//! Running the real rkm with its elapsed time, peak RSS and CPU time, and
//! reading what it printed.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use rkm_tests::Daemon;
use rkm_tests::binaries::{binary, with_clean_env};
use serde_json::Value;

use crate::proc::vm_hwm_kib;

#[derive(Debug)]
pub(crate) struct Measured {
    pub(crate) output: Output,
    pub(crate) elapsed: Duration,
    /// Peak RSS in KiB.
    pub(crate) max_rss_kib: Option<u64>,
    /// User + system CPU seconds (with /usr/bin/time only).
    pub(crate) cpu_seconds: Option<f64>,
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Measured {
    pub(crate) fn ok(&self, what: &str) -> anyhow::Result<String> {
        ensure!(
            self.output.status.success(),
            "{what} failed ({:?}):\nstdout: {}\nstderr: {}",
            self.output.status.code(),
            text(&self.output.stdout),
            text(&self.output.stderr)
        );
        Ok(text(&self.output.stdout))
    }

    pub(crate) fn json(&self, what: &str) -> anyhow::Result<Value> {
        serde_json::from_str(&self.ok(what)?).with_context(|| format!("{what}: not JSON"))
    }
}

/// Runs the real rkm against `daemon`, under `/usr/bin/time` when present
/// (else polling its VmHWM).
pub(crate) fn rkm_measured(daemon: &Daemon, args: &[&str]) -> anyhow::Result<Measured> {
    let rkm = binary("rkm");
    let time = Path::new("/usr/bin/time");
    let report = tempfile::NamedTempFile::new()?;
    let timed = time.exists();
    let mut command = if timed {
        let mut command = Command::new(time);
        command
            .args(["-f", "%M %U %S", "-o"])
            .arg(report.path())
            .arg(&rkm);
        command
    } else {
        Command::new(&rkm)
    };
    with_clean_env(&mut command);
    command
        .env("RKM_SOCKET", daemon.socket())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let child = command.spawn().context("running rkm")?;
    let pid = child.id();
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let poller = (!timed).then(|| {
        let (done, peak) = (done.clone(), peak.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Some(kib) = vm_hwm_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    });
    let output = child.wait_with_output().context("waiting for rkm")?;
    let elapsed = start.elapsed();
    done.store(true, Ordering::Relaxed);
    if let Some(poller) = poller {
        let _ = poller.join();
    }
    let (max_rss_kib, cpu_seconds) = if timed {
        // The last line is ours; a failing command adds a line before it.
        let reported = std::fs::read_to_string(report.path()).unwrap_or_default();
        let fields: Vec<&str> = reported
            .lines()
            .last()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        let number = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
        (
            number(0).map(|kib| kib as u64),
            number(1).zip(number(2)).map(|(user, system)| user + system),
        )
    } else {
        (
            Some(peak.load(Ordering::Relaxed)).filter(|&kib| kib > 0),
            None,
        )
    };
    Ok(Measured {
        output,
        elapsed,
        max_rss_kib,
        cpu_seconds,
    })
}

pub(crate) fn ok(output: &Output, what: &str) -> anyhow::Result<String> {
    ensure!(
        output.status.success(),
        "{what} failed ({:?}):\nstdout: {}\nstderr: {}",
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr)
    );
    Ok(text(&output.stdout))
}

pub(crate) fn json_of(output: &Output, what: &str) -> anyhow::Result<Value> {
    serde_json::from_str(&ok(output, what)?).with_context(|| format!("{what}: not JSON"))
}

pub(crate) fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str().context("bench paths are UTF-8")
}
