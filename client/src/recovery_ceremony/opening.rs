//! Opening a recovery or drill ceremony: the request is sent, the target
//! manifest streamed to rkmd in chunks (never held whole), and the request
//! rkmd recorded checked to be exactly the one sent, by recomputing its
//! digest here.

use crate::connect::stubs;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use rkm_proto::recovery_request::{
    CanonicalRequest, CeremonyKind, ManifestSplitter, RecoveryRequest, TargetsDigest, TargetsHasher,
};
use rkm_proto::v1::open_recovery_request::Part;
use rkm_proto::v1::recovery_service_client::RecoveryServiceClient;
use rkm_proto::v1::{OpenRecoveryRequest, RecoveryHeader, RecoverySummary};
use tokio::io::AsyncReadExt as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::{RecoveryReport, checked_request, render};
use crate::connect::Target;
use crate::exit::{RpcResultExt as _, VerificationFailed};
use crate::output::{OutputFormat, emit, print_json};
use crate::ui::{Unit, progress_bar};

/// Bytes of the manifest per gRPC message.
const CHUNK: usize = 256 * 1024;
/// How long rkmd may take to answer once the manifest is sent.
const REFUSAL_WAIT: Duration = Duration::from_secs(600);
/// Longest approval window rkmd accepts.
const MAX_EXPIRY: Duration = Duration::from_secs(30 * 24 * 3600);

/// Open a recovery ceremony (operators).
///
/// The request file (TOML) says what the recovery key is to sign: the
/// command and its parameters, the reason, the incident and the validity
/// window, and optionally the targets inline. A manifest (--targets) lists
/// more targets, one device id per line ('#' comments and blank lines
/// skipped); it is streamed, so it may hold millions of lines. rkmd sends
/// each custodian a notice; the ceremony takes approvals until it expires.
#[derive(Debug, clap::Args)]
pub struct OpenArgs {
    /// The recovery key's label or id.
    #[arg(long)]
    pub key: String,
    /// The request file (TOML).
    #[arg(long, value_name = "FILE")]
    pub request: PathBuf,
    /// A target manifest: one device id per line.
    #[arg(long, value_name = "FILE")]
    pub targets: Option<PathBuf>,
    /// How long custodians may approve, e.g. 24h, 90m, 3days (at most 30 days).
    #[arg(long, value_name = "DURATION", value_parser = parse_expiry)]
    pub expires: Duration,
    /// Open it as an emergency; custodians are told so.
    #[arg(long, requires = "justification")]
    pub emergency: bool,
    /// Why this is an emergency (with --emergency).
    #[arg(long, value_name = "TEXT", requires = "emergency")]
    pub justification: Option<String>,
    /// Set by `rkm drill open`: a drill takes no targets.
    #[arg(skip)]
    pub drill: bool,
}

/// Parses `--expires`: a humantime duration, whole seconds, 1 s to 30 days.
///
/// # Errors
/// Anything else, saying what is accepted.
pub fn parse_expiry(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text)
        .map_err(|error| format!("{text:?} is not a duration such as 24h or 90m: {error}"))?;
    if duration.subsec_nanos() != 0 || duration.is_zero() {
        return Err(format!(
            "{text:?} must be a whole number of seconds, at least 1s"
        ));
    }
    if duration > MAX_EXPIRY {
        return Err(format!("{text:?} is longer than the 30 days rkmd accepts"));
    }
    Ok(duration)
}

/// How streaming the manifest ended.
enum Fed {
    /// Every target was sent; their digest as computed here.
    All(TargetsDigest),
    /// rkmd stopped reading (it refused the request); its answer says why.
    Interrupted,
}

/// Streams the manifest to rkmd, splitting and hashing it here as rkmd does.
/// A manifest line the request rules refuse: exit 6, as rkmd's own refusal.
fn invalid_manifest(path: &std::path::Path, error: &impl std::fmt::Display) -> anyhow::Error {
    super::refused(format!(
        "the target manifest {} is not valid: {error}",
        path.display()
    ))
}

/// On a local error (unreadable file, bad line), sends a message rkmd
/// refuses, so that a manifest cut short can never be taken for a whole one.
async fn feed_manifest(
    path: Option<PathBuf>,
    mut hasher: TargetsHasher,
    sender: mpsc::Sender<OpenRecoveryRequest>,
) -> anyhow::Result<Fed> {
    let Some(path) = path else {
        return Ok(Fed::All(hasher.finish()));
    };
    let result = async {
        let mut file = tokio::fs::File::open(&path)
            .await
            .with_context(|| format!("cannot open the target manifest {}", path.display()))?;
        let size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
        let bar = progress_bar(size, Unit::Bytes, "sending targets");
        let mut splitter = ManifestSplitter::new();
        let mut ids = Vec::new();
        loop {
            let mut chunk = vec![0u8; CHUNK];
            let read = file
                .read(&mut chunk)
                .await
                .with_context(|| format!("cannot read the target manifest {}", path.display()))?;
            if read == 0 {
                break;
            }
            chunk.truncate(read);
            splitter
                .push(&chunk, &mut ids)
                .map_err(|error| invalid_manifest(&path, &error))?;
            for (_, id) in ids.drain(..) {
                hasher.push(&id)?;
            }
            bar.inc(read as u64);
            let message = OpenRecoveryRequest {
                part: Some(Part::TargetsChunk(chunk)),
            };
            if sender.send(message).await.is_err() {
                bar.finish_and_clear();
                return Ok(Fed::Interrupted);
            }
        }
        splitter
            .finish(&mut ids)
            .map_err(|error| invalid_manifest(&path, &error))?;
        for (_, id) in ids.drain(..) {
            hasher.push(&id)?;
        }
        bar.finish_and_clear();
        Ok(Fed::All(hasher.finish()))
    }
    .await;
    if result.is_err() {
        // rkmd refuses anything but manifest chunks after the header.
        let _ = sender.send(OpenRecoveryRequest { part: None }).await;
    }
    result
}

/// Sends the header, streams the manifest while rkmd reads it, and returns
/// the targets' digest as computed here with the ceremony rkmd opened.
///
/// If the manifest fails here, rkmd is sent a message it refuses (so it
/// audits the refusal and drops what it staged) and its answer is awaited
/// before the local error is returned.
async fn send_request(
    client: &mut RecoveryServiceClient<Channel>,
    header: RecoveryHeader,
    manifest: Option<PathBuf>,
    hasher: TargetsHasher,
) -> anyhow::Result<(TargetsDigest, RecoverySummary)> {
    let (sender, receiver) = mpsc::channel(4);
    sender
        .send(OpenRecoveryRequest {
            part: Some(Part::Header(header)),
        })
        .await
        .map_err(|_| anyhow::anyhow!("the request could not be queued"))?;
    let call = client.open_recovery(ReceiverStream::new(receiver));
    tokio::pin!(call);
    let feed = feed_manifest(manifest, hasher, sender);
    tokio::pin!(feed);
    let fed = tokio::select! {
        answer = &mut call => {
            answer.rpc("opening the recovery ceremony")?;
            bail!("rkmd answered before the whole manifest was sent; check `rkm recovery list`");
        }
        fed = &mut feed => fed,
    };
    let answer = tokio::time::timeout(REFUSAL_WAIT, &mut call).await;
    let targets = match fed {
        Ok(Fed::All(targets)) => targets,
        Ok(Fed::Interrupted) => {
            let answer =
                answer.map_err(|_| anyhow::anyhow!("rkmd stopped reading the manifest"))?;
            answer.rpc("opening the recovery ceremony")?;
            bail!("rkmd stopped reading the manifest");
        }
        Err(error) => {
            return Err(match answer {
                Ok(Ok(opened)) => {
                    let id = opened.into_inner().recovery.map(|r| r.ceremony_id);
                    error.context(format!(
                        "rkmd opened ceremony {} anyway: cancel it with `rkm recovery cancel`",
                        id.unwrap_or_default()
                    ))
                }
                _ => error.context("nothing was opened: rkmd refused the incomplete request"),
            });
        }
    };
    let summary = answer
        .map_err(|_| {
            anyhow::anyhow!("rkmd did not answer within {REFUSAL_WAIT:?} after the manifest")
        })?
        .rpc("opening the recovery ceremony")?
        .into_inner()
        .recovery
        .context("rkmd sent no ceremony")?;
    Ok((targets, summary))
}

/// Checks that the request rkmd recorded is the one sent: its canonical
/// form, rebuilt here from the request and the targets' digest, has the
/// digest rkmd states. Returns the recorded request.
fn check_recorded(
    summary: &RecoverySummary,
    args: &OpenArgs,
    request: &RecoveryRequest,
    targets: TargetsDigest,
    justification: &str,
) -> anyhow::Result<CanonicalRequest> {
    let (recorded, digest) = checked_request(summary)?;
    let sent = CanonicalRequest::from_request(
        if args.drill {
            CeremonyKind::Drill
        } else {
            CeremonyKind::Recovery
        },
        &summary.key_id,
        request,
        targets,
        args.emergency,
        justification,
    )
    .map_err(|error| {
        VerificationFailed::error(format!(
            "rkmd opened ceremony {} for a request that is not valid here ({error}); cancel it with `rkm recovery cancel {} --reason ...`",
            summary.ceremony_id, summary.ceremony_id
        ))
    })?;
    if sent.digest() != digest {
        return Err(VerificationFailed::error(format!(
            "rkmd recorded another request than the one sent (digest {}, expected {}; {} targets, {} sent): cancel ceremony {} with `rkm recovery cancel {} --reason ...`",
            hex::encode(digest),
            hex::encode(sent.digest()),
            recorded.targets.count,
            targets.count,
            summary.ceremony_id,
            summary.ceremony_id
        )));
    }
    Ok(recorded)
}

/// Opens the ceremony for an already parsed request (the file's text is
/// what rkmd parses again and records).
///
/// # Errors
/// The manifest is unreadable or invalid; rkmd refuses; rkmd recorded
/// another request than the one sent ([`VerificationFailed`]).
pub async fn open_ceremony(
    args: OpenArgs,
    request_toml: String,
    request: RecoveryRequest,
    target: &Target,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let mut hasher = TargetsHasher::new();
    for id in &request.targets {
        hasher.push(id)?;
    }
    if !args.drill && request.targets.is_empty() && args.targets.is_none() {
        bail!(
            "the request file {} lists no targets: add `targets = [...]` or give a manifest with --targets FILE",
            args.request.display()
        );
    }
    let justification = args.justification.clone().unwrap_or_default();
    let header = RecoveryHeader {
        key: args.key.clone(),
        request_toml,
        expires_in_seconds: args.expires.as_secs(),
        emergency: args.emergency,
        justification: justification.clone(),
        drill: args.drill,
    };
    let mut client = stubs::recovery(target.connect().await?);
    let (targets, summary) =
        send_request(&mut client, header, args.targets.clone(), hasher).await?;
    let recorded = check_recorded(&summary, &args, &request, targets, &justification)?;
    let report = RecoveryReport::new(&summary, Some(&recorded));
    match output {
        OutputFormat::Json => print_json(&report),
        OutputFormat::Text => {
            let mut text = render(&report);
            let _ = writeln!(
                text,
                "Custodians review it with `rkm recovery show {id}` and approve with `rkm recovery approve {id}`; collect the artefact with `rkm recovery collect {id} -o FILE`{drill}.",
                id = report.ceremony_id,
                drill = if args.drill {
                    format!(
                        "; see how the drill went with `rkm drill report {}`",
                        report.ceremony_id
                    )
                } else {
                    String::new()
                }
            );
            emit(&text)
        }
    }
}
