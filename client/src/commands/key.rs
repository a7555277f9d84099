//! `rkm key`: operators run the key generation ceremony (`create`) and follow
//! it (`show`, `list`): which custodians have confirmed their share and who is
//! still missing.

use std::fmt::Write as _;

use anyhow::Context as _;
use clap::Subcommand;
use rkm_proto::fingerprint::fingerprint;
use rkm_proto::v1::key_service_client::KeyServiceClient;
use rkm_proto::v1::{CreateKeyRequest, GetKeyRequest, KeyState, KeySummary, ListKeysRequest};
use serde::Serialize;

use crate::connect::Target;
use crate::exit::RpcResultExt as _;
use crate::output::{OutputFormat, emit, print_json};

/// Recovery keys: the key generation ceremony and its progress.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    Create(CreateArgs),
    Show(ShowArgs),
    List,
}

/// Run the key generation ceremony (operators).
///
/// rkmd's HSM generates the recovery key and the KEK, wraps the key, splits
/// the KEK K-of-N and seals one share to each custodian. The key becomes
/// active when every custodian has run `rkm share fetch`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// A name for the key: letters, digits, '-', '_', '.'.
    #[arg(long)]
    pub label: String,
    /// How many custodians together can use the key (K).
    #[arg(long)]
    pub threshold: u32,
    /// The custodians, comma-separated; each receives one share (N).
    #[arg(long, value_delimiter = ',', required = true, num_args = 1..)]
    pub custodians: Vec<String>,
    /// Permit a threshold of 1, so that one custodian alone could use the key.
    #[arg(long)]
    pub allow_single_custodian: bool,
}

/// Show a key: its state, threshold, and who has confirmed their share.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The key's label or id.
    pub key: String,
}

/// A key as `--output json` prints it.
#[derive(Debug, Serialize)]
pub struct KeyReport {
    pub key_id: String,
    pub label: String,
    pub state: &'static str,
    pub threshold: u32,
    pub custodian_count: usize,
    pub public_key_fingerprint: String,
    pub public_key_spki: String,
    pub ceremony_id: String,
    pub created_at: String,
    pub receipts: Vec<ReceiptReport>,
    /// Custodians whose receipt is not in yet.
    pub missing: Vec<String>,
}

/// One custodian's receipt.
#[derive(Debug, Serialize)]
pub struct ReceiptReport {
    pub custodian: String,
    pub received: bool,
    pub received_at: Option<String>,
}

/// A key's state as rkm prints it.
pub fn state_name(state: i32) -> &'static str {
    match KeyState::try_from(state) {
        Ok(KeyState::AwaitingReceipts) => "awaiting-receipts",
        Ok(KeyState::Active) => "active",
        _ => "unknown",
    }
}

impl From<KeySummary> for KeyReport {
    fn from(key: KeySummary) -> Self {
        let missing = key
            .receipts
            .iter()
            .filter(|receipt| !receipt.received)
            .map(|receipt| receipt.custodian.clone())
            .collect();
        KeyReport {
            state: state_name(key.state),
            custodian_count: key.receipts.len(),
            public_key_fingerprint: fingerprint(&key.public_key_spki),
            public_key_spki: hex::encode(&key.public_key_spki),
            receipts: key
                .receipts
                .into_iter()
                .map(|receipt| ReceiptReport {
                    custodian: receipt.custodian,
                    received: receipt.received,
                    received_at: (!receipt.received_at.is_empty()).then_some(receipt.received_at),
                })
                .collect(),
            missing,
            key_id: key.key_id,
            label: key.label,
            threshold: key.threshold,
            ceremony_id: key.ceremony_id,
            created_at: key.created_at,
        }
    }
}

/// Runs one `rkm key` command.
///
/// # Errors
/// rkmd cannot be reached or refuses.
pub async fn run(command: KeyCommand, target: &Target, output: OutputFormat) -> anyhow::Result<()> {
    let mut client = KeyServiceClient::new(target.connect().await?);
    match command {
        KeyCommand::Create(args) => {
            let response = client
                .create_key(CreateKeyRequest {
                    label: args.label,
                    threshold: args.threshold,
                    custodians: args.custodians,
                    allow_single_custodian: args.allow_single_custodian,
                })
                .await
                .rpc("running the key generation ceremony")?
                .into_inner();
            let report = KeyReport::from(response.key.context("rkmd sent no key")?);
            match output {
                OutputFormat::Json => print_json(&report),
                OutputFormat::Text => {
                    let mut text = render_key(&report);
                    let _ = writeln!(
                        text,
                        "Each custodian now runs `rkm share fetch --key {}`; the key becomes active with the last receipt.",
                        report.label
                    );
                    emit(&text)
                }
            }
        }
        KeyCommand::Show(args) => {
            let key = client
                .get_key(GetKeyRequest { key: args.key })
                .await
                .rpc("asking rkmd for the key")?
                .into_inner()
                .key
                .context("rkmd sent no key")?;
            let report = KeyReport::from(key);
            match output {
                OutputFormat::Json => print_json(&report),
                OutputFormat::Text => emit(&render_key(&report)),
            }
        }
        KeyCommand::List => {
            let keys: Vec<KeyReport> = client
                .list_keys(ListKeysRequest {})
                .await
                .rpc("listing keys")?
                .into_inner()
                .keys
                .into_iter()
                .map(KeyReport::from)
                .collect();
            match output {
                OutputFormat::Json => print_json(&keys),
                OutputFormat::Text => emit(&render_list(&keys)),
            }
        }
    }
}

fn render_key(key: &KeyReport) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "key         {} ({})", key.label, key.key_id);
    let _ = writeln!(text, "state       {}", key.state);
    let _ = writeln!(
        text,
        "threshold   {} of {} custodians",
        key.threshold, key.custodian_count
    );
    let _ = writeln!(text, "public key  {}", key.public_key_fingerprint);
    let _ = writeln!(text, "ceremony    {}", key.ceremony_id);
    let _ = writeln!(text, "created     {}", key.created_at);
    let received = key.receipts.len() - key.missing.len();
    let _ = writeln!(text, "receipts    {received} of {}", key.receipts.len());
    for receipt in &key.receipts {
        match &receipt.received_at {
            Some(at) => {
                let _ = writeln!(text, "  received  {:<20} {at}", receipt.custodian);
            }
            None => {
                let _ = writeln!(text, "  missing   {}", receipt.custodian);
            }
        }
    }
    text
}

fn render_list(keys: &[KeyReport]) -> String {
    if keys.is_empty() {
        return "no keys; `rkm key create` runs a key generation ceremony\n".to_owned();
    }
    let mut text = String::new();
    for key in keys {
        let _ = writeln!(
            text,
            "{:<24} {}  {:<18} {} of {}  receipts {}/{}",
            key.label,
            key.key_id,
            key.state,
            key.threshold,
            key.custodian_count,
            key.receipts.len() - key.missing.len(),
            key.receipts.len()
        );
    }
    text
}
