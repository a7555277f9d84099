//! `rkm audit prove INDEX`: proves that one entry is in rkmd's log — an RFC
//! 9162 §2.1.3 inclusion proof checked against the latest checkpoint, whose
//! signature is checked with the trusted audit key.

use crate::connect::stubs;
use std::fmt::Write as _;

use rkm_proto::audit_entry::AuditEntry;
use rkm_proto::checkpoint::VerifierKey;
use rkm_proto::merkle::{Hash, leaf_hash, verify_inclusion};
use rkm_proto::v1::GetInclusionProofRequest;
use serde::Serialize;

use super::latest_checkpoint;
use crate::connect::Target;
use crate::exit::{RpcResultExt as _, VerificationFailed};
use crate::output::{OutputFormat, emit, print_json};
use crate::trust::{key_fingerprint, parse_audit_key, trust_daemon_key};

/// Prove that an entry is in the log, against the latest signed checkpoint.
///
/// Fetches the entry's inclusion proof (RFC 9162 §2.1.3) and checks it
/// against rkmd's latest checkpoint, whose signature is checked with the
/// trusted audit key. Exits with 7 if either does not verify.
#[derive(Debug, clap::Args)]
pub struct ProveArgs {
    /// The entry's index (0 is the first entry).
    pub index: u64,
    /// The trusted audit key; rkmd's must be this one. Without it, rkmd's key
    /// is trusted on first use and its fingerprint printed.
    #[arg(long, value_name = "KEY", env = "RKM_AUDIT_KEY", value_parser = parse_audit_key)]
    pub audit_key: Option<VerifierKey>,
}

/// What `--output json` prints.
#[derive(Debug, Serialize)]
pub struct ProofReport {
    pub index: u64,
    pub tree_size: u64,
    /// The entry verbatim, as hashed.
    pub entry_raw: String,
    /// The entry decoded, if it decodes.
    pub entry: Option<AuditEntry>,
    pub leaf_hash: String,
    /// Sibling hashes, from the leaf up.
    pub proof: Vec<String>,
    pub root: String,
    pub audit_key: String,
    pub fingerprint: String,
    /// The signed checkpoint the proof was checked against.
    pub checkpoint: String,
}

/// Fetches and checks the proof, then prints it.
///
/// # Errors
///
/// rkmd cannot be reached or refuses; the key, checkpoint or proof does not
/// verify ([`VerificationFailed`]).
pub async fn run(args: &ProveArgs, target: &Target, output: OutputFormat) -> anyhow::Result<()> {
    let given = args.audit_key.clone();
    let channel = target.connect().await?;
    let mut client = stubs::audit(channel);
    let log = trust_daemon_key(&mut client, given.as_ref().map(|key| (key, "--audit-key"))).await?;
    let (checkpoint, note) = latest_checkpoint(&mut client, &log).await?;
    let size = checkpoint.size();
    if args.index >= size {
        return Err(anyhow::anyhow!(
            "entry {} is not in the log yet: its latest checkpoint is at size {size}",
            args.index
        ));
    }
    let response = client
        .get_inclusion_proof(GetInclusionProofRequest {
            index: args.index,
            tree_size: size,
        })
        .await
        .rpc("asking rkmd for an inclusion proof")?
        .into_inner();
    let failed = |what: String| {
        VerificationFailed::error(format!(
            "the inclusion proof of entry {} in the checkpoint at size {size} does not verify: {what}",
            args.index
        ))
    };
    if response.index != args.index || response.tree_size != size {
        return Err(failed(format!(
            "rkmd answered for entry {} at size {}",
            response.index, response.tree_size
        )));
    }
    let leaf = leaf_hash(&response.entry);
    if response.leaf_hash != leaf.as_bytes() {
        return Err(failed(format!(
            "the entry hashes to {leaf}, but rkmd says its leaf hash is {}",
            hex::encode(&response.leaf_hash)
        )));
    }
    let proof = response
        .hashes
        .iter()
        .map(|hash| Hash::try_from_slice(hash))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| failed(error.to_string()))?;
    verify_inclusion(args.index, size, &leaf, &proof, checkpoint.root())
        .map_err(|error| failed(error.to_string()))?;

    let report = ProofReport {
        index: args.index,
        tree_size: size,
        entry_raw: String::from_utf8_lossy(&response.entry).into_owned(),
        entry: AuditEntry::decode(&response.entry).ok(),
        leaf_hash: leaf.to_hex(),
        proof: proof.iter().map(Hash::to_hex).collect(),
        root: checkpoint.root().to_hex(),
        audit_key: log.key.to_string(),
        fingerprint: key_fingerprint(&log.key),
        checkpoint: note,
    };
    match output {
        OutputFormat::Json => print_json(&report),
        OutputFormat::Text => emit(&render_text(&report)),
    }
}

fn render_text(report: &ProofReport) -> String {
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        text,
        "entry {} is in the log at size {}: inclusion proof verified",
        report.index, report.tree_size
    );
    if let Some(entry) = &report.entry {
        let _ = writeln!(text, "  time          {}", entry.time);
        let _ = writeln!(text, "  actor         {}", entry.actor);
        let _ = writeln!(text, "  action        {}", entry.action);
        if !entry.subject.is_empty() {
            let _ = writeln!(text, "  subject       {}", entry.subject);
        }
        let _ = writeln!(text, "  outcome       {}", entry.outcome);
    }
    let _ = writeln!(text, "  entry         {}", report.entry_raw);
    let _ = writeln!(text, "  leaf hash     {}", report.leaf_hash);
    if report.proof.is_empty() {
        let _ = writeln!(text, "  proof         (none: the entry is the whole tree)");
    }
    for (level, hash) in report.proof.iter().enumerate() {
        let label = if level == 0 { "proof" } else { "" };
        let _ = writeln!(text, "  {label:<13} {hash}");
    }
    let _ = writeln!(text, "  root          {}", report.root);
    let _ = writeln!(text, "  audit key     {}", report.audit_key);
    let _ = writeln!(text, "  fingerprint   {}", report.fingerprint);
    let _ = writeln!(text, "  checkpoint");
    for line in report.checkpoint.lines() {
        let _ = writeln!(text, "    {line}");
    }
    text
}
