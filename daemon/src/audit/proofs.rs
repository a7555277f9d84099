//! Reading the log back: entries, and inclusion and consistency proofs served
//! from the persisted perfect-subtree hashes without rebuilding the tree.

use rkm_proto::merkle::{self, Hash, NodeId, ProofError};
use rusqlite::{Connection, params};

use super::writer::to_sql_index;
use super::{AuditError, AuditLog};
use crate::store::StoreError;

/// An inclusion proof with its entry.
#[derive(Debug, Clone)]
pub struct InclusionProof {
    pub index: u64,
    pub tree_size: u64,
    pub entry: Vec<u8>,
    pub leaf_hash: Hash,
    pub hashes: Vec<Hash>,
}

impl From<ProofError> for AuditError {
    fn from(error: ProofError) -> Self {
        AuditError::Proof(error.to_string())
    }
}

fn load_node(connection: &Connection, id: NodeId) -> Result<Hash, AuditError> {
    let hash: Vec<u8> = connection
        .prepare_cached("SELECT hash FROM audit_nodes WHERE level = ?1 AND idx = ?2")
        .and_then(|mut statement| {
            statement.query_row(
                params![id.level, to_sql_index(id.index).unwrap_or(i64::MAX)],
                |row| row.get(0),
            )
        })
        .map_err(|e| AuditError::Store(StoreError::Sqlite(e)))?;
    Hash::try_from_slice(&hash).map_err(|e| AuditError::Tree(e.to_string()))
}

impl AuditLog {
    fn committed_size(&self, requested: u64, what: &'static str) -> Result<u64, AuditError> {
        let size = self.size();
        match requested {
            0 => Ok(size),
            requested if requested > size => Err(AuditError::OutOfRange {
                what,
                requested,
                size,
            }),
            requested => Ok(requested),
        }
    }

    /// Inclusion proof of entry `index` in the tree of `tree_size` entries
    /// (0: the committed tree).
    ///
    /// # Errors
    /// Out-of-range index or size, or a store failure.
    pub async fn inclusion_proof(
        &self,
        index: u64,
        tree_size: u64,
    ) -> Result<InclusionProof, AuditError> {
        let tree_size = self.committed_size(tree_size, "tree size")?;
        if index >= tree_size {
            return Err(AuditError::OutOfRange {
                what: "entry index",
                requested: index,
                size: tree_size,
            });
        }
        self.store()
            .with(move |connection| {
                Ok((|| {
                    let hashes = merkle::inclusion_proof(index, tree_size, |start, end| {
                        merkle::subtree_root(start, end, |id| load_node(connection, id))
                    })?;
                    let entry: Vec<u8> = connection
                        .query_row(
                            "SELECT entry FROM audit_entries WHERE idx = ?1",
                            [to_sql_index(index)?],
                            |row| row.get(0),
                        )
                        .map_err(StoreError::from)?;
                    Ok::<_, AuditError>(InclusionProof {
                        index,
                        tree_size,
                        leaf_hash: merkle::leaf_hash(&entry),
                        entry,
                        hashes,
                    })
                })())
            })
            .await?
    }

    /// Consistency proof from `from_size` to `to_size` (0: the committed tree).
    ///
    /// # Errors
    /// Sizes out of order or range, or a store failure.
    pub async fn consistency_proof(
        &self,
        from_size: u64,
        to_size: u64,
    ) -> Result<(u64, Vec<Hash>), AuditError> {
        let to_size = self.committed_size(to_size, "tree size")?;
        let result = self
            .store()
            .with(move |connection| {
                Ok(merkle::consistency_proof(
                    from_size,
                    to_size,
                    |start, end| merkle::subtree_root(start, end, |id| load_node(connection, id)),
                ))
            })
            .await?;
        Ok((to_size, result?))
    }

    /// Up to `limit` entries with index in `[start, end)`, and only those about
    /// `subject` if it is not empty, oldest first.
    ///
    /// # Errors
    /// A store failure.
    pub async fn entries(
        &self,
        start: u64,
        end: u64,
        subject: String,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, AuditError> {
        let start = to_sql_index(start)?;
        let end = to_sql_index(end)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(self
            .store()
            .with(move |connection| {
                let mut statement = connection.prepare_cached(
                    "SELECT idx, entry FROM audit_entries
                     WHERE idx >= ?1 AND idx < ?2 AND (?3 = '' OR subject = ?3)
                     ORDER BY idx LIMIT ?4",
                )?;
                let rows = statement.query_map(params![start, end, subject, limit], |row| {
                    Ok((
                        u64::try_from(row.get::<_, i64>(0)?).unwrap_or_default(),
                        row.get(1)?,
                    ))
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await?)
    }
}
