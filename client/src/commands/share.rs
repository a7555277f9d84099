//! `rkm share`: a custodian fetches their sealed share from rkmd, verifies it
//! against the signed key record and keeps both, still encrypted to their
//! identity, before signing a receipt (`fetch`); and re-checks what they hold,
//! offline (`verify`), and, with `--attest`, tells rkmd they still hold it.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Subcommand;
use rkm_proto::checkpoint::VerifierKey;
use rkm_proto::commitment::PossessionKey;
use rkm_proto::envelope;
use rkm_proto::fingerprint::fingerprint;
use rkm_proto::identity::CustodianIdentity;
use rkm_proto::key_record::{KeyRecord, SignedKeyRecord};
use rkm_proto::messages::{
    envelope_fetch_message, share_attestation_message, share_receipt_message,
};
use rkm_proto::v1::audit_service_client::AuditServiceClient;
use rkm_proto::v1::key_service_client::KeyServiceClient;
use rkm_proto::v1::{
    AttestShareRequest, FetchEnvelopeRequest, GetAuditKeyRequest, GetKeyRequest,
    SubmitReceiptRequest,
};
use serde::Serialize;
use tonic::transport::Channel;

use super::key::{KeyReport, attestation_summary, state_name};
use crate::connect::Target;
use crate::exit::{RpcResultExt as _, VerificationFailed};
use crate::output::{OutputFormat, emit, print_json};
use crate::passphrase::{PassphraseArgs, open_identity};
use crate::share_store::{ShareDir, ShareDirArgs, Stored, TRUSTED_KEYS_FILE, check_key_id};

/// Your share of a recovery key: fetch it, verify it.
#[derive(Debug, Subcommand)]
pub enum ShareCommand {
    Fetch(FetchArgs),
    Verify(VerifyArgs),
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
    /// The key's label or id.
    #[arg(long)]
    pub key: String,
    /// Your identity file.
    #[arg(long, value_name = "FILE")]
    pub identity: PathBuf,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
    #[command(flatten)]
    pub share_dir: ShareDirArgs,
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
    /// The key's label or id.
    #[arg(long)]
    pub key: String,
    /// Your identity file.
    #[arg(long, value_name = "FILE")]
    pub identity: PathBuf,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
    #[command(flatten)]
    pub share_dir: ShareDirArgs,
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

/// A share that passed every check, and what was checked.
#[derive(Debug)]
struct Checked {
    record: KeyRecord,
    x: u8,
    commitment: [u8; 32],
    /// Derived from the share: proves possession in receipts and attestations.
    possession_key: PossessionKey,
    checks: Vec<String>,
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

fn parse_audit_key(text: &str) -> anyhow::Result<VerifierKey> {
    VerifierKey::parse(text.trim()).map_err(|error| {
        anyhow::anyhow!(
            "--audit-key {:?} is not a verifier key: {error}; `rkmd init` and `rkm status` print it",
            text.trim()
        )
    })
}

fn key_fingerprint(key: &VerifierKey) -> String {
    fingerprint(&key.public_key())
}

/// Refuses `key` if the share directory pins another key for its origin.
fn check_pin(dir: &ShareDir, key: &VerifierKey, source: &str) -> anyhow::Result<bool> {
    match dir.pinned_audit_key(key.name())? {
        Some(pinned) if pinned != *key => Err(VerificationFailed::error(format!(
            "{} pins audit key {pinned} (fingerprint {}) for {:?}, but {source} is {key} (fingerprint {}): refusing. If this is another rkmd, use another --share-dir; if rkmd's audit key was really replaced, remove the pin after checking the new fingerprint",
            dir.path().join(TRUSTED_KEYS_FILE).display(),
            key_fingerprint(&pinned),
            key.name(),
            key_fingerprint(key),
        ))),
        Some(_) => Ok(true),
        None => Ok(false),
    }
}

/// The audit key to verify with: `--audit-key`, else rkmd's; either must be
/// the one the share directory pins for its origin.
async fn trusted_audit_key(
    given: Option<&str>,
    dir: &ShareDir,
    channel: Channel,
) -> anyhow::Result<VerifierKey> {
    if let Some(text) = given {
        let key = parse_audit_key(text)?;
        check_pin(dir, &key, "--audit-key")?;
        return Ok(key);
    }
    let response = AuditServiceClient::new(channel)
        .get_audit_key(GetAuditKeyRequest {})
        .await
        .rpc("asking rkmd for its audit key")?
        .into_inner();
    let key = VerifierKey::parse(&response.verifier_key).map_err(|error| {
        VerificationFailed::error(format!(
            "rkmd's audit key {:?} is not a valid verifier key: {error}",
            response.verifier_key
        ))
    })?;
    if !check_pin(dir, &key, "rkmd's audit key")? {
        eprintln!(
            "rkm: trusting rkmd's audit key on first use: {key}\nrkm: fingerprint {} — compare it with the one `rkmd init` printed; {} will pin it",
            key_fingerprint(&key),
            dir.path().join(TRUSTED_KEYS_FILE).display()
        );
    }
    Ok(key)
}

fn verification(what: &str, error: impl std::fmt::Display) -> anyhow::Error {
    VerificationFailed::error(format!("{what}: {error}"))
}

/// Every check of a share against its key record. Nothing here touches the
/// disk or the network.
fn check_share(
    envelope_bytes: &[u8],
    key_record_file: &str,
    identity: &CustodianIdentity,
    audit_key: &VerifierKey,
    key_id: &str,
) -> anyhow::Result<Checked> {
    let signed = SignedKeyRecord::from_file(key_record_file)
        .map_err(|error| verification("the key record is not valid", error))?;
    let record = signed
        .verify(audit_key)
        .map_err(|error| verification("the key record does not verify", error))?;
    let mut checks = vec![format!(
        "key record signature verifies with audit key {audit_key} (fingerprint {})",
        key_fingerprint(audit_key)
    )];
    if record.key_id != key_id {
        return Err(VerificationFailed::error(format!(
            "the key record is for key {}, not {key_id}",
            record.key_id
        )));
    }
    checks.push(format!(
        "key record is for key {} ({}), threshold {} of {}",
        record.key_id,
        record.label,
        record.threshold,
        record.custodians.len()
    ));
    let contents = envelope::open(envelope_bytes, identity.age_identity())
        .map_err(|error| verification("the share envelope does not open", error))?;
    checks.push(format!(
        "envelope opens with your identity ({})",
        identity.name()
    ));
    let entry = contents
        .verify_against_record(&record, &identity.card())
        .map_err(|error| verification("the share does not match the key record", error))?;
    let (x, commitment) = (entry.x, entry.commitment);
    checks.push(format!(
        "key record lists {} with this identity's Ed25519 key and age recipient",
        identity.name()
    ));
    checks.push(format!("share x = {x}, as the key record gives"));
    checks.push(format!(
        "envelope threshold {} = key record threshold",
        contents.threshold
    ));
    checks.push(format!(
        "share matches its commitment {}",
        hex::encode(commitment)
    ));
    let possession_key = PossessionKey::derive(&record.key_id, &contents.share, &contents.salt);
    drop(contents);
    Ok(Checked {
        record,
        x,
        commitment,
        possession_key,
        checks,
    })
}

fn share_report(
    checked: &Checked,
    identity: &CustodianIdentity,
    audit_key: &VerifierKey,
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
        audit_key: audit_key.to_string(),
        audit_key_fingerprint: key_fingerprint(audit_key),
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

async fn fetch(args: FetchArgs, target: &Target, output: OutputFormat) -> anyhow::Result<()> {
    let identity = open_identity(&args.identity, &args.passphrase)?;
    let dir = args.share_dir.resolve()?;
    let channel = target.connect().await?;
    let mut keys = KeyServiceClient::new(channel.clone());
    let summary = keys
        .get_key(GetKeyRequest {
            key: args.key.clone(),
        })
        .await
        .rpc("looking up the key")?
        .into_inner()
        .key
        .context("rkmd sent no key")?;
    let key_id = summary.key_id;
    check_key_id(&key_id).map_err(|error| verification("rkmd named the key oddly", error))?;
    let name = identity.name().to_owned();
    let unix_time = unix_now()?;
    let signature = identity.sign(&envelope_fetch_message(&key_id, &name, unix_time));
    let fetched = keys
        .fetch_envelope(FetchEnvelopeRequest {
            key: key_id.clone(),
            custodian: name.clone(),
            unix_time,
            signature: signature.to_vec(),
        })
        .await
        .rpc("fetching your share envelope")?
        .into_inner();
    if fetched.key_id != key_id {
        return Err(VerificationFailed::error(format!(
            "rkmd sent the envelope of key {:?} when asked for {key_id}",
            fetched.key_id
        )));
    }
    let audit_key = trusted_audit_key(args.audit_key.as_deref(), &dir, channel).await?;
    let checked = check_share(
        &fetched.envelope,
        &fetched.signed_key_record,
        &identity,
        &audit_key,
        &key_id,
    )?;
    if checked.record.label != args.key && checked.record.key_id != args.key {
        return Err(VerificationFailed::error(format!(
            "you asked for key {:?}, but the key record is for {:?} ({})",
            args.key, checked.record.label, checked.record.key_id
        )));
    }
    let stored = dir.store(&key_id, &fetched.envelope, &fetched.signed_key_record)?;
    dir.pin_audit_key(&audit_key)?;
    let folder = dir.key_folder(&key_id);
    let message = share_receipt_message(&key_id, &name, checked.x, &checked.commitment);
    let receipt = identity.sign(&message);
    let key = keys
        .submit_receipt(SubmitReceiptRequest {
            key_id: key_id.clone(),
            custodian: name,
            signature: receipt.to_vec(),
            possession_proof: checked.possession_key.prove(&message).to_vec(),
        })
        .await
        .rpc("sending your receipt")
        .with_context(|| {
            format!(
                "your share is verified and stored in {}, but rkmd has no receipt yet: run `rkm share fetch --key {}` again",
                folder.display(),
                args.key
            )
        })?
        .into_inner()
        .key
        .context("rkmd sent no key")?;
    let missing: Vec<String> = key
        .receipts
        .iter()
        .filter(|receipt| !receipt.received)
        .map(|receipt| receipt.custodian.clone())
        .collect();
    let report = FetchReport {
        share: share_report(
            &checked,
            &identity,
            &audit_key,
            folder.display().to_string(),
        ),
        written: stored == Stored::Written,
        key_state: state_name(key.state),
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
    let dir = args.share_dir.resolve()?;
    let stored = dir.load(&args.key)?;
    let identity = open_identity(&args.identity, &args.passphrase)?;
    let audit_key = match &args.audit_key {
        Some(text) => {
            let key = parse_audit_key(text)?;
            check_pin(&dir, &key, "--audit-key")?;
            key
        }
        None => {
            let signed = SignedKeyRecord::from_file(&stored.key_record)
                .map_err(|error| verification("the stored key record is not valid", error))?;
            let stated = VerifierKey::parse(&signed.audit_verifier_key)
                .map_err(|error| verification("the stored key record's audit key", error))?;
            dir.pinned_audit_key(stated.name())?.with_context(|| {
                format!(
                    "{} pins no audit key for {:?}: give --audit-key (as `rkmd init` printed it)",
                    dir.path().join(TRUSTED_KEYS_FILE).display(),
                    stated.name()
                )
            })?
        }
    };
    let checked = check_share(
        &stored.envelope,
        &stored.key_record,
        &identity,
        &audit_key,
        &stored.key_id,
    )?;
    let report = share_report(
        &checked,
        &identity,
        &audit_key,
        stored.folder.display().to_string(),
    );
    if args.attest {
        return attest(report, &checked, &identity, target, output).await;
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
    checked: &Checked,
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
    let key = KeyServiceClient::new(target.connect().await?)
        .attest_share(AttestShareRequest {
            key_id: checked.record.key_id.clone(),
            custodian: identity.name().to_owned(),
            unix_time,
            signature: signature.to_vec(),
            possession_proof: checked.possession_key.prove(&message).to_vec(),
        })
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
