//! Recovery ceremonies (DESIGN "Ceremonies" 2): an operator opens one with a
//! request and its targets; custodians review the request digest and approve
//! with their share sealed to the ceremony's ephemeral age key; each accepted
//! share is held encrypted under the HSM's holding key. The K-th approval
//! starts the signing (see `signing.rs`). Expiry and cancellation destroy the
//! held shares.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use rkm_proto::approval::approval_message;
use rkm_proto::commitment::commitment_matches;
use rkm_proto::envelope;
use rkm_proto::key_record::{KeyRecord, SignedKeyRecord};
use rkm_proto::messages::verify_custodian_signature;
use rkm_proto::recovery_request::{
    CanonicalRequest, CeremonyKind, ManifestSplitter, RecoveryRequest, TargetsHasher,
};
use rusqlite::{OptionalExtension as _, params};
use tokio_stream::{Stream, StreamExt as _};
use zeroize::Zeroizing;

use super::{CeremonyError, Services, custodians, now};
use crate::audit::Event;
use crate::hsm::HoldingKey;

/// How long an approval nonce stays valid.
const NONCE_LIFETIME: Duration = Duration::from_secs(600);
/// Longest approval window an operator may ask for.
const MAX_EXPIRY: Duration = Duration::from_secs(30 * 24 * 3600);
/// Targets written per store transaction while a manifest streams in.
const TARGET_BATCH: usize = 10_000;

/// Recovery state that lives beside the store: the holding key, where
/// artefacts go, and each open ceremony's ephemeral age key (memory only).
pub struct RecoveryRuntime {
    pub holding_key: HoldingKey,
    pub artefact_dir: PathBuf,
    pub artefact_wakeups: super::artefacts::ArtefactWakeups,
    ceremony_keys: Mutex<HashMap<String, age::x25519::Identity>>,
}

impl std::fmt::Debug for RecoveryRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecoveryRuntime")
            .field("artefact_dir", &self.artefact_dir)
            .finish_non_exhaustive()
    }
}

impl RecoveryRuntime {
    pub fn new(holding_key: HoldingKey, artefact_dir: PathBuf) -> Self {
        Self {
            holding_key,
            artefact_dir,
            artefact_wakeups: Default::default(),
            ceremony_keys: Mutex::new(HashMap::new()),
        }
    }

    /// The age recipient of the ceremony's key, made on first use (and anew
    /// after a restart: approvers then fetch the new recipient).
    pub fn recipient(&self, ceremony_id: &str) -> String {
        let mut keys = self.ceremony_keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.entry(ceremony_id.to_owned())
            .or_insert_with(age::x25519::Identity::generate)
            .to_public()
            .to_string()
    }

    fn open_sealed(
        &self,
        ceremony_id: &str,
        sealed: &[u8],
    ) -> Option<Result<envelope::EnvelopeContents, envelope::EnvelopeError>> {
        let keys = self.ceremony_keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.get(ceremony_id)
            .map(|identity| envelope::open(sealed, identity))
    }

    pub fn forget(&self, ceremony_id: &str) {
        self.ceremony_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(ceremony_id);
    }
}

/// What an operator asks to open.
#[derive(Debug, Clone)]
pub struct OpenRequest {
    pub key: String,
    pub request_toml: String,
    pub expires_in: Duration,
    pub emergency: bool,
    pub justification: String,
    /// A drill: the key signs a drill challenge, never a command.
    pub drill: bool,
}

/// A ceremony's state as operators and custodians see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryState {
    Open,
    Signing,
    Completed,
    Cancelled,
    Expired,
    Failed,
}

impl RecoveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            RecoveryState::Open => "open",
            RecoveryState::Signing => "signing",
            RecoveryState::Completed => "completed",
            RecoveryState::Cancelled => "cancelled",
            RecoveryState::Expired => "expired",
            RecoveryState::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "signing" => RecoveryState::Signing,
            "completed" => RecoveryState::Completed,
            "cancelled" => RecoveryState::Cancelled,
            "expired" => RecoveryState::Expired,
            "failed" => RecoveryState::Failed,
            _ => RecoveryState::Open,
        }
    }
}

/// One accepted approval (without its held share).
#[derive(Debug, Clone)]
pub struct ApprovalRow {
    pub custodian: String,
    pub nonce: Vec<u8>,
    pub commitment: Vec<u8>,
    pub signature: Vec<u8>,
    pub approved_at: String,
}

/// A recovery ceremony.
#[derive(Debug, Clone)]
pub struct RecoverySummary {
    pub ceremony_id: String,
    pub key_id: String,
    pub key_label: String,
    pub state: RecoveryState,
    pub canonical_request: Vec<u8>,
    pub request_digest: Vec<u8>,
    pub target_count: u64,
    pub threshold: u8,
    pub approvals: Vec<ApprovalRow>,
    pub opened_by: String,
    pub opened_at: String,
    pub expires_at: String,
    pub ceremony_recipient: String,
    pub signed_count: u64,
    pub artefact_size: u64,
    pub failure: String,
}

/// Reads a recovery ceremony.
pub fn load_recovery(
    connection: &rusqlite::Connection,
    ceremony_id: &str,
) -> rusqlite::Result<Option<RecoverySummary>> {
    let Some(mut summary) = connection
        .query_row(
            "SELECT r.ceremony_id, r.key_id, k.label, c.state, r.canonical_request, r.request_digest,
                    r.target_count, k.threshold, c.opened_by, c.opened_at, c.expires_at,
                    r.signed_count, r.artefact_size, r.failure
             FROM recoveries r JOIN ceremonies c ON c.id = r.ceremony_id JOIN keys k ON k.key_id = r.key_id
             WHERE r.ceremony_id = ?1",
            [ceremony_id],
            |row| {
                Ok(RecoverySummary {
                    ceremony_id: row.get(0)?,
                    key_id: row.get(1)?,
                    key_label: row.get(2)?,
                    state: RecoveryState::parse(&row.get::<_, String>(3)?),
                    canonical_request: row.get(4)?,
                    request_digest: row.get(5)?,
                    target_count: row.get::<_, i64>(6)?.try_into().unwrap_or_default(),
                    threshold: row.get(7)?,
                    opened_by: row.get(8)?,
                    opened_at: row.get(9)?,
                    expires_at: row.get(10)?,
                    signed_count: row.get::<_, i64>(11)?.try_into().unwrap_or_default(),
                    artefact_size: row.get::<_, i64>(12)?.try_into().unwrap_or_default(),
                    failure: row.get(13)?,
                    approvals: Vec::new(),
                    ceremony_recipient: String::new(),
                })
            },
        )
        .optional()?
    else {
        return Ok(None);
    };
    let mut statement = connection.prepare_cached(
        "SELECT custodian, nonce, commitment, signature, approved_at FROM approvals
         WHERE ceremony_id = ?1 ORDER BY approved_at, custodian",
    )?;
    summary.approvals = statement
        .query_map([ceremony_id], |row| {
            Ok(ApprovalRow {
                custodian: row.get(0)?,
                nonce: row.get(1)?,
                commitment: row.get(2)?,
                signature: row.get(3)?,
                approved_at: row.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(Some(summary))
}

/// The additional data that binds a held share to its ceremony and custodian.
pub fn held_share_aad(ceremony_id: &str, custodian: &str) -> Vec<u8> {
    let mut aad = b"rkm/v1/held-share\0".to_vec();
    for field in [ceremony_id, custodian] {
        aad.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
        aad.extend_from_slice(field.as_bytes());
    }
    aad
}

fn rfc3339_after(duration: Duration) -> String {
    humantime::format_rfc3339_seconds(SystemTime::now() + duration).to_string()
}

impl Services {
    fn recovery_runtime(&self) -> Result<&RecoveryRuntime, CeremonyError> {
        self.recovery.as_deref().ok_or_else(|| {
            CeremonyError::Internal("recovery ceremonies are not available".to_owned())
        })
    }

    /// The key record of `key_id`, verified with this daemon's audit key.
    pub(super) async fn verified_record(&self, key_id: &str) -> Result<KeyRecord, CeremonyError> {
        let summary = self.get_key(key_id.to_owned()).await?;
        let signed = SignedKeyRecord::from_file(&summary.signed_key_record)
            .map_err(|e| CeremonyError::Internal(format!("stored key record: {e}")))?;
        // An imported key's record was signed by the audit key of its old HSM.
        let imported = if summary.record_audit_key.is_empty() {
            None
        } else {
            Some(
                rkm_proto::checkpoint::VerifierKey::parse(&summary.record_audit_key).map_err(
                    |e| CeremonyError::Internal(format!("stored record audit key: {e}")),
                )?,
            )
        };
        signed
            .verify(imported.as_ref().unwrap_or(self.audit.verifier()))
            .map_err(|e| CeremonyError::Internal(format!("stored key record does not verify: {e}")))
    }

    /// Opens a recovery ceremony; `manifest` yields chunks of the target
    /// manifest. Nothing of a refused request remains.
    ///
    /// # Errors
    /// Unknown or inactive key, a malformed request or manifest, no targets,
    /// an emergency without justification, or a bad expiry.
    pub async fn open_recovery<S>(
        &self,
        actor: &str,
        request: OpenRequest,
        manifest: S,
    ) -> Result<RecoverySummary, CeremonyError>
    where
        S: Stream<Item = Result<Vec<u8>, CeremonyError>> + Unpin + Send,
    {
        let event = Event::ok(actor, "recovery.open")
            .detail("key", request.key.clone())
            .detail("emergency", request.emergency.to_string())
            .detail("drill", request.drill.to_string());
        let ceremony_id = self.new_id("rec").await?;
        let staged = self.stage_recovery(&ceremony_id, &request, manifest).await;
        let (key, canonical) = match staged {
            Ok(staged) => staged,
            Err(error) => {
                self.drop_targets(&ceremony_id).await;
                return self.refuse(event, error).await;
            }
        };
        let encoded = canonical.encode();
        let digest = canonical.digest();
        let expires_at = rfc3339_after(request.expires_in);
        let event = event
            .subject(ceremony_id.clone())
            .detail("key_id", key.key_id.clone())
            .detail("request_digest", hex::encode(digest))
            .detail("targets", canonical.targets.count.to_string())
            .detail("expires_at", expires_at.clone())
            .detail("justification", request.justification.clone());
        let (id, opener, key_id, count) = (
            ceremony_id.clone(),
            actor.to_owned(),
            key.key_id.clone(),
            i64::try_from(canonical.targets.count).unwrap_or(i64::MAX),
        );
        let expires = expires_at.clone();
        let opened = self
            .audit
            .record_with(event, move |connection| {
                connection
                    .execute(
                        "INSERT INTO ceremonies (id, kind, state, subject, opened_by, opened_at, expires_at)
                         VALUES (?1, 'recovery', 'open', ?2, ?3, ?4, ?5)",
                        params![id, key_id, opener, now(), expires],
                    )
                    .map_err(crate::store::StoreError::from)?;
                connection
                    .execute(
                        "INSERT INTO recoveries (ceremony_id, key_id, canonical_request, request_digest, target_count)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![id, key_id, encoded, digest.to_vec(), count],
                    )
                    .map_err(crate::store::StoreError::from)?;
                Ok(())
            })
            .await;
        if let Err(error) = opened {
            self.drop_targets(&ceremony_id).await;
            return Err(error.into());
        }
        let runtime = self.recovery_runtime()?;
        runtime.recipient(&ceremony_id);
        let urgency = match (request.emergency, request.drill) {
            (true, true) => "EMERGENCY drill",
            (true, false) => "EMERGENCY recovery",
            (false, true) => "Drill",
            (false, false) => "Recovery",
        };
        let asks = if request.drill {
            "a drill challenge (no command)".to_owned()
        } else {
            format!("{} command(s)", canonical.targets.count)
        };
        for custodian in &key.receipts {
            let text = format!(
                "{urgency} ceremony {ceremony_id} asks recovery key {:?} to sign {asks}; request digest {}. Review it with `rkm recovery show {ceremony_id}` and approve with `rkm recovery approve {ceremony_id}` before {expires_at}.",
                key.label,
                hex::encode(digest)
            );
            self.send_notice(actor, &ceremony_id, &custodian.custodian, text)
                .await?;
        }
        self.audit.checkpoint().await?;
        self.get_recovery(ceremony_id).await
    }

    /// Validates the request and streams the targets into the store.
    async fn stage_recovery<S>(
        &self,
        ceremony_id: &str,
        request: &OpenRequest,
        mut manifest: S,
    ) -> Result<(super::keygen::KeySummary, CanonicalRequest), CeremonyError>
    where
        S: Stream<Item = Result<Vec<u8>, CeremonyError>> + Unpin + Send,
    {
        let key = self.get_key(request.key.clone()).await?;
        if key.state != super::keygen::KeyState::Active {
            let missing: Vec<_> = key
                .receipts
                .iter()
                .filter(|r| r.received_at.is_none())
                .map(|r| r.custodian.as_str())
                .collect();
            return Err(CeremonyError::FailedPrecondition(format!(
                "key {:?} is not active yet: {} have not confirmed their shares",
                key.label,
                missing.join(", ")
            )));
        }
        if request.expires_in.is_zero() || request.expires_in > MAX_EXPIRY {
            return Err(CeremonyError::InvalidArgument(
                "the approval window must be between 1 second and 30 days".to_owned(),
            ));
        }
        if request.emergency && request.justification.trim().is_empty() {
            return Err(CeremonyError::InvalidArgument(
                "an emergency ceremony needs a justification (--justification)".to_owned(),
            ));
        }
        let parsed = RecoveryRequest::from_toml(&request.request_toml).map_err(|e| {
            CeremonyError::InvalidArgument(format!("the request file is not valid: {e}"))
        })?;
        let mut hasher = TargetsHasher::new();
        let mut batch: Vec<String> = Vec::with_capacity(TARGET_BATCH);
        let mut sequence: u64 = 0;
        for target in &parsed.targets {
            hasher
                .push(target)
                .map_err(|e| CeremonyError::InvalidArgument(format!("request targets: {e}")))?;
            batch.push(target.clone());
        }
        let mut splitter = ManifestSplitter::new();
        loop {
            if batch.len() >= TARGET_BATCH {
                sequence = self
                    .store_targets(ceremony_id, sequence, std::mem::take(&mut batch))
                    .await?;
            }
            let Some(chunk) = manifest.next().await else {
                break;
            };
            let mut lines = Vec::new();
            splitter
                .push(&chunk?, &mut lines)
                .map_err(|e| CeremonyError::InvalidArgument(format!("target manifest: {e}")))?;
            for line in lines {
                hasher
                    .push(&line)
                    .map_err(|e| CeremonyError::InvalidArgument(format!("target manifest: {e}")))?;
                batch.push(line);
            }
        }
        let mut lines = Vec::new();
        splitter
            .finish(&mut lines)
            .map_err(|e| CeremonyError::InvalidArgument(format!("target manifest: {e}")))?;
        for line in lines {
            hasher
                .push(&line)
                .map_err(|e| CeremonyError::InvalidArgument(format!("target manifest: {e}")))?;
            batch.push(line);
        }
        self.store_targets(ceremony_id, sequence, batch).await?;
        let targets = hasher.finish();
        if request.drill && targets.count != 0 {
            return Err(CeremonyError::InvalidArgument(format!(
                "a drill signs a drill challenge, never a command: it takes no targets ({} given)",
                targets.count
            )));
        }
        if !request.drill && targets.count == 0 {
            return Err(CeremonyError::InvalidArgument(
                "the request has no targets: list them in `targets` or give a manifest (--targets FILE)".to_owned(),
            ));
        }
        let kind = if request.drill {
            CeremonyKind::Drill
        } else {
            CeremonyKind::Recovery
        };
        let canonical = CanonicalRequest::from_request(
            kind,
            &key.key_id,
            &parsed,
            targets,
            request.emergency,
            &request.justification,
        )
        .map_err(|e| CeremonyError::InvalidArgument(format!("the request is not valid: {e}")))?;
        Ok((key, canonical))
    }

    async fn store_targets(
        &self,
        ceremony_id: &str,
        first: u64,
        targets: Vec<String>,
    ) -> Result<u64, CeremonyError> {
        let id = ceremony_id.to_owned();
        Ok(self
            .store
            .with(move |connection| {
                let transaction = connection.transaction()?;
                let mut sequence = first;
                {
                    let mut insert = transaction.prepare_cached(
                        "INSERT INTO recovery_targets (ceremony_id, seq, device_id) VALUES (?1, ?2, ?3)",
                    )?;
                    for target in targets {
                        insert.execute(params![id, i64::try_from(sequence).unwrap_or(i64::MAX), target])?;
                        sequence += 1;
                    }
                }
                transaction.commit()?;
                Ok(sequence)
            })
            .await?)
    }

    async fn drop_targets(&self, ceremony_id: &str) {
        let id = ceremony_id.to_owned();
        if let Err(error) = self
            .store
            .with(move |c| {
                Ok(c.execute("DELETE FROM recovery_targets WHERE ceremony_id = ?1", [id])?)
            })
            .await
        {
            tracing::error!(%error, "could not remove the targets of a refused recovery request");
        }
    }

    /// A recovery ceremony, expiring it first if its time is up.
    ///
    /// # Errors
    /// No such ceremony.
    pub async fn get_recovery(
        &self,
        ceremony_id: String,
    ) -> Result<RecoverySummary, CeremonyError> {
        self.expire_due().await;
        let lookup = ceremony_id.clone();
        let mut summary = self
            .store
            .with(move |c| Ok(load_recovery(c, &lookup)?))
            .await?
            .ok_or_else(|| {
                CeremonyError::not_found(
                    "recovery ceremony",
                    ceremony_id,
                    "; `rkm recovery list` shows them",
                )
            })?;
        if summary.state == RecoveryState::Open {
            summary.ceremony_recipient = self.recovery_runtime()?.recipient(&summary.ceremony_id);
        }
        Ok(summary)
    }

    /// Every recovery ceremony, newest first.
    ///
    /// # Errors
    /// The store fails.
    pub async fn list_recoveries(&self) -> Result<Vec<RecoverySummary>, CeremonyError> {
        self.expire_due().await;
        Ok(self
            .store
            .with(|connection| {
                let ids: Vec<String> = connection
                    .prepare("SELECT r.ceremony_id FROM recoveries r JOIN ceremonies c ON c.id = r.ceremony_id ORDER BY c.opened_at DESC")?
                    .query_map([], |row| row.get(0))?
                    .collect::<Result<_, _>>()?;
                let mut all = Vec::with_capacity(ids.len());
                for id in ids {
                    all.extend(load_recovery(connection, &id)?);
                }
                Ok(all)
            })
            .await?)
    }

    /// Closes an open ceremony as `state` (cancelled or expired), destroying
    /// the held shares in the same transaction as the audit entry.
    async fn close_open(
        &self,
        actor: &str,
        ceremony_id: &str,
        state: RecoveryState,
        reason: &str,
    ) -> Result<(), CeremonyError> {
        let action = if state == RecoveryState::Cancelled {
            "recovery.cancel"
        } else {
            "recovery.expire"
        };
        let event = Event::ok(actor, action)
            .subject(ceremony_id)
            .detail("reason", reason)
            .detail("held_shares", "destroyed");
        let id = ceremony_id.to_owned();
        self.audit
            .record_with(event, move |connection| {
                let changed = connection
                    .execute(
                        "UPDATE ceremonies SET state = ?2, closed_at = ?3 WHERE id = ?1 AND state = 'open'",
                        params![id, state.as_str(), now()],
                    )
                    .map_err(crate::store::StoreError::from)?;
                if changed == 0 {
                    return Err(crate::audit::AuditError::Refused(format!("ceremony {id} is no longer open")));
                }
                connection
                    .execute("UPDATE approvals SET held_share = NULL WHERE ceremony_id = ?1", [&id])
                    .map_err(crate::store::StoreError::from)?;
                connection
                    .execute("UPDATE approval_nonces SET used = 1 WHERE ceremony_id = ?1", [&id])
                    .map_err(crate::store::StoreError::from)?;
                Ok(())
            })
            .await?;
        if let Some(runtime) = self.recovery.as_deref() {
            runtime.forget(ceremony_id);
        }
        Ok(())
    }

    /// Expires every open ceremony whose time is up.
    pub async fn expire_due(&self) {
        let current = now();
        let due: Vec<String> = match self
            .store
            .with(move |connection| {
                Ok(connection
                    .prepare("SELECT id FROM ceremonies WHERE kind = 'recovery' AND state = 'open' AND expires_at <= ?1")?
                    .query_map([current], |row| row.get(0))?
                    .collect::<Result<_, _>>()?)
            })
            .await
        {
            Ok(due) => due,
            Err(error) => {
                tracing::error!(%error, "could not look for expired ceremonies");
                return;
            }
        };
        for id in due {
            if let Err(error) = self
                .close_open(
                    "rkmd",
                    &id,
                    RecoveryState::Expired,
                    "the approval window ended",
                )
                .await
            {
                tracing::warn!(%error, ceremony = %id, "could not expire a ceremony");
            }
        }
    }

    /// Cancels an open ceremony.
    ///
    /// # Errors
    /// Unknown ceremony, one no longer open, or no reason given.
    pub async fn cancel_recovery(
        &self,
        actor: &str,
        ceremony_id: String,
        reason: String,
    ) -> Result<RecoverySummary, CeremonyError> {
        let event = Event::ok(actor, "recovery.cancel").subject(ceremony_id.clone());
        if reason.trim().is_empty() {
            return self
                .refuse(
                    event,
                    CeremonyError::InvalidArgument(
                        "say why the ceremony is cancelled (--reason)".to_owned(),
                    ),
                )
                .await;
        }
        let summary = match self.get_recovery(ceremony_id.clone()).await {
            Ok(summary) => summary,
            Err(error) => return self.refuse(event, error).await,
        };
        if summary.state != RecoveryState::Open {
            let error = CeremonyError::FailedPrecondition(format!(
                "ceremony {ceremony_id} is {} and can no longer be cancelled",
                summary.state.as_str()
            ));
            return self.refuse(event, error).await;
        }
        self.close_open(actor, &ceremony_id, RecoveryState::Cancelled, &reason)
            .await?;
        self.audit.checkpoint().await?;
        self.get_recovery(ceremony_id).await
    }

    /// A fresh single-use nonce for one custodian's approval.
    ///
    /// # Errors
    /// Unknown ceremony, not open, or not a custodian of its key.
    pub async fn approval_nonce(
        &self,
        peer: &str,
        ceremony_id: String,
        custodian: String,
    ) -> Result<(Vec<u8>, String), CeremonyError> {
        match self
            .issue_nonce(ceremony_id.clone(), custodian.clone())
            .await
        {
            Ok(issued) => Ok(issued),
            // A refused nonce is a refused approval: audit it as one.
            Err(error) => {
                let event = Event::ok(peer, "recovery.approve")
                    .subject(ceremony_id)
                    .detail("custodian", custodian)
                    .detail("step", "nonce");
                self.refuse(event, error).await
            }
        }
    }

    async fn issue_nonce(
        &self,
        ceremony_id: String,
        custodian: String,
    ) -> Result<(Vec<u8>, String), CeremonyError> {
        self.approver(&ceremony_id, &custodian).await?;
        let nonce = self.hsm.random(32).await?.to_vec();
        let expires_at = rfc3339_after(NONCE_LIFETIME);
        let (stored, expires) = (nonce.clone(), expires_at.clone());
        self.store
            .with(move |connection| {
                connection.execute(
                    "INSERT INTO approval_nonces (nonce, ceremony_id, custodian, expires_at) VALUES (?1, ?2, ?3, ?4)",
                    params![stored, ceremony_id, custodian, expires],
                )?;
                Ok(())
            })
            .await?;
        Ok((nonce, expires_at))
    }

    /// Checks and records one custodian's approval, holding their share in
    /// the HSM; the K-th approval starts the signing.
    ///
    /// # Errors
    /// Each refusal says why, names the custodian, and is audited; nothing of
    /// a refused approval is kept and earlier approvals are untouched.
    pub async fn approve(
        &self,
        peer: &str,
        approval: ApprovalSubmission,
    ) -> Result<RecoverySummary, CeremonyError> {
        let event = Event::ok(peer, "recovery.approve")
            .subject(approval.ceremony_id.clone())
            .detail("custodian", approval.custodian.clone());
        match self.check_approval(&approval).await {
            Ok(held) => {
                // The approval's signature verified: the custodian is the actor.
                let event = Event {
                    actor: approval.custodian.clone(),
                    ..event
                };
                let ceremony_id = approval.ceremony_id.clone();
                let reached = match self.record_approval(event.clone(), approval, held).await {
                    Ok(reached) => reached,
                    // Lost a race inside the transaction (the quorum was
                    // reached or the nonce used meanwhile): nothing was kept.
                    Err(CeremonyError::Audit(crate::audit::AuditError::Refused(reason))) => {
                        return self
                            .refuse(event, CeremonyError::FailedPrecondition(reason))
                            .await;
                    }
                    Err(error) => return Err(error),
                };
                if reached {
                    let services = self.clone();
                    let id = ceremony_id.clone();
                    tokio::spawn(async move { services.run_quorum(id).await });
                }
                self.audit.checkpoint().await?;
                self.get_recovery(ceremony_id).await
            }
            Err(error) => self.refuse(event, error).await,
        }
    }

    /// Checks that `custodian` may approve ceremony `ceremony_id` now: it is
    /// open, and they are an enabled custodian of its key.
    async fn approver(
        &self,
        ceremony_id: &str,
        custodian: &str,
    ) -> Result<(RecoverySummary, KeyRecord), CeremonyError> {
        let summary = self.get_recovery(ceremony_id.to_owned()).await?;
        if summary.state != RecoveryState::Open {
            return Err(CeremonyError::FailedPrecondition(format!(
                "ceremony {ceremony_id} is {}; it takes no more approvals",
                summary.state.as_str()
            )));
        }
        let record = self.verified_record(&summary.key_id).await?;
        if record.custodian(custodian).is_none() {
            return Err(CeremonyError::PermissionDenied(format!(
                "{custodian:?} is not a custodian of key {}",
                summary.key_label
            )));
        }
        let name = custodian.to_owned();
        let enrolled = self
            .store
            .with(move |c| Ok(custodians::load(c, &name)?))
            .await?;
        if !enrolled.is_some_and(|c| c.enabled) {
            return Err(CeremonyError::PermissionDenied(format!(
                "custodian {custodian:?} is disabled and can no longer approve"
            )));
        }
        Ok((summary, record))
    }

    /// Every check of an approval; returns the share held under the HSM key.
    async fn check_approval(
        &self,
        approval: &ApprovalSubmission,
    ) -> Result<Vec<u8>, CeremonyError> {
        let custodian = &approval.custodian;
        let (summary, record) = self.approver(&approval.ceremony_id, custodian).await?;
        let entry = record.custodian(custodian).expect("approver() checked it");
        if summary.approvals.iter().any(|a| &a.custodian == custodian) {
            return Err(CeremonyError::FailedPrecondition(format!(
                "{custodian:?} has already approved ceremony {}; an approval counts once",
                approval.ceremony_id
            )));
        }
        let (nonce, id, name) = (
            approval.nonce.clone(),
            approval.ceremony_id.clone(),
            custodian.clone(),
        );
        let issued: Option<(String, String, String, bool)> = self
            .store
            .with(move |connection| {
                Ok(connection
                    .query_row(
                        "SELECT ceremony_id, custodian, expires_at, used FROM approval_nonces WHERE nonce = ?1",
                        [nonce],
                        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
                    )
                    .optional()?)
            })
            .await?;
        match issued {
            None => {
                return Err(CeremonyError::PermissionDenied(
                    "the approval's nonce was not issued by this rkmd; get a fresh one (rkm recovery approve does)".to_owned(),
                ));
            }
            Some((nonce_ceremony, nonce_custodian, _, _))
                if nonce_ceremony != id || nonce_custodian != name =>
            {
                return Err(CeremonyError::PermissionDenied(format!(
                    "the approval's nonce was issued for ceremony {nonce_ceremony} and custodian {nonce_custodian:?}, not this one"
                )));
            }
            Some((_, _, _, true)) => {
                return Err(CeremonyError::PermissionDenied(
                    "the approval's nonce was already used: a replayed approval is refused"
                        .to_owned(),
                ));
            }
            Some((_, _, expires_at, false)) if expires_at <= now() => {
                return Err(CeremonyError::PermissionDenied(format!(
                    "the approval's nonce expired at {expires_at}; get a fresh one"
                )));
            }
            Some(_) => {}
        }
        let nonce: [u8; 32] =
            approval.nonce.as_slice().try_into().map_err(|_| {
                CeremonyError::InvalidArgument("the nonce must be 32 bytes".to_owned())
            })?;
        let commitment: [u8; 32] = approval.commitment.as_slice().try_into().map_err(|_| {
            CeremonyError::InvalidArgument("the commitment must be 32 bytes".to_owned())
        })?;
        if commitment != entry.commitment {
            return Err(CeremonyError::InvalidArgument(format!(
                "the approval of {custodian:?} names a share commitment that is not theirs in key record {}",
                record.key_id
            )));
        }
        let digest: [u8; 32] = summary.request_digest.as_slice().try_into().map_err(|_| {
            CeremonyError::Internal("stored request digest is not 32 bytes".to_owned())
        })?;
        let message = approval_message(&approval.ceremony_id, &digest, &nonce, &commitment);
        if let Err(error) =
            verify_custodian_signature(&entry.ed25519_public_key, &message, &approval.signature)
        {
            return Err(CeremonyError::PermissionDenied(format!(
                "the approval is not a signature by {custodian:?} over this ceremony's request digest {} ({error}); if the request changed, review it again",
                hex::encode(digest)
            )));
        }
        let runtime = self.recovery_runtime()?;
        let contents = match runtime.open_sealed(&approval.ceremony_id, &approval.sealed_share) {
            None => {
                return Err(CeremonyError::FailedPrecondition(
                    "this ceremony's key changed (rkmd restarted): run `rkm recovery approve` again".to_owned(),
                ));
            }
            Some(Err(envelope::EnvelopeError::NotForThisIdentity)) => {
                return Err(CeremonyError::FailedPrecondition(format!(
                    "the share of {custodian:?} was sealed to another key than this ceremony's (rkmd restarted since, or it is for another ceremony): run `rkm recovery approve` again"
                )));
            }
            Some(Err(error)) => {
                return Err(CeremonyError::InvalidArgument(format!(
                    "the share of {custodian:?} does not open with this ceremony's key: {error}"
                )));
            }
            Some(Ok(contents)) => contents,
        };
        if contents.key_id != record.key_id
            || &contents.custodian != custodian
            || contents.share.x() != entry.x
            || !commitment_matches(
                &record.key_id,
                &contents.share,
                &contents.salt,
                &entry.commitment,
            )
        {
            return Err(CeremonyError::InvalidArgument(format!(
                "the share submitted by {custodian:?} fails its commitment in key record {}: it is not their share of this key",
                record.key_id
            )));
        }
        let mut payload = Zeroizing::new(Vec::with_capacity(65));
        payload.push(contents.share.x());
        payload.extend_from_slice(contents.share.expose_y());
        payload.extend_from_slice(&contents.salt);
        drop(contents);
        Ok(self
            .hsm
            .hold(
                runtime.holding_key,
                payload,
                held_share_aad(&approval.ceremony_id, custodian),
            )
            .await?)
    }

    /// Stores an accepted approval and uses its nonce, in one audited
    /// transaction; tells whether it completed the quorum.
    async fn record_approval(
        &self,
        event: Event,
        approval: ApprovalSubmission,
        held: Vec<u8>,
    ) -> Result<bool, CeremonyError> {
        let (_, reached) = self
            .audit
            .record_with(event, move |connection| {
                // Approvals race: only one may move the ceremony on, and none
                // may land after it left the open state.
                let state: String = connection
                    .query_row("SELECT state FROM ceremonies WHERE id = ?1", [&approval.ceremony_id], |row| row.get(0))
                    .map_err(crate::store::StoreError::from)?;
                if state != "open" {
                    return Err(crate::audit::AuditError::Refused(format!(
                        "ceremony {} is {state}; it takes no more approvals",
                        approval.ceremony_id
                    )));
                }
                let used = connection
                    .execute("UPDATE approval_nonces SET used = 1 WHERE nonce = ?1 AND used = 0", [&approval.nonce])
                    .map_err(crate::store::StoreError::from)?;
                if used != 1 {
                    return Err(crate::audit::AuditError::Refused("the approval's nonce was already used".to_owned()));
                }
                connection
                    .execute(
                        "INSERT INTO approvals (ceremony_id, custodian, nonce, commitment, signature, held_share, approved_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![
                            approval.ceremony_id,
                            approval.custodian,
                            approval.nonce,
                            approval.commitment,
                            approval.signature,
                            held,
                            now()
                        ],
                    )
                    .map_err(crate::store::StoreError::from)?;
                let (count, threshold): (i64, i64) = connection
                    .query_row(
                        "SELECT (SELECT COUNT(*) FROM approvals WHERE ceremony_id = ?1), k.threshold
                         FROM recoveries r JOIN keys k ON k.key_id = r.key_id WHERE r.ceremony_id = ?1",
                        [&approval.ceremony_id],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )
                    .map_err(crate::store::StoreError::from)?;
                let reached = count >= threshold
                    && connection
                        .execute(
                            "UPDATE ceremonies SET state = 'signing' WHERE id = ?1 AND state = 'open'",
                            [&approval.ceremony_id],
                        )
                        .map_err(crate::store::StoreError::from)?
                        == 1;
                Ok(reached)
            })
            .await?;
        Ok(reached)
    }
}

/// One custodian's approval as submitted.
#[derive(Debug, Clone)]
pub struct ApprovalSubmission {
    pub ceremony_id: String,
    pub custodian: String,
    pub nonce: Vec<u8>,
    pub commitment: Vec<u8>,
    pub signature: Vec<u8>,
    pub sealed_share: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_share_context_differs_per_ceremony_and_custodian() {
        assert_ne!(
            held_share_aad("rec-1", "alice"),
            held_share_aad("rec-1", "bob")
        );
        assert_ne!(
            held_share_aad("rec-1", "alice"),
            held_share_aad("rec-2", "alice")
        );
        assert_ne!(
            held_share_aad("rec-1", "a\0b"),
            held_share_aad("rec-1\0a", "b")
        );
    }
}
