//! `AccessService`: custodians' challenges, and who the caller is taken to
//! be. The access layer has already authenticated the caller.

use std::sync::Arc;

use rkm_proto::v1::access_service_server::AccessService;
use rkm_proto::v1::{GetChallengeRequest, GetChallengeResponse, WhoAmIRequest, WhoAmIResponse};
use tonic::{Request, Response, Status};

use super::caller;
use crate::access::custodian_auth::{CustodianAuthenticator, IssueError};

/// Serves [`AccessService`].
#[derive(Debug, Clone)]
pub struct AccessApi {
    pub custodians: Arc<CustodianAuthenticator>,
}

#[tonic::async_trait]
impl AccessService for AccessApi {
    async fn get_challenge(
        &self,
        request: Request<GetChallengeRequest>,
    ) -> Result<Response<GetChallengeResponse>, Status> {
        let caller = caller(&request);
        let name = caller
            .custodian()
            .ok_or_else(|| Status::permission_denied("only a custodian gets a challenge"))?;
        let (challenge, expires) = self.custodians.issue(name).map_err(|error| match error {
            IssueError::Full => Status::resource_exhausted(error.to_string()),
            IssueError::Rng => Status::internal(error.to_string()),
        })?;
        Ok(Response::new(GetChallengeResponse {
            challenge: challenge.to_vec(),
            expires_at: rkm_proto::encoding::time::format_rfc3339_seconds(expires),
        }))
    }

    async fn who_am_i(
        &self,
        request: Request<WhoAmIRequest>,
    ) -> Result<Response<WhoAmIResponse>, Status> {
        let caller = caller(&request);
        Ok(Response::new(WhoAmIResponse {
            identity: caller.actor(),
            roles: caller
                .roles
                .iter()
                .map(|role| role.name().to_owned())
                .collect(),
        }))
    }
}
