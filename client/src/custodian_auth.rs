//! Signing a custodian's requests: every RPC a custodian makes carries, in
//! its `rkm-custodian-auth-bin` metadata, a signature with their identity
//! key over the method, a fresh challenge from rkmd, the time and the
//! request's bytes (see `rkm_proto::access`). rkmd checks it before any
//! handler runs, so a custodian needs no certificate from the organisation.

use crate::connect::stubs;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use prost::Message;
use rkm_proto::access::{
    CUSTODIAN_AUTH_METADATA, GET_CHALLENGE_METHOD, custodian_request_message, request_digest,
};
use rkm_proto::identity::CustodianIdentity;
use rkm_proto::v1::{CustodianAuth, GetChallengeRequest};
use tonic::metadata::{Binary, MetadataValue};
use tonic::transport::Channel;

use crate::exit::RpcResultExt as _;
use crate::passphrase::{PassphraseArgs, open_identity};

/// A custodian's identity, for the commands they run without a certificate.
#[derive(Debug, clap::Args)]
pub struct CustodianIdentityArgs {
    /// Your identity file, to ask as a custodian (no client certificate).
    #[arg(long, value_name = "FILE")]
    pub identity: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

/// `request` as its caller sends it: signed by the custodian whose identity
/// is given, after `name_custodian` puts their name in it; as it is, for
/// staff.
///
/// # Errors
/// The identity cannot be opened, or rkmd gives no challenge.
pub async fn as_caller<T: Message>(
    channel: &Channel,
    identity: &CustodianIdentityArgs,
    rpc: &'static str,
    mut request: T,
    name_custodian: impl FnOnce(&mut T, &str),
) -> anyhow::Result<tonic::Request<T>> {
    let Some(path) = &identity.identity else {
        return Ok(tonic::Request::new(request));
    };
    let identity = open_identity(path, &identity.passphrase)?;
    name_custodian(&mut request, identity.name());
    signed_request(channel, &identity, rpc, request).await
}

/// Full gRPC paths of the methods custodians call.
pub mod method {
    pub const GET_AUDIT_KEY: &str = "/rkm.v1.AuditService/GetAuditKey";
    pub const GET_KEY: &str = "/rkm.v1.KeyService/GetKey";
    pub const FETCH_ENVELOPE: &str = "/rkm.v1.KeyService/FetchEnvelope";
    pub const SUBMIT_RECEIPT: &str = "/rkm.v1.KeyService/SubmitReceipt";
    pub const ATTEST_SHARE: &str = "/rkm.v1.KeyService/AttestShare";
    pub const GET_RECOVERY: &str = "/rkm.v1.RecoveryService/GetRecovery";
    pub const LIST_RECOVERIES: &str = "/rkm.v1.RecoveryService/ListRecoveries";
    pub const GET_APPROVAL_NONCE: &str = "/rkm.v1.RecoveryService/GetApprovalNonce";
    pub const APPROVE: &str = "/rkm.v1.RecoveryService/Approve";
    pub const LIST_NOTICES: &str = "/rkm.v1.CustodianService/ListNotices";
    pub const ACKNOWLEDGE_NOTICE: &str = "/rkm.v1.CustodianService/AcknowledgeNotice";
}

/// `message` to `method`, signed by `identity` over a fresh challenge.
///
/// # Errors
/// rkmd refuses the challenge request (unknown or disabled custodian,
/// clock skew, lockout) or cannot be reached.
pub async fn signed_request<M: Message>(
    channel: &Channel,
    identity: &CustodianIdentity,
    method: &'static str,
    message: M,
) -> anyhow::Result<tonic::Request<M>> {
    let challenge = challenge(channel, identity).await?;
    sign(identity, method, &challenge, message)
}

/// A fresh challenge from rkmd for `identity` to sign a request over.
///
/// # Errors
/// rkmd refuses (unknown or disabled custodian, lockout) or cannot be reached.
pub async fn challenge(channel: &Channel, identity: &CustodianIdentity) -> anyhow::Result<Vec<u8>> {
    let request = sign(
        identity,
        GET_CHALLENGE_METHOD,
        &[],
        GetChallengeRequest {
            custodian: identity.name().to_owned(),
            client_nonce: client_nonce()?.to_vec(),
        },
    )?;
    Ok(stubs::access(channel.clone())
        .get_challenge(request)
        .await
        .rpc("authenticating to rkmd as a custodian")?
        .into_inner()
        .challenge)
}

fn client_nonce() -> anyhow::Result<[u8; 16]> {
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce)
        .map_err(|error| anyhow::anyhow!("the system random number generator failed: {error}"))?;
    Ok(nonce)
}

fn sign<M: Message>(
    identity: &CustodianIdentity,
    method: &'static str,
    challenge: &[u8],
    message: M,
) -> anyhow::Result<tonic::Request<M>> {
    // tonic's codec writes exactly these bytes into the request's frame.
    let auth = authorisation(identity, method, challenge, &message.encode_to_vec())?;
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert_bin(CUSTODIAN_AUTH_METADATA, auth);
    Ok(request)
}

/// The `rkm-custodian-auth-bin` entry of a request to `method` whose
/// message encodes to `request_bytes`, signed by `identity` over
/// `challenge` and the time now.
///
/// # Errors
/// The clock is before 1970.
pub fn authorisation(
    identity: &CustodianIdentity,
    method: &str,
    challenge: &[u8],
    request_bytes: &[u8],
) -> anyhow::Result<MetadataValue<Binary>> {
    let unix_time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("this machine's clock is before 1970")?
        .as_secs();
    Ok(authorisation_at(
        identity,
        method,
        challenge,
        request_bytes,
        unix_time,
    ))
}

/// [`authorisation`] at a given time (seconds since the Unix epoch).
pub fn authorisation_at(
    identity: &CustodianIdentity,
    method: &str,
    challenge: &[u8],
    request_bytes: &[u8],
    unix_time: u64,
) -> MetadataValue<Binary> {
    let digest = request_digest(request_bytes);
    let signature = identity.sign(&custodian_request_message(
        method,
        identity.name(),
        challenge,
        unix_time,
        &digest,
    ));
    let auth = CustodianAuth {
        custodian: identity.name().to_owned(),
        challenge: challenge.to_vec(),
        unix_time,
        signature: signature.to_vec(),
    };
    MetadataValue::from_bytes(&auth.encode_to_vec())
}
