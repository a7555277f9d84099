//! The tower layer in front of every service: it names the caller, finds
//! the method's [`Rule`], and either passes the request on with a
//! [`Caller`] in its extensions or answers with Unauthenticated /
//! PermissionDenied itself, audited. Handlers never decide who may call.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use rkm_proto::access::limits::{LimitError, UNLISTED, method_limits};
use rkm_proto::access::{ACCESS_REFUSED_METADATA, CUSTODIAN_AUTH_METADATA};
use tonic::Status;
use tonic::body::Body;
use tower::{Layer, Service};

use super::bounds::{BodyError, CheckedStream, read_unary, reframe, refusal_details};
use super::custodian_auth::{
    CustodianAuthError, CustodianAuthenticator, decode_auth, string_field,
};
use super::guard::{Admission, Guard, Refusal};
use super::peer::PeerInfo;
use super::policy::{Rule, rule};
use super::roles::RoleMap;
use super::{Caller, Identity, Role};
use crate::hsm::{Hsm, HsmHealth};

/// gRPC binary metadata is base64, padded or not depending on the client.
const METADATA_BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// Everything the layer decides with; one per daemon.
#[derive(Debug)]
pub struct AccessControl {
    pub roles: RoleMap,
    pub guard: Arc<Guard>,
    pub custodians: Arc<CustodianAuthenticator>,
    /// While it fails, requests the services refuse as Unavailable are
    /// audited here: they fail before an action's own entry is made.
    pub hsm: Hsm,
}

/// Wraps a service in the access checks.
#[derive(Debug, Clone)]
pub struct AccessLayer {
    control: Arc<AccessControl>,
}

impl AccessLayer {
    pub fn new(control: Arc<AccessControl>) -> Self {
        Self { control }
    }
}

impl<S> Layer<S> for AccessLayer {
    type Service = AccessService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AccessService {
            inner,
            control: self.control.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AccessService<S> {
    inner: S,
    control: Arc<AccessControl>,
}

/// A refusal decided by the layer.
struct Denied {
    status: Status,
    /// For the `rkm-access-refused` response entry.
    kind: &'static str,
    refusal: Refusal,
    /// Counts as an authentication failure (not a missing role).
    counts_as_failure: bool,
    lockout_keys: Vec<String>,
}

impl<S> Service<http::Request<Body>> for AccessService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The clone that was driven to readiness serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let control = self.control.clone();
        Box::pin(async move {
            match admit(&control, request).await {
                Ok(request) => {
                    let asked = Asked::of(&request);
                    let response = inner.call(request).await?;
                    let status = Status::from_header_map(response.headers());
                    audit_outage_refusal(&control, asked, status).await;
                    Ok(bounded_status(response))
                }
                Err(denied) => Ok(bounded_status(refuse(&control, denied).await)),
            }
        })
    }
}

/// Who asked for what, kept while the service answers.
struct Asked {
    method: String,
    actor: String,
    peer: String,
}

impl Asked {
    fn of(request: &http::Request<Body>) -> Self {
        let caller = request.extensions().get::<Caller>();
        Self {
            method: request.uri().path().to_owned(),
            actor: caller.map_or_else(|| "unknown".to_owned(), Caller::actor),
            peer: caller.map_or_else(|| "unknown".to_owned(), |caller| caller.peer.clone()),
        }
    }
}

/// Records a request refused as Unavailable while the HSM is failing: the
/// service refused it before building the entry of its action, and a refusal
/// is always audited (aggregated per burst, as every refusal of the layer).
async fn audit_outage_refusal(control: &AccessControl, asked: Asked, status: Option<Status>) {
    let Some(status) = status else {
        return;
    };
    if status.code() != tonic::Code::Unavailable
        || matches!(control.hsm.health(), HsmHealth::Serving)
    {
        return;
    }
    control
        .guard
        .refused(Refusal {
            actor: asked.actor,
            peer: asked.peer,
            method: asked.method,
            subject: None,
            reason: rkm_proto::encoding::text::bounded_message(status.message(), 1024),
            details: vec![("refused_for", "hsm unavailable".to_owned())],
        })
        .await;
}

/// Longest `grpc-message` sent, in bytes. A message that quotes a huge
/// input would otherwise exceed the client's header limit and arrive as an
/// HTTP/2 protocol error instead of the refusal.
const MAX_STATUS_MESSAGE: usize = 2048;

/// The response with its status message cut to [`MAX_STATUS_MESSAGE`] (errors
/// in headers: unary refusals and trailers-only responses).
fn bounded_status(mut response: http::Response<Body>) -> http::Response<Body> {
    let Some(status) = Status::from_header_map(response.headers()) else {
        return response;
    };
    if status.message().len() <= MAX_STATUS_MESSAGE {
        return response;
    }
    let message = rkm_proto::encoding::text::bounded_message(status.message(), MAX_STATUS_MESSAGE);
    if Status::new(status.code(), message)
        .add_header(response.headers_mut())
        .is_err()
    {
        tracing::warn!("could not shorten a status message");
    }
    response
}

async fn refuse(control: &AccessControl, denied: Denied) -> http::Response<Body> {
    let keys: Vec<&str> = denied.lockout_keys.iter().map(String::as_str).collect();
    if denied.counts_as_failure {
        control.guard.failed(&keys, &denied.refusal.peer).await;
    }
    control.guard.refused(denied.refusal).await;
    let mut response = denied.status.into_http::<Body>();
    response.headers_mut().insert(
        ACCESS_REFUSED_METADATA,
        http::HeaderValue::from_static(denied.kind),
    );
    response
}

async fn admit(
    control: &AccessControl,
    request: http::Request<Body>,
) -> Result<http::Request<Body>, Denied> {
    let method = request.uri().path().to_owned();
    let peer = request
        .extensions()
        .get::<PeerInfo>()
        .cloned()
        .unwrap_or(PeerInfo::Local { uid: None });
    let peer_text = peer.describe();
    let peer_key = peer.lockout_key();
    let denied =
        |status: Status, kind, actor: String, reason: String, keys: Vec<String>, failure| Denied {
            status,
            kind,
            refusal: Refusal {
                actor,
                peer: peer_text.clone(),
                method: method.clone(),
                subject: None,
                reason,
                details: Vec::new(),
            },
            counts_as_failure: failure,
            lockout_keys: keys,
        };

    let claimed_custodian = request.headers().get(CUSTODIAN_AUTH_METADATA).map(|value| {
        use base64::Engine as _;
        METADATA_BASE64.decode(value.as_bytes()).ok()
    });
    let mut keys = vec![peer_key.clone()];
    let auth = match claimed_custodian {
        Some(Some(bytes)) => match decode_auth(&bytes) {
            Ok(auth) => Some(auth),
            Err(error) => {
                return Err(denied(
                    Status::unauthenticated(error.to_string()),
                    "unauthenticated",
                    "anonymous".to_owned(),
                    error.to_string(),
                    keys,
                    true,
                ));
            }
        },
        Some(None) => {
            let reason = "the custodian authentication entry is not base64".to_owned();
            return Err(denied(
                Status::unauthenticated(reason.clone()),
                "unauthenticated",
                "anonymous".to_owned(),
                reason,
                keys,
                true,
            ));
        }
        None => None,
    };
    if let Some(auth) = &auth {
        keys.push(format!("custodian:{}", auth.custodian));
    }
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    match control.guard.admission(&key_refs) {
        Admission::Locked { until } => {
            let reason = format!(
                "too many failed attempts: refused until {}",
                rkm_proto::encoding::time::format_rfc3339_seconds(until)
            );
            let actor = auth.as_ref().map_or_else(
                || "anonymous".to_owned(),
                |a| format!("custodian:{}", a.custodian),
            );
            return Err(denied(
                Status::permission_denied(reason.clone()),
                "locked",
                actor,
                reason,
                keys,
                false,
            ));
        }
        Admission::Delay(delay) => tokio::time::sleep(delay).await,
        Admission::Admit => {}
    }

    let Some(rule) = rule(&method) else {
        let reason = format!("{method} is not a method rkmd serves");
        return Err(denied(
            Status::unimplemented(reason.clone()),
            "unknown-method",
            staff_identity(control, &peer).0.actor(),
            reason,
            keys,
            false,
        ));
    };

    let limits = method_limits(&method);
    let (request, caller) = match auth {
        Some(auth) => {
            let claimed = format!("custodian:{}", auth.custodian);
            let limits = limits.unwrap_or(&UNLISTED);
            let (parts, body) = request.into_parts();
            let message = match read_unary(body, limits).await {
                Ok(message) => message,
                Err(BodyError::Limit(error)) => {
                    return Err(over_limit(denied, &error, claimed, keys));
                }
                Err(error) => {
                    let reason = error.to_string();
                    return Err(denied(
                        Status::invalid_argument(reason.clone()),
                        "unauthenticated",
                        claimed,
                        reason,
                        keys,
                        true,
                    ));
                }
            };
            let subject = rule
                .subject_field
                .and_then(|field| string_field(&message, field).ok())
                .filter(|subject| !subject.is_empty());
            let with_subject = |mut denied: Denied| {
                denied.refusal.subject = subject.clone();
                denied
            };
            let name = match control
                .custodians
                .authenticate(&method, &auth, &message)
                .await
            {
                Ok(name) => name,
                Err(error) => {
                    let (status, failure) = match &error {
                        CustodianAuthError::Disabled { .. } => {
                            (Status::permission_denied(error.to_string()), false)
                        }
                        CustodianAuthError::Store => {
                            (Status::unavailable(error.to_string()), false)
                        }
                        _ => (Status::unauthenticated(error.to_string()), true),
                    };
                    return Err(with_subject(denied(
                        status,
                        "unauthenticated",
                        claimed,
                        error.to_string(),
                        keys,
                        failure,
                    )));
                }
            };
            if let Err(reason) = check_acting_for(rule, &message, &name) {
                return Err(with_subject(denied(
                    Status::permission_denied(reason.clone()),
                    "role",
                    claimed,
                    reason,
                    keys,
                    false,
                )));
            }
            let caller = Caller {
                identity: Identity::Custodian { name },
                peer: peer_text.clone(),
                roles: vec![Role::Custodian],
            };
            (http::Request::from_parts(parts, reframe(&message)), caller)
        }
        None => {
            let (identity, roles) = staff_identity(control, &peer);
            let caller = Caller {
                identity,
                peer: peer_text.clone(),
                roles,
            };
            (request, caller)
        }
    };
    let custodian_checked = caller.custodian().is_some();

    if !rule.public && !rule.roles.iter().any(|role| caller.holds(*role)) {
        let needed: Vec<&str> = rule.roles.iter().map(|role| role.name()).collect();
        let (status, kind) = if caller.identity == Identity::Anonymous {
            (
                Status::unauthenticated(format!(
                    "{method} needs a caller with the role {}: present a client certificate from the organisation's CA, or sign as a custodian",
                    needed.join(" or ")
                )),
                "unauthenticated",
            )
        } else {
            (
                Status::permission_denied(format!(
                    "{} holds no role that may call {method} (needs {}; holds {})",
                    caller.actor(),
                    needed.join(" or "),
                    if caller.roles.is_empty() {
                        "none".to_owned()
                    } else {
                        caller
                            .roles
                            .iter()
                            .map(|r| r.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                )),
                "role",
            )
        };
        let mut refused = denied(
            status,
            kind,
            caller.actor(),
            format!("needs role {}", needed.join(" or ")),
            keys,
            false,
        );
        refused.refusal.details.push((
            "roles_held",
            caller
                .roles
                .iter()
                .map(|r| r.name())
                .collect::<Vec<_>>()
                .join(","),
        ));
        return Err(refused);
    }
    let mut request = match limits {
        // A custodian's request was read and checked to verify its signature.
        Some(limits) if !custodian_checked => {
            let (parts, body) = request.into_parts();
            let body = if limits.client_streaming {
                let refusal = denied(
                    Status::ok(""),
                    "limit",
                    caller.actor(),
                    String::new(),
                    Vec::new(),
                    false,
                )
                .refusal;
                Body::new(CheckedStream::new(
                    body,
                    limits,
                    control.guard.clone(),
                    refusal,
                ))
            } else {
                match read_unary(body, limits).await {
                    Ok(message) => reframe(&message),
                    Err(BodyError::Limit(error)) => {
                        return Err(over_limit(denied, &error, caller.actor(), keys));
                    }
                    Err(error) => {
                        let reason = error.to_string();
                        return Err(denied(
                            Status::invalid_argument(reason.clone()),
                            "limit",
                            caller.actor(),
                            reason,
                            keys,
                            false,
                        ));
                    }
                }
            };
            http::Request::from_parts(parts, body)
        }
        _ => request,
    };
    request.extensions_mut().insert(caller);
    Ok(request)
}

/// The refusal of a request over one of its method's limits: never an
/// authentication failure, recorded by the limit's kind (so that a burst
/// aggregates) with the field, sizes and the value's start and SHA-256.
fn over_limit(
    denied: impl Fn(Status, &'static str, String, String, Vec<String>, bool) -> Denied,
    error: &LimitError,
    actor: String,
    keys: Vec<String>,
) -> Denied {
    let mut refused = denied(
        Status::invalid_argument(format!(
            "{error}; see \"Limits and bad input\" in rkm's README"
        )),
        "limit",
        actor,
        error.kind(),
        keys,
        false,
    );
    refused.refusal.details = refusal_details(error);
    refused
}

/// Who the transport says is calling, and the roles configured for them.
fn staff_identity(control: &AccessControl, peer: &PeerInfo) -> (Identity, Vec<Role>) {
    match peer {
        PeerInfo::Local { uid: Some(uid) } => (
            Identity::LocalUser { uid: *uid },
            control.roles.uid_roles(*uid),
        ),
        PeerInfo::Local { uid: None } => (Identity::Anonymous, Vec::new()),
        PeerInfo::Tls {
            certificate: Some(certificate),
            ..
        } => (
            Identity::Certificate(certificate.clone()),
            control.roles.certificate_roles(certificate),
        ),
        PeerInfo::Tls {
            certificate: None, ..
        } => (Identity::Anonymous, Vec::new()),
    }
}

/// A custodian acts only for themself: the request's custodian field must
/// name the caller.
fn check_acting_for(rule: Rule, message: &[u8], name: &str) -> Result<(), String> {
    let Some(field) = rule.custodian_field else {
        return Ok(());
    };
    let named = string_field(message, field).map_err(|error| error.to_string())?;
    if named != name {
        return Err(format!(
            "custodian {name:?} cannot act for custodian {named:?}: a custodian signs only their own requests"
        ));
    }
    Ok(())
}
