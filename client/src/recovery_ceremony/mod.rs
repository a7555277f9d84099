//! A recovery (or drill) ceremony as rkm sees it: read from rkmd, its
//! request checked against the digest rkmd states (recomputed here), and
//! printed for people and programs; and opening one (`opening`), which both
//! `rkm recovery open` and `rkm drill open` do.

pub mod opening;

use std::fmt::Write as _;

use anyhow::Context as _;
use rkm_proto::recovery_request::{CanonicalRequest, request_digest};
use rkm_proto::v1::recovery_service_client::RecoveryServiceClient;
use rkm_proto::v1::{GetRecoveryRequest, RecoverySummary};
use serde::Serialize;
use tonic::transport::Channel;

use crate::exit::{RpcError, RpcResultExt as _, VerificationFailed};
use crate::ui::recovery_state_name;

/// One approval as `--output json` prints it.
#[derive(Debug, Serialize)]
pub struct ApprovalReport {
    pub custodian: String,
    pub approved_at: String,
    pub commitment: String,
}

/// A recovery ceremony as `--output json` prints it.
#[derive(Debug, Serialize)]
pub struct RecoveryReport {
    pub ceremony_id: String,
    pub key_id: String,
    pub key_label: String,
    /// `recovery` or `drill`.
    pub kind: &'static str,
    pub state: &'static str,
    /// Hex SHA-256 request digest, as custodians approve it.
    pub request_digest: String,
    pub target_count: u64,
    pub threshold: u32,
    pub approval_count: usize,
    pub approvals: Vec<ApprovalReport>,
    pub opened_by: String,
    pub opened_at: String,
    pub expires_at: String,
    /// Two-person rule: no approval is taken until a second operator
    /// confirms (`rkm recovery confirm`).
    pub awaiting_confirmation: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmed_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmed_at: Option<String>,
    pub signed_count: u64,
    pub artefact_size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The age recipient shares are sealed to while the ceremony is open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ceremony_recipient: Option<String>,
    /// The canonical request (its JSON), once checked against the digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<serde_json::Value>,
    /// What custodians are shown ([`CanonicalRequest::describe`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl RecoveryReport {
    /// The report of `summary`; with `request` (already checked by
    /// [`checked_request`]) it carries the decoded request too.
    pub fn new(summary: &RecoverySummary, request: Option<&CanonicalRequest>) -> Self {
        RecoveryReport {
            ceremony_id: summary.ceremony_id.clone(),
            key_id: summary.key_id.clone(),
            key_label: summary.key_label.clone(),
            kind: if summary.drill { "drill" } else { "recovery" },
            state: recovery_state_name(summary.state),
            request_digest: hex::encode(&summary.request_digest),
            target_count: summary.target_count,
            threshold: summary.threshold,
            approval_count: summary.approvals.len(),
            approvals: summary
                .approvals
                .iter()
                .map(|approval| ApprovalReport {
                    custodian: approval.custodian.clone(),
                    approved_at: approval.approved_at.clone(),
                    commitment: hex::encode(&approval.commitment),
                })
                .collect(),
            opened_by: summary.opened_by.clone(),
            opened_at: summary.opened_at.clone(),
            expires_at: summary.expires_at.clone(),
            awaiting_confirmation: summary.awaiting_confirmation,
            confirmed_by: (!summary.confirmed_by.is_empty()).then(|| summary.confirmed_by.clone()),
            confirmed_at: (!summary.confirmed_at.is_empty()).then(|| summary.confirmed_at.clone()),
            signed_count: summary.signed_count,
            artefact_size: summary.artefact_size,
            failure: (!summary.failure.is_empty()).then(|| summary.failure.clone()),
            ceremony_recipient: (!summary.ceremony_recipient.is_empty())
                .then(|| summary.ceremony_recipient.clone()),
            request: request.and_then(|_| serde_json::from_slice(&summary.canonical_request).ok()),
            description: request.map(CanonicalRequest::describe),
        }
    }
}

/// Decodes the canonical request rkmd holds for a ceremony and checks it:
/// it is in canonical form, its digest (recomputed here) is the digest rkmd
/// states, it names the ceremony's key and has its target count. Returns the
/// request and the digest.
///
/// # Errors
/// Any check fails ([`VerificationFailed`], exit 7): rkmd's view of the
/// ceremony cannot be trusted, so nothing may be approved or signed.
pub fn checked_request(summary: &RecoverySummary) -> anyhow::Result<(CanonicalRequest, [u8; 32])> {
    let id = &summary.ceremony_id;
    let request = CanonicalRequest::decode(&summary.canonical_request).map_err(|error| {
        VerificationFailed::error(format!(
            "the request of ceremony {id} does not decode: {error}; do not approve it"
        ))
    })?;
    let computed = request_digest(&summary.canonical_request);
    if summary.request_digest.as_slice() != computed.as_slice() {
        return Err(VerificationFailed::error(format!(
            "rkmd states request digest {} for ceremony {id}, but its request hashes to {}; do not approve it",
            hex::encode(&summary.request_digest),
            hex::encode(computed)
        )));
    }
    if request.key_id != summary.key_id {
        return Err(VerificationFailed::error(format!(
            "the request of ceremony {id} is for key {}, but rkmd says the ceremony is for {}",
            request.key_id, summary.key_id
        )));
    }
    if request.targets.count != summary.target_count {
        return Err(VerificationFailed::error(format!(
            "the request of ceremony {id} has {} targets, but rkmd says {}",
            request.targets.count, summary.target_count
        )));
    }
    Ok((request, computed))
}

/// Asks rkmd for one ceremony.
///
/// # Errors
/// rkmd cannot be reached, does not know the ceremony, or sends none.
pub async fn get_recovery(
    client: &mut RecoveryServiceClient<Channel>,
    request: impl tonic::IntoRequest<GetRecoveryRequest>,
) -> anyhow::Result<RecoverySummary> {
    client
        .get_recovery(request)
        .await
        .rpc("asking rkmd for the recovery ceremony")?
        .into_inner()
        .recovery
        .context("rkmd sent no ceremony")
}

/// An error that exits like rkmd's refusal (6): the ceremony is in a state
/// where the command cannot act, as rkmd itself reported it.
pub fn refused(message: String) -> anyhow::Error {
    anyhow::Error::new(RpcError(tonic::Status::failed_precondition(message)))
}

/// The text form of a ceremony.
pub fn render(report: &RecoveryReport) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "ceremony    {}{}",
        report.ceremony_id,
        if report.kind == "drill" {
            " (drill)"
        } else {
            ""
        }
    );
    let _ = writeln!(text, "state       {}", report.state);
    let _ = writeln!(text, "key         {} ({})", report.key_label, report.key_id);
    let _ = writeln!(text, "digest      {}", report.request_digest);
    let _ = writeln!(text, "targets     {}", report.target_count);
    let _ = writeln!(
        text,
        "approvals   {} of {}",
        report.approval_count, report.threshold
    );
    for approval in &report.approvals {
        let _ = writeln!(
            text,
            "  {:<20} {}",
            approval.custodian, approval.approved_at
        );
    }
    let _ = writeln!(
        text,
        "opened      {} by {}",
        report.opened_at, report.opened_by
    );
    if report.awaiting_confirmation {
        let _ = writeln!(
            text,
            "confirmed   not yet: a second operator must run `rkm recovery confirm {}` before custodians can approve (two-person rule)",
            report.ceremony_id
        );
    }
    if let (Some(by), Some(at)) = (&report.confirmed_by, &report.confirmed_at) {
        let _ = writeln!(text, "confirmed   {at} by {by}");
    }
    let _ = writeln!(text, "expires     {}", report.expires_at);
    if report.state != "open" {
        let _ = writeln!(
            text,
            "signed      {} of {} commands, artefact {} bytes",
            report.signed_count, report.target_count, report.artefact_size
        );
    }
    if let Some(failure) = &report.failure {
        let _ = writeln!(text, "failure     {failure}");
    }
    if let Some(description) = &report.description {
        let _ = writeln!(text, "request");
        for line in description.lines() {
            let _ = writeln!(text, "  {line}");
        }
    }
    text
}
