//! How long a reader waits while rkmd signs: `rkm status`'s calls
//! (GetStatus, then ListKeys), one at a time over the socket, while two
//! recoveries of `--targets` devices sign at once, against the same calls on
//! the idle daemon, in the same run. Also the `rkm status` binary itself,
//! process start included.
//!
//! ```sh
//! cargo build --release --bins
//! RKM_BIN_DIR=target/release cargo bench -p rkm-tests --bench reader_latency -- --targets 20000 --samples 1000
//! ```
//!
//! A sample counts as "under load" only when both ceremonies were signing
//! before and after the batch of ten calls it belongs to; rounds of two
//! ceremonies repeat until `--samples` such samples are in. No test fails on
//! time: the numbers go in the README.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use rkm_client::connect::Target;
use rkm_proto::v1::key_service_client::KeyServiceClient;
use rkm_proto::v1::recovery_service_client::RecoveryServiceClient;
use rkm_proto::v1::system_service_client::SystemServiceClient;
use rkm_proto::v1::{GetRecoveryRequest, GetStatusRequest, ListKeysRequest, RecoveryState};
use rkm_tests::bench_args::BenchArgs;
use rkm_tests::custodians::{
    assert_ok_json, custodians_with_fast_identities, enrol_and_create_key, fetch_all,
    open_manifest_recovery,
};
use rkm_tests::{Custodian, Daemon};
use tonic::transport::Channel;

const LABEL: &str = "fleet";
const BATCH: usize = 10;

struct Options {
    targets: usize,
    samples: usize,
    cli_samples: usize,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        targets: 20_000,
        samples: 1_000,
        cli_samples: 50,
    };
    let mut args = BenchArgs::from_env();
    while let Some(name) = args.next_name() {
        match name.as_str() {
            "--targets" => options.targets = args.value(&name)?,
            "--samples" => options.samples = args.value(&name)?,
            "--cli-samples" => options.cli_samples = args.value(&name)?,
            _ => {}
        }
    }
    Ok(options)
}

/// One `rkm status`, as its RPCs: the time to both answers.
async fn status_once(channel: &Channel) -> anyhow::Result<Duration> {
    let started = Instant::now();
    SystemServiceClient::new(channel.clone())
        .get_status(GetStatusRequest {})
        .await?;
    KeyServiceClient::new(channel.clone())
        .list_keys(ListKeysRequest {})
        .await?;
    Ok(started.elapsed())
}

async fn signing(channel: &Channel, ids: &[String]) -> anyhow::Result<bool> {
    for id in ids {
        let summary = RecoveryServiceClient::new(channel.clone())
            .get_recovery(GetRecoveryRequest {
                ceremony_id: id.clone(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .recovery
            .context("no recovery in the answer")?;
        if summary.state != RecoveryState::Signing as i32 {
            return Ok(false);
        }
    }
    Ok(true)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn summary(what: &str, mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let (p50, p99) = (percentile(&samples, 0.50), percentile(&samples, 0.99));
    println!(
        "{what:<40} n={:<5} p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms",
        samples.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    (p50, p99)
}

fn cli_status(daemon: &Daemon) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let output = daemon.rkm(&["status", "--output", "json"])?;
    let elapsed = started.elapsed();
    ensure!(output.status.success(), "rkm status failed: {output:?}");
    Ok(elapsed)
}

/// Opens two recoveries and gives each its first approval; returns their ids.
fn two_open_recoveries(
    daemon: &Daemon,
    dir: &std::path::Path,
    custodians: &[Custodian],
    round: usize,
    targets: usize,
) -> Vec<String> {
    (0..2)
        .map(|n| {
            let folder = dir.join(format!("round-{round}-{n}"));
            std::fs::create_dir_all(&folder).unwrap();
            let id = open_manifest_recovery(daemon, &folder, LABEL, targets);
            assert_ok_json(&custodians[0].approve(daemon, &id), "first approval");
            id
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let options = options()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let daemon = Daemon::start()?;
    let dir = tempfile::tempdir()?;
    let custodians = custodians_with_fast_identities(dir.path(), &["alice", "bob"]);
    enrol_and_create_key(&daemon, &custodians, LABEL, 2);
    fetch_all(&daemon, &custodians, LABEL, &[]);
    let channel = runtime.block_on(Target::Socket(daemon.socket()).connect())?;

    let idle = runtime.block_on(async {
        let mut samples = Vec::with_capacity(options.samples);
        for _ in 0..options.samples {
            samples.push(status_once(&channel).await?);
        }
        anyhow::Ok(samples)
    })?;
    let idle_cli = (0..options.cli_samples)
        .map(|_| cli_status(&daemon))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let mut loaded = Vec::with_capacity(options.samples);
    let mut loaded_cli = Vec::new();
    let mut round = 0;
    while loaded.len() < options.samples || loaded_cli.len() < options.cli_samples {
        let ids = two_open_recoveries(&daemon, dir.path(), &custodians, round, options.targets);
        // The K-th approvals, back to back: both ceremonies then sign at once.
        for id in &ids {
            assert_ok_json(&custodians[1].approve(&daemon, id), "second approval");
        }
        runtime.block_on(async {
            while signing(&channel, &ids).await? {
                if loaded.len() < options.samples {
                    let mut batch = Vec::with_capacity(BATCH);
                    for _ in 0..BATCH {
                        batch.push(status_once(&channel).await?);
                    }
                    if signing(&channel, &ids).await? {
                        loaded.extend(batch);
                    }
                } else if loaded_cli.len() < options.cli_samples {
                    let sample = tokio::task::block_in_place(|| cli_status(&daemon))?;
                    if signing(&channel, &ids).await? {
                        loaded_cli.push(sample);
                    }
                } else {
                    break;
                }
            }
            anyhow::Ok(())
        })?;
        round += 1;
        ensure!(
            round < 200,
            "200 rounds did not give enough samples under load"
        );
    }

    println!(
        "rkm status latency, one call at a time, 2 recoveries of {} targets signing ({round} rounds)",
        options.targets
    );
    let (idle_p50, idle_p99) = summary("idle: GetStatus + ListKeys", idle);
    let (p50, p99) = summary("while signing: GetStatus + ListKeys", loaded);
    summary("idle: rkm status (process)", idle_cli);
    summary("while signing: rkm status (process)", loaded_cli);
    println!(
        "while signing vs idle: p50 {:.1}x, p99 {:.1}x",
        p50.as_secs_f64() / idle_p50.as_secs_f64(),
        p99.as_secs_f64() / idle_p99.as_secs_f64()
    );
    Ok(())
}
