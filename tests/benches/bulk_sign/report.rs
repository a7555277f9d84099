//! The table the bench prints: throughput against the raw loop, CPU per
//! signature, peak RSS and latency, each against its target.

use std::fmt::Write as _;
use std::time::Duration;

use rkm_tests::raw_pkcs11::Measurement;

use crate::runs::{Bulk, Latency};

/// Targets of the 150 MB peak RSS goal, in KiB.
const RSS_TARGET_KIB: u64 = 150 * 1024;
const RATIO_TARGET: f64 = 0.85;

/// Everything one bench invocation measured.
pub(crate) struct Results {
    pub(crate) workers: usize,
    pub(crate) cores: usize,
    pub(crate) latency_targets: u64,
    /// Before the first bulk run and after each.
    pub(crate) raws: Vec<Measurement>,
    pub(crate) bulks: Vec<Bulk>,
    pub(crate) latency: Option<Latency>,
    pub(crate) rkmd_hwm_end: Option<u64>,
    pub(crate) load_start: String,
    /// The command that reproduces this run.
    pub(crate) command: String,
}

/// The 1-minute load average, as /proc/loadavg says.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

pub(crate) fn median(values: &[Duration]) -> Option<Duration> {
    let mut sorted = values.to_vec();
    sorted.sort();
    let middle = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 0 => Some((sorted[middle - 1] + sorted[middle]) / 2),
        _ => Some(sorted[middle]),
    }
}

pub(crate) fn thousands(value: f64) -> String {
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

pub(crate) fn mib(kib: Option<u64>) -> String {
    kib.map_or("?".to_owned(), |kib| {
        format!("{:.1} MB", kib as f64 / 1024.0)
    })
}

pub(crate) fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

pub(crate) fn ms(duration: Duration) -> String {
    format!("{:.0} ms", duration.as_secs_f64() * 1000.0)
}

/// Prints the table of `results`.
pub(crate) fn print(results: &Results) {
    let Results {
        workers,
        cores,
        latency_targets,
        raws,
        bulks,
        latency,
        rkmd_hwm_end,
        load_start,
        command,
    } = results;
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
    let ratio = if ratios.len().is_multiple_of(2) {
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
        .filter(|m| m.signatures > 0)
        .filter_map(|m| m.cpu.filter(|cpu| !cpu.is_zero()).map(|cpu| (m, cpu)))
        .map(|(m, cpu)| cpu.as_secs_f64() * 1e6 / m.signatures as f64)
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
    if let Some(latency) = latency {
        let range = |values: &[Duration]| {
            let min = values.iter().min().copied().unwrap_or_default();
            let max = values.iter().max().copied().unwrap_or_default();
            format!("{} .. {}", ms(min), ms(max))
        };
        row(
            &format!(
                "latency K-th approval -> first S line, median of {} x {}",
                latency.first_signed.len(),
                thousands(*latency_targets as f64)
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
        mib(*rkmd_hwm_end),
    );
    row(
        "load average (1 min) at the start / at the end",
        format!("{load_start} / {}", load_average()),
    );
    let _ = writeln!(out, "\ncommand: {command}");
    print!("{out}");
}
