//! The bench's command line: `--name value` or `--name=value`, cargo's own
//! arguments ignored.

use std::path::PathBuf;

use anyhow::ensure;
use rkm_tests::bench_args::BenchArgs;

#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) targets: u64,
    pub(crate) bulk_runs: usize,
    pub(crate) runs: usize,
    pub(crate) latency_targets: u64,
    pub(crate) workers: Option<usize>,
    pub(crate) seconds: f64,
    /// Signatures of each raw measurement; 0: for `seconds` instead.
    pub(crate) raw_signatures: Option<u64>,
    // Child (raw baseline) only.
    pub(crate) measure_raw: bool,
    pub(crate) sessions: usize,
    pub(crate) module: Option<PathBuf>,
    pub(crate) label: Option<String>,
}

impl Options {
    pub(crate) fn parse() -> anyhow::Result<Self> {
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
        let mut args = BenchArgs::from_env();
        while let Some(name) = args.next_name() {
            match name.as_str() {
                "--targets" => options.targets = args.value(&name)?,
                "--runs" => options.runs = args.value(&name)?,
                "--bulk-runs" => options.bulk_runs = args.value(&name)?,
                "--latency-targets" => options.latency_targets = args.value(&name)?,
                "--workers" => options.workers = Some(args.value(&name)?),
                "--seconds" => options.seconds = args.value(&name)?,
                "--raw-signatures" => options.raw_signatures = Some(args.value(&name)?),
                "--measure-raw" => options.measure_raw = true,
                "--sessions" => options.sessions = args.value(&name)?,
                "--module" => options.module = Some(args.value(&name)?),
                "--label" => options.label = Some(args.value(&name)?),
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
