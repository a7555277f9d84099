//! `rkm share`: a custodian fetches their sealed share from rkmd, verifies it
//! against the signed key record and keeps both, still encrypted to their
//! identity, before signing a receipt (`fetch`); and re-checks what they hold,
//! offline (`verify`), and, with `--attest`, tells rkmd they still hold it.

use crate::connect::stubs;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Subcommand;
use rkm_proto::commitment::PossessionKey;
use rkm_proto::identity::CustodianIdentity;
use rkm_proto::messages::{
    envelope_fetch_message, share_attestation_message, share_receipt_message,
};
use rkm_proto::v1::{
    AttestShareRequest, FetchEnvelopeRequest, FetchEnvelopeResponse, GetKeyRequest, KeySummary,
    SubmitReceiptRequest,
};
use serde::Serialize;
use tonic::transport::Channel;

use crate::connect::Target;
use crate::custodian_auth::{method, signed_request};
use crate::exit::{RpcResultExt as _, VerificationFailed};
use crate::key_report::{KeyReport, attestation_summary};
use crate::output::{OutputFormat, emit, print_json};
use crate::share_store::{CustodianFiles, Stored, VerifiedFacts, VerifiedShare, check_key_id};
use crate::trust::{audit_key_for_fetch, key_fingerprint, parse_given_audit_key};
use crate::ui::key_state_name;

/// Your share of a recovery key: fetch it, verify it.
#[derive(Debug, Subcommand)]
pub enum ShareCommand {
    Fetch(FetchArgs),
    Verify(VerifyArgs),
}

/// Which share, and the custodian's files it is kept with.
#[derive(Debug, clap::Args)]
pub struct HeldShare {
    /// The key's label or id.
    #[arg(long)]
    pub key: String,
    #[command(flatten)]
    pub files: CustodianFiles,
}

/// Fetch your share of a new key, verify it and confirm it to rkmd.
///
/// The envelope is opened with your identity and checked against the key
/// record signed by rkmd's audit key: the record names you with your keys and
/// your share's x, the share matches its commitment, the threshold agrees.
/// Only then are the envelope (still encrypted to your identity) and the key
/// record stored in DIR/<key id>/, and a signed receipt sent.
#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    #[command(flatten)]
    pub share: HeldShare,
    /// The trusted audit key (verifier key, as `rkmd init` prints it). Without
    /// it, the key pinned in the share directory, else rkmd's (its
    /// fingerprint is printed for you to compare).
    #[arg(long, value_name = "VKEY")]
    pub audit_key: Option<String>,
}

/// Check a share you hold against its key record, offline, without rkmd;
/// with --attest, then send rkmd a signed attestation that you hold it.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub share: HeldShare,
    /// The trusted audit key; default: the one the share directory pins.
    #[arg(long, value_name = "VKEY")]
    pub audit_key: Option<String>,
    /// Once the share checks out, send rkmd a signed attestation that you
    /// still hold it (needs rkmd; nothing secret is sent).
    #[arg(long)]
    pub attest: bool,
}

/// What `share verify --attest --output json` adds.
#[derive(Debug, Serialize)]
pub struct AttestReport {
    #[serde(flatten)]
    pub share: ShareReport,
    pub attested_at_unix: u64,
    /// Custodians of the key who attested recently, this one included.
    pub attested_recently: u32,
    pub threshold: u32,
    pub attestation_window_days: u32,
    /// Custodians whose share a quorum can use now (enabled, attested).
    pub usable_custodians: u32,
    pub quorum_health: &'static str,
    pub quorum_at_risk: bool,
}

/// What a verified share is, as both commands print it.
#[derive(Debug, Serialize)]
pub struct ShareReport {
    pub key_id: String,
    pub label: String,
    pub custodian: String,
    pub x: u8,
    pub threshold: u8,
    pub custodians: usize,
    pub commitment: String,
    pub audit_key: String,
    pub audit_key_fingerprint: String,
    pub folder: String,
    pub checks: Vec<String>,
}

/// What `share fetch --output json` prints.
#[derive(Debug, Serialize)]
pub struct FetchReport {
    #[serde(flatten)]
    pub share: ShareReport,
    /// False if the folder already held exactly these files.
    pub written: bool,
    pub key_state: &'static str,
    pub receipts: usize,
    pub missing: Vec<String>,
}

/// Runs one `rkm share` command.
///
/// # Errors
/// The command's error; a share or key record that does not verify carries
/// [`VerificationFailed`] (exit 7).
pub async fn run(
    command: ShareCommand,
    target: &Target,
    output: OutputFormat,
) -> anyhow::Result<()> {
    match command {
        ShareCommand::Fetch(args) => fetch(args, target, output).await,
        ShareCommand::Verify(args) => verify(&args, target, output).await,
    }
}

fn share_report(
    checked: &VerifiedFacts,
    identity: &CustodianIdentity,
    folder: String,
) -> ShareReport {
    ShareReport {
        key_id: checked.record.key_id.clone(),
        label: checked.record.label.clone(),
        custodian: identity.name().to_owned(),
        x: checked.x,
        threshold: checked.record.threshold,
        custodians: checked.record.custodians.len(),
        commitment: hex::encode(checked.commitment),
        audit_key: checked.audit_key.to_string(),
        audit_key_fingerprint: key_fingerprint(&checked.audit_key),
        folder,
        checks: checked.checks.clone(),
    }
}

fn render_share(share: &ShareReport) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "key         {} ({})", share.label, share.key_id);
    let _ = writeln!(text, "custodian   {} (x = {})", share.custodian, share.x);
    let _ = writeln!(
        text,
        "threshold   {} of {}",
        share.threshold, share.custodians
    );
    let _ = writeln!(text, "audit key   {}", share.audit_key_fingerprint);
    let _ = writeln!(text, "stored in   {}", share.folder);
    let _ = writeln!(text, "checked");
    for check in &share.checks {
        let _ = writeln!(text, "  ok  {check}");
    }
    text
}

fn unix_now() -> anyhow::Result<u64> {
    Ok(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs())
}

/// Asks rkmd for the key and for this custodian's envelope of it, signed
/// for with the identity. Returns the key id and what rkmd sent.
async fn fetch_envelope(
    channel: &Channel,
    identity: &CustodianIdentity,
    key: &str,
) -> anyhow::Result<(String, FetchEnvelopeResponse)> {
    let mut keys = stubs::key(channel.clone());
    let summary = keys
        .get_key(
            signed_request(
                channel,
                identity,
                method::GET_KEY,
                GetKeyRequest {
                    key: key.to_owned(),
                },
            )
            .await?,
        )
        .await
        .rpc("looking up the key")?
        .into_inner()
        .key
        .context("rkmd sent no key")?;
    let key_id = summary.key_id;
    check_key_id(&key_id)
        .map_err(|error| VerificationFailed::error(format!("rkmd named the key oddly: {error}")))?;
    let unix_time = unix_now()?;
    let signature = identity.sign(&envelope_fetch_message(&key_id, identity.name(), unix_time));
    let request = FetchEnvelopeRequest {
        key: key_id.clone(),
        custodian: identity.name().to_owned(),
        unix_time,
        signature: signature.to_vec(),
    };
    let fetched = keys
        .fetch_envelope(signed_request(channel, identity, method::FETCH_ENVELOPE, request).await?)
        .await
        .rpc("fetching your share envelope")?
        .into_inner();
    if fetched.key_id != key_id {
        return Err(VerificationFailed::error(format!(
            "rkmd sent the envelope of key {:?} when asked for {key_id}",
            fetched.key_id
        )));
    }
    Ok((key_id, fetched))
}

/// Signs the receipt of a verified, stored share and sends it with its
/// possession proof; returns the key as rkmd then reports it.
async fn send_receipt(
    channel: &Channel,
    identity: &CustodianIdentity,
    share: &VerifiedFacts,
    possession_key: &PossessionKey,
) -> anyhow::Result<KeySummary> {
    let key_id = &share.record.key_id;
    let message = share_receipt_message(key_id, identity.name(), share.x, &share.commitment);
    let receipt = identity.sign(&message);
    let request = SubmitReceiptRequest {
        key_id: key_id.clone(),
        custodian: identity.name().to_owned(),
        signature: receipt.to_vec(),
        possession_proof: possession_key.prove(&message).to_vec(),
    };
    stubs::key(channel.clone())
        .submit_receipt(signed_request(channel, identity, method::SUBMIT_RECEIPT, request).await?)
        .await
        .rpc("sending your receipt")?
        .into_inner()
        .key
        .context("rkmd sent no key")
}

async fn fetch(args: FetchArgs, target: &Target, output: OutputFormat) -> anyhow::Result<()> {
    let identity = args.share.files.open_identity()?;
    let dir = args.share.files.share_dir.resolve()?;
    let channel = target.connect().await?;
    let (key_id, fetched) = fetch_envelope(&channel, &identity, &args.share.key).await?;
    let audit_key =
        audit_key_for_fetch(args.audit_key.as_deref(), &dir, channel.clone(), &identity).await?;
    let (share, possession_key) = VerifiedShare::check(
        &fetched.envelope,
        &fetched.signed_key_record,
        &identity,
        &audit_key,
        &key_id,
    )?
    .into_possession_key();
    if share.record.label != args.share.key && share.record.key_id != args.share.key {
        return Err(VerificationFailed::error(format!(
            "you asked for key {:?}, but the key record is for {:?} ({})",
            args.share.key, share.record.label, share.record.key_id
        )));
    }
    let stored = dir.store(&key_id, &fetched.envelope, &fetched.signed_key_record)?;
    dir.pin_audit_key(&audit_key)?;
    let folder = dir.key_folder(&key_id);
    let key = send_receipt(&channel, &identity, &share, &possession_key)
        .await
        .with_context(|| {
            format!(
                "your share is verified and stored in {}, but rkmd has no receipt yet: run `rkm share fetch --key {}` again",
                folder.display(),
                args.share.key
            )
        })?;
    let missing: Vec<String> = key
        .receipts
        .iter()
        .filter(|receipt| !receipt.received)
        .map(|receipt| receipt.custodian.clone())
        .collect();
    let report = FetchReport {
        share: share_report(&share, &identity, folder.display().to_string()),
        written: stored == Stored::Written,
        key_state: key_state_name(key.state),
        receipts: key.receipts.len() - missing.len(),
        missing,
    };
    match output {
        OutputFormat::Json => print_json(&report),
        OutputFormat::Text => {
            let mut text = render_share(&report.share);
            let _ = writeln!(
                text,
                "receipt     sent; {} of {} custodians confirmed, key {}",
                report.receipts,
                key.receipts.len(),
                report.key_state
            );
            emit(&text)
        }
    }
}

async fn verify(args: &VerifyArgs, target: &Target, output: OutputFormat) -> anyhow::Result<()> {
    let dir = args.share.files.share_dir.resolve()?;
    let stored = dir.load(&args.share.key)?;
    let identity = args.share.files.open_identity()?;
    let given = args
        .audit_key
        .as_deref()
        .map(parse_given_audit_key)
        .transpose()?;
    let (share, possession_key) = stored
        .open_verified(&dir, &identity, given.as_ref())?
        .into_possession_key();
    let report = share_report(&share, &identity, stored.folder.display().to_string());
    if args.attest {
        return attest(report, &share, &possession_key, &identity, target, output).await;
    }
    match output {
        OutputFormat::Json => print_json(&report),
        OutputFormat::Text => {
            let mut text = render_share(&report);
            text.push_str("Your share is intact and matches the key record.\n");
            emit(&text)
        }
    }
}

/// Signs and sends the attestation of a share that was just checked.
async fn attest(
    share: ShareReport,
    checked: &VerifiedFacts,
    possession_key: &PossessionKey,
    identity: &CustodianIdentity,
    target: &Target,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let unix_time = unix_now()?;
    let message = share_attestation_message(
        &checked.record.key_id,
        identity.name(),
        checked.x,
        &checked.commitment,
        unix_time,
    );
    let signature = identity.sign(&message);
    let channel = target.connect().await?;
    let request = AttestShareRequest {
        key_id: checked.record.key_id.clone(),
        custodian: identity.name().to_owned(),
        unix_time,
        signature: signature.to_vec(),
        possession_proof: possession_key.prove(&message).to_vec(),
    };
    let key = stubs::key(channel.clone())
        .attest_share(signed_request(&channel, identity, method::ATTEST_SHARE, request).await?)
        .await
        .rpc("sending your share attestation")?
        .into_inner()
        .key
        .context("rkmd sent no key")?;
    let key = KeyReport::from(key);
    let report = AttestReport {
        share,
        attested_at_unix: unix_time,
        attested_recently: key.attested_recently,
        threshold: key.threshold,
        attestation_window_days: key.attestation_window_days,
        usable_custodians: key.usable_custodians,
        quorum_health: key.quorum_health,
        quorum_at_risk: key.quorum_at_risk,
    };
    match output {
        OutputFormat::Json => print_json(&report),
        OutputFormat::Text => {
            let mut text = render_share(&report.share);
            text.push_str("Your share is intact and matches the key record.\n");
            let _ = writeln!(text, "attested    sent; {}", attestation_summary(&key));
            emit(&text)
        }
    }
}
