//! The bench's command line: `--name value` or `--name=value`, cargo's own
//! arguments ignored.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context as _, ensure};

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

pub(crate) fn parse_value<T: FromStr>(name: &str, value: Option<String>) -> anyhow::Result<T>
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
