//! Bulk signing of a recovery ceremony end to end, against the raw cryptoki
//! signing loop with the same number of sessions, measured in the same run.
//!
//! ```sh
//! cargo build --release --bins
//! RKM_BIN_DIR=target/release cargo bench -p rkm-tests --bench bulk_sign -- --targets 1000000 --runs 7
//! ```
//!
//! One run:
//! 1. the raw baseline: a plain `cryptoki` ECDSA P-256 loop, one thread per
//!    session, N sessions (N = the daemon's worker count), on a fresh token in
//!    a child process (this binary re-executed with `--measure-raw`, because
//!    SoftHSM2 reads `SOFTHSM2_CONF` only at `C_Initialize`), signing as many
//!    digests as there are targets, before the first end-to-end run and after
//!    each (rkmd idles meanwhile): the machine's speed drifts by ±15% on a
//!    shared VM, so the two around a run bracket it and their combined rate
//!    (all signatures over all time) is that run's reference; the median of
//!    the runs' ratios is reported, and all runs against the fastest raw
//!    measurement too;
//! 2. the real `rkmd` with N HSM workers on a fresh token and state directory:
//!    a 2-of-3 key ceremony, a recovery for a manifest of `--targets` device
//!    ids, the first approval with `rkm recovery approve`, the second (K-th)
//!    sent over gRPC exactly as `rkm recovery approve` builds it (prepared in
//!    advance, so the clock starts when it is sent), then `rkm recovery
//!    collect ID -o FILE`: the time from the K-th approval to the artefact
//!    file complete on the client side (collect exited after its fsync and
//!    rename); throughput = targets / that time; the artefact is then checked
//!    with `rkm artefact verify` (not timed);
//! 3. peak RSS: rkmd's VmHWM (`/proc/PID/status`) after the bulk run, and each
//!    rkm command's (`/usr/bin/time -f %M`, or its VmHWM polled);
//! 4. latency from the K-th approval to the first signed command ("S " line)
//!    in rkmd's artefact file, median over `--runs` ceremonies of
//!    `--latency-targets` targets.
//!
//! Options (cargo's own arguments such as `--bench` are ignored):
//! `--targets N` (default 1,000,000), `--bulk-runs B` (end-to-end runs, each
//! between two raw measurements; default 3, the median ratio is reported;
//! the first run's artefact is verified), `--runs R` (default 7; 0 skips the
//! latency runs), `--latency-targets N` (default 1,000), `--workers N`
//! (default: the number of cores), `--raw-signatures N` (each raw
//! measurement; default: `--targets`; 0 measures for `--seconds S`, default
//! 5, instead). The binaries come from `RKM_BIN_DIR`, else the bench's own
//! `target/<profile>`; they are built with `cargo build --release --bins` when
//! missing there.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufWriter, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail, ensure};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CryptokiError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use rkm_client::connect::Target;
use rkm_proto::approval::approval_message;
use rkm_proto::checkpoint::VerifierKey;
use rkm_proto::custodian_card::parse_age_recipient;
use rkm_proto::envelope;
use rkm_proto::identity::CustodianIdentity;
use rkm_proto::key_record::SignedKeyRecord;
use rkm_proto::v1::recovery_service_client::RecoveryServiceClient;
use rkm_proto::v1::{
    ApproveRequest, GetApprovalNonceRequest, GetRecoveryRequest, RecoveryState, RecoverySummary,
};
use rkm_tests::daemon::{bin_dir, binary};
use rkm_tests::{Daemon, DaemonBuilder, SoftHsmToken};
use secrecy::SecretString;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tonic::transport::Channel;

/// DER of the OID of NIST P-256 (secp256r1, 1.2.840.10045.3.1.7).
const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// Label of the raw baseline's fresh token.
const RAW_TOKEN_LABEL: &str = "rkm-bench";
/// Environment variable that carries the user PIN to the raw child.
const PIN_ENV: &str = "RKM_BENCH_PIN";
/// Untimed signing before the raw measurement.
const WARM_UP: Duration = Duration::from_millis(300);
/// The key's custodians; the first `THRESHOLD` approve.
const NAMES: [&str; 3] = ["alice", "bob", "carol"];
const THRESHOLD: usize = 2;
const LABEL: &str = "fleet-root";
/// Longest wait for a ceremony step before the bench gives up.
const STEP_TIMEOUT: Duration = Duration::from_secs(1800);
/// Targets of the 150 MB peak RSS goal, in KiB.
const RSS_TARGET_KIB: u64 = 150 * 1024;
const RATIO_TARGET: f64 = 0.85;

// ---------------------------------------------------------------------------
// Options.

#[derive(Debug)]
struct Options {
    targets: u64,
    bulk_runs: usize,
    runs: usize,
    latency_targets: u64,
    workers: Option<usize>,
    seconds: f64,
    /// Signatures of each raw measurement; 0: for `seconds` instead.
    raw_signatures: Option<u64>,
    // Child (raw baseline) only.
    measure_raw: bool,
    sessions: usize,
    module: Option<PathBuf>,
    label: Option<String>,
}

fn parse_value<T: FromStr>(name: &str, value: Option<String>) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    let value = value.with_context(|| format!("{name} needs a value"))?;
    value
        .replace('_', "")
        .parse()
        .map_err(|error| anyhow::anyhow!("{name} {value:?}: {error}"))
}

impl Options {
    fn parse() -> anyhow::Result<Self> {
        let mut options = Options {
            targets: 1_000_000,
            bulk_runs: 3,
            runs: 7,
            latency_targets: 1_000,
            workers: None,
            seconds: 5.0,
            raw_signatures: None,
            measure_raw: false,
            sessions: 1,
            module: None,
            label: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let (name, mut inline) = match arg.split_once('=') {
                Some((name, value)) if name.starts_with("--") => {
                    (name.to_owned(), Some(value.to_owned()))
                }
                _ => (arg.clone(), None),
            };
            let mut value = || inline.take().or_else(|| args.next());
            match name.as_str() {
                "--targets" => options.targets = parse_value(&name, value())?,
                "--runs" => options.runs = parse_value(&name, value())?,
                "--bulk-runs" => options.bulk_runs = parse_value(&name, value())?,
                "--latency-targets" => options.latency_targets = parse_value(&name, value())?,
                "--workers" => options.workers = Some(parse_value(&name, value())?),
                "--seconds" => options.seconds = parse_value(&name, value())?,
                "--raw-signatures" => options.raw_signatures = Some(parse_value(&name, value())?),
                "--measure-raw" => options.measure_raw = true,
                "--sessions" => options.sessions = parse_value(&name, value())?,
                "--module" => options.module = Some(parse_value(&name, value())?),
                "--label" => options.label = Some(parse_value(&name, value())?),
                // `cargo bench` passes `--bench`, and possibly a filter.
                _ => {}
            }
        }
        ensure!(
            options.seconds.is_finite() && options.seconds > 0.0,
            "--seconds must be positive, not {}",
            options.seconds
        );
        ensure!(
            options.targets > 0 && options.latency_targets > 0,
            "--targets and --latency-targets must be at least 1"
        );
        ensure!(
            options.workers != Some(0) && options.sessions > 0 && options.bulk_runs > 0,
            "--workers, --sessions and --bulk-runs must be at least 1"
        );
        Ok(options)
    }
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse()?;
    if options.measure_raw {
        let measurement = measure_raw(&options)?;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}", measurement.to_json_line())?;
        stdout.flush()?;
        return Ok(());
    }
    run_all(&options)
}

// ---------------------------------------------------------------------------
// The raw cryptoki baseline (child process), as in daemon/benches/hsm_sign.rs.

#[derive(Debug, Clone, Copy)]
struct Measurement {
    signatures: u64,
    elapsed: Duration,
    /// CPU time (user + system) the child spent in the timed part.
    cpu: Duration,
}

impl Measurement {
    fn per_second(self) -> f64 {
        self.signatures as f64 / self.elapsed.as_secs_f64()
    }

    fn to_json_line(self) -> String {
        json!({
            "signatures": self.signatures,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "cpu_s": self.cpu.as_secs_f64(),
        })
        .to_string()
    }

    fn from_json_line(line: &str) -> anyhow::Result<Self> {
        let value: Value =
            serde_json::from_str(line).with_context(|| format!("child printed {line:?}"))?;
        Ok(Self {
            signatures: value["signatures"].as_u64().context("no signatures")?,
            elapsed: Duration::from_secs_f64(value["elapsed_s"].as_f64().context("no elapsed_s")?),
            cpu: Duration::from_secs_f64(value["cpu_s"].as_f64().context("no cpu_s")?),
        })
    }
}

/// The digest signed at iteration `counter` (a new one each time, as in use).
fn digest(counter: u64) -> [u8; 32] {
    Sha256::digest(counter.to_le_bytes()).into()
}

/// Runs the raw loop with `sessions` sessions in a child on a fresh token.
fn run_raw_child(sessions: usize, seconds: f64, signatures: u64) -> anyhow::Result<Measurement> {
    let token = SoftHsmToken::create(RAW_TOKEN_LABEL)?;
    let exe = std::env::current_exe().context("finding this bench binary")?;
    let output = Command::new(exe)
        .arg("--measure-raw")
        .args(["--sessions", &sessions.to_string()])
        .args(["--seconds", &seconds.to_string()])
        .args(["--raw-signatures", &signatures.to_string()])
        .arg("--module")
        .arg(token.module())
        .args(["--label", token.label()])
        .env("SOFTHSM2_CONF", token.config_file())
        .env(PIN_ENV, token.user_pin())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("starting the raw measuring child")?;
    ensure!(
        output.status.success(),
        "the raw measurement with {sessions} session(s) failed: {}",
        output.status
    );
    let stdout = String::from_utf8(output.stdout).context("child output is not UTF-8")?;
    Measurement::from_json_line(stdout.lines().last().context("child printed nothing")?)
}

fn measure_raw(options: &Options) -> anyhow::Result<Measurement> {
    ensure!(
        std::env::var_os("SOFTHSM2_CONF").is_some(),
        "--measure-raw is for the child process; SOFTHSM2_CONF is not set"
    );
    let module = options.module.clone().context("--module is missing")?;
    let label = options.label.clone().context("--label is missing")?;
    let pin = std::env::var(PIN_ENV).with_context(|| format!("{PIN_ENV} is not set"))?;
    let pkcs11 = Pkcs11::new(&module).with_context(|| format!("loading {}", module.display()))?;
    pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))?;
    let slot = find_slot(&pkcs11, &label)?;
    let pin = AuthPin::from(pin.as_str());
    let mut open = (0..options.sessions)
        .map(|_| open_logged_in(&pkcs11, slot, &pin))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Session objects of one session are usable from every session of the
    // process, as the HSM layer's workers use them.
    let (public, private) = open[0].generate_key_pair(
        &Mechanism::EccKeyPairGen,
        &[
            Attribute::Token(false),
            Attribute::EcParams(P256_PARAMS.to_vec()),
            Attribute::Verify(true),
        ],
        &[
            Attribute::Token(false),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Sign(true),
        ],
    )?;
    let warm_up;
    (open, warm_up) = raw_phase(open, private, Budget::Time(WARM_UP))?;
    ensure!(warm_up.signatures > 0, "no signature during warm-up");
    let measurement;
    let cpu_before = process_cpu_ticks(std::process::id());
    let budget = match options.raw_signatures {
        Some(signatures) if signatures > 0 => Budget::Signatures(signatures),
        _ => Budget::Time(Duration::from_secs_f64(options.seconds)),
    };
    (open, measurement) = raw_phase(open, private, budget)?;
    let cpu_ticks = process_cpu_ticks(std::process::id()).saturating_sub(cpu_before);
    let measurement = Measurement {
        cpu: Duration::from_secs_f64(cpu_ticks as f64 / TICKS_PER_SECOND),
        ..measurement
    };
    open[0].destroy_object(private)?;
    open[0].destroy_object(public)?;
    for session in open {
        session.close()?;
    }
    pkcs11.finalize()?;
    Ok(measurement)
}

fn find_slot(pkcs11: &Pkcs11, label: &str) -> anyhow::Result<Slot> {
    for slot in pkcs11.get_slots_with_token()? {
        if pkcs11.get_token_info(slot)?.label().trim_end() == label {
            return Ok(slot);
        }
    }
    bail!("no token labelled {label:?}")
}

fn open_logged_in(pkcs11: &Pkcs11, slot: Slot, pin: &AuthPin) -> anyhow::Result<Session> {
    let session = pkcs11.open_rw_session(slot)?;
    match session.login(UserType::User, Some(pin)) {
        // Logins are per token: the second session finds the user logged in.
        Ok(()) | Err(CryptokiError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
        Err(error) => Err(error.into()),
    }
}

/// Signs on every session, each on its own thread, for `duration`; gives the
/// sessions back with the count.
/// How long a raw phase signs.
#[derive(Debug, Clone, Copy)]
enum Budget {
    Time(Duration),
    /// This many signatures in all, shared evenly by the sessions.
    Signatures(u64),
}

fn raw_phase(
    sessions: Vec<Session>,
    key: ObjectHandle,
    budget: Budget,
) -> anyhow::Result<(Vec<Session>, Measurement)> {
    let count = sessions.len() as u64;
    let barrier = Barrier::new(sessions.len() + 1);
    let (results, elapsed) = std::thread::scope(|scope| {
        let barrier = &barrier;
        let threads: Vec<_> = sessions
            .into_iter()
            .enumerate()
            .map(|(index, session)| {
                scope.spawn(move || -> (Session, cryptoki::error::Result<u64>) {
                    barrier.wait();
                    let start = Instant::now();
                    let (deadline, quota) = match budget {
                        Budget::Time(duration) => (start + duration, u64::MAX),
                        Budget::Signatures(total) => (
                            start + STEP_TIMEOUT,
                            total / count + u64::from((index as u64) < total % count),
                        ),
                    };
                    let mut counter = (index as u64) << 40;
                    let mut signatures = 0u64;
                    while signatures < quota && Instant::now() < deadline {
                        if let Err(error) = session.sign(&Mechanism::Ecdsa, key, &digest(counter)) {
                            return (session, Err(error));
                        }
                        counter += 1;
                        signatures += 1;
                    }
                    (session, Ok(signatures))
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let results: Vec<_> = threads
            .into_iter()
            .map(|thread| thread.join().expect("a signing thread panicked"))
            .collect();
        (results, start.elapsed())
    });
    let mut sessions = Vec::with_capacity(results.len());
    let mut signatures = 0;
    for (session, count) in results {
        sessions.push(session);
        signatures += count?;
    }
    Ok((
        sessions,
        Measurement {
            signatures,
            elapsed,
            cpu: Duration::ZERO,
        },
    ))
}

// ---------------------------------------------------------------------------
// Binaries.

/// Newest modification time of the files under `dir` (recursively).
fn newest_under(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            if metadata.is_dir() {
                pending.push(entry.path());
            } else if let Ok(modified) = metadata.modified() {
                newest = newest.max(Some(modified));
            }
        }
    }
    newest
}

/// Makes sure `rkm` and `rkmd` are in the fixture's binary directory,
/// building them (release) when the bench runs from the workspace's target
/// directory and they are missing; warns when they are older than the
/// sources.
fn ensure_binaries() -> anyhow::Result<PathBuf> {
    let dir = bin_dir();
    let missing = |dir: &Path| ["rkm", "rkmd"].iter().any(|b| !dir.join(b).exists());
    if missing(&dir) {
        if std::env::var_os("RKM_BIN_DIR").is_some() {
            bail!(
                "RKM_BIN_DIR={} lacks rkm or rkmd: build them with `cargo build --release --bins`",
                dir.display()
            );
        }
        eprintln!(
            "rkm/rkmd are not in {}: running `cargo build --release --bins`",
            dir.display()
        );
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--release", "--bins"])
            .current_dir(rkm_tests::workspace_root())
            .status()
            .context("running cargo build --release --bins")?;
        ensure!(status.success(), "cargo build --release --bins failed");
        ensure!(
            !missing(&dir),
            "rkm/rkmd are still not in {} after building: set RKM_BIN_DIR",
            dir.display()
        );
    }
    let built = ["rkm", "rkmd"]
        .iter()
        .filter_map(|b| dir.join(b).metadata().ok()?.modified().ok())
        .min();
    let root = rkm_tests::workspace_root();
    let sources = ["proto", "daemon/src", "client/src"]
        .iter()
        .filter_map(|d| newest_under(&root.join(d)))
        .max();
    if let (Some(built), Some(sources)) = (built, sources) {
        if sources > built {
            eprintln!(
                "warning: rkm/rkmd in {} are older than the sources; run `cargo build --release --bins` first",
                dir.display()
            );
        }
    }
    Ok(dir)
}

// ---------------------------------------------------------------------------
// Running rkm with its peak RSS and CPU time.

#[derive(Debug)]
struct Measured {
    output: Output,
    elapsed: Duration,
    /// Peak RSS in KiB.
    max_rss_kib: Option<u64>,
    /// User + system CPU seconds (with /usr/bin/time only).
    cpu_seconds: Option<f64>,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Measured {
    fn ok(&self, what: &str) -> anyhow::Result<String> {
        ensure!(
            self.output.status.success(),
            "{what} failed ({:?}):\nstdout: {}\nstderr: {}",
            self.output.status.code(),
            text(&self.output.stdout),
            text(&self.output.stderr)
        );
        Ok(text(&self.output.stdout))
    }

    fn json(&self, what: &str) -> anyhow::Result<Value> {
        serde_json::from_str(&self.ok(what)?).with_context(|| format!("{what}: not JSON"))
    }
}

/// VmHWM (peak resident set) of a process, in KiB.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Runs the real rkm against `daemon`, under `/usr/bin/time` when present
/// (else polling its VmHWM).
fn rkm_measured(daemon: &Daemon, args: &[&str]) -> anyhow::Result<Measured> {
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
    command.env_clear();
    for name in ["PATH", "HOME", "LANG"] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
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

fn ok(output: &Output, what: &str) -> anyhow::Result<String> {
    ensure!(
        output.status.success(),
        "{what} failed ({:?}):\nstdout: {}\nstderr: {}",
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr)
    );
    Ok(text(&output.stdout))
}

fn json_of(output: &Output, what: &str) -> anyhow::Result<Value> {
    serde_json::from_str(&ok(output, what)?).with_context(|| format!("{what}: not JSON"))
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str().context("bench paths are UTF-8")
}

// ---------------------------------------------------------------------------
// rkmd's CPU time per thread kind, from /proc.

/// Clock ticks per second of /proc's times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// utime + stime (ticks) of a /proc stat line.
fn stat_ticks(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat[open + 1..close].to_owned();
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // After ")": state is field 3 of stat(5); utime and stime are 14 and 15.
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some((name, user + system))
}

/// CPU ticks of a process and of each of its live threads.
#[derive(Debug, Default)]
struct CpuSnapshot {
    process: u64,
    threads: BTreeMap<u32, (String, u64)>,
}

/// CPU ticks (user + system, every thread) of a process so far.
fn process_cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat_ticks(&stat))
        .map_or(0, |(_, ticks)| ticks)
}

fn cpu_snapshot(pid: u32) -> CpuSnapshot {
    let mut snapshot = CpuSnapshot {
        process: process_cpu_ticks(pid),
        threads: BTreeMap::new(),
    };
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            if let Some(entry) = std::fs::read_to_string(task.path().join("stat"))
                .ok()
                .and_then(|stat| stat_ticks(&stat))
            {
                snapshot.threads.insert(tid, entry);
            }
        }
    }
    snapshot
}

/// The kind of a thread, from its name: `hsm-worker-3` is `hsm-worker`.
fn thread_kind(name: &str) -> String {
    name.trim_end_matches(|c: char| c.is_ascii_digit())
        .trim_end_matches('-')
        .to_owned()
}

/// CPU seconds per thread kind between two snapshots; threads that ended
/// in between are "(exited threads)".
fn cpu_by_kind(before: &CpuSnapshot, after: &CpuSnapshot) -> Vec<(String, f64)> {
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    let mut threads_total = 0;
    for (tid, (name, ticks)) in &after.threads {
        let earlier = before.threads.get(tid).map_or(0, |(_, t)| *t);
        let delta = ticks.saturating_sub(earlier);
        threads_total += delta;
        *kinds.entry(thread_kind(name)).or_default() += delta;
    }
    let total = after.process.saturating_sub(before.process);
    let exited = total.saturating_sub(threads_total);
    if exited > 0 {
        kinds.insert("(exited threads)".to_owned(), exited);
    }
    let mut kinds: Vec<(String, f64)> = kinds
        .into_iter()
        .filter(|(_, ticks)| *ticks > 0)
        .map(|(kind, ticks)| (kind, ticks as f64 / TICKS_PER_SECOND))
        .collect();
    kinds.sort_by(|a, b| b.1.total_cmp(&a.1));
    kinds.insert(
        0,
        ("all threads".to_owned(), total as f64 / TICKS_PER_SECOND),
    );
    kinds
}

// ---------------------------------------------------------------------------
// The key ceremony and custodians.

struct Custodian {
    name: String,
    identity: PathBuf,
    card: PathBuf,
    passphrase: String,
    passphrase_file: PathBuf,
    share_dir: PathBuf,
}

impl Custodian {
    /// Writes the identity (scrypt work factor 4: fast) and the card.
    fn new(dir: &Path, name: &str) -> anyhow::Result<Self> {
        let passphrase = format!("correct horse battery staple {name}");
        let passphrase_file = dir.join(format!("{name}.passphrase"));
        std::fs::write(&passphrase_file, format!("{passphrase}\n"))?;
        let custodian = Custodian {
            name: name.to_owned(),
            identity: dir.join(format!("{name}.identity")),
            card: dir.join(format!("{name}.card.json")),
            passphrase,
            passphrase_file,
            share_dir: dir.join(format!("{name}-shares")),
        };
        let mut seed = [0u8; 64];
        for (half, chunk) in seed.chunks_mut(32).enumerate() {
            let digest = Sha256::new()
                .chain_update(b"rkm bulk_sign bench")
                .chain_update(name.as_bytes())
                .chain_update([half as u8])
                .finalize();
            chunk.copy_from_slice(&digest);
        }
        let identity = CustodianIdentity::generate(name, &seed)?;
        let file = identity
            .encrypt_with_work_factor(&SecretString::from(custodian.passphrase.as_str()), 4)?;
        std::fs::write(&custodian.identity, file)?;
        std::fs::write(&custodian.card, identity.card().to_json())?;
        Ok(custodian)
    }

    fn key_record_file(&self, key_id: &str) -> PathBuf {
        self.share_dir.join(key_id).join("key-record.json")
    }

    fn approve_args(&self, ceremony_id: &str) -> anyhow::Result<Vec<String>> {
        Ok([
            "recovery",
            "approve",
            ceremony_id,
            "--identity",
            path_str(&self.identity)?,
            "--passphrase-file",
            path_str(&self.passphrase_file)?,
            "--share-dir",
            path_str(&self.share_dir)?,
            "--yes",
            "--output",
            "json",
        ]
        .map(str::to_owned)
        .to_vec())
    }
}

/// A serving rkmd with a 2-of-3 key whose custodians hold their shares.
struct Setup {
    daemon: Daemon,
    dir: tempfile::TempDir,
    custodians: Vec<Custodian>,
    key_id: String,
    audit_key: String,
}

fn setup(workers: usize) -> anyhow::Result<Setup> {
    let mut daemon = DaemonBuilder::default().workers(workers).initialised()?;
    daemon.serve()?;
    let dir = tempfile::Builder::new()
        .prefix("rkm-bulk-sign-")
        .tempdir()?;
    let custodians = NAMES
        .iter()
        .map(|name| Custodian::new(dir.path(), name))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for custodian in &custodians {
        ok(
            &daemon.rkm(&["custodian", "enrol", path_str(&custodian.card)?])?,
            "custodian enrol",
        )?;
    }
    let created = json_of(
        &daemon.rkm(&[
            "key",
            "create",
            "--label",
            LABEL,
            "--threshold",
            &THRESHOLD.to_string(),
            "--custodians",
            &NAMES.join(","),
            "--output",
            "json",
        ])?,
        "key create",
    )?;
    let key_id = created["key_id"]
        .as_str()
        .context("key create printed no key_id")?
        .to_owned();
    let status = json_of(&daemon.rkm(&["status", "--output", "json"])?, "status")?;
    let audit_key = status["audit_key"]["verifier_key"]
        .as_str()
        .context("status printed no verifier key")?
        .to_owned();
    for custodian in &custodians {
        ok(
            &daemon.rkm(&[
                "share",
                "fetch",
                "--key",
                LABEL,
                "--identity",
                path_str(&custodian.identity)?,
                "--passphrase-file",
                path_str(&custodian.passphrase_file)?,
                "--share-dir",
                path_str(&custodian.share_dir)?,
                "--audit-key",
                &audit_key,
            ])?,
            "share fetch",
        )?;
    }
    Ok(Setup {
        daemon,
        dir,
        custodians,
        key_id,
        audit_key,
    })
}

/// A revoke-certificate request; `serial` tells requests apart.
fn request_file(dir: &Path, serial: &str) -> anyhow::Result<PathBuf> {
    let file = dir.join(format!("request-{serial}.toml"));
    std::fs::write(
        &file,
        format!(
            "reason = \"Issuing CA 2 key compromised\"\nincident = \"INC-4711\"\nnot_before = \"2026-11-27T00:00:00Z\"\nnot_after = \"2026-12-04T00:00:00Z\"\n\n[command]\nkind = \"revoke-certificate\"\nissuer = \"CN=Issuing CA 2, O=Grid\"\nserial = \"{serial}\"\n"
        ),
    )?;
    Ok(file)
}

/// A manifest of `count` ids `meter-000000001`…
fn manifest(dir: &Path, name: &str, count: u64) -> anyhow::Result<PathBuf> {
    let file = dir.join(name);
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&file)?);
    for i in 1..=count {
        writeln!(out, "meter-{i:09}")?;
    }
    out.into_inner()
        .map_err(|error| error.into_error())?
        .sync_all()?;
    Ok(file)
}

// ---------------------------------------------------------------------------
// gRPC: the K-th approval, built as `rkm recovery approve` builds it.

async fn get_recovery(
    client: &mut RecoveryServiceClient<Channel>,
    id: &str,
) -> anyhow::Result<RecoverySummary> {
    client
        .get_recovery(GetRecoveryRequest {
            ceremony_id: id.to_owned(),
        })
        .await?
        .into_inner()
        .recovery
        .context("rkmd sent no ceremony")
}

/// Everything `rkm recovery approve` does before sending: the key record
/// checked with the audit key, the share opened and checked against it, a
/// fresh nonce, the share sealed to the ceremony's key, the signature.
async fn prepare_approval(
    client: &mut RecoveryServiceClient<Channel>,
    setup: &Setup,
    custodian: &Custodian,
    id: &str,
) -> anyhow::Result<ApproveRequest> {
    let identity = CustodianIdentity::decrypt(
        &std::fs::read(&custodian.identity)?,
        &SecretString::from(custodian.passphrase.as_str()),
    )?;
    let signed = SignedKeyRecord::from_file(&std::fs::read_to_string(
        custodian.key_record_file(&setup.key_id),
    )?)?;
    let record = signed.verify(&VerifierKey::parse(&setup.audit_key)?)?;
    let sealed = std::fs::read(custodian.share_dir.join(&setup.key_id).join("share.age"))?;
    let contents = envelope::open(&sealed, identity.age_identity())?;
    let commitment = contents
        .verify_against_record(&record, &identity.card())?
        .commitment;
    let nonce: [u8; 32] = client
        .get_approval_nonce(GetApprovalNonceRequest {
            ceremony_id: id.to_owned(),
            custodian: custodian.name.clone(),
        })
        .await?
        .into_inner()
        .nonce
        .try_into()
        .map_err(|_| anyhow::anyhow!("rkmd sent a nonce that is not 32 bytes"))?;
    let summary = get_recovery(client, id).await?;
    ensure!(
        summary.state == RecoveryState::Open as i32,
        "ceremony {id} is not open"
    );
    let digest: [u8; 32] = summary
        .request_digest
        .as_slice()
        .try_into()
        .context("request digest is not 32 bytes")?;
    let recipient = parse_age_recipient(&summary.ceremony_recipient)?;
    let sealed_share = envelope::seal(&contents, &recipient)?;
    let signature = identity.sign(&approval_message(id, &digest, &nonce, &commitment));
    Ok(ApproveRequest {
        ceremony_id: id.to_owned(),
        custodian: custodian.name.clone(),
        nonce: nonce.to_vec(),
        commitment: commitment.to_vec(),
        signature: signature.to_vec(),
        sealed_share,
    })
}

/// Sends the prepared K-th approval; checks that it reached the quorum.
async fn send_approval(
    client: &mut RecoveryServiceClient<Channel>,
    request: ApproveRequest,
) -> anyhow::Result<()> {
    let after = client
        .approve(request)
        .await?
        .into_inner()
        .recovery
        .context("rkmd sent no ceremony")?;
    ensure!(
        after.state == RecoveryState::Signing as i32
            || after.state == RecoveryState::Completed as i32,
        "the K-th approval left the ceremony in state {}",
        after.state
    );
    Ok(())
}

/// Opens a ceremony with `manifest`; returns its id and the measured `open`.
fn open_ceremony(
    setup: &Setup,
    serial: &str,
    manifest: &Path,
) -> anyhow::Result<(String, Measured)> {
    let request = request_file(setup.dir.path(), serial)?;
    let opened = rkm_measured(
        &setup.daemon,
        &[
            "recovery",
            "open",
            "--key",
            LABEL,
            "--request",
            path_str(&request)?,
            "--targets",
            path_str(manifest)?,
            "--expires",
            "24h",
            "--output",
            "json",
        ],
    )?;
    let report = opened.json("recovery open")?;
    let id = report["ceremony_id"]
        .as_str()
        .context("recovery open printed no ceremony id")?
        .to_owned();
    Ok((id, opened))
}

/// Approves with the first K−1 custodians through `rkm recovery approve`.
fn approve_all_but_last(setup: &Setup, id: &str) -> anyhow::Result<Vec<Measured>> {
    setup.custodians[..THRESHOLD - 1]
        .iter()
        .map(|custodian| {
            let args = custodian.approve_args(id)?;
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let approved = rkm_measured(&setup.daemon, &args)?;
            approved.json("recovery approve")?;
            Ok(approved)
        })
        .collect()
}

/// Watches rkmd's artefact file of a ceremony for its first signed command
/// ("S " line); returns when it appeared (or `None` if stopped first).
fn watch_first_signed(
    path: PathBuf,
    stop: Arc<AtomicBool>,
    pause: Duration,
) -> std::thread::JoinHandle<Option<Instant>> {
    std::thread::spawn(move || {
        let mut buffer = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let size = std::fs::metadata(&path).map_or(0, |m| m.len());
            if size > 0 {
                buffer.clear();
                let read = std::fs::File::open(&path)
                    .and_then(|file| file.take(4 << 20).read_to_end(&mut buffer));
                if read.is_ok()
                    && (buffer.starts_with(b"S ") || buffer.windows(3).any(|w| w == b"\nS "))
                {
                    return Some(Instant::now());
                }
            }
            std::thread::sleep(pause);
        }
        None
    })
}

fn artefact_path(setup: &Setup, id: &str) -> PathBuf {
    setup
        .daemon
        .state_dir()
        .join("artefacts")
        .join(format!("{id}.rkma"))
}

// ---------------------------------------------------------------------------
// The run.

struct Bulk {
    targets: u64,
    open: Measured,
    approvals: Vec<Measured>,
    collect: Measured,
    /// `rkm artefact verify`, on the first run only.
    verify: Option<Measured>,
    /// K-th approval sent → artefact complete on the client side.
    elapsed: Duration,
    /// K-th approval sent → first "S " line in rkmd's file.
    first_signed: Option<Duration>,
    rkmd_hwm_kib: Option<u64>,
    rkmd_cpu: Vec<(String, f64)>,
    artefact_bytes: u64,
}

struct Latency {
    first_signed: Vec<Duration>,
    completed: Vec<Duration>,
}

fn run_bulk(
    setup: &Setup,
    runtime: &tokio::runtime::Runtime,
    client: &mut RecoveryServiceClient<Channel>,
    targets: u64,
    run: usize,
) -> anyhow::Result<Bulk> {
    let pid = setup.daemon.pid().context("rkmd is not running")?;
    eprintln!("writing a manifest of {targets} targets");
    let manifest = manifest(setup.dir.path(), "bulk-targets.txt", targets)?;
    eprintln!(
        "rkm recovery open ({targets} targets), bulk run {}",
        run + 1
    );
    let (id, open) = open_ceremony(setup, &format!("b0b0{run:02x}"), &manifest)?;
    std::fs::remove_file(&manifest)?;
    let approvals = approve_all_but_last(setup, &id)?;
    let last = &setup.custodians[THRESHOLD - 1];
    let request = runtime.block_on(prepare_approval(client, setup, last, &id))?;

    let out = setup.dir.path().join("bulk.rkma");
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_first_signed(
        artefact_path(setup, &id),
        stop.clone(),
        Duration::from_millis(1),
    );
    let cpu_before = cpu_snapshot(pid);
    eprintln!("K-th approval, then rkm recovery collect {id}");
    let start = Instant::now();
    runtime.block_on(send_approval(client, request))?;
    let collect = rkm_measured(
        &setup.daemon,
        &[
            "recovery",
            "collect",
            &id,
            "-o",
            path_str(&out)?,
            "--output",
            "json",
        ],
    )?;
    let elapsed = start.elapsed();
    let cpu_after = cpu_snapshot(pid);
    stop.store(true, Ordering::Relaxed);
    let first_signed = watcher
        .join()
        .map_err(|_| anyhow::anyhow!("the artefact watcher panicked"))?
        .map(|at| at.saturating_duration_since(start));
    let collected = collect.json("recovery collect")?;
    ensure!(
        collected["commands"].as_u64() == Some(targets),
        "collect wrote {} commands, not {targets}",
        collected["commands"]
    );
    let rkmd_hwm_kib = vm_hwm_kib(pid);

    let artefact_bytes = std::fs::metadata(&out)?.len();
    // Verifying a million signatures takes minutes; once shows the artefact
    // each run writes is sound.
    let verify = if run == 0 {
        Some(verify_bulk(setup, &out, targets)?)
    } else {
        None
    };
    std::fs::remove_file(&out)?;
    Ok(Bulk {
        targets,
        open,
        approvals,
        collect,
        verify,
        elapsed,
        first_signed,
        rkmd_hwm_kib,
        rkmd_cpu: cpu_by_kind(&cpu_before, &cpu_after),
        artefact_bytes,
    })
}

fn verify_bulk(setup: &Setup, out: &Path, targets: u64) -> anyhow::Result<Measured> {
    eprintln!("rkm artefact verify (not timed)");
    let record = setup.custodians[0].key_record_file(&setup.key_id);
    let verify = rkm_measured(
        &setup.daemon,
        &[
            "artefact",
            "verify",
            path_str(out)?,
            "--key-record",
            path_str(&record)?,
            "--audit-key",
            &setup.audit_key,
            "--output",
            "json",
        ],
    )?;
    let verified = verify.json("rkm artefact verify")?;
    ensure!(
        verified["verified"] == true && verified["target_count"].as_u64() == Some(targets),
        "the artefact does not verify: {verified}"
    );
    Ok(verify)
}

fn run_latency(
    setup: &Setup,
    runtime: &tokio::runtime::Runtime,
    client: &mut RecoveryServiceClient<Channel>,
    runs: usize,
    targets: u64,
) -> anyhow::Result<Latency> {
    let manifest = manifest(setup.dir.path(), "small-targets.txt", targets)?;
    let mut latency = Latency {
        first_signed: Vec::with_capacity(runs),
        completed: Vec::with_capacity(runs),
    };
    for run in 0..runs {
        eprintln!("latency run {} of {runs} ({targets} targets)", run + 1);
        let (id, _) = open_ceremony(setup, &format!("1a{run:04x}"), &manifest)?;
        approve_all_but_last(setup, &id)?;
        let last = &setup.custodians[THRESHOLD - 1];
        let request = runtime.block_on(prepare_approval(client, setup, last, &id))?;
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = watch_first_signed(
            artefact_path(setup, &id),
            stop.clone(),
            Duration::from_micros(200),
        );
        let start = Instant::now();
        runtime.block_on(send_approval(client, request))?;
        let completed = runtime.block_on(async {
            let mut pause = Duration::from_millis(1);
            loop {
                let summary = get_recovery(client, &id).await?;
                if summary.state == RecoveryState::Completed as i32 {
                    return anyhow::Ok(start.elapsed());
                }
                ensure!(
                    summary.state == RecoveryState::Signing as i32,
                    "ceremony {id} went to state {} ({})",
                    summary.state,
                    summary.failure
                );
                ensure!(
                    start.elapsed() < STEP_TIMEOUT,
                    "ceremony {id} is still signing"
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(20));
            }
        })?;
        // The file is complete now: the watcher finds the line at once.
        let first = watcher
            .join()
            .map_err(|_| anyhow::anyhow!("the artefact watcher panicked"))?
            .context("no signed command in the artefact")?;
        stop.store(true, Ordering::Relaxed);
        latency
            .first_signed
            .push(first.saturating_duration_since(start));
        latency.completed.push(completed);
    }
    Ok(latency)
}

/// The 1-minute load average, as /proc/loadavg says.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

fn median(values: &[Duration]) -> Option<Duration> {
    let mut sorted = values.to_vec();
    sorted.sort();
    let middle = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 0 => Some((sorted[middle - 1] + sorted[middle]) / 2),
        _ => Some(sorted[middle]),
    }
}

fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("?".to_owned(), |kib| {
        format!("{:.1} MB", kib as f64 / 1024.0)
    })
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

fn ms(duration: Duration) -> String {
    format!("{:.0} ms", duration.as_secs_f64() * 1000.0)
}

fn run_all(options: &Options) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let workers = options.workers.unwrap_or(cores);
    // cargo runs benches in the package's folder; a relative RKM_BIN_DIR
    // (target/release) is meant from the workspace root.
    std::env::set_current_dir(rkm_tests::workspace_root())
        .context("entering the workspace root")?;
    let bins = ensure_binaries()?;
    let raw_signatures = options.raw_signatures.unwrap_or(options.targets);
    let command = format!(
        "RKM_BIN_DIR={} cargo bench -p rkm-tests --bench bulk_sign -- --targets {} --bulk-runs {} --runs {} --latency-targets {} --workers {workers} --raw-signatures {raw_signatures}",
        bins.display(),
        options.targets,
        options.bulk_runs,
        options.runs,
        options.latency_targets,
    );
    let load_start = load_average();
    eprintln!("raw cryptoki baseline, {workers} session(s)");
    let mut raws = vec![run_raw_child(workers, options.seconds, raw_signatures)?];

    eprintln!("rkmd with {workers} worker(s): 2-of-3 key ceremony");
    let mut setup = setup(workers)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut client = runtime.block_on(async {
        anyhow::Ok(RecoveryServiceClient::new(
            Target::Socket(setup.daemon.socket()).connect().await?,
        ))
    })?;
    // Raw and end-to-end alternate, so that each end-to-end run has a raw
    // measurement on either side (rkmd idles meanwhile).
    let mut bulks = Vec::with_capacity(options.bulk_runs);
    for run in 0..options.bulk_runs {
        bulks.push(run_bulk(
            &setup,
            &runtime,
            &mut client,
            options.targets,
            run,
        )?);
        eprintln!("raw cryptoki baseline again");
        raws.push(run_raw_child(workers, options.seconds, raw_signatures)?);
    }
    let latency = if options.runs > 0 {
        Some(run_latency(
            &setup,
            &runtime,
            &mut client,
            options.runs,
            options.latency_targets,
        )?)
    } else {
        None
    };
    let pid = setup.daemon.pid().context("rkmd is not running")?;
    let rkmd_hwm_end = vm_hwm_kib(pid);
    drop(client);
    drop(runtime);
    let status = setup.daemon.stop_with("TERM")?;
    ensure!(status.success(), "rkmd exited with {status}");

    // The table.
    // The machine's speed drifts; the raw measurements before and after an
    // end-to-end run bracket it, and their combined rate (all signatures
    // over all time) is that run's reference. The median run is reported.
    let bracket = |run: usize| {
        let (before, after) = (raws[run], raws[run + 1]);
        (before.signatures + after.signatures) as f64
            / (before.elapsed + after.elapsed).as_secs_f64()
    };
    let rate_of = |bulk: &Bulk| bulk.targets as f64 / bulk.elapsed.as_secs_f64();
    let mut ratios: Vec<f64> = bulks
        .iter()
        .enumerate()
        .map(|(run, bulk)| rate_of(bulk) / bracket(run))
        .collect();
    let per_run_ratios = ratios.clone();
    ratios.sort_by(f64::total_cmp);
    let middle = ratios.len() / 2;
    let ratio = if ratios.len() % 2 == 0 {
        (ratios[middle - 1] + ratios[middle]) / 2.0
    } else {
        ratios[middle]
    };
    let raw_fastest = raws.iter().map(|m| m.per_second()).fold(0.0, f64::max);
    let bulk = &bulks[0];
    let e2e_total: Duration = bulks.iter().map(|b| b.elapsed).sum();
    let e2e_rate = (bulk.targets * bulks.len() as u64) as f64 / e2e_total.as_secs_f64();
    // CPU per signature, which other load on the machine hardly changes:
    // the raw loop's (the lower of before/after) against rkmd's (every
    // thread, K-th approval to artefact complete) plus rkm collect's.
    let raw_cpu_us = raws
        .iter()
        .filter(|m| m.signatures > 0 && !m.cpu.is_zero())
        .map(|m| m.cpu.as_secs_f64() * 1e6 / m.signatures as f64)
        .fold(f64::INFINITY, f64::min);
    let rkmd_cpu = bulk.rkmd_cpu.first().map_or(0.0, |(_, seconds)| *seconds);
    let e2e_cpu_us =
        (rkmd_cpu + bulk.collect.cpu_seconds.unwrap_or(0.0)) * 1e6 / bulk.targets as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nrkm bulk signing: {} targets, {workers} HSM worker(s), {cores} core(s), SoftHSM2, ECDSA P-256",
        thousands(bulk.targets as f64)
    );
    let _ = writeln!(out, "{:<58} {:>24}  target", "what", "result");
    let mut row = |what: &str, result: String, target: &str| {
        let _ = writeln!(out, "{what:<58} {result:>24}  {target}");
    };
    for (index, raw) in raws.iter().enumerate() {
        row(
            &format!(
                "raw cryptoki loop, {} sigs, {}",
                thousands(raw.signatures as f64),
                if index == 0 {
                    "first".to_owned()
                } else {
                    format!("after run {index}")
                }
            ),
            format!(
                "{} sig/s, {:.2} s",
                thousands(raw.per_second()),
                raw.elapsed.as_secs_f64()
            ),
            "",
        );
    }
    for (run, bulk) in bulks.iter().enumerate() {
        row(
            &format!(
                "run {}: K-th approval -> artefact complete (client)",
                run + 1
            ),
            format!(
                "{} sig/s, {:.2} s",
                thousands(rate_of(bulk)),
                bulk.elapsed.as_secs_f64()
            ),
            "",
        );
        row(
            &format!("  ratio to the raw loop before and after run {}", run + 1),
            format!("{:.2}", per_run_ratios[run]),
            "",
        );
    }
    row(
        &format!("ratio to the raw loop, median of {} runs", bulks.len()),
        format!("{ratio:.2}"),
        &format!(">= {RATIO_TARGET} {}", verdict(ratio >= RATIO_TARGET)),
    );
    row(
        "  all runs' throughput / the fastest raw measurement",
        format!("{:.2}", e2e_rate / raw_fastest),
        "(the harshest reading)",
    );
    row(
        "CPU per signature: raw loop (the lowest measurement)",
        format!("{raw_cpu_us:.1} us"),
        "",
    );
    row(
        "CPU per signature: rkmd (all threads) + rkm collect, run 1",
        format!("{e2e_cpu_us:.1} us"),
        "",
    );
    row(
        "CPU-normalised ratio (raw CPU/sig / end-to-end CPU/sig)",
        format!("{:.2}", raw_cpu_us / e2e_cpu_us),
        "(what an idle machine would give)",
    );
    row(
        "cores rkmd had in run 1 (other load lowers it)",
        format!("{:.2} of {cores}", rkmd_cpu / bulk.elapsed.as_secs_f64()),
        "",
    );
    let rkmd_hwm = bulks.iter().filter_map(|b| b.rkmd_hwm_kib).max();
    let collect_hwm = bulks.iter().filter_map(|b| b.collect.max_rss_kib).max();
    row(
        "peak RSS rkmd (VmHWM after the bulk runs)",
        mib(rkmd_hwm),
        &format!(
            "< 150 MB {}",
            verdict(rkmd_hwm.is_some_and(|k| k < RSS_TARGET_KIB))
        ),
    );
    row(
        "peak RSS rkm recovery collect (highest of the runs)",
        mib(collect_hwm),
        &format!(
            "< 150 MB {}",
            verdict(collect_hwm.is_some_and(|k| k < RSS_TARGET_KIB))
        ),
    );
    row(
        "peak RSS rkm recovery open (manifest upload)",
        mib(bulk.open.max_rss_kib),
        "",
    );
    row(
        "peak RSS rkm recovery approve",
        mib(bulk.approvals.iter().filter_map(|a| a.max_rss_kib).max()),
        "",
    );
    row(
        "peak RSS rkm artefact verify",
        mib(bulk.verify.as_ref().and_then(|v| v.max_rss_kib)),
        "",
    );
    row(
        "K-th approval -> first S line in rkmd's file (bulk runs)",
        bulks
            .iter()
            .map(|b| b.first_signed.map_or("?".to_owned(), ms))
            .collect::<Vec<_>>()
            .join(", "),
        "",
    );
    if let Some(latency) = &latency {
        let range = |values: &[Duration]| {
            let min = values.iter().min().copied().unwrap_or_default();
            let max = values.iter().max().copied().unwrap_or_default();
            format!("{} .. {}", ms(min), ms(max))
        };
        row(
            &format!(
                "latency K-th approval -> first S line, median of {} x {}",
                latency.first_signed.len(),
                thousands(options.latency_targets as f64)
            ),
            median(&latency.first_signed).map_or("?".to_owned(), ms),
            "",
        );
        row("  (min .. max)", range(&latency.first_signed), "");
        row(
            "  K-th approval -> ceremony completed, median",
            median(&latency.completed).map_or("?".to_owned(), ms),
            "",
        );
    }
    let _ = writeln!(out, "\ncontext (not timed against the target):");
    let mut row = |what: &str, result: String| {
        let _ = writeln!(out, "{what:<58} {result:>24}");
    };
    row(
        "rkm recovery open (upload of the manifest)",
        format!("{:.2} s", bulk.open.elapsed.as_secs_f64()),
    );
    row(
        "rkm artefact verify",
        bulk.verify.as_ref().map_or("?".to_owned(), |verify| {
            format!(
                "{:.2} s, {} MB",
                verify.elapsed.as_secs_f64(),
                bulk.artefact_bytes / 1_000_000
            )
        }),
    );
    row(
        "rkm recovery collect, CPU (user+sys)",
        bulk.collect
            .cpu_seconds
            .map_or("?".to_owned(), |s| format!("{s:.2} s")),
    );
    for (kind, seconds) in &bulk.rkmd_cpu {
        row(
            &format!("rkmd CPU in run 1: {kind}"),
            format!("{seconds:.2} s"),
        );
    }
    row(
        "rkmd VmHWM at the end (after the latency runs)",
        mib(rkmd_hwm_end),
    );
    row(
        "load average (1 min) at the start / at the end",
        format!("{load_start} / {}", load_average()),
    );
    let _ = writeln!(out, "\ncommand: {command}");
    print!("{out}");
    Ok(())
}
