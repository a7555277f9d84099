//! The audit log: every state-changing operation, and every refused or failed
//! one, appends an entry here, in the same SQLite transaction as its change,
//! so nothing changes state without a durable entry (fail closed). Entries are
//! the leaves of an RFC 9162 Merkle tree whose checkpoints the HSM's audit key
//! signs; the latest checkpoint is also kept in the token.

mod checkpointer;
mod proofs;
mod verify_store;
mod writer;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rkm_proto::audit_entry::{AuditEntry, ENTRY_VERSION, Outcome};
use rkm_proto::checkpoint::VerifierKey;
use rkm_proto::merkle::Hash;
use tokio::sync::{Notify, oneshot};

pub use checkpointer::SignedCheckpoint;
pub use verify_store::StoreVerification;

use crate::hsm::{AuditKey, Hsm, HsmError, HsmHealth};
use crate::store::{Store, StoreError};
use writer::{Append, AppendError, TreeState, Writer};

/// Free space an action's entry (and its share of a checkpoint) is given,
/// on top of `store.min_free_mb`.
const ENTRY_ROOM: u64 = 64 * 1024;

/// Appends that may wait for the writer before callers wait for room.
const QUEUE_DEPTH: usize = 4096;

/// Errors of the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(
        "the audit entry could not be written durably ({0}); the action was refused and nothing of it took effect — free disk space or fix the store, then retry"
    )]
    NotDurable(String),
    /// The action was refused before it started: too little free space.
    #[error(transparent)]
    NoSpace(#[from] crate::store::space::NoSpace),
    /// The action was refused before it started: no checkpoint could cover it.
    #[error(
        "the action was refused: the HSM is unavailable ({cause}), so no signed audit checkpoint could cover it; rkmd retries the HSM on its own and `rkm status` shows when it serves again: run the step again then"
    )]
    CheckpointUnavailable { cause: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Hsm(#[from] HsmError),
    #[error("audit entry refused: {0}")]
    Entry(#[from] rkm_proto::audit_entry::EntryError),
    #[error("audit tree: {0}")]
    Tree(String),
    #[error("audit.origin {origin:?}: {reason}")]
    Origin { origin: String, reason: String },
    #[error("{0}")]
    Proof(String),
    #[error("the audit log has shut down")]
    ShutDown,
    #[error(
        "the audit store does not match the HSM's latest checkpoint: {0}. rkmd refuses to serve; restore the database that belongs to this token, or investigate who changed it"
    )]
    Tampered(String),
    #[error("{what} {requested} is beyond the log's size {size}")]
    OutOfRange {
        what: &'static str,
        requested: u64,
        size: u64,
    },
}

/// Why an audited change did not take effect: the change refused (its own
/// typed error, carried unchanged), or the audit entry could not be written.
#[derive(Debug, thiserror::Error)]
pub enum RecordError<E> {
    #[error(transparent)]
    Change(E),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

impl From<RecordError<StoreError>> for AuditError {
    fn from(error: RecordError<StoreError>) -> Self {
        match error {
            RecordError::Change(error) => AuditError::Store(error),
            RecordError::Audit(error) => error,
        }
    }
}

/// What happened, before it gets its time and index.
#[derive(Debug, Clone)]
pub struct Event {
    pub actor: String,
    pub action: &'static str,
    pub subject: String,
    pub outcome: Outcome,
    pub details: BTreeMap<String, String>,
}

impl Event {
    /// An event of `actor` doing `action` that took effect.
    pub fn ok(actor: impl Into<String>, action: &'static str) -> Self {
        Self {
            actor: actor.into(),
            action,
            subject: String::new(),
            outcome: Outcome::Ok,
            details: BTreeMap::new(),
        }
    }

    /// The same event with a different outcome.
    pub fn with_outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// Sets the ceremony or key id the event concerns.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = subject.into();
        self
    }

    /// Adds a fact. Never pass a secret.
    pub fn detail(mut self, name: &str, value: impl Into<String>) -> Self {
        self.details.insert(name.to_owned(), value.into());
        self
    }

    /// Every value that may come from a caller is bounded first, so that
    /// a refusal of oversized input is still recorded: values up to an
    /// audit note's length whole, and if the entry is still too large,
    /// every value beyond [`TIGHT_RECORD_LEN`] by excerpt and digest.
    fn encode(self) -> Result<(Vec<u8>, String), AuditError> {
        let time = rkm_proto::encoding::time::format_rfc3339_millis(SystemTime::now());
        let entry = |max: usize| {
            use rkm_proto::encoding::text::bounded_record;
            AuditEntry {
                v: ENTRY_VERSION,
                time: time.clone(),
                actor: bounded_record(&self.actor, max),
                action: self.action.to_owned(),
                subject: bounded_record(&self.subject, max),
                outcome: self.outcome,
                details: self
                    .details
                    .iter()
                    .map(|(name, value)| (name.clone(), bounded_record(value, max)))
                    .collect(),
            }
        };
        let mut bounded = entry(crate::ceremony::audit_note::MAX_NOTE_LEN);
        let encoded = match bounded.encode() {
            Ok(encoded) => encoded,
            Err(_) => {
                bounded = entry(TIGHT_RECORD_LEN);
                bounded.encode()?
            }
        };
        Ok((encoded, bounded.subject))
    }
}

/// Longest value kept whole when an entry would otherwise be too large.
const TIGHT_RECORD_LEN: usize = 256;

/// Settings of the audit log.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub origin: String,
    /// Longest time between an append and the checkpoint that covers it.
    pub checkpoint_interval: Duration,
    /// Most appends committed with one fsync.
    pub max_batch: usize,
}

/// Handle to the audit log; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    appends: flume::Sender<Append>,
    tree: Arc<Mutex<TreeState>>,
    appended: Arc<Notify>,
    store: Store,
    hsm: Hsm,
    key: AuditKey,
    verifier: VerifierKey,
    origin: String,
    checkpoint_lock: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("origin", &self.origin)
            .finish()
    }
}

impl AuditLog {
    /// Checks the store against the HSM's latest checkpoint (refusing a
    /// store that was deleted, replaced, rolled back or edited), then starts
    /// the writer thread.
    ///
    /// # Errors
    /// [`AuditError::Tampered`] with what does not match, or store/HSM errors.
    pub async fn open(
        store: Store,
        hsm: Hsm,
        key: AuditKey,
        config: &AuditConfig,
    ) -> Result<(Self, StoreVerification), AuditError> {
        let verifier =
            VerifierKey::new(&config.origin, &key.public_key).map_err(|e| AuditError::Origin {
                origin: config.origin.clone(),
                reason: e.to_string(),
            })?;
        let verification = verify_store::verify(&store, &hsm, &verifier).await?;
        let tree = Arc::new(Mutex::new(TreeState {
            frontier: verification.frontier.clone(),
        }));
        let appended = Arc::new(Notify::new());
        let (appends, queue) = flume::bounded(QUEUE_DEPTH);
        let writer = Writer {
            connection: store.connection(),
            tree: tree.clone(),
            appended: appended.clone(),
            max_batch: config.max_batch.max(1),
            space: store.space(),
        };
        std::thread::Builder::new()
            .name("audit-writer".to_owned())
            .spawn(move || writer.run(queue))
            .map_err(|e| AuditError::Tree(format!("cannot start the audit writer: {e}")))?;
        let log = Self {
            appends,
            tree,
            appended,
            store,
            hsm,
            key,
            verifier,
            origin: config.origin.clone(),
            checkpoint_lock: Arc::new(tokio::sync::Mutex::new(())),
        };
        Ok((log, verification))
    }

    /// Appends an entry for `event` and waits until it is durable.
    ///
    /// # Errors
    /// [`AuditError::NotDurable`] if it could not be committed.
    pub async fn record(&self, event: Event) -> Result<u64, AuditError> {
        self.submit(event, None).await.map_err(|error| match error {
            AppendError::Audit(error) => error,
            AppendError::ChangeRefused => {
                AuditError::Tree("an append without a change was refused as one".to_owned())
            }
        })
    }

    /// Applies `change` and appends `event`'s entry in one transaction: both
    /// take effect, or neither does.
    ///
    /// # Errors
    /// [`RecordError::Change`] with whatever `change` refused with, or
    /// [`RecordError::Audit`] ([`AuditError::NotDurable`] and the like).
    pub async fn record_with<T, E, F>(
        &self,
        event: Event,
        change: F,
    ) -> Result<(u64, T), RecordError<E>>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(&mut crate::store::Tx<'_>) -> Result<T, E> + Send + 'static,
    {
        let (output, result) = oneshot::channel();
        let change: writer::Change = Box::new(move |transaction| {
            let outcome = change(transaction);
            let refused = outcome.is_err();
            let _ = output.send(outcome);
            if refused {
                Err(writer::ChangeRefused)
            } else {
                Ok(())
            }
        });
        let submitted = self.submit(event, Some(change)).await;
        let outcome = result.await;
        match (submitted, outcome) {
            (Ok(index), Ok(Ok(value))) => Ok((index, value)),
            (Err(AppendError::ChangeRefused), Ok(Err(error))) => Err(RecordError::Change(error)),
            (Err(AppendError::Audit(error)), _) => Err(RecordError::Audit(error)),
            _ => Err(RecordError::Audit(AuditError::ShutDown)),
        }
    }

    async fn submit(
        &self,
        event: Event,
        change: Option<writer::Change>,
    ) -> Result<u64, AppendError> {
        // Actions that take effect need room and an HSM that can sign their
        // checkpoint (fail closed); refusals and failures are recorded down to
        // the space reserve and checkpointed once the HSM is back, so the log
        // says what was refused.
        if event.outcome == Outcome::Ok {
            let refusal = match (
                self.hsm.health(),
                self.store.space().check(ENTRY_ROOM, "the action"),
            ) {
                (HsmHealth::Failing(outage), _) => Some(AuditError::CheckpointUnavailable {
                    cause: outage.cause,
                }),
                (HsmHealth::Serving, Err(no_space)) => Some(AuditError::from(no_space)),
                (HsmHealth::Serving, Ok(())) => None,
            };
            if let Some(refusal) = refusal {
                let refused = event
                    .with_outcome(Outcome::Refused)
                    .detail("reason", refusal.to_string());
                if let Err(error) = Box::pin(self.submit(refused, None)).await
                    && let AppendError::Audit(error) = error
                {
                    tracing::error!(%error, "could not record a refused action");
                }
                return Err(refusal.into());
            }
        }
        let records_a_refusal = event.outcome != Outcome::Ok;
        let (entry, subject) = event.encode().map_err(AppendError::Audit)?;
        let (reply, answer) = oneshot::channel();
        self.appends
            .send_async(Append {
                entry,
                subject,
                change,
                records_a_refusal,
                reply,
            })
            .await
            .map_err(|_| AuditError::ShutDown)?;
        answer.await.map_err(|_| AuditError::ShutDown)?
    }

    /// Number of entries committed.
    pub fn size(&self) -> u64 {
        self.tree
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .frontier
            .size()
    }

    /// Root of the committed tree.
    pub fn root(&self) -> Hash {
        self.tree
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .frontier
            .root()
    }

    /// The verifier key of the audit key under this log's origin.
    pub fn verifier(&self) -> &VerifierKey {
        &self.verifier
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}
