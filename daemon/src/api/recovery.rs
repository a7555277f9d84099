//! `RecoveryService`: opening, approving and collecting recovery ceremonies.

use std::time::Duration;

use rkm_proto::v1::open_recovery_request::Part;
use rkm_proto::v1::recovery_service_server::RecoveryService;
use rkm_proto::v1::{
    Approval, ApproveRequest, ApproveResponse, ArtefactChunk, CancelRecoveryRequest,
    CancelRecoveryResponse, CollectArtefactRequest, ConfirmRecoveryRequest,
    ConfirmRecoveryResponse, GetApprovalNonceRequest, GetApprovalNonceResponse, GetRecoveryRequest,
    GetRecoveryResponse, ListRecoveriesRequest, ListRecoveriesResponse, OpenRecoveryRequest,
    OpenRecoveryResponse, RecoveryState, RecoverySummary,
};
use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status, Streaming};

use super::{ResponseStream, actor, ceremony_status};
use crate::ceremony::recovery::{self, ApprovalSubmission, OpenRequest};
use crate::ceremony::{CeremonyError, Services};

/// Serves [`RecoveryService`].
#[derive(Debug, Clone)]
pub struct RecoveryApi {
    pub services: Services,
}

fn to_proto(summary: recovery::RecoverySummary) -> RecoverySummary {
    use recovery::RecoveryState as S;
    let drill = rkm_proto::recovery_request::CanonicalRequest::decode(&summary.canonical_request)
        .is_ok_and(|request| {
            request.ceremony_kind == rkm_proto::recovery_request::CeremonyKind::Drill
        });
    RecoverySummary {
        drill,
        ceremony_id: summary.ceremony_id,
        key_id: summary.key_id,
        key_label: summary.key_label,
        state: match summary.state {
            S::Open => RecoveryState::Open,
            S::Signing => RecoveryState::Signing,
            S::Completed => RecoveryState::Completed,
            S::Cancelled => RecoveryState::Cancelled,
            S::Expired => RecoveryState::Expired,
            S::Failed => RecoveryState::Failed,
            // States of key generations; no recovery is ever in them.
            S::Generating | S::AwaitingReceipts => RecoveryState::Unspecified,
        } as i32,
        canonical_request: summary.canonical_request,
        request_digest: summary.request_digest,
        target_count: summary.target_count,
        threshold: u32::from(summary.threshold),
        approvals: summary
            .approvals
            .into_iter()
            .map(|a| Approval {
                custodian: a.custodian,
                nonce: a.nonce,
                commitment: a.commitment,
                signature: a.signature,
                approved_at: a.approved_at,
            })
            .collect(),
        opened_by: summary.opened_by,
        opened_at: summary.opened_at,
        expires_at: summary.expires_at,
        ceremony_recipient: summary.ceremony_recipient,
        signed_count: summary.signed_count,
        artefact_size: summary.artefact_size,
        failure: summary.failure,
        awaiting_confirmation: summary.awaiting_confirmation,
        confirmed_by: summary.confirmed_by,
        confirmed_at: summary.confirmed_at,
    }
}

/// The custodian a request names, if any: the access layer has checked
/// that a custodian caller names themselves.
fn named(custodian: String) -> Option<String> {
    (!custodian.is_empty()).then_some(custodian)
}

#[tonic::async_trait]
impl RecoveryService for RecoveryApi {
    type CollectArtefactStream = ResponseStream<ArtefactChunk>;

    #[tracing::instrument(skip_all)]
    async fn open_recovery(
        &self,
        request: Request<Streaming<OpenRecoveryRequest>>,
    ) -> Result<Response<OpenRecoveryResponse>, Status> {
        let actor = actor(&request);
        let mut parts = request.into_inner();
        let header = match parts.message().await? {
            Some(OpenRecoveryRequest {
                part: Some(Part::Header(header)),
            }) => header,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message must be the request header",
                ));
            }
        };
        let chunks = parts.map(|part| match part {
            Ok(OpenRecoveryRequest {
                part: Some(Part::TargetsChunk(chunk)),
            }) => Ok(chunk),
            Ok(_) => Err(CeremonyError::InvalidArgument(
                "only target manifest chunks may follow the header".to_owned(),
            )),
            Err(status) => Err(CeremonyError::InvalidArgument(format!(
                "the target manifest did not arrive whole: {}",
                status.message()
            ))),
        });
        // The ceremony runs in its own task that owns the stream: if the
        // client goes away mid-manifest, the handler is dropped but the task
        // sees the broken stream, refuses, audits and removes what it staged.
        let services = self.services.clone();
        let opening = tokio::spawn(async move {
            services
                .open_recovery(
                    &actor,
                    OpenRequest {
                        key: header.key,
                        request_toml: header.request_toml,
                        expires_in: Duration::from_secs(header.expires_in_seconds),
                        emergency: header.emergency,
                        justification: header.justification,
                        drill: header.drill,
                    },
                    Box::pin(chunks),
                )
                .await
        });
        let summary = opening
            .await
            .map_err(|_| Status::internal("opening the ceremony failed; see the rkmd log"))?
            .map_err(ceremony_status)?;
        Ok(Response::new(OpenRecoveryResponse {
            recovery: Some(to_proto(summary)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_recovery(
        &self,
        request: Request<GetRecoveryRequest>,
    ) -> Result<Response<GetRecoveryResponse>, Status> {
        let request = request.into_inner();
        let summary = self
            .services
            .get_recovery_for(request.ceremony_id, named(request.custodian))
            .await
            .map_err(ceremony_status)?;
        Ok(Response::new(GetRecoveryResponse {
            recovery: Some(to_proto(summary)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_recoveries(
        &self,
        request: Request<ListRecoveriesRequest>,
    ) -> Result<Response<ListRecoveriesResponse>, Status> {
        let all = self
            .services
            .list_recoveries(named(request.into_inner().custodian))
            .await
            .map_err(ceremony_status)?;
        Ok(Response::new(ListRecoveriesResponse {
            recoveries: all.into_iter().map(to_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn cancel_recovery(
        &self,
        request: Request<CancelRecoveryRequest>,
    ) -> Result<Response<CancelRecoveryResponse>, Status> {
        let actor = actor(&request);
        let request = request.into_inner();
        let summary = self
            .services
            .cancel_recovery(&actor, request.ceremony_id, request.reason)
            .await
            .map_err(ceremony_status)?;
        Ok(Response::new(CancelRecoveryResponse {
            recovery: Some(to_proto(summary)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn confirm_recovery(
        &self,
        request: Request<ConfirmRecoveryRequest>,
    ) -> Result<Response<ConfirmRecoveryResponse>, Status> {
        let actor = actor(&request);
        let summary = self
            .services
            .confirm_recovery(&actor, request.into_inner().ceremony_id)
            .await
            .map_err(ceremony_status)?;
        Ok(Response::new(ConfirmRecoveryResponse {
            recovery: Some(to_proto(summary)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_approval_nonce(
        &self,
        request: Request<GetApprovalNonceRequest>,
    ) -> Result<Response<GetApprovalNonceResponse>, Status> {
        let peer = actor(&request);
        let request = request.into_inner();
        let (nonce, expires_at) = self
            .services
            .approval_nonce(&peer, request.ceremony_id, request.custodian)
            .await
            .map_err(ceremony_status)?;
        Ok(Response::new(GetApprovalNonceResponse {
            nonce,
            expires_at,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn approve(
        &self,
        request: Request<ApproveRequest>,
    ) -> Result<Response<ApproveResponse>, Status> {
        let peer = actor(&request);
        let request = request.into_inner();
        let summary = self
            .services
            .approve(
                &peer,
                ApprovalSubmission {
                    ceremony_id: request.ceremony_id,
                    custodian: request.custodian,
                    nonce: request.nonce,
                    commitment: request.commitment,
                    signature: request.signature,
                    sealed_share: request.sealed_share,
                },
            )
            .await
            .map_err(ceremony_status)?;
        Ok(Response::new(ApproveResponse {
            recovery: Some(to_proto(summary)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn collect_artefact(
        &self,
        request: Request<CollectArtefactRequest>,
    ) -> Result<Response<Self::CollectArtefactStream>, Status> {
        let request = request.into_inner();
        let chunks = self
            .services
            .collect_artefact(request.ceremony_id, request.offset, request.header_sha256)
            .await
            .map_err(ceremony_status)?;
        Ok(Response::new(Box::pin(chunks.map(|chunk| {
            chunk
                .map(|chunk| ArtefactChunk {
                    offset: chunk.offset,
                    data: chunk.data,
                    total_size: chunk.complete_size.unwrap_or(0),
                })
                .map_err(ceremony_status)
        }))))
    }
}
