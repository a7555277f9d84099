//! The key ceremony and its custodians, and a recovery driven to its K-th
//! approval: the first ones through `rkm recovery approve`, the K-th over gRPC
//! exactly as `rkm recovery approve` builds it, prepared in advance.

use std::io::{BufWriter, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
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
use rkm_tests::{Custodian, Daemon, DaemonBuilder};
use secrecy::SecretString;
use tonic::transport::Channel;

use crate::rkm_run::{Measured, json_of, ok, path_str, rkm_measured};
use crate::{LABEL, NAMES, THRESHOLD};

/// A serving rkmd with a 2-of-3 key whose custodians hold their shares.
pub(crate) struct Setup {
    pub(crate) daemon: Daemon,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) custodians: Vec<Custodian>,
    pub(crate) key_id: String,
    pub(crate) audit_key: String,
}

pub(crate) fn setup(workers: usize) -> anyhow::Result<Setup> {
    let mut daemon = DaemonBuilder::default().workers(workers).initialised()?;
    daemon.serve()?;
    let dir = tempfile::Builder::new()
        .prefix("rkm-bulk-sign-")
        .tempdir()?;
    let custodians = NAMES
        .iter()
        .map(|name| Custodian::with_fast_identity(dir.path(), name))
        .collect::<Vec<_>>();
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
pub(crate) fn request_file(dir: &Path, serial: &str) -> anyhow::Result<PathBuf> {
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
pub(crate) fn manifest(dir: &Path, name: &str, count: u64) -> anyhow::Result<PathBuf> {
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

pub(crate) async fn get_recovery(
    client: &mut RecoveryServiceClient<Channel>,
    id: &str,
) -> anyhow::Result<RecoverySummary> {
    client
        .get_recovery(GetRecoveryRequest {
            ceremony_id: id.to_owned(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .recovery
        .context("rkmd sent no ceremony")
}

/// Everything `rkm recovery approve` does before sending: the key record
/// checked with the audit key, the share opened and checked against it, a
/// fresh nonce, the share sealed to the ceremony's key, the signature.
pub(crate) async fn prepare_approval(
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
pub(crate) async fn send_approval(
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
pub(crate) fn open_ceremony(
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
pub(crate) fn approve_all_but_last(setup: &Setup, id: &str) -> anyhow::Result<Vec<Measured>> {
    setup.custodians[..THRESHOLD - 1]
        .iter()
        .map(|custodian| {
            let mut args = vec!["recovery", "approve", id];
            args.extend(custodian.held_files_args());
            args.extend(["--yes", "--output", "json"]);
            let approved = rkm_measured(&setup.daemon, &args)?;
            approved.json("recovery approve")?;
            Ok(approved)
        })
        .collect()
}

/// Watches rkmd's artefact file of a ceremony for its first signed command
/// ("S " line); returns when it appeared (or `None` if stopped first).
pub(crate) fn watch_first_signed(
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

pub(crate) fn artefact_path(setup: &Setup, id: &str) -> PathBuf {
    setup
        .daemon
        .state_dir()
        .join("artefacts")
        .join(format!("{id}.rkma"))
}
