//! The quorum step of a recovery ceremony: release the held shares from the
//! HSM, check each against its commitment, combine, check the KEK check value,
//! load the KEK and unwrap the recovery key in the HSM, and sign one command
//! per target — in parallel across the HSM workers, in manifest order, with
//! back-pressure into the artefact file, so memory stays flat for any number
//! of targets. Then destroy the key, the KEK and the held shares, and audit.

use rkm_proto::audit_entry::action;
use std::io::{BufWriter, Write as _};
use std::path::PathBuf;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesOrdered;
use rkm_proto::approval::Approval;
use rkm_proto::artefact::{
    ArtefactHeader, ArtefactWriter, AuditProof, ISSUE_ACTION_RECOVERY, issue_entry_details,
};
use rkm_proto::command::command_digest;
use rkm_proto::key_record::KeyRecord;
use rkm_proto::recovery_request::{CanonicalRequest, CeremonyKind};
use rkm_proto::secret::Share;
use rkm_proto::shamir::{self, CommittedShare};
use tokio::sync::mpsc;

use super::recovery::{RecoveryState, held_share_aad};
use super::state::{CeremonyKind as StoredKind, transition};
use super::{CeremonyError, Services};
use crate::audit::Event;
use crate::hsm::SigningKey;
use crate::secrets::KekBytes;
use crate::store;

/// Targets read from the store per page while signing.
const PAGE: usize = 4096;
/// Pages read ahead of the signing.
const PAGES_AHEAD: usize = 2;
/// Commands signed per HSM job: enough that handing a job to a worker and
/// waking the caller (~13 µs) is noise next to the signatures (~40 µs each),
/// few enough that the first command is signed within milliseconds.
const SIGN_BATCH: usize = 64;
/// Batches in flight per HSM worker: one signing, the next ones queued, so a
/// worker never waits for the async side between batches.
const BATCHES_IN_FLIGHT_PER_WORKER: usize = 4;
/// How often (in signed commands) progress is written to the store.
const PROGRESS_EVERY: u64 = 20_000;

/// (sequence, device id) of consecutive targets, in manifest order.
type TargetPage = Vec<(i64, String)>;
/// Signed commands on their way to the artefact writer, in sequence order.
type SignedBatch = Vec<(u64, String, [u8; 64])>;
/// A batch of (sequence, device id) with the HSM's signatures for it.
type BatchResult = (
    Vec<(u64, String)>,
    Result<Vec<[u8; 64]>, crate::hsm::HsmError>,
);

fn to_array<const N: usize>(bytes: &[u8], what: &str) -> Result<[u8; N], CeremonyError> {
    bytes
        .try_into()
        .map_err(|_| CeremonyError::Internal(format!("stored {what} is not {N} bytes")))
}

impl Services {
    /// Where a ceremony's artefact bundle is written.
    pub fn artefact_path(&self, ceremony_id: &str) -> Result<PathBuf, CeremonyError> {
        Ok(self
            .recovery_runtime_ref()?
            .artefact_dir
            .join(format!("{ceremony_id}.rkma")))
    }

    fn recovery_runtime_ref(&self) -> Result<&super::recovery::RecoveryRuntime, CeremonyError> {
        self.recovery.as_deref().ok_or_else(|| {
            CeremonyError::Internal("recovery ceremonies are not available".to_owned())
        })
    }

    /// Runs the quorum step; on failure the ceremony is marked failed and the
    /// held shares destroyed.
    pub async fn run_quorum(self, ceremony_id: String) {
        if let Err(error) = self.sign_recovery(&ceremony_id).await {
            tracing::error!(%error, ceremony = %ceremony_id, "recovery signing failed");
            // A half-written bundle must not be taken for whole, and on a
            // full disk its space is what the failure's record needs.
            if let Ok(path) = self.artefact_path(&ceremony_id)
                && let Err(remove_error) = std::fs::remove_file(&path)
                && remove_error.kind() != std::io::ErrorKind::NotFound
            {
                tracing::error!(%remove_error, path = %path.display(), "could not remove the failed artefact");
            }
            let reason = match &error {
                // The key was unwrapped into the HSM that went away; the held
                // shares go as after any failure, and the step is to reopen.
                CeremonyError::Hsm(hsm) if hsm.is_unavailable() => format!(
                    "the HSM became unavailable while signing ({}). The ceremony failed and its held shares were destroyed; once `rkm status` shows the HSM serving, open the recovery again",
                    match hsm {
                        crate::hsm::HsmError::Unavailable { cause } => cause.clone(),
                        other => other.to_string(),
                    }
                ),
                other => other.to_string(),
            };
            let event = Event::ok("rkmd", action::RECOVERY_FAIL)
                .subject(ceremony_id.clone())
                .with_outcome(rkm_proto::audit_entry::Outcome::Failed)
                .detail("reason", reason.clone())
                .detail("held_shares", "destroyed");
            let recorded = self
                .close_ceremony(
                    event,
                    &ceremony_id,
                    RecoveryState::Signing,
                    RecoveryState::Failed,
                    move |tx, id| {
                        store::recoveries::set_failure(tx, id, &reason)?;
                        store::approvals::destroy_held_shares(tx, id)
                    },
                )
                .await;
            if let Err(audit_error) = recorded {
                tracing::error!(%audit_error, "could not record the failed recovery");
            }
        }
        self.wake_artefact_collectors(&ceremony_id);
        if let Err(error) = self.audit.checkpoint().await {
            tracing::error!(%error, "checkpoint after recovery signing failed");
        }
    }

    /// Restarts the signing of every ceremony that was signing when rkmd
    /// stopped: its shares are still held, so it starts again from the top.
    /// Call before serving.
    pub async fn resume_signing(&self) -> Result<(), CeremonyError> {
        // Targets staged by an open request whose client went away before
        // the ceremony was recorded belong to no ceremony: drop them.
        let orphans = self
            .store
            .transact(store::recoveries::delete_orphan_targets)
            .await?;
        if orphans > 0 {
            tracing::warn!(
                orphans,
                "removed the targets of recovery requests that were never opened"
            );
        }
        let signing = self
            .store
            .read(|tx| {
                store::ceremonies::ids_in(
                    tx,
                    StoredKind::Recovery.as_str(),
                    RecoveryState::Signing.as_str(),
                )
            })
            .await?;
        for id in signing {
            tracing::warn!(ceremony = %id, "resuming a recovery that was signing when rkmd stopped");
            // The artefact is signed anew under a new header. Remove the old
            // one now, before rkmd serves, so that no collector resumes
            // against bytes that are about to be replaced.
            match std::fs::remove_file(self.artefact_path(&id)?) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(CeremonyError::Internal(format!(
                        "cannot remove the interrupted artefact of {id}: {error}"
                    )));
                }
            }
            self.audit
                .record(Event::ok("rkmd", action::RECOVERY_RESUME).subject(id.clone()))
                .await?;
            tokio::spawn(self.clone().run_quorum(id));
        }
        Ok(())
    }

    async fn sign_recovery(&self, ceremony_id: &str) -> Result<(), CeremonyError> {
        let id = ceremony_id.to_owned();
        let held = self
            .store
            .read(move |tx| store::approvals::held_shares(tx, &id))
            .await?;
        let summary = self.load_recovery(ceremony_id).await?;
        let summary = summary
            .ok_or_else(|| CeremonyError::not_found("recovery ceremony", ceremony_id, ""))?;
        if summary.state != RecoveryState::Signing {
            return Err(CeremonyError::FailedPrecondition(format!(
                "ceremony {ceremony_id} is {}, not signing",
                summary.state.as_str()
            )));
        }
        let record = self.verified_record(&summary.key_id).await?;
        let approvers: Vec<String> = summary
            .approvals
            .iter()
            .map(|a| a.custodian.clone())
            .collect();
        self.audit
            .record(
                Event::ok("rkmd", action::RECOVERY_QUORUM)
                    .subject(ceremony_id)
                    .detail("approvers", approvers.join(","))
                    .detail("threshold", record.threshold.to_string()),
            )
            .await?;

        let released = self.release_held_shares(ceremony_id, &record, held).await?;
        let key = self.unwrap_recovery_key(&record, released).await?;
        let drill = CanonicalRequest::decode(&summary.canonical_request)
            .map_err(|e| CeremonyError::Internal(format!("stored request: {e}")))?
            .ceremony_kind
            == CeremonyKind::Drill;
        let signed = if drill {
            self.sign_drill(&summary, &record, key).await
        } else {
            self.sign_targets(&summary, &record.public_key_spki, key)
                .await
        };
        // The recovery key is destroyed whatever happened while signing.
        let destroyed = self.hsm.destroy(key).await;
        let (signed_count, artefact_size) = signed?;
        destroyed?;

        self.record_completion(ceremony_id, signed_count, artefact_size)
            .await?;
        self.recovery_runtime_ref()?.forget(ceremony_id);
        Ok(())
    }

    /// Releases K held shares from the HSM, in approval order, each with the
    /// salt and the commitment the key record holds for its custodian.
    async fn release_held_shares(
        &self,
        ceremony_id: &str,
        record: &KeyRecord,
        held: Vec<store::approvals::HeldShare>,
    ) -> Result<Vec<(Share, [u8; 32], [u8; 32])>, CeremonyError> {
        let k = usize::from(record.threshold);
        let runtime = self.recovery_runtime_ref()?;
        let mut released = Vec::with_capacity(k);
        for store::approvals::HeldShare {
            custodian,
            held_share,
        } in held.into_iter().take(k)
        {
            let share = held_share.ok_or_else(|| {
                CeremonyError::FailedPrecondition(format!(
                    "the held share of {custodian:?} was destroyed"
                ))
            })?;
            let payload = self
                .hsm
                .release(
                    runtime.holding_key,
                    share,
                    held_share_aad(ceremony_id, &custodian),
                )
                .await?;
            if payload.len() != 65 {
                return Err(CeremonyError::Internal(format!(
                    "held share of {custodian:?} has a bad length"
                )));
            }
            let entry = record.custodian(&custodian).ok_or_else(|| {
                CeremonyError::Internal(format!("{custodian:?} is not in the key record"))
            })?;
            let y: &[u8; 32] = payload[1..33].try_into().expect("checked length");
            let share =
                Share::new(payload[0], y).map_err(|e| CeremonyError::Internal(e.to_string()))?;
            let salt: [u8; 32] = payload[33..65].try_into().expect("checked length");
            released.push((share, salt, entry.commitment));
        }
        Ok(released)
    }

    /// Combines the released shares, each checked against its commitment
    /// before anything is combined (naming the custodian whose share fails),
    /// checks the KEK check value, and unwraps the recovery key in the HSM;
    /// the KEK lives in the HSM only for the unwrap.
    async fn unwrap_recovery_key(
        &self,
        record: &KeyRecord,
        released: Vec<(Share, [u8; 32], [u8; 32])>,
    ) -> Result<SigningKey, CeremonyError> {
        let committed: Vec<CommittedShare<'_>> = released
            .iter()
            .map(|(share, salt, commitment)| CommittedShare {
                share,
                salt,
                commitment,
            })
            .collect();
        let kek = shamir::combine_verified(
            &record.key_id,
            &committed,
            record.threshold,
            &record.kek_check_value,
        )
        .map_err(|e| {
            CeremonyError::FailedPrecondition(format!(
                "the held shares do not reconstitute the KEK: {e}"
            ))
        })?;
        drop(committed);
        drop(released);
        let kek_object = self
            .hsm
            .import_kek(KekBytes::from_bytes(kek.expose_secret()))
            .await?;
        drop(kek);
        let unwrapped = self
            .hsm
            .unwrap(kek_object, record.wrapped_key.clone())
            .await;
        self.hsm.destroy(kek_object).await?;
        Ok(unwrapped?)
    }

    /// Completes the ceremony with its outcome, destroying the held shares,
    /// in one audited transaction.
    async fn record_completion(
        &self,
        ceremony_id: &str,
        signed_count: u64,
        artefact_size: u64,
    ) -> Result<(), CeremonyError> {
        let event = Event::ok("rkmd", action::RECOVERY_COMPLETE)
            .subject(ceremony_id)
            .detail("signed_commands", signed_count.to_string())
            .detail("artefact_bytes", artefact_size.to_string())
            .detail("held_shares", "destroyed")
            .detail("hsm_objects", "destroyed");
        let id = ceremony_id.to_owned();
        self.audit
            .record_with(event, move |tx| {
                transition(tx, &id, RecoveryState::Signing, RecoveryState::Completed)?;
                store::recoveries::set_signed(tx, &id, signed_count, artefact_size)?;
                store::approvals::destroy_held_shares(tx, &id)?;
                Ok::<_, CeremonyError>(())
            })
            .await?;
        Ok(())
    }

    /// Records the issuing audit entry (`action`, with the details every
    /// issue carries and `details`), checkpoints, and builds the artefact
    /// header that proves the entry into the checkpoint.
    pub(super) async fn issue_header(
        &self,
        summary: &super::recovery::RecoverySummary,
        public_key_spki: &[u8],
        action: &'static str,
        details: Vec<(&'static str, String)>,
    ) -> Result<ArtefactHeader, CeremonyError> {
        let digest: [u8; 32] = to_array(&summary.request_digest, "request digest")?;
        let approvals = summary
            .approvals
            .iter()
            .map(|a| {
                Ok(Approval {
                    custodian: a.custodian.clone(),
                    nonce: to_array(&a.nonce, "nonce")?,
                    commitment: to_array(&a.commitment, "commitment")?,
                    signature: to_array(&a.signature, "approval signature")?,
                    approved_at: a.approved_at.clone(),
                })
            })
            .collect::<Result<Vec<_>, CeremonyError>>()?;
        let mut issue = Event::ok("rkmd", action)
            .subject(summary.ceremony_id.clone())
            .detail("key_id", summary.key_id.clone())
            .detail(
                "approvers",
                summary
                    .approvals
                    .iter()
                    .map(|a| a.custodian.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            );
        issue
            .details
            .extend(issue_entry_details(&digest, &approvals));
        for (name, value) in details {
            issue = issue.detail(name, value);
        }
        let index = self.audit.record(issue).await?;
        let checkpoint = self.audit.checkpoint().await?;
        let proof = self.audit.inclusion_proof(index, checkpoint.size).await?;
        let header = ArtefactHeader {
            ceremony_id: summary.ceremony_id.clone(),
            key_id: summary.key_id.clone(),
            public_key_spki: public_key_spki.to_vec(),
            canonical_request: summary.canonical_request.clone(),
            request_digest: digest,
            approvals,
            audit: AuditProof {
                signed_checkpoint: checkpoint.signed_note,
                entry_index: proof.index,
                entry: proof.entry,
                inclusion_proof: proof.hashes,
            },
            target_count: summary.target_count,
        };
        Ok(header)
    }

    /// Records the issue, then signs every target into the artefact file.
    /// Returns the number of signed commands and the file's size.
    async fn sign_targets(
        &self,
        summary: &super::recovery::RecoverySummary,
        public_key_spki: &[u8],
        key: SigningKey,
    ) -> Result<(u64, u64), CeremonyError> {
        let header = self
            .issue_header(
                summary,
                public_key_spki,
                ISSUE_ACTION_RECOVERY,
                vec![("targets", summary.target_count.to_string())],
            )
            .await?;
        let digest = header.request_digest;

        // A blocking writer thread takes signed lines in order; the bounded
        // channel is the back-pressure between HSM signing and the disk.
        let path = self.artefact_path(&summary.ceremony_id)?;
        let written_path = path.clone();
        let in_flight = self.hsm.worker_count() * BATCHES_IN_FLIGHT_PER_WORKER;
        let (lines, mut queue) = mpsc::channel::<SignedBatch>(in_flight);
        let flushed = self.artefact_flushed_waker(&summary.ceremony_id);
        let writer = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let file = std::fs::File::create(&path)?;
            let mut writer = ArtefactWriter::new(BufWriter::with_capacity(1 << 20, file), &header)?;
            while let Some(batch) = queue.blocking_recv() {
                for (sequence, device, signature) in batch {
                    writer.signed(sequence, &device, &signature)?;
                }
                // Caught up with the HSM: let collectors see what is signed
                // now rather than when the buffer fills.
                if queue.is_empty() {
                    writer.flush()?;
                    flushed();
                }
            }
            let mut buffered = writer.finish()?;
            buffered.flush()?;
            let file = buffered.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            Ok(file.metadata()?.len())
        });

        let (mut pages, reader) = self.read_targets_ahead(summary.ceremony_id.clone());
        let mut signed: u64 = 0;
        let mut pending = FuturesOrdered::new();
        let result: Result<(), CeremonyError> = async {
            while let Some(page) = pages.recv().await {
                let mut page = page.into_iter().peekable();
                while page.peek().is_some() {
                    let batch: Vec<(u64, String)> = page
                        .by_ref()
                        .take(SIGN_BATCH)
                        .map(|(sequence, device)| {
                            (u64::try_from(sequence).unwrap_or_default(), device)
                        })
                        .collect();
                    let messages = batch
                        .iter()
                        .map(|(sequence, device)| command_digest(&digest, *sequence, device))
                        .collect();
                    let hsm = self.hsm.clone();
                    pending.push_back(async move {
                        let signatures = hsm.sign_digests(key, messages).await;
                        (batch, signatures)
                    });
                    while pending.len() >= in_flight {
                        self.write_next(&mut pending, &lines, &mut signed, &summary.ceremony_id)
                            .await?;
                    }
                }
            }
            while !pending.is_empty() {
                self.write_next(&mut pending, &lines, &mut signed, &summary.ceremony_id)
                    .await?;
            }
            Ok(())
        }
        .await;
        drop(pages);
        drop(lines);
        let written = writer
            .await
            .map_err(|_| CeremonyError::Internal("the artefact writer failed".to_owned()))?;
        let read = reader
            .await
            .map_err(|_| CeremonyError::Internal("the target reader failed".to_owned()))?;
        // A writer that failed on its own (a full disk) comes first: the
        // signing loop only sees that it stopped. A writer that stopped short
        // because signing stopped reports a count; the signer's error says why.
        let size = match (written, result) {
            (Err(error), Err(signing)) if error.raw_os_error().is_none() => {
                return Err(signing);
            }
            (Err(error), _) => {
                return Err(self.artefact_write_failed(
                    &written_path,
                    summary.target_count,
                    &error,
                ));
            }
            (Ok(_), Err(signing)) => return Err(signing),
            (Ok(size), Ok(())) => size,
        };
        read?;
        if signed != summary.target_count {
            return Err(CeremonyError::Internal(format!(
                "signed {signed} commands for {} targets",
                summary.target_count
            )));
        }
        Ok((signed, size))
    }

    /// Why writing the artefact at `path` failed, in words that name the
    /// cause (a full disk with its numbers) and the way forward.
    fn artefact_write_failed(
        &self,
        path: &std::path::Path,
        commands: u64,
        error: &std::io::Error,
    ) -> CeremonyError {
        let full = matches!(
            error.raw_os_error(),
            Some(code) if code == rustix::io::Errno::NOSPC.raw_os_error()
                || code == rustix::io::Errno::DQUOT.raw_os_error()
        );
        if full {
            let free = self.store.space().free().unwrap_or(0);
            let written = std::fs::metadata(path).map_or(0, |m| m.len());
            // Device ids average well under 32 bytes in any real manifest.
            let needed = super::recovery::artefact_size_bound(commands, commands * 32, 0);
            return CeremonyError::Internal(format!(
                "writing the artefact {} failed: the disk is full ({error}) after {} KiB of the about {} KiB that {commands} commands need, {} KiB free. The ceremony failed and its held shares were destroyed; free space in the state directory, then open the recovery again",
                path.display(),
                written / 1024,
                needed / 1024,
                free / 1024
            ));
        }
        CeremonyError::Internal(format!(
            "writing the artefact {} failed: {error}",
            path.display()
        ))
    }

    /// Reads the ceremony's targets in manifest order, a page at a time,
    /// ahead of the signing so the HSM never waits for the store.
    fn read_targets_ahead(
        &self,
        ceremony_id: String,
    ) -> (
        mpsc::Receiver<TargetPage>,
        tokio::task::JoinHandle<Result<(), CeremonyError>>,
    ) {
        let (pages, receiver) = mpsc::channel(PAGES_AHEAD);
        let targets = self.store.clone();
        let reader = tokio::spawn(async move {
            let mut from: i64 = 0;
            loop {
                let id = ceremony_id.clone();
                let page: TargetPage = targets
                    .read(move |tx| store::recoveries::targets_page(tx, &id, from, PAGE))
                    .await?;
                let Some(&(last, _)) = page.last() else {
                    return Ok(());
                };
                from = last + 1;
                // The signing stopped early: it reports why.
                if pages.send(page).await.is_err() {
                    return Ok(());
                }
            }
        });
        (receiver, reader)
    }

    async fn write_next<F>(
        &self,
        pending: &mut FuturesOrdered<F>,
        lines: &mpsc::Sender<SignedBatch>,
        signed: &mut u64,
        ceremony_id: &str,
    ) -> Result<(), CeremonyError>
    where
        F: std::future::Future<Output = BatchResult>,
    {
        let Some((batch, signatures)) = pending.next().await else {
            return Ok(());
        };
        let signatures = signatures?;
        if signatures.len() != batch.len() {
            return Err(CeremonyError::Internal(format!(
                "the HSM returned {} signatures for {} commands",
                signatures.len(),
                batch.len()
            )));
        }
        let before = *signed;
        *signed += batch.len() as u64;
        let batch: SignedBatch = batch
            .into_iter()
            .zip(signatures)
            .map(|((sequence, device), signature)| (sequence, device, signature))
            .collect();
        lines
            .send(batch)
            .await
            .map_err(|_| CeremonyError::Internal("the artefact writer stopped".to_owned()))?;
        if *signed / PROGRESS_EVERY != before / PROGRESS_EVERY {
            let (id, count) = (ceremony_id.to_owned(), *signed);
            self.store
                .transact(move |tx| store::recoveries::set_signed_count(tx, &id, count))
                .await?;
        }
        Ok(())
    }
}
