//! `AuditService`: the log for auditors — key, checkpoints, entries, proofs —
//! and operators' notes. It reads the audit log directly, not through
//! `ceremony`: every path here is read-only except the note, whose rules live
//! in `ceremony::audit_note`.

use rkm_proto::fingerprint::fingerprint;
use rkm_proto::v1::audit_service_server::AuditService;
use rkm_proto::v1::{
    AuditEntry, GetAuditKeyRequest, GetAuditKeyResponse, GetCheckpointRequest,
    GetCheckpointResponse, GetConsistencyProofRequest, GetConsistencyProofResponse,
    GetInclusionProofRequest, GetInclusionProofResponse, ListCheckpointsRequest,
    ListEntriesRequest, RecordNoteRequest, RecordNoteResponse, SignedCheckpoint,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{ResponseStream, actor, audit_status, ceremony_status};
use crate::audit::{self, AuditLog};
use crate::ceremony::audit_note;

/// Entries read from the store per page while streaming.
const PAGE: usize = 1024;

/// Serves [`AuditService`].
#[derive(Debug, Clone)]
pub struct AuditApi {
    pub log: AuditLog,
}

fn to_proto(checkpoint: audit::SignedCheckpoint) -> SignedCheckpoint {
    SignedCheckpoint {
        size: checkpoint.size,
        root: checkpoint.root.as_ref().to_vec(),
        signed_note: checkpoint.signed_note,
    }
}

impl AuditApi {
    async fn latest_size(&self) -> Result<u64, Status> {
        Ok(self
            .log
            .latest_checkpoint()
            .await
            .map_err(audit_status)?
            .map_or(0, |checkpoint| checkpoint.size))
    }
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    type ListCheckpointsStream = ResponseStream<SignedCheckpoint>;
    type ListEntriesStream = ResponseStream<AuditEntry>;

    #[tracing::instrument(skip_all)]
    async fn get_audit_key(
        &self,
        _request: Request<GetAuditKeyRequest>,
    ) -> Result<Response<GetAuditKeyResponse>, Status> {
        let verifier = self.log.verifier();
        let public_key = verifier.public_key();
        Ok(Response::new(GetAuditKeyResponse {
            public_key: public_key.to_vec(),
            verifier_key: verifier.to_string(),
            fingerprint: fingerprint(&public_key),
            origin: self.log.origin().to_owned(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_checkpoint(
        &self,
        _request: Request<GetCheckpointRequest>,
    ) -> Result<Response<GetCheckpointResponse>, Status> {
        let checkpoint = self.log.checkpoint().await.map_err(audit_status)?;
        Ok(Response::new(GetCheckpointResponse {
            checkpoint: Some(to_proto(checkpoint)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_checkpoints(
        &self,
        request: Request<ListCheckpointsRequest>,
    ) -> Result<Response<Self::ListCheckpointsStream>, Status> {
        let request = request.into_inner();
        let up_to = match request.up_to_size {
            0 => u64::MAX >> 1,
            size => size,
        };
        let checkpoints = self
            .log
            .checkpoints_between(request.after_size, up_to)
            .await
            .map_err(audit_status)?;
        let stream = tokio_stream::iter(checkpoints.into_iter().map(|c| Ok(to_proto(c))));
        Ok(Response::new(Box::pin(stream)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_entries(
        &self,
        request: Request<ListEntriesRequest>,
    ) -> Result<Response<Self::ListEntriesStream>, Status> {
        let request = request.into_inner();
        let end = match request.end {
            0 => self.latest_size().await?,
            end => end,
        };
        let log = self.log.clone();
        let (sender, receiver) = tokio::sync::mpsc::channel(PAGE);
        tokio::spawn(async move {
            let mut start = request.start;
            while start < end {
                let page = match log.entries(start, end, request.subject.clone(), PAGE).await {
                    Ok(page) => page,
                    Err(error) => {
                        let _ = sender.send(Err(audit_status(error))).await;
                        return;
                    }
                };
                let Some(&(last, _)) = page.last() else {
                    return;
                };
                for (index, entry) in page {
                    if sender.send(Ok(AuditEntry { index, entry })).await.is_err() {
                        return;
                    }
                }
                start = last + 1;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    #[tracing::instrument(skip_all)]
    async fn get_inclusion_proof(
        &self,
        request: Request<GetInclusionProofRequest>,
    ) -> Result<Response<GetInclusionProofResponse>, Status> {
        let request = request.into_inner();
        let tree_size = match request.tree_size {
            0 => self.latest_size().await?,
            size => size,
        };
        let proof = self
            .log
            .inclusion_proof(request.index, tree_size)
            .await
            .map_err(audit_status)?;
        Ok(Response::new(GetInclusionProofResponse {
            index: proof.index,
            tree_size: proof.tree_size,
            leaf_hash: proof.leaf_hash.as_ref().to_vec(),
            hashes: proof.hashes.iter().map(|h| h.as_ref().to_vec()).collect(),
            entry: proof.entry,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_consistency_proof(
        &self,
        request: Request<GetConsistencyProofRequest>,
    ) -> Result<Response<GetConsistencyProofResponse>, Status> {
        let request = request.into_inner();
        let to_size = match request.to_size {
            0 => self.latest_size().await?,
            size => size,
        };
        let (to_size, hashes) = self
            .log
            .consistency_proof(request.from_size, to_size)
            .await
            .map_err(audit_status)?;
        Ok(Response::new(GetConsistencyProofResponse {
            from_size: request.from_size,
            to_size,
            hashes: hashes.iter().map(|h| h.as_ref().to_vec()).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn record_note(
        &self,
        request: Request<RecordNoteRequest>,
    ) -> Result<Response<RecordNoteResponse>, Status> {
        let actor = actor(&request);
        let note = request.into_inner();
        let index = audit_note::record_note(&self.log, actor, note.subject, note.message)
            .await
            .map_err(ceremony_status)?;
        Ok(Response::new(RecordNoteResponse { index }))
    }
}
