//! Opening a recovery or drill ceremony: the request validated against its
//! key, the targets streamed into the store in batches (memory stays flat for
//! any manifest), and the ceremony recorded with one audit entry; then each
//! custodian is sent a notice. Nothing of a refused request remains.

use rkm_proto::audit_entry::action;
use std::time::Duration;

use rkm_proto::recovery_request::{
    CanonicalRequest, CeremonyKind, ManifestSplitter, RecoveryRequest, TargetsHasher,
};
use tokio_stream::{Stream, StreamExt as _};

use super::super::keygen::{KeyState, KeySummary};
use super::super::state::CeremonyKind as StoredKind;
use super::super::{CeremonyError, Services, now};
use super::{RecoveryState, RecoverySummary, rfc3339_after};
use crate::audit::Event;
use crate::store;

/// Longest approval window an operator may ask for.
const MAX_EXPIRY: Duration = Duration::from_secs(30 * 24 * 3600);
/// Targets written per store transaction while a manifest streams in.
const TARGET_BATCH: usize = 10_000;

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

/// An approval window from 1 second to 30 days.
fn valid_approval_window(expires_in: Duration) -> bool {
    !expires_in.is_zero() && expires_in <= MAX_EXPIRY
}

impl Services {
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
        let event = Event::ok(actor, action::RECOVERY_OPEN)
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
        let awaiting_confirmation = self.two_person_rule && !request.drill;
        let event = event
            .subject(ceremony_id.clone())
            .detail("key_id", key.key_id.clone())
            .detail("request_digest", hex::encode(digest))
            .detail("targets", canonical.targets.count.to_string())
            .detail("expires_at", expires_at.clone())
            .detail("justification", request.justification.clone())
            .detail("awaiting_confirmation", awaiting_confirmation.to_string());
        let (id, opener, key_id, count) = (
            ceremony_id.clone(),
            actor.to_owned(),
            key.key_id.clone(),
            canonical.targets.count,
        );
        let expires = expires_at.clone();
        let opened = self
            .audit
            .record_with(event, move |tx| {
                store::ceremonies::insert(
                    tx,
                    &store::ceremonies::NewCeremony {
                        id: &id,
                        kind: StoredKind::Recovery.as_str(),
                        state: RecoveryState::Open.as_str(),
                        subject: &key_id,
                        opened_by: &opener,
                        opened_at: &now(),
                        expires_at: &expires,
                        closed_at: "",
                    },
                )?;
                store::recoveries::insert(
                    tx,
                    &store::recoveries::NewRecovery {
                        ceremony_id: &id,
                        key_id: &key_id,
                        canonical_request: &encoded,
                        request_digest: &digest,
                        target_count: count,
                        awaiting_confirmation,
                    },
                )
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
        let when = if awaiting_confirmation {
            "once a second operator has confirmed it (two-person rule; you will get a notice), before"
        } else {
            "before"
        };
        for custodian in &key.receipts {
            let text = format!(
                "{urgency} ceremony {ceremony_id} asks recovery key {:?} to sign {asks}; request digest {}. Review it with `rkm recovery show {ceremony_id} --identity FILE` and approve with `rkm recovery approve {ceremony_id}` {when} {expires_at}.",
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
    ) -> Result<(KeySummary, CanonicalRequest), CeremonyError>
    where
        S: Stream<Item = Result<Vec<u8>, CeremonyError>> + Unpin + Send,
    {
        let key = self.get_key(request.key.clone()).await?;
        if key.state != KeyState::Active {
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
        if !valid_approval_window(request.expires_in) {
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
        // (manifest line, device id); 0 for the request's own `targets`.
        let mut batch: Vec<(u64, String)> = Vec::with_capacity(TARGET_BATCH);
        let mut sequence: u64 = 0;
        let max_targets = self.max_targets;
        let mut device_bytes: u64 = parsed.targets.iter().map(|t| t.len() as u64).sum();
        if parsed.targets.len() as u64 > max_targets {
            return Err(CeremonyError::InvalidArgument(format!(
                "the request's `targets` list {} devices, more than the {max_targets} one recovery takes (recovery.max_targets)",
                parsed.targets.len()
            )));
        }
        for target in &parsed.targets {
            hasher
                .push(target)
                .map_err(|e| CeremonyError::InvalidArgument(format!("request targets: {e}")))?;
            batch.push((0, target.clone()));
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
            splitter.push(&chunk?, &mut lines).map_err(manifest_error)?;
            hash_into_batch(
                &mut hasher,
                lines,
                &mut batch,
                max_targets,
                &mut device_bytes,
            )?;
        }
        let mut lines = Vec::new();
        splitter.finish(&mut lines).map_err(manifest_error)?;
        hash_into_batch(
            &mut hasher,
            lines,
            &mut batch,
            max_targets,
            &mut device_bytes,
        )?;
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
        let count = canonical.targets.count;
        self.store.space().check(
            artefact_size_bound(count, device_bytes, canonical.encode().len()),
            &format!("the artefact of {count} commands"),
        )?;
        Ok((key, canonical))
    }

    async fn store_targets(
        &self,
        ceremony_id: &str,
        first: u64,
        targets: Vec<(u64, String)>,
    ) -> Result<u64, CeremonyError> {
        let id = ceremony_id.to_owned();
        self.store
            .transact(move |tx| store::recoveries::insert_targets(tx, &id, first, targets))
            .await?
            .map_err(|duplicate| {
                CeremonyError::InvalidArgument(format!(
                    "device {:?} is listed twice, at {} and at {}: each device gets one command; remove one listing",
                    duplicate.device_id,
                    listing(duplicate.first),
                    listing(duplicate.again)
                ))
            })
    }

    async fn drop_targets(&self, ceremony_id: &str) {
        let id = ceremony_id.to_owned();
        if let Err(error) = self
            .store
            .transact(move |tx| store::recoveries::delete_targets(tx, &id))
            .await
        {
            tracing::error!(%error, "could not remove the targets of a refused recovery request");
        }
    }
}

/// Where a target was listed, from its (sequence, manifest line).
fn listing((sequence, line): (u64, u64)) -> String {
    if line == 0 {
        format!("`targets` entry {} of the request", sequence + 1)
    } else {
        format!("manifest line {line}")
    }
}

/// A manifest line the request's rules refuse.
fn manifest_error(error: impl std::fmt::Display) -> CeremonyError {
    CeremonyError::InvalidArgument(format!("target manifest: {error}"))
}

/// Adds each manifest line, in order, to the targets digest (which checks it
/// as a device id) and queues it for storing.
fn hash_into_batch(
    hasher: &mut TargetsHasher,
    lines: Vec<(u64, String)>,
    batch: &mut Vec<(u64, String)>,
    max_targets: u64,
    device_bytes: &mut u64,
) -> Result<(), CeremonyError> {
    for (line, id) in lines {
        *device_bytes += id.len() as u64;
        if hasher.count() >= max_targets {
            return Err(CeremonyError::InvalidArgument(format!(
                "manifest line {line}: the request lists more than {max_targets} devices, the most one recovery takes (recovery.max_targets); split the devices over several recoveries"
            )));
        }
        hasher.push(&id).map_err(manifest_error)?;
        batch.push((line, id));
    }
    Ok(())
}

/// At most how large the artefact of `count` commands to devices whose ids
/// total `device_bytes` is: each record is `S SEQUENCE DEVICE SIGNATURE\n`
/// (128 hex digits of signature, at most 20 of sequence); the header holds
/// the canonical request and the key record, a few KiB besides.
pub(crate) fn artefact_size_bound(count: u64, device_bytes: u64, canonical_len: usize) -> u64 {
    const RECORD_OVERHEAD: u64 = 2 + 20 + 1 + 1 + 128 + 1;
    count * RECORD_OVERHEAD + device_bytes + 2 * canonical_len as u64 + 64 * 1024
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approval_window_is_one_second_to_thirty_days() {
        assert!(!valid_approval_window(Duration::ZERO));
        assert!(valid_approval_window(Duration::from_secs(1)));
        assert!(valid_approval_window(MAX_EXPIRY));
        assert!(!valid_approval_window(MAX_EXPIRY + Duration::from_secs(1)));
    }
}
