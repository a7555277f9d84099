//! `rkm recovery approve`: a custodian reviews a recovery request and
//! approves it. The request digest is recomputed here from the canonical
//! request; the custodian's share is decrypted here from their share
//! directory, checked against their key record, sealed to the ceremony's
//! ephemeral age key and sent with an Ed25519 signature over the ceremony,
//! the digest, rkmd's fresh nonce and the share commitment.

use crate::connect::stubs;
use std::fmt::Write as _;

use anyhow::Context as _;
use rkm_proto::approval::approval_message;
use rkm_proto::checkpoint::VerifierKey;
use rkm_proto::custodian_card::parse_age_recipient;
use rkm_proto::envelope;
use rkm_proto::identity::CustodianIdentity;
use rkm_proto::recovery_request::CeremonyKind;
use rkm_proto::v1::{ApproveRequest, GetApprovalNonceRequest, RecoveryState, RecoverySummary};
use serde::Serialize;
use tonic::transport::Channel;

use crate::connect::Target;
use crate::custodian_auth::{method, signed_request};
use crate::exit::{RpcResultExt as _, VerificationFailed};
use crate::output::{OutputFormat, emit, print_json};
use crate::recovery_ceremony::{RecoveryReport, checked_request, get_recovery, refused, render};
use crate::share_store::{CustodianFiles, VerifiedShare};
use crate::trust::parse_audit_key;
use crate::ui::{confirm, recovery_state_name};

/// Review a recovery request and approve it with your share (custodians).
///
/// Shows the decoded request, its target count and digest, and asks you to
/// confirm (--yes skips the question; without a terminal, --yes is needed).
/// Then your share is decrypted with your identity, checked against your key
/// record, sealed to this ceremony's key and sent with your signature over
/// the ceremony, the request digest, a fresh nonce from rkmd and your share
/// commitment. Compare the digest with the one the operator announced.
#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    /// The ceremony id.
    pub ceremony_id: String,
    #[command(flatten)]
    pub files: CustodianFiles,
    /// The trusted audit key that signed your key record; default: the one
    /// your share directory pins. For a key restored into another rkmd (`rkm
    /// key import`) this stays the OLD rkmd's audit key: your record is
    /// checked with the key you trusted when you fetched your share, never
    /// with whatever the rkmd running the ceremony uses now, so a new rkmd
    /// cannot swap in another record.
    #[arg(long, value_name = "KEY", value_parser = parse_audit_key)]
    pub audit_key: Option<VerifierKey>,
    /// Approve without asking (for scripts that have shown the request).
    #[arg(long)]
    pub yes: bool,
}

/// What `approve --output json` prints.
#[derive(Debug, Serialize)]
pub struct ApproveReport {
    pub ceremony_id: String,
    pub custodian: String,
    pub request_digest: String,
    pub state: &'static str,
    pub approval_count: usize,
    pub threshold: u32,
    pub quorum_reached: bool,
}

/// Refuses a ceremony that takes no more approvals, as rkmd would.
fn ensure_open(summary: &RecoverySummary) -> anyhow::Result<()> {
    if summary.state != RecoveryState::Open as i32 {
        return Err(refused(format!(
            "ceremony {} is {}; it takes no more approvals",
            summary.ceremony_id,
            recovery_state_name(summary.state)
        )));
    }
    Ok(())
}

/// Reads the ceremony, checks its request, and shows it for review — on
/// stderr, so that standard output stays the result. Returns the ceremony
/// as reviewed and its request digest.
/// The ceremony as rkmd reports it to this custodian.
async fn custodian_view(
    channel: &Channel,
    identity: &CustodianIdentity,
    id: &str,
) -> anyhow::Result<RecoverySummary> {
    let request = rkm_proto::v1::GetRecoveryRequest {
        ceremony_id: id.to_owned(),
        custodian: identity.name().to_owned(),
    };
    get_recovery(
        &mut stubs::recovery(channel.clone()),
        signed_request(channel, identity, method::GET_RECOVERY, request).await?,
    )
    .await
}

async fn review(
    channel: &Channel,
    identity: &CustodianIdentity,
    id: &str,
) -> anyhow::Result<(RecoverySummary, [u8; 32])> {
    let summary = custodian_view(channel, identity, id).await?;
    ensure_open(&summary)?;
    let (request, digest) = checked_request(&summary)?;
    let mut review = render(&RecoveryReport::new(&summary, Some(&request)));
    let what = match request.ceremony_kind {
        CeremonyKind::Drill => "a drill: the key signs a drill challenge, no command".to_owned(),
        CeremonyKind::Recovery => format!("{} target(s)", request.targets.count),
    };
    let _ = writeln!(
        review,
        "You approve request digest {} for {what}.",
        hex::encode(digest),
    );
    eprint!("{review}");
    Ok((summary, digest))
}

/// The custodian's share, from their own files, verified against their key
/// record, which must be for the ceremony's key and threshold.
fn verified_share(
    args: &ApproveArgs,
    identity: &CustodianIdentity,
    summary: &RecoverySummary,
) -> anyhow::Result<VerifiedShare> {
    let dir = args.files.share_dir.resolve()?;
    let stored = dir.load(&summary.key_id).with_context(|| {
        format!(
            "you ({}) hold no share of key {} here",
            identity.name(),
            summary.key_label
        )
    })?;
    let share = stored.open_verified(&dir, identity, args.audit_key.as_ref())?;
    let record = &share.record;
    if record.key_id != summary.key_id || u32::from(record.threshold) != summary.threshold {
        return Err(VerificationFailed::error(format!(
            "your key record is for key {} with threshold {}, but rkmd says ceremony {} is for {} with threshold {}",
            record.key_id, record.threshold, summary.ceremony_id, summary.key_id, summary.threshold
        )));
    }
    Ok(share)
}

/// A fresh approval nonce from rkmd.
async fn fresh_nonce(
    channel: &Channel,
    identity: &CustodianIdentity,
    id: &str,
) -> anyhow::Result<[u8; 32]> {
    let request = GetApprovalNonceRequest {
        ceremony_id: id.to_owned(),
        custodian: identity.name().to_owned(),
    };
    let signed = signed_request(channel, identity, method::GET_APPROVAL_NONCE, request).await?;
    let nonce = stubs::recovery(channel.clone())
        .get_approval_nonce(signed)
        .await
        .rpc("asking rkmd for an approval nonce")?
        .into_inner()
        .nonce;
    nonce.as_slice().try_into().map_err(|_| {
        VerificationFailed::error(format!(
            "rkmd sent a {}-byte nonce; approvals use 32 bytes",
            nonce.len()
        ))
    })
}

/// The share sealed to the ceremony's current age key (it changes when rkmd
/// restarts), once the ceremony is checked to be still open with the request
/// that was reviewed.
async fn seal_to_current_ceremony(
    channel: &Channel,
    identity: &CustodianIdentity,
    reviewed: &RecoverySummary,
    share: &VerifiedShare,
) -> anyhow::Result<Vec<u8>> {
    let id = &reviewed.ceremony_id;
    let current = custodian_view(channel, identity, id).await?;
    if current.request_digest != reviewed.request_digest
        || current.canonical_request != reviewed.canonical_request
    {
        return Err(VerificationFailed::error(format!(
            "the request of ceremony {id} changed while you reviewed it; nothing was sent"
        )));
    }
    ensure_open(&current)?;
    let recipient = parse_age_recipient(&current.ceremony_recipient).map_err(|error| {
        VerificationFailed::error(format!(
            "rkmd's key for ceremony {id} is not an age recipient: {error}"
        ))
    })?;
    envelope::seal(&share.contents, &recipient).context("sealing your share")
}

/// Reviews, confirms, and sends the approval.
///
/// # Errors
/// The ceremony is not open; the request does not verify
/// ([`VerificationFailed`]); the custodian declines; the identity, share or
/// key record cannot be opened or does not verify; rkmd refuses.
pub async fn run(args: ApproveArgs, target: &Target, output: OutputFormat) -> anyhow::Result<()> {
    let channel = target.connect().await?;
    let id = args.ceremony_id.clone();
    // rkmd shows a ceremony only to those it can name, so the identity
    // opens first: custodians sign even the request to review.
    let identity = args.files.open_identity()?;
    let (summary, digest) = review(&channel, &identity, &id).await?;
    if !args.yes {
        confirm(
            "Approve this request with your share?",
            &format!(
                "not approving: there is no terminal to confirm on. Review the request with `rkm recovery show {id}`, then run again with --yes"
            ),
            "not approved; nothing was sent",
        )?;
    }
    let name = identity.name().to_owned();
    let share = verified_share(&args, &identity, &summary)?;
    let commitment = share.commitment;
    let nonce = fresh_nonce(&channel, &identity, &id).await?;
    let sealed = seal_to_current_ceremony(&channel, &identity, &summary, &share).await?;
    drop(share);
    let signature = identity.sign(&approval_message(&id, &digest, &nonce, &commitment));
    let request = ApproveRequest {
        ceremony_id: id.clone(),
        custodian: name.clone(),
        nonce: nonce.to_vec(),
        commitment: commitment.to_vec(),
        signature: signature.to_vec(),
        sealed_share: sealed,
    };
    let signed = signed_request(&channel, &identity, method::APPROVE, request).await?;
    drop(identity);

    let after = stubs::recovery(channel)
        .approve(signed)
        .await
        .rpc("sending your approval")?
        .into_inner()
        .recovery
        .context("rkmd sent no ceremony")?;
    let report = ApproveReport {
        ceremony_id: id,
        custodian: name,
        request_digest: hex::encode(digest),
        state: recovery_state_name(after.state),
        approval_count: after.approvals.len(),
        threshold: after.threshold,
        quorum_reached: matches!(
            RecoveryState::try_from(after.state),
            Ok(RecoveryState::Signing | RecoveryState::Completed)
        ),
    };
    print_report(&report, &commitment, output)
}

fn print_report(
    report: &ApproveReport,
    commitment: &[u8; 32],
    output: OutputFormat,
) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json => print_json(report),
        OutputFormat::Text => {
            let mut text = format!(
                "approved by {} (share commitment {}): {} of {} approvals\n",
                report.custodian,
                hex::encode(commitment),
                report.approval_count,
                report.threshold
            );
            if report.quorum_reached {
                let _ = writeln!(
                    text,
                    "Quorum reached: rkmd is signing. Collect the artefact with `rkm recovery collect {} -o FILE`.",
                    report.ceremony_id
                );
            }
            emit(&text)
        }
    }
}
