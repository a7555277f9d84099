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
mod binaries;
mod ceremony;
mod options;
mod proc;
mod report;
mod rkm_run;
mod runs;

use std::time::Duration;

use anyhow::{Context as _, ensure};
use rkm_client::connect::Target;
use rkm_proto::v1::recovery_service_client::RecoveryServiceClient;
use rkm_tests::raw_pkcs11::{
    Budget, ChildToken, Measurement, RawSigner, print_for_parent, run_measuring_child,
};

use crate::binaries::ensure_binaries;
use crate::ceremony::setup;
use crate::options::Options;
use crate::proc::{TICKS_PER_SECOND, process_cpu_ticks, vm_hwm_kib};
use crate::report::{Results, load_average};
use crate::runs::{run_bulk, run_latency};

/// The key's custodians; the first `THRESHOLD` approve.
const NAMES: [&str; 3] = ["alice", "bob", "carol"];
const THRESHOLD: usize = 2;
const LABEL: &str = "fleet-root";
/// Longest wait for a ceremony step before the bench gives up.
const STEP_TIMEOUT: Duration = Duration::from_secs(1800);

fn main() -> anyhow::Result<()> {
    let options = Options::parse()?;
    if options.measure_raw {
        return print_for_parent(measure_raw(&options)?);
    }
    run_all(&options)
}

/// Runs the raw loop with `sessions` sessions in a child on a fresh token.
fn run_raw_child(sessions: usize, seconds: f64, signatures: u64) -> anyhow::Result<Measurement> {
    let args = [
        "--measure-raw",
        "--sessions",
        &sessions.to_string(),
        "--seconds",
        &seconds.to_string(),
        "--raw-signatures",
        &signatures.to_string(),
    ]
    .map(str::to_owned);
    run_measuring_child(&format!("the raw loop with {sessions} session(s)"), &args)
}

/// The raw child: the timed part signs `--raw-signatures` digests (or for
/// `--seconds`), and its CPU time is measured too.
fn measure_raw(options: &Options) -> anyhow::Result<Measurement> {
    let token = ChildToken::of_child(options.module.as_deref(), options.label.as_deref())?;
    let mut signer = RawSigner::open(&token, options.sessions)?;
    signer.warm_up()?;
    let budget = match options.raw_signatures {
        Some(signatures) if signatures > 0 => Budget::Signatures(signatures),
        _ => Budget::Time(Duration::from_secs_f64(options.seconds)),
    };
    let cpu_before = process_cpu_ticks(std::process::id());
    let measurement = signer.sign(budget)?;
    let cpu_ticks = process_cpu_ticks(std::process::id()).saturating_sub(cpu_before);
    signer.close()?;
    Ok(Measurement {
        cpu: Some(Duration::from_secs_f64(cpu_ticks as f64 / TICKS_PER_SECOND)),
        ..measurement
    })
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

    report::print(&Results {
        workers,
        cores,
        latency_targets: options.latency_targets,
        raws,
        bulks,
        latency,
        rkmd_hwm_end,
        load_start,
        command,
    });
    Ok(())
}
