//! A recovery key as rkm reports it: the JSON shape `rkm key`, `rkm share`
//! and `rkm status` print, and the one-line summary of recent share
//! attestations against the threshold.

use rkm_proto::fingerprint::fingerprint;
use rkm_proto::v1::key_service_client::KeyServiceClient;
use rkm_proto::v1::{KeySummary, ListKeysRequest};
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
    /// Fewer recent attestations than the threshold.
    pub quorum_at_risk: bool,
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
                })
                .collect(),
            missing,
            key_id: key.key_id,
            label: key.label,
            threshold: key.threshold,
            ceremony_id: key.ceremony_id,
            created_at: key.created_at,
            record_audit_key: (!key.record_audit_key.is_empty()).then_some(key.record_audit_key),
            quorum_at_risk: key.attested_recently < key.threshold,
            attested_recently: key.attested_recently,
            attestation_window_days: key.attestation_window_days,
        }
    }
}

/// "2 of 3 custodians in the last 90 days (threshold 2)", flagged when a
/// quorum is at risk.
pub fn attestation_summary(key: &KeyReport) -> String {
    format!(
        "{} of {} custodians in the last {} days (threshold {}){}",
        key.attested_recently,
        key.custodian_count,
        key.attestation_window_days,
        key.threshold,
        if key.quorum_at_risk {
            " — QUORUM AT RISK: custodians, check and attest your share (rkm share verify --attest)"
        } else {
            ""
        }
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
