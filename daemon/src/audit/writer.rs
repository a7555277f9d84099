//! The one writer of the audit log: a thread that takes appends from a queue,
//! applies each one's state change and entry inside a savepoint, and commits a
//! whole batch with one fsync (group commit). An append is answered only after
//! its commit is durable; a failed commit fails every append of the batch and
//! leaves nothing of them behind.

use std::sync::{Arc, Mutex};

use rkm_proto::merkle::{Frontier, Hash, NodeId, leaf_hash};
use rusqlite::{Connection, Transaction, params};
use tokio::sync::{Notify, oneshot};

use super::AuditError;
use crate::store::{StoreError, Tx};

/// A state change refused to happen; why travels back to its caller on the
/// change's own channel, typed, so the writer only needs to undo it.
pub struct ChangeRefused;

/// A state change to apply in the same transaction as its audit entry.
pub type Change = Box<dyn FnOnce(&mut Tx<'_>) -> Result<(), ChangeRefused> + Send>;

/// Why one append did not take effect.
pub enum AppendError {
    /// Its change refused (the reason went back with the change).
    ChangeRefused,
    Audit(AuditError),
}

impl From<AuditError> for AppendError {
    fn from(error: AuditError) -> Self {
        AppendError::Audit(error)
    }
}

impl From<StoreError> for AppendError {
    fn from(error: StoreError) -> Self {
        AppendError::Audit(AuditError::Store(error))
    }
}

/// Where the writer answers one append: its index, or why it failed.
pub type Reply = oneshot::Sender<Result<u64, AppendError>>;

/// One append waiting for the writer.
pub struct Append {
    pub entry: Vec<u8>,
    pub subject: String,
    pub change: Option<Change>,
    /// Records a refusal or a failure: may use the space reserve.
    pub records_a_refusal: bool,
    pub reply: Reply,
}

/// The tree as committed: shared by the writer, the checkpointer and proofs.
#[derive(Debug, Default)]
pub struct TreeState {
    pub frontier: Frontier,
}

pub struct Writer {
    pub connection: Arc<Mutex<Connection>>,
    pub tree: Arc<Mutex<TreeState>>,
    pub appended: Arc<Notify>,
    pub max_batch: usize,
    pub space: Arc<crate::store::space::Space>,
}

impl Writer {
    pub fn run(self, appends: flume::Receiver<Append>) {
        while let Ok(first) = appends.recv() {
            let mut batch = vec![first];
            while batch.len() < self.max_batch {
                match appends.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            self.write_batch(batch);
        }
    }

    fn write_batch(&self, batch: Vec<Append>) {
        if batch.iter().any(|append| append.records_a_refusal) {
            self.space.release_if_nearly_full();
        }
        let start = self
            .tree
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .frontier
            .clone();
        let mut connection = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        let mut outcomes: Vec<(Reply, Result<u64, AppendError>)> = Vec::with_capacity(batch.len());
        let committed = (|| -> Result<Frontier, AuditError> {
            let mut transaction = connection.transaction().map_err(StoreError::from)?;
            let mut frontier = start.clone();
            for append in batch {
                let result = apply(
                    &mut transaction,
                    &mut frontier,
                    append.entry,
                    append.subject,
                    append.change,
                );
                outcomes.push((append.reply, result));
            }
            transaction.commit().map_err(StoreError::from)?;
            Ok(frontier)
        })();
        match committed {
            Ok(frontier) => {
                self.tree.lock().unwrap_or_else(|e| e.into_inner()).frontier = frontier;
                self.appended.notify_one();
                for (reply, result) in outcomes {
                    let _ = reply.send(result);
                }
            }
            Err(error) => {
                tracing::error!(%error, "audit batch not written; every action in it is refused");
                for (reply, _) in outcomes {
                    let _ = reply.send(Err(AppendError::Audit(AuditError::NotDurable(
                        error.to_string(),
                    ))));
                }
            }
        }
    }
}

/// Applies one append inside a savepoint, so a failed change or entry undoes
/// only itself; the frontier advances only if the savepoint is kept.
fn apply(
    transaction: &mut Transaction<'_>,
    frontier: &mut Frontier,
    entry: Vec<u8>,
    subject: String,
    change: Option<Change>,
) -> Result<u64, AppendError> {
    let savepoint = transaction.savepoint().map_err(StoreError::from)?;
    let mut next = frontier.clone();
    let index = next.size();
    if let Some(change) = change {
        change(&mut Tx::new(&savepoint)).map_err(|ChangeRefused| AppendError::ChangeRefused)?;
    }
    let mut nodes: Vec<(NodeId, Hash)> = Vec::with_capacity(2);
    next.append_with(leaf_hash(&entry), |id, hash| nodes.push((id, *hash)))
        .map_err(|e| AuditError::Tree(e.to_string()))?;
    savepoint
        .execute(
            "INSERT INTO audit_entries (idx, entry, subject) VALUES (?1, ?2, ?3)",
            params![to_sql_index(index)?, entry, subject],
        )
        .map_err(StoreError::from)?;
    {
        let mut insert = savepoint
            .prepare_cached("INSERT INTO audit_nodes (level, idx, hash) VALUES (?1, ?2, ?3)")
            .map_err(StoreError::from)?;
        for (id, hash) in &nodes {
            insert
                .execute(params![id.level, to_sql_index(id.index)?, hash.as_ref()])
                .map_err(StoreError::from)?;
        }
    }
    savepoint.commit().map_err(StoreError::from)?;
    *frontier = next;
    Ok(index)
}

/// SQLite integers are signed 64-bit.
pub fn to_sql_index(index: u64) -> Result<i64, AuditError> {
    i64::try_from(index)
        .map_err(|_| AuditError::Tree(format!("index {index} beyond SQLite's range")))
}
