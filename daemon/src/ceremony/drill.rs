//! The quorum step of a drill: the same path as a recovery up to the
//! unwrapped key (shares released, checked, combined, KEK checked, key
//! unwrapped in the HSM), but the key signs one drill challenge bound to the
//! ceremony, never a command. The signature is checked against the key
//! record before the drill counts as passed, recorded in the issuing audit
//! entry, and the artefact is a header with no commands, so `rkm artefact
//! verify` proves the drill offline: the approvals, the audit entry and the
//! drill signature by the recovery key.

use std::io::Write as _;

use rkm_proto::artefact::{ArtefactWriter, DETAIL_DRILL_SIGNATURE, ISSUE_ACTION_DRILL};
use rkm_proto::command::{drill_challenge_digest, verify_drill_signature};
use rkm_proto::key_record::KeyRecord;

use super::recovery::RecoverySummary;
use super::{CeremonyError, Services};
use crate::hsm::SigningKey;

impl Services {
    /// Signs the drill challenge, checks it against the key record, records
    /// the issue and writes the command-free artefact. Returns (0, its size).
    pub(super) async fn sign_drill(
        &self,
        summary: &RecoverySummary,
        record: &KeyRecord,
        key: SigningKey,
    ) -> Result<(u64, u64), CeremonyError> {
        let request_digest: [u8; 32] =
            summary.request_digest.as_slice().try_into().map_err(|_| {
                CeremonyError::Internal("stored request digest is not 32 bytes".to_owned())
            })?;
        let challenge = drill_challenge_digest(&request_digest, &summary.ceremony_id);
        let signature = self.hsm.sign_digest(key, challenge).await?;
        verify_drill_signature(record, &request_digest, &summary.ceremony_id, &signature)
            .map_err(|e| {
                CeremonyError::FailedPrecondition(format!(
                    "the unwrapped key's drill signature does not verify against the key record: {e}"
                ))
            })?;
        let header = self
            .issue_header(
                summary,
                &record.public_key_spki,
                ISSUE_ACTION_DRILL,
                vec![
                    (DETAIL_DRILL_SIGNATURE, hex::encode(signature)),
                    ("drill_outcome", "passed".to_owned()),
                ],
            )
            .await?;
        let path = self.artefact_path(&summary.ceremony_id)?;
        let size = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let file = std::fs::File::create(&path)?;
            let mut file = ArtefactWriter::new(file, &header)?.finish()?;
            file.flush()?;
            file.sync_all()?;
            Ok(file.metadata()?.len())
        })
        .await
        .map_err(|_| CeremonyError::Internal("the artefact writer failed".to_owned()))?
        .map_err(|e| CeremonyError::Internal(format!("writing the drill artefact failed: {e}")))?;
        Ok((0, size))
    }
}
