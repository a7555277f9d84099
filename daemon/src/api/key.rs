//! `KeyService`: the key generation ceremony (operators), share envelopes and
//! receipts (custodians).

use rkm_proto::v1::key_service_server::KeyService;
use rkm_proto::v1::{
    AttestShareRequest, AttestShareResponse, CreateKeyRequest, CreateKeyResponse,
    FetchEnvelopeRequest, FetchEnvelopeResponse, GetKeyRequest, GetKeyResponse, ImportKeyRequest,
    ImportKeyResponse, KeyState, KeySummary, ListKeysRequest, ListKeysResponse,
    QuorumHealth as ProtoQuorumHealth, ReceiptStatus, SubmitReceiptRequest, SubmitReceiptResponse,
};
use tonic::{Request, Response, Status};

use super::{actor, ceremony_status};
use crate::ceremony::Services;
use crate::ceremony::keygen::quorum::{QuorumHealth, quorum_view};
use crate::ceremony::keygen::{self, KeyRequest};

/// Serves [`KeyService`].
#[derive(Debug, Clone)]
pub struct KeyApi {
    pub services: Services,
}

fn to_proto(key: keygen::KeySummary, attestation_window_days: u32) -> KeySummary {
    let quorum = quorum_view(&key, attestation_window_days, keygen::unix_now());
    let attested_recently = quorum.attested_recently.iter().filter(|a| **a).count();
    KeySummary {
        key_id: key.key_id,
        label: key.label,
        state: match key.state {
            keygen::KeyState::AwaitingReceipts => KeyState::AwaitingReceipts,
            keygen::KeyState::Active => KeyState::Active,
        } as i32,
        threshold: u32::from(key.threshold),
        public_key_spki: key.public_key_spki,
        signed_key_record: key.signed_key_record,
        receipts: key
            .receipts
            .into_iter()
            .zip(quorum.usable.iter().zip(&quorum.attested_recently))
            .map(|(receipt, (usable, attested_recently))| ReceiptStatus {
                attested_recently: *attested_recently,
                enabled: receipt.enabled,
                usable: *usable,
                custodian: receipt.custodian,
                received: receipt.received_at.is_some(),
                received_at: receipt.received_at.unwrap_or_default(),
                attested_at: receipt.attested.map(|(at, _)| at).unwrap_or_default(),
            })
            .collect(),
        ceremony_id: key.ceremony_id,
        created_at: key.created_at,
        record_audit_key: key.record_audit_key,
        attested_recently: u32::try_from(attested_recently).unwrap_or(u32::MAX),
        attestation_window_days,
        usable_custodians: quorum.usable_count,
        quorum_health: match quorum.health {
            QuorumHealth::Healthy => ProtoQuorumHealth::Healthy,
            QuorumHealth::OneLossFromGone => ProtoQuorumHealth::OneLossFromGone,
            QuorumHealth::AtRisk => ProtoQuorumHealth::AtRisk,
            QuorumHealth::AwaitingReceipts => ProtoQuorumHealth::AwaitingReceipts,
        } as i32,
        receipts_due: quorum.receipts_due.unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl KeyService for KeyApi {
    #[tracing::instrument(skip_all)]
    async fn create_key(
        &self,
        request: Request<CreateKeyRequest>,
    ) -> Result<Response<CreateKeyResponse>, Status> {
        let actor = actor(&request);
        let request = request.into_inner();
        let key = self
            .services
            .create_key(
                &actor,
                KeyRequest {
                    label: request.label,
                    threshold: request.threshold,
                    custodians: request.custodians,
                    allow_single_custodian: request.allow_single_custodian,
                },
            )
            .await
            .map_err(ceremony_status)?;
        let ceremony_id = key.ceremony_id.clone();
        Ok(Response::new(CreateKeyResponse {
            key: Some(to_proto(key, self.services.attestation_window_days)),
            ceremony_id,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_key(
        &self,
        request: Request<GetKeyRequest>,
    ) -> Result<Response<GetKeyResponse>, Status> {
        let key = self
            .services
            .get_key(request.into_inner().key)
            .await
            .map_err(ceremony_status)?;
        Ok(Response::new(GetKeyResponse {
            key: Some(to_proto(key, self.services.attestation_window_days)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_keys(
        &self,
        _request: Request<ListKeysRequest>,
    ) -> Result<Response<ListKeysResponse>, Status> {
        let keys = self.services.list_keys().await.map_err(ceremony_status)?;
        Ok(Response::new(ListKeysResponse {
            keys: keys
                .into_iter()
                .map(|key| to_proto(key, self.services.attestation_window_days))
                .collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn fetch_envelope(
        &self,
        request: Request<FetchEnvelopeRequest>,
    ) -> Result<Response<FetchEnvelopeResponse>, Status> {
        let peer = actor(&request);
        let request = request.into_inner();
        let fetched = self
            .services
            .fetch_envelope(
                &peer,
                request.key,
                request.custodian,
                request.unix_time,
                request.signature,
            )
            .await
            .map_err(ceremony_status)?;
        Ok(Response::new(FetchEnvelopeResponse {
            key_id: fetched.key_id,
            envelope: fetched.envelope,
            signed_key_record: fetched.signed_key_record,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn submit_receipt(
        &self,
        request: Request<SubmitReceiptRequest>,
    ) -> Result<Response<SubmitReceiptResponse>, Status> {
        let peer = actor(&request);
        let request = request.into_inner();
        let key = self
            .services
            .submit_receipt(
                &peer,
                request.key_id,
                request.custodian,
                request.signature,
                request.possession_proof,
            )
            .await
            .map_err(ceremony_status)?;
        Ok(Response::new(SubmitReceiptResponse {
            key: Some(to_proto(key, self.services.attestation_window_days)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn attest_share(
        &self,
        request: Request<AttestShareRequest>,
    ) -> Result<Response<AttestShareResponse>, Status> {
        let peer = actor(&request);
        let request = request.into_inner();
        let key = self
            .services
            .attest_share(
                &peer,
                request.key_id,
                request.custodian,
                request.unix_time,
                request.signature,
                request.possession_proof,
            )
            .await
            .map_err(ceremony_status)?;
        Ok(Response::new(AttestShareResponse {
            key: Some(to_proto(key, self.services.attestation_window_days)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn import_key(
        &self,
        request: Request<ImportKeyRequest>,
    ) -> Result<Response<ImportKeyResponse>, Status> {
        let actor = actor(&request);
        let request = request.into_inner();
        let key = self
            .services
            .import_key(&actor, request.signed_key_record, request.record_audit_key)
            .await
            .map_err(ceremony_status)?;
        let ceremony_id = key.ceremony_id.clone();
        Ok(Response::new(ImportKeyResponse {
            key: Some(to_proto(key, self.services.attestation_window_days)),
            ceremony_id,
        }))
    }
}
