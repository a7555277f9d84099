//! Append throughput of rkmd's audit log, every entry durable (SQLite WAL,
//! `synchronous=FULL`: an fsync per commit), with and without group commit,
//! measured in the same run on the same machine.
//!
//! `cargo bench -p rkm-daemon --bench audit_append [-- --entries N] [-- --writers W]`
//!
//! The audit log needs the HSM's audit key, and SoftHSM2 reads `SOFTHSM2_CONF`
//! only at `C_Initialize`, so the binary makes a fresh token and re-executes
//! itself with the variable set. Checkpoints (an Ed25519 signature in the HSM
//! every `audit.checkpoint_interval_ms`) are not part of the append path and
//! are not measured here.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use anyhow::Context as _;
use rkm_daemon::audit::{AuditConfig, AuditLog, Event};
use rkm_daemon::hsm::{Hsm, HsmConfig};
use rkm_daemon::secrets::UserPin;
use rkm_daemon::store::Store;
use rkm_tests::SoftHsmToken;

const CHILD_ENV: &str = "RKM_BENCH_AUDIT_CHILD";

fn option(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|arg| arg == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    if std::env::var_os(CHILD_ENV).is_none() {
        let token = SoftHsmToken::create("rkm-bench")?;
        let status = std::process::Command::new(std::env::current_exe()?)
            .args(std::env::args().skip(1))
            .env("SOFTHSM2_CONF", token.config_file())
            .env(CHILD_ENV, "1")
            .env("RKM_BENCH_MODULE", token.module())
            .env("RKM_BENCH_PIN", token.user_pin())
            .status()
            .context("re-running the bench against its token")?;
        anyhow::ensure!(status.success(), "the measurement failed");
        return Ok(());
    }
    let entries = option("--entries", 5_000);
    let writers = option("--writers", 64);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(measure(entries, writers))
}

async fn measure(entries: usize, writers: usize) -> anyhow::Result<()> {
    let hsm = Hsm::open(HsmConfig {
        module: std::env::var("RKM_BENCH_MODULE")?.into(),
        token_label: "rkm-bench".to_owned(),
        pin: UserPin::from_env_value(std::env::var("RKM_BENCH_PIN")?),
        workers: 1,
    })?;
    let (audit_key, _) = hsm.get_or_create_audit_key().await?;
    println!(
        "Audit log appends, each durable (WAL, synchronous=FULL), {entries} entries from {writers} concurrent writers"
    );
    let mut baseline = None;
    for (name, max_batch) in [
        ("one fsync per entry (max_batch 1)", 1),
        ("group commit (max_batch 256)", 256),
    ] {
        let state = tempfile::tempdir()?;
        let store = Store::open(state.path())?;
        let config = AuditConfig {
            origin: "rkm.bench/audit".to_owned(),
            checkpoint_interval: Duration::from_secs(3600),
            max_batch,
        };
        let (log, _) = AuditLog::open(store, hsm.clone(), audit_key, &config).await?;
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for writer in 0..writers {
            let log = log.clone();
            let share = entries / writers + usize::from(writer < entries % writers);
            tasks.spawn(async move {
                for n in 0..share {
                    log.record(Event::ok("bench", "audit.note").detail(
                        "message",
                        format!("writer {writer} entry {n}: operator note of a typical length"),
                    ))
                    .await?;
                }
                Ok::<_, rkm_daemon::audit::AuditError>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        let elapsed = started.elapsed();
        anyhow::ensure!(log.size() == entries as u64, "lost entries");
        let rate = entries as f64 / elapsed.as_secs_f64();
        let ratio = baseline.map_or(1.0, |base: f64| rate / base);
        baseline.get_or_insert(rate);
        println!("  {name:<36} {rate:>9.0} entries/s  {ratio:>6.1}x");
    }
    Ok(())
}
