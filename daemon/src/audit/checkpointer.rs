//! Checkpoints: C2SP tlog-checkpoint bodies signed by the HSM's audit key as
//! signed notes, stored in the database and kept in the token. A background
//! task makes one at most `checkpoint_interval` after entries arrive.

use std::time::Duration;

use rkm_proto::checkpoint::{Checkpoint, format_signed_note, signed_message};
use rkm_proto::merkle::Hash;
use rusqlite::{OptionalExtension as _, params};
use tokio::sync::watch;

use super::writer::to_sql_index;
use super::{AuditError, AuditLog};
use crate::hsm::HsmError;
use crate::store::StoreError;

/// A checkpoint and its signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub size: u64,
    pub root: Hash,
    pub signed_note: String,
}

impl AuditLog {
    /// Signs a checkpoint of the committed tree, unless the latest one
    /// already covers it, stores it, and keeps it in the token. Returns the
    /// latest checkpoint.
    ///
    /// # Errors
    /// The HSM cannot sign or the store cannot write; the previous checkpoint
    /// then stays the latest.
    pub async fn checkpoint(&self) -> Result<SignedCheckpoint, AuditError> {
        let _one_at_a_time = self.checkpoint_lock.lock().await;
        let (size, root) = {
            let tree = self.tree.lock().unwrap_or_else(|e| e.into_inner());
            (tree.frontier.size(), tree.frontier.root())
        };
        if let Some(latest) = self.latest_checkpoint().await?
            && latest.size == size
        {
            return Ok(latest);
        }
        let body = Checkpoint::new(self.origin.clone(), size, root, Vec::new())
            .map_err(|e| AuditError::Tree(e.to_string()))?
            .to_body();
        let signature = self
            .hsm
            .sign_with_audit_key(self.key, signed_message(&body).to_vec())
            .await?;
        let signed_note = format_signed_note(
            &body,
            self.verifier.name(),
            self.verifier.key_id(),
            &signature,
        )
        .map_err(|e| AuditError::Tree(e.to_string()))?;
        let checkpoint = SignedCheckpoint {
            size,
            root,
            signed_note,
        };
        let stored = checkpoint.clone();
        self.store
            .with(move |connection| {
                connection.execute(
                    "INSERT INTO audit_checkpoints (size, root, signed_note) VALUES (?1, ?2, ?3)",
                    params![
                        to_sql_index(stored.size)
                            .map_err(|e| StoreError::Invalid(e.to_string()))?,
                        stored.root.as_ref(),
                        stored.signed_note
                    ],
                )?;
                Ok(())
            })
            .await
            .map_err(|e| AuditError::NotDurable(e.to_string()))?;
        // The store first: a token checkpoint newer than the store's would
        // still match the store's entries, but never the other way round.
        self.hsm
            .write_checkpoint(checkpoint.signed_note.as_bytes().to_vec())
            .await?;
        tracing::debug!(size, root = %root, "audit checkpoint signed");
        Ok(checkpoint)
    }

    /// The latest stored checkpoint, if any.
    ///
    /// # Errors
    /// The store fails.
    pub async fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, AuditError> {
        Ok(self
            .store
            .with(|connection| {
                Ok(connection
                    .query_row(
                        "SELECT size, root, signed_note FROM audit_checkpoints ORDER BY size DESC LIMIT 1",
                        [],
                        row_to_checkpoint,
                    )
                    .optional()?)
            })
            .await?)
    }

    /// Checkpoints with size in `(after, up_to]`, oldest first.
    ///
    /// # Errors
    /// The store fails.
    pub async fn checkpoints_between(
        &self,
        after: u64,
        up_to: u64,
    ) -> Result<Vec<SignedCheckpoint>, AuditError> {
        let after = to_sql_index(after)?;
        let up_to = to_sql_index(up_to)?;
        Ok(self
            .store
            .with(move |connection| {
                let mut statement = connection.prepare(
                    "SELECT size, root, signed_note FROM audit_checkpoints
                     WHERE size > ?1 AND size <= ?2 ORDER BY size",
                )?;
                let rows = statement.query_map(params![after, up_to], row_to_checkpoint)?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await?)
    }

    /// Makes a checkpoint at most `interval` after entries arrive, until
    /// `stop` turns true; then one last checkpoint.
    pub fn spawn_checkpointer(
        &self,
        interval: Duration,
        mut stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let log = self.clone();
        tokio::spawn(async move {
            // After a failure the same entries wait for their checkpoint, so
            // it is retried every interval without waiting for new ones.
            let mut pending = false;
            loop {
                if !pending {
                    tokio::select! {
                        () = log.appended.notified() => {}
                        _ = stop.wait_for(|stop| *stop) => break,
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    _ = stop.wait_for(|stop| *stop) => break,
                }
                pending = match log.checkpoint().await {
                    Ok(_) => false,
                    Err(error) => {
                        tracing::error!(%error, "audit checkpoint failed; rkmd refuses state changes until one succeeds, and retries every interval");
                        if let AuditError::Hsm(cause) = &error
                            && !matches!(cause, HsmError::Unavailable { .. })
                        {
                            log.hsm.report_outage(format!(
                                "an audit checkpoint could not be signed and kept: {cause}"
                            ));
                        }
                        true
                    }
                };
            }
            if let Err(error) = log.checkpoint().await {
                tracing::error!(%error, "final audit checkpoint failed");
            }
        })
    }
}

pub(super) fn row_to_checkpoint(row: &rusqlite::Row<'_>) -> rusqlite::Result<SignedCheckpoint> {
    let size: i64 = row.get(0)?;
    let root: Vec<u8> = row.get(1)?;
    let signed_note: String = row.get(2)?;
    let root = Hash::try_from_slice(&root).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Blob, Box::new(e))
    })?;
    Ok(SignedCheckpoint {
        size: u64::try_from(size).unwrap_or_default(),
        root,
        signed_note,
    })
}
