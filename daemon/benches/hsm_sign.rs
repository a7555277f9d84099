//! ECDSA P-256 signing throughput through SoftHSM2: a plain `cryptoki` loop
//! (the baseline) against the rkm HSM layer, with 1 and with N sessions.
//!
//! `cargo bench -p rkm-daemon --bench hsm_sign [-- --seconds S --repeat R --json]`
//!
//! PKCS#11 allows one `C_Initialize` per process and SoftHSM2 reads
//! `SOFTHSM2_CONF` only then, so every measurement runs in a child process (this
//! same binary, re-executed with `--measure raw|hsm`) against a fresh token. The
//! child prints one JSON line on stdout; the parent prints the table. The raw
//! loop and the child plumbing are shared with `tests/benches/bulk_sign`, in
//! `rkm_tests::raw_pkcs11`.
//!
//! Options (unknown arguments such as cargo's `--bench` are ignored):
//! * `--seconds S` (or env `RKM_BENCH_SECONDS`): the timed part of each
//!   measurement, default 3;
//! * `--sessions N`: the "many" configuration, default the number of cores;
//! * `--in-flight K`: concurrent single-signature requests per HSM worker,
//!   default 8;
//! * `--batch B`: digests per `sign_digests` call in the batched rows, default
//!   64 (what recovery signing uses), with two calls in flight per worker;
//! * `--repeat R`: measure every configuration R times, interleaved, and report
//!   the median (on a noisy machine), default 1;
//! * `--json`: print one JSON document instead of the table.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::bail;
use rkm_daemon::hsm::{Hsm, HsmConfig, SigningKey};
use rkm_daemon::secrets::UserPin;
use rkm_tests::bench_args::{BenchArgs, parse_value};
use rkm_tests::raw_pkcs11::{
    Budget, ChildToken, Measurement, RawSigner, WARM_UP, digest, print_for_parent,
    run_measuring_child,
};
use serde_json::json;

const DEFAULT_SECONDS: f64 = 3.0;
const DEFAULT_IN_FLIGHT_PER_WORKER: usize = 8;
/// Digests per `sign_digests` call; recovery signing uses the same.
const DEFAULT_BATCH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Raw,
    /// One `sign_digest` call per signature.
    Hsm,
    /// `sign_digests` with `--batch` digests per call, as recovery signing does.
    HsmBatch,
}

impl FromStr for Mode {
    type Err = anyhow::Error;

    fn from_str(value: &str) -> anyhow::Result<Self> {
        match value {
            "raw" => Ok(Mode::Raw),
            "hsm" => Ok(Mode::Hsm),
            "hsm-batch" => Ok(Mode::HsmBatch),
            other => bail!("unknown --measure {other:?} (expected raw, hsm or hsm-batch)"),
        }
    }
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Raw => "raw",
            Mode::Hsm => "hsm",
            Mode::HsmBatch => "hsm-batch",
        }
    }
}

#[derive(Debug)]
struct Options {
    measure: Option<Mode>,
    seconds: f64,
    sessions: Option<usize>,
    in_flight: usize,
    batch: usize,
    repeat: usize,
    json: bool,
    module: Option<PathBuf>,
    label: Option<String>,
}

impl Options {
    fn parse() -> anyhow::Result<Self> {
        let seconds = match std::env::var("RKM_BENCH_SECONDS") {
            Ok(value) => parse_value("RKM_BENCH_SECONDS", Some(value))?,
            Err(_) => DEFAULT_SECONDS,
        };
        let mut options = Options {
            measure: None,
            seconds,
            sessions: None,
            in_flight: DEFAULT_IN_FLIGHT_PER_WORKER,
            batch: DEFAULT_BATCH,
            repeat: 1,
            json: false,
            module: None,
            label: None,
        };
        let mut args = BenchArgs::from_env();
        while let Some(name) = args.next_name() {
            match name.as_str() {
                "--measure" => options.measure = Some(args.value(&name)?),
                "--seconds" => options.seconds = args.value(&name)?,
                "--sessions" => options.sessions = Some(args.value(&name)?),
                "--in-flight" => options.in_flight = args.value(&name)?,
                "--batch" => options.batch = args.value(&name)?,
                "--repeat" => options.repeat = args.value(&name)?,
                "--module" => options.module = Some(args.value(&name)?),
                "--label" => options.label = Some(args.value(&name)?),
                "--json" => options.json = true,
                // `cargo bench` passes `--bench`, and possibly a filter.
                _ => {}
            }
        }
        if !(options.seconds.is_finite() && options.seconds > 0.0) {
            bail!("--seconds must be positive, not {}", options.seconds);
        }
        if options.sessions == Some(0)
            || options.in_flight == 0
            || options.batch == 0
            || options.repeat == 0
        {
            bail!("--sessions, --in-flight, --batch and --repeat must be at least 1");
        }
        Ok(options)
    }

    fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.seconds)
    }
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse()?;
    match options.measure {
        Some(mode) => {
            let sessions = options.sessions.unwrap_or(1);
            let measurement = match mode {
                Mode::Raw => measure_raw(&options, sessions)?,
                Mode::Hsm | Mode::HsmBatch => measure_hsm(&options, mode, sessions)?,
            };
            print_for_parent(measurement)
        }
        None => run_all(&options),
    }
}

// ---------------------------------------------------------------------------
// Parent: one child per configuration, each on a fresh token.

struct Row {
    mode: Mode,
    sessions: usize,
    /// One measurement per repetition, each in its own child on its own token.
    samples: Vec<Measurement>,
}

impl Row {
    /// Median rate over the repetitions (the mean of the middle two if even).
    fn per_second(&self) -> f64 {
        let mut rates: Vec<f64> = self.samples.iter().map(|m| m.per_second()).collect();
        rates.sort_by(f64::total_cmp);
        let middle = rates.len() / 2;
        if rates.len().is_multiple_of(2) {
            (rates[middle - 1] + rates[middle]) / 2.0
        } else {
            rates[middle]
        }
    }
}

fn run_all(options: &Options) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let many = options.sessions.unwrap_or(cores);
    let mut counts = vec![1, many];
    counts.dedup();

    let mut rows: Vec<Row> = counts
        .iter()
        .flat_map(|&sessions| {
            [Mode::Raw, Mode::Hsm, Mode::HsmBatch].map(|mode| Row {
                mode,
                sessions,
                samples: Vec::with_capacity(options.repeat),
            })
        })
        .collect();
    // Interleaved, so that a slow spell of the machine hits every row alike.
    for _ in 0..options.repeat {
        for row in &mut rows {
            row.samples
                .push(run_child(options, row.mode, row.sessions)?);
        }
    }

    let raw_rate = |sessions: usize| {
        rows.iter()
            .find(|row| row.mode == Mode::Raw && row.sessions == sessions)
            .map(Row::per_second)
    };
    if options.json {
        let results: Vec<_> = rows
            .iter()
            .map(|row| {
                let rate = row.per_second();
                let samples: Vec<_> = row
                    .samples
                    .iter()
                    .map(|m| {
                        json!({
                            "signatures": m.signatures,
                            "elapsed_s": m.elapsed.as_secs_f64(),
                            "signatures_per_second": m.per_second(),
                        })
                    })
                    .collect();
                json!({
                    "config": row.mode.as_str(),
                    "sessions": row.sessions,
                    "in_flight": (row.mode != Mode::Raw).then_some(row.sessions * options.in_flight),
                    "batch": (row.mode == Mode::HsmBatch).then_some(options.batch),
                    "signatures_per_second": rate,
                    "ratio_to_raw": raw_rate(row.sessions).map(|raw| rate / raw),
                    "samples": samples,
                })
            })
            .collect();
        let document = json!({
            "benchmark": "ECDSA P-256 signing through SoftHSM2",
            "seconds": options.seconds,
            "repeat": options.repeat,
            "cores": cores,
            "results": results,
        });
        println!("{document:#}");
        return Ok(());
    }

    let repeat = match options.repeat {
        1 => String::new(),
        n => format!(", median of {n}"),
    };
    println!(
        "ECDSA P-256 signing through SoftHSM2 ({} s each{repeat}, {cores} core{})",
        options.seconds,
        plural(cores)
    );
    for row in &rows {
        let rate = row.per_second();
        let n = row.sessions;
        let (label, ratio) = match row.mode {
            Mode::Raw => (
                format!("raw cryptoki, {n} session{}", plural(n)),
                "1.00".into(),
            ),
            Mode::Hsm | Mode::HsmBatch => (
                match row.mode {
                    Mode::HsmBatch => {
                        format!("rkm hsm, {n} worker{}, batch {}", plural(n), options.batch)
                    }
                    _ => format!("rkm hsm, {n} worker{}", plural(n)),
                },
                match raw_rate(n) {
                    Some(raw) => format!("{:.2} of raw {n} session{}", rate / raw, plural(n)),
                    None => String::new(),
                },
            ),
        };
        println!("  {label:<28} {rate:>8.0} sig/s   {ratio}");
    }
    Ok(())
}

fn plural(count: usize) -> &'static str {
    if count == 1 { "" } else { "s" }
}

fn run_child(options: &Options, mode: Mode, sessions: usize) -> anyhow::Result<Measurement> {
    let args = [
        "--measure",
        mode.as_str(),
        "--sessions",
        &sessions.to_string(),
        "--seconds",
        &options.seconds.to_string(),
        "--in-flight",
        &options.in_flight.to_string(),
        "--batch",
        &options.batch.to_string(),
    ]
    .map(str::to_owned);
    run_measuring_child(
        &format!("{} with {sessions} session(s)", mode.as_str()),
        &args,
    )
}

fn child_token(options: &Options) -> anyhow::Result<ChildToken> {
    ChildToken::of_child(options.module.as_deref(), options.label.as_deref())
}

// ---------------------------------------------------------------------------
// Child, raw cryptoki baseline: one thread per session, one shared key.

fn measure_raw(options: &Options, sessions: usize) -> anyhow::Result<Measurement> {
    let mut signer = RawSigner::open(&child_token(options)?, sessions)?;
    signer.warm_up()?;
    let measurement = signer.sign(Budget::Time(options.duration()))?;
    signer.close()?;
    Ok(measurement)
}

// ---------------------------------------------------------------------------
// Child, through the rkm HSM layer on a multi-thread tokio runtime.

fn measure_hsm(options: &Options, mode: Mode, workers: usize) -> anyhow::Result<Measurement> {
    let token = child_token(options)?;
    let hsm = open_hsm(&token.module, &token.label, token.pin, workers)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Batches keep a few jobs per worker queued; single calls need more.
    let (in_flight, batch) = match mode {
        Mode::HsmBatch => (workers * 2, options.batch),
        _ => (workers * options.in_flight, 1),
    };
    let duration = options.duration();
    let measurement = runtime.block_on(async {
        let generated = hsm.generate_recovery_key().await?;
        let warm_up = hsm_phase(&hsm, generated.private, in_flight, batch, WARM_UP).await?;
        if warm_up.signatures == 0 {
            bail!("no signature during warm-up");
        }
        let measurement = hsm_phase(&hsm, generated.private, in_flight, batch, duration).await?;
        hsm.destroy(generated.private).await?;
        hsm.destroy(generated.public).await?;
        anyhow::Ok(measurement)
    })?;
    drop(runtime);
    drop(hsm);
    Ok(measurement)
}

fn open_hsm(module: &Path, label: &str, pin: String, workers: usize) -> anyhow::Result<Hsm> {
    Ok(Hsm::open(HsmConfig {
        module: module.to_owned(),
        token_label: label.to_owned(),
        pin: UserPin::from_env_value(pin),
        workers,
    })?)
}

/// Keeps `in_flight` signing requests of `batch` digests each (1: single
/// `sign_digest` calls) outstanding for `duration`.
async fn hsm_phase(
    hsm: &Hsm,
    key: SigningKey,
    in_flight: usize,
    batch: usize,
    duration: Duration,
) -> anyhow::Result<Measurement> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..in_flight {
        let hsm = hsm.clone();
        tasks.spawn(async move {
            // Distinct digests per task, as distinct requests would have.
            let mut counter = (task as u64) << 40;
            let mut signatures = 0u64;
            while Instant::now() < deadline {
                if batch == 1 {
                    hsm.sign_digest(key, digest(counter)).await?;
                } else {
                    let digests = (counter..counter + batch as u64).map(digest).collect();
                    hsm.sign_digests(key, digests).await?;
                }
                counter += batch as u64;
                signatures += batch as u64;
            }
            anyhow::Ok(signatures)
        });
    }
    let mut signatures = 0;
    while let Some(result) = tasks.join_next().await {
        signatures += result??;
    }
    Ok(Measurement {
        signatures,
        elapsed: start.elapsed(),
        cpu: None,
    })
}
