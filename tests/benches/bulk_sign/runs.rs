//! One bulk run (K-th approval to the artefact complete on the client side)
//! and the latency runs (K-th approval to the first signed command).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use rkm_proto::v1::RecoveryState;
use rkm_proto::v1::recovery_service_client::RecoveryServiceClient;
use tonic::transport::Channel;

use crate::ceremony::{
    Setup, approve_all_but_last, artefact_path, get_recovery, manifest, open_ceremony,
    prepare_approval, send_approval, watch_first_signed,
};
use crate::proc::{cpu_by_kind, cpu_snapshot, vm_hwm_kib};
use crate::rkm_run::{Measured, path_str, rkm_measured};
use crate::{STEP_TIMEOUT, THRESHOLD};

pub(crate) struct Bulk {
    pub(crate) targets: u64,
    pub(crate) open: Measured,
    pub(crate) approvals: Vec<Measured>,
    pub(crate) collect: Measured,
    /// `rkm artefact verify`, on the first run only.
    pub(crate) verify: Option<Measured>,
    /// K-th approval sent → artefact complete on the client side.
    pub(crate) elapsed: Duration,
    /// K-th approval sent → first "S " line in rkmd's file.
    pub(crate) first_signed: Option<Duration>,
    pub(crate) rkmd_hwm_kib: Option<u64>,
    pub(crate) rkmd_cpu: Vec<(String, f64)>,
    pub(crate) artefact_bytes: u64,
}

pub(crate) struct Latency {
    pub(crate) first_signed: Vec<Duration>,
    pub(crate) completed: Vec<Duration>,
}

pub(crate) fn run_bulk(
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

pub(crate) fn verify_bulk(setup: &Setup, out: &Path, targets: u64) -> anyhow::Result<Measured> {
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

pub(crate) fn run_latency(
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
