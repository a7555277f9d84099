//! A recovery key as rkm reports it: the JSON shape `rkm key`, `rkm share`
//! and `rkm status` print, and the one-line summary of recent share
//! attestations against the threshold.

use rkm_proto::fingerprint::fingerprint;
use rkm_proto::v1::key_service_client::KeyServiceClient;
use rkm_proto::v1::{KeySummary, ListKeysRequest, QuorumHealth};
use serde::Serialize;
use tonic::transport::Channel;

use crate::exit::RpcResultExt as _;
use crate::ui::key_state_name;

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
    /// The audit key that signed the key record when it is not this rkmd's
    /// own (an imported key); absent for keys generated here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_audit_key: Option<String>,
    pub receipts: Vec<ReceiptReport>,
    /// Custodians whose receipt is not in yet.
    pub missing: Vec<String>,
    /// Custodians who attested their share within the window.
    pub attested_recently: u32,
    pub attestation_window_days: u32,
    /// Custodians whose share counts toward a quorum now: enabled and
    /// attested within the window (rkmd's judgement).
    pub usable_custodians: u32,
    /// "healthy", "one loss from gone", "at risk" or "awaiting receipts".
    pub quorum_health: &'static str,
    /// Fewer usable custodians than the threshold.
    pub quorum_at_risk: bool,
    /// End of the receipt window while the key awaits receipts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipts_due: Option<String>,
}

/// One custodian's receipt.
#[derive(Debug, Serialize)]
pub struct ReceiptReport {
    pub custodian: String,
    pub received: bool,
    pub received_at: Option<String>,
    /// Their latest share attestation.
    pub attested_at: Option<String>,
    pub attested_recently: bool,
    /// Enabled here (a disabled custodian's approval is refused).
    pub enabled: bool,
    /// Counts toward a quorum now.
    pub usable: bool,
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
            state: key_state_name(key.state),
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
                    attested_at: (!receipt.attested_at.is_empty()).then_some(receipt.attested_at),
                    attested_recently: receipt.attested_recently,
                    enabled: receipt.enabled,
                    usable: receipt.usable,
                })
                .collect(),
            missing,
            key_id: key.key_id,
            label: key.label,
            threshold: key.threshold,
            ceremony_id: key.ceremony_id,
            created_at: key.created_at,
            record_audit_key: (!key.record_audit_key.is_empty()).then_some(key.record_audit_key),
            quorum_health: quorum_health_name(key.quorum_health),
            quorum_at_risk: key.quorum_health == QuorumHealth::AtRisk as i32,
            usable_custodians: key.usable_custodians,
            receipts_due: (!key.receipts_due.is_empty()).then_some(key.receipts_due),
            attested_recently: key.attested_recently,
            attestation_window_days: key.attestation_window_days,
        }
    }
}

fn quorum_health_name(health: i32) -> &'static str {
    match QuorumHealth::try_from(health) {
        Ok(QuorumHealth::Healthy) => "healthy",
        Ok(QuorumHealth::OneLossFromGone) => "one loss from gone",
        Ok(QuorumHealth::AtRisk) => "at risk",
        Ok(QuorumHealth::AwaitingReceipts) => "awaiting receipts",
        _ => "unknown",
    }
}

/// "2 of 3 custodians usable (enabled, attested in the last 90 days;
/// threshold 2)", with a warning when the quorum is at risk or one loss
/// from it.
pub fn attestation_summary(key: &KeyReport) -> String {
    let warning = match key.quorum_health {
        "at risk" => " — QUORUM AT RISK: fewer usable custodians than the threshold; custodians, check and attest your share (rkm share verify --attest), or move the key to new custodians".to_owned(),
        "one loss from gone" => " — WARNING: exactly the threshold is left; one more loss and the key cannot be recovered".to_owned(),
        "awaiting receipts" => format!(
            " — awaiting receipts until {}",
            key.receipts_due.as_deref().unwrap_or("the end of the receipt window")
        ),
        _ => String::new(),
    };
    format!(
        "{} of {} custodians usable (enabled, attested in the last {} days; threshold {}){warning}",
        key.usable_custodians, key.custodian_count, key.attestation_window_days, key.threshold,
    )
}

/// Every key rkmd holds, as reports.
///
/// # Errors
/// rkmd cannot be asked.
pub async fn list_keys(client: &mut KeyServiceClient<Channel>) -> anyhow::Result<Vec<KeyReport>> {
    Ok(client
        .list_keys(ListKeysRequest {})
        .await
        .rpc("listing keys")?
        .into_inner()
        .keys
        .into_iter()
        .map(KeyReport::from)
        .collect())
}
