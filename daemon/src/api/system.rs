//! `SystemService`: what this rkmd runs on, for operators and monitoring. It
//! reads the HSM and the store directly, not through `ceremony`: it changes
//! nothing and reports on the layers themselves (token, record counts).

use rkm_proto::fingerprint::{fingerprint, signed_note_verifier_key};
use rkm_proto::v1::system_service_server::SystemService;
use rkm_proto::v1::{
    AuditKeyStatus, GetStatusRequest, GetStatusResponse, HsmHealthStatus, MechanismStatus,
    RecordCount, TokenStatus,
};
use tonic::{Request, Response, Status};

use super::store_status;
use crate::hsm::{AuditKey, Hsm, HsmHealth, ObjectCounts};
use crate::store::Store;

/// Serves [`SystemService`].
#[derive(Debug, Clone)]
pub struct SystemApi {
    pub hsm: Hsm,
    pub store: Store,
    pub audit_key: AuditKey,
    pub audit_origin: String,
    pub started_at_unix: u64,
}

#[tonic::async_trait]
impl SystemService for SystemApi {
    #[tracing::instrument(skip_all)]
    async fn get_status(
        &self,
        _request: Request<GetStatusRequest>,
    ) -> Result<Response<GetStatusResponse>, Status> {
        let token = self.hsm.description();
        let counts = self.store.counts().await.map_err(store_status)?;
        let health = self.hsm.health();
        // A failing token is not asked anything: the supervisor is at it.
        let objects = match health {
            HsmHealth::Serving => self.hsm.count_objects().await.map_err(super::hsm_status)?,
            HsmHealth::Failing(_) => ObjectCounts {
                session_objects: 0,
                token_objects: 0,
            },
        };
        let public_key = self.audit_key.public_key;
        Ok(Response::new(GetStatusResponse {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            token: Some(TokenStatus {
                label: token.label.clone(),
                manufacturer: token.manufacturer.clone(),
                model: token.model.clone(),
                serial_number: token.serial_number.clone(),
                library_description: token.library_description.clone(),
                library_version: token.library_version.clone(),
            }),
            mechanisms: token
                .mechanisms
                .iter()
                .map(|(mechanism, present)| MechanismStatus {
                    name: mechanism.name.to_owned(),
                    purpose: mechanism.purpose.to_owned(),
                    present: *present,
                })
                .collect(),
            audit_key: Some(AuditKeyStatus {
                public_key: public_key.to_vec(),
                fingerprint: fingerprint(&public_key),
                verifier_key: signed_note_verifier_key(&self.audit_origin, &public_key),
            }),
            counts: counts
                .into_iter()
                .map(|(kind, count)| RecordCount { kind, count })
                .collect(),
            started_at_unix: self.started_at_unix,
            hsm_workers: u32::try_from(self.hsm.worker_count()).unwrap_or(u32::MAX),
            hsm_session_objects: objects.session_objects as u64,
            hsm_token_objects: objects.token_objects as u64,
            hsm_health: Some(health_status(&health)),
        }))
    }
}

fn health_status(health: &HsmHealth) -> HsmHealthStatus {
    match health {
        HsmHealth::Serving => HsmHealthStatus {
            serving: true,
            ..HsmHealthStatus::default()
        },
        HsmHealth::Failing(outage) => HsmHealthStatus {
            serving: false,
            cause: outage.cause.clone(),
            failing_since_unix: outage
                .since
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs()),
            attempts: outage.attempts,
            last_attempt: outage.last_attempt.clone(),
            next_attempt_seconds: outage
                .next_attempt_in
                .map(|pause| u32::try_from(pause.as_secs().max(1)).unwrap_or(u32::MAX)),
        },
    }
}
