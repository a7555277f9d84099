//! `rkm recovery approve`: a custodian reviews a recovery request and
//! approves it. The request digest is recomputed here from the canonical
//! request; the custodian's share is decrypted here from their share
//! directory, checked against their key record, sealed to the ceremony's
//! ephemeral age key and sent with an Ed25519 signature over the ceremony,
//! the digest, rkmd's fresh nonce and the share commitment.

use std::fmt::Write as _;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use rkm_proto::approval::approval_message;
use rkm_proto::checkpoint::VerifierKey;
use rkm_proto::custodian_card::parse_age_recipient;
use rkm_proto::envelope;
use rkm_proto::key_record::{KeyRecord, SignedKeyRecord};
use rkm_proto::v1::recovery_service_client::RecoveryServiceClient;
use rkm_proto::v1::{ApproveRequest, GetApprovalNonceRequest, RecoveryState};
use serde::Serialize;

use super::{RecoveryReport, checked_request, get_recovery, refused, render, state_name};
use crate::commands::audit::parse_audit_key;
use crate::connect::Target;
use crate::exit::{RpcResultExt as _, VerificationFailed};
use crate::output::{OutputFormat, emit, print_json};
use crate::passphrase::{PassphraseArgs, open_identity};
use crate::share_store::{ShareDir, ShareDirArgs, TRUSTED_KEYS_FILE};

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
    /// Your identity file.
    #[arg(long, value_name = "FILE")]
    pub identity: PathBuf,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
    #[command(flatten)]
    pub share_dir: ShareDirArgs,
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

/// Asks on the terminal; only a typed "yes" approves.
fn confirm(ceremony_id: &str) -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "not approving: there is no terminal to confirm on. Review the request with `rkm recovery show {ceremony_id}`, then run again with --yes"
        );
    }
    let mut stderr = std::io::stderr().lock();
    write!(
        stderr,
        "Approve this request with your share? Type \"yes\": "
    )?;
    stderr.flush()?;
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("reading your answer")?;
    if answer.trim() != "yes" {
        bail!("not approved; nothing was sent");
    }
    Ok(())
}

/// The audit key to check the stored key record with: `--audit-key` (which
/// must agree with the directory's pin), else the pinned one.
///
/// The pin is looked up by the origin the record names, i.e. the rkmd that
/// signed it when the share was fetched. After a restore into another rkmd
/// (another HSM, another audit key) that pin is still the right trust root:
/// the record, the share and the custodian are unchanged, and the new rkmd's
/// audit key plays no part in what the custodian signs.
fn record_audit_key(
    given: Option<&VerifierKey>,
    dir: &ShareDir,
    signed: &SignedKeyRecord,
) -> anyhow::Result<VerifierKey> {
    let stated = VerifierKey::parse(&signed.audit_verifier_key).map_err(|error| {
        VerificationFailed::error(format!("your key record names a bad audit key: {error}"))
    })?;
    let pinned = dir.pinned_audit_key(stated.name())?;
    match (given, pinned) {
        (Some(key), Some(pinned)) if *key != pinned => Err(VerificationFailed::error(format!(
            "--audit-key {key} is not the audit key {pinned} that {} pins",
            dir.path().join(TRUSTED_KEYS_FILE).display()
        ))),
        (Some(key), _) => Ok(key.clone()),
        (None, Some(pinned)) => Ok(pinned),
        (None, None) => bail!(
            "{} pins no audit key for {:?}: give --audit-key (as `rkmd init` printed it; for a restored key, the old rkmd's)",
            dir.path().join(TRUSTED_KEYS_FILE).display(),
            stated.name()
        ),
    }
}

/// Reviews, confirms, and sends the approval.
///
/// # Errors
/// The ceremony is not open; the request does not verify
/// ([`VerificationFailed`]); the custodian declines; the identity, share or
/// key record cannot be opened or does not verify; rkmd refuses.
pub async fn run(args: ApproveArgs, target: &Target, output: OutputFormat) -> anyhow::Result<()> {
    let mut client = RecoveryServiceClient::new(target.connect().await?);
    let id = args.ceremony_id.clone();
    let summary = get_recovery(&mut client, &id).await?;
    if summary.state != RecoveryState::Open as i32 {
        return Err(refused(format!(
            "ceremony {id} is {}; it takes no more approvals",
            state_name(summary.state)
        )));
    }
    let (request, digest) = checked_request(&summary)?;

    // The review, on stderr so that standard output stays the result.
    let mut review = render(&RecoveryReport::new(&summary, Some(&request)));
    let what = match request.ceremony_kind {
        rkm_proto::recovery_request::CeremonyKind::Drill => {
            "a drill: the key signs a drill challenge, no command".to_owned()
        }
        rkm_proto::recovery_request::CeremonyKind::Recovery => {
            format!("{} target(s)", request.targets.count)
        }
    };
    let _ = writeln!(
        review,
        "You approve request digest {} for {what}.",
        hex::encode(digest),
    );
    eprint!("{review}");
    if !args.yes {
        confirm(&id)?;
    }

    // The share, from the custodian's own files.
    let identity = open_identity(&args.identity, &args.passphrase)?;
    let name = identity.name().to_owned();
    let dir = args.share_dir.resolve()?;
    let stored = dir.load(&summary.key_id).with_context(|| {
        format!(
            "you ({name}) hold no share of key {} here",
            summary.key_label
        )
    })?;
    let signed = SignedKeyRecord::from_file(&stored.key_record).map_err(|error| {
        VerificationFailed::error(format!("your stored key record is not valid: {error}"))
    })?;
    let audit_key = record_audit_key(args.audit_key.as_ref(), &dir, &signed)?;
    let record: KeyRecord = signed.verify(&audit_key).map_err(|error| {
        VerificationFailed::error(format!("your stored key record does not verify: {error}"))
    })?;
    if record.key_id != summary.key_id || u32::from(record.threshold) != summary.threshold {
        return Err(VerificationFailed::error(format!(
            "your key record is for key {} with threshold {}, but rkmd says ceremony {id} is for {} with threshold {}",
            record.key_id, record.threshold, summary.key_id, summary.threshold
        )));
    }
    let contents = envelope::open(&stored.envelope, identity.age_identity()).map_err(|error| {
        VerificationFailed::error(format!("your share envelope does not open: {error}"))
    })?;
    let commitment = contents
        .verify_against_record(&record, &identity.card())
        .map_err(|error| {
            VerificationFailed::error(format!(
                "your share does not match your key record: {error}"
            ))
        })?
        .commitment;

    // A fresh nonce, then the ceremony's current key (it changes when rkmd
    // restarts), checking that the request is still the one reviewed.
    let nonce = client
        .get_approval_nonce(GetApprovalNonceRequest {
            ceremony_id: id.clone(),
            custodian: name.clone(),
        })
        .await
        .rpc("asking rkmd for an approval nonce")?
        .into_inner()
        .nonce;
    let nonce: [u8; 32] = nonce.as_slice().try_into().map_err(|_| {
        VerificationFailed::error(format!(
            "rkmd sent a {}-byte nonce; approvals use 32 bytes",
            nonce.len()
        ))
    })?;
    let current = get_recovery(&mut client, &id).await?;
    if current.request_digest != summary.request_digest
        || current.canonical_request != summary.canonical_request
    {
        return Err(VerificationFailed::error(format!(
            "the request of ceremony {id} changed while you reviewed it; nothing was sent"
        )));
    }
    if current.state != RecoveryState::Open as i32 {
        return Err(refused(format!(
            "ceremony {id} is {}; it takes no more approvals",
            state_name(current.state)
        )));
    }
    let recipient = parse_age_recipient(&current.ceremony_recipient).map_err(|error| {
        VerificationFailed::error(format!(
            "rkmd's key for ceremony {id} is not an age recipient: {error}"
        ))
    })?;
    let sealed = envelope::seal(&contents, &recipient).context("sealing your share")?;
    drop(contents);
    let signature = identity.sign(&approval_message(&id, &digest, &nonce, &commitment));
    drop(identity);

    let after = client
        .approve(ApproveRequest {
            ceremony_id: id.clone(),
            custodian: name.clone(),
            nonce: nonce.to_vec(),
            commitment: commitment.to_vec(),
            signature: signature.to_vec(),
            sealed_share: sealed,
        })
        .await
        .rpc("sending your approval")?
        .into_inner()
        .recovery
        .context("rkmd sent no ceremony")?;
    let quorum_reached = matches!(
        RecoveryState::try_from(after.state),
        Ok(RecoveryState::Signing | RecoveryState::Completed)
    );
    let report = ApproveReport {
        ceremony_id: id,
        custodian: name,
        request_digest: hex::encode(digest),
        state: state_name(after.state),
        approval_count: after.approvals.len(),
        threshold: after.threshold,
        quorum_reached,
    };
    match output {
        OutputFormat::Json => print_json(&report),
        OutputFormat::Text => {
            let mut text = format!(
                "approved by {} (share commitment {}): {} of {} approvals\n",
                report.custodian,
                hex::encode(commitment),
                report.approval_count,
                report.threshold
            );
            if quorum_reached {
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
