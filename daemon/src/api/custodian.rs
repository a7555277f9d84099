//! `CustodianService`: enrolment (operators) and notices (custodians).

use rkm_proto::v1::custodian_service_server::CustodianService;
use rkm_proto::v1::{
    AcknowledgeNoticeRequest, AcknowledgeNoticeResponse, Custodian, DisableCustodianRequest,
    DisableCustodianResponse, EnrolCustodianRequest, EnrolCustodianResponse, ListCustodiansRequest,
    ListCustodiansResponse, ListNoticesRequest, ListNoticesResponse, Notice,
};
use tonic::{Request, Response, Status};

use super::{actor, ceremony_status};
use crate::ceremony::{Services, custodians, notices};

/// Serves [`CustodianService`].
#[derive(Debug, Clone)]
pub struct CustodianApi {
    pub services: Services,
}

fn to_proto(custodian: custodians::Custodian) -> Custodian {
    Custodian {
        name: custodian.name,
        ed25519_public_key: custodian.ed25519_public_key.to_vec(),
        age_recipient: custodian.age_recipient,
        fingerprint: custodian.fingerprint,
        enabled: custodian.enabled,
        enrolled_at: custodian.enrolled_at,
        disabled_reason: custodian.disabled_reason,
    }
}

fn notice_to_proto(notice: notices::Notice) -> Notice {
    Notice {
        notice_id: notice.notice_id,
        ceremony_id: notice.ceremony_id,
        custodian: notice.custodian,
        text: notice.text,
        sent_at: notice.sent_at,
        acknowledged_at: notice.acknowledged_at,
    }
}

#[tonic::async_trait]
impl CustodianService for CustodianApi {
    #[tracing::instrument(skip_all)]
    async fn enrol_custodian(
        &self,
        request: Request<EnrolCustodianRequest>,
    ) -> Result<Response<EnrolCustodianResponse>, Status> {
        let actor = actor(&request);
        let custodian = self
            .services
            .enrol_custodian(&actor, request.into_inner().card)
            .await
            .map_err(ceremony_status)?;
        Ok(Response::new(EnrolCustodianResponse {
            custodian: Some(to_proto(custodian)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_custodians(
        &self,
        _request: Request<ListCustodiansRequest>,
    ) -> Result<Response<ListCustodiansResponse>, Status> {
        let custodians = self
            .services
            .list_custodians()
            .await
            .map_err(ceremony_status)?;
        Ok(Response::new(ListCustodiansResponse {
            custodians: custodians.into_iter().map(to_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn disable_custodian(
        &self,
        request: Request<DisableCustodianRequest>,
    ) -> Result<Response<DisableCustodianResponse>, Status> {
        let actor = actor(&request);
        let request = request.into_inner();
        let custodian = self
            .services
            .disable_custodian(&actor, request.name, request.reason)
            .await
            .map_err(ceremony_status)?;
        Ok(Response::new(DisableCustodianResponse {
            custodian: Some(to_proto(custodian)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_notices(
        &self,
        request: Request<ListNoticesRequest>,
    ) -> Result<Response<ListNoticesResponse>, Status> {
        let notices = self
            .services
            .list_notices(request.into_inner().custodian)
            .await
            .map_err(ceremony_status)?;
        Ok(Response::new(ListNoticesResponse {
            notices: notices.into_iter().map(notice_to_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn acknowledge_notice(
        &self,
        request: Request<AcknowledgeNoticeRequest>,
    ) -> Result<Response<AcknowledgeNoticeResponse>, Status> {
        let peer = actor(&request);
        let request = request.into_inner();
        let notice = self
            .services
            .acknowledge_notice(
                &peer,
                request.notice_id,
                request.custodian,
                request.signature,
            )
            .await
            .map_err(ceremony_status)?;
        Ok(Response::new(AcknowledgeNoticeResponse {
            notice: Some(notice_to_proto(notice)),
        }))
    }
}
