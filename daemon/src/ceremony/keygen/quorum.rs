//! Whether a key can still be recovered: how many custodians' shares count
//! toward a quorum now — enrolled and enabled here (a disabled custodian's
//! approval is refused) and attested within the window — against the
//! threshold.
//!
//! A new key is not "at risk" while its custodians are still within their
//! receipt window, as long as those who have not yet confirmed could make up
//! the quorum; once the window has passed, or when too few are left who could
//! confirm (some disabled), it is judged like any other key.

use std::time::{Duration, UNIX_EPOCH};

use super::{KeyState, KeySummary, RECEIPT_WINDOW};
use rkm_proto::encoding::time::{format_rfc3339_seconds, unix_time_from_rfc3339};

/// Whether enough custodians remain to recover a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuorumHealth {
    Healthy,
    /// Exactly the threshold remains: one more loss and the key is gone.
    OneLossFromGone,
    AtRisk,
    AwaitingReceipts,
}

/// A key's quorum as rkmd judges it now.
#[derive(Debug, Clone)]
pub struct QuorumView {
    /// Per receipt, in order: whether its custodian attested within the window.
    pub attested_recently: Vec<bool>,
    /// Per receipt, in order: whether that share counts toward a quorum.
    pub usable: Vec<bool>,
    pub usable_count: u32,
    pub health: QuorumHealth,
    /// The end of the receipt window, while the key awaits receipts.
    pub receipts_due: Option<String>,
}

/// Judges `key` at `now_unix` with an attestation window of `window_days`.
pub fn quorum_view(key: &KeySummary, window_days: u32, now_unix: u64) -> QuorumView {
    let window = u64::from(window_days) * 86_400;
    let attested_recently: Vec<bool> = key
        .receipts
        .iter()
        .map(|receipt| {
            receipt
                .attested
                .as_ref()
                .is_some_and(|(_, unix)| now_unix.saturating_sub(*unix) <= window)
        })
        .collect();
    let usable: Vec<bool> = key
        .receipts
        .iter()
        .zip(&attested_recently)
        .map(|(receipt, attested)| receipt.enabled && *attested)
        .collect();
    let usable_count = usable.iter().filter(|usable| **usable).count() as u32;
    let could_still_confirm = key
        .receipts
        .iter()
        .filter(|receipt| receipt.enabled && receipt.received_at.is_none())
        .count() as u32;
    let threshold = u32::from(key.threshold);
    let due = unix_time_from_rfc3339(&key.created_at)
        .and_then(|created| u64::try_from(created).ok())
        .map(|created| created + RECEIPT_WINDOW.as_secs());
    let awaiting = key.state == KeyState::AwaitingReceipts
        && due.is_some_and(|due| now_unix < due)
        && usable_count + could_still_confirm >= threshold;
    let health = if awaiting {
        QuorumHealth::AwaitingReceipts
    } else if usable_count < threshold {
        QuorumHealth::AtRisk
    } else if usable_count == threshold {
        QuorumHealth::OneLossFromGone
    } else {
        QuorumHealth::Healthy
    };
    QuorumView {
        attested_recently,
        usable,
        usable_count,
        health,
        receipts_due: awaiting
            .then(|| due.map(|due| format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(due))))
            .flatten(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::keys::Receipt;

    const CREATED: &str = "2026-12-01T00:00:00Z";
    const CREATED_UNIX: u64 = 1_796_083_200;
    const DAY: u64 = 86_400;

    fn receipt(enabled: bool, attested_unix: Option<u64>) -> Receipt {
        Receipt {
            custodian: "c".to_owned(),
            received_at: attested_unix.map(|_| CREATED.to_owned()),
            attested: attested_unix.map(|unix| (CREATED.to_owned(), unix)),
            enabled,
        }
    }

    fn key(state: KeyState, threshold: u8, receipts: Vec<Receipt>) -> KeySummary {
        KeySummary {
            key_id: "rk-1".to_owned(),
            label: "fleet".to_owned(),
            state,
            threshold,
            public_key_spki: Vec::new(),
            signed_key_record: String::new(),
            receipts,
            ceremony_id: "cer-1".to_owned(),
            created_at: CREATED.to_owned(),
            record_audit_key: String::new(),
        }
    }

    #[test]
    fn the_created_time_is_the_unix_time_the_tests_assume() {
        assert_eq!(unix_time_from_rfc3339(CREATED), Some(CREATED_UNIX as i64));
    }

    #[test]
    fn only_enabled_recently_attested_custodians_count() {
        let now = CREATED_UNIX + 10 * DAY;
        let attested = Some(CREATED_UNIX + DAY);
        let all = key(KeyState::Active, 2, vec![receipt(true, attested); 3]);
        assert_eq!(quorum_view(&all, 90, now).health, QuorumHealth::Healthy);
        let one_disabled = key(
            KeyState::Active,
            2,
            vec![
                receipt(true, attested),
                receipt(true, attested),
                receipt(false, attested),
            ],
        );
        let view = quorum_view(&one_disabled, 90, now);
        assert_eq!(
            (view.usable_count, view.health),
            (2, QuorumHealth::OneLossFromGone)
        );
        assert_eq!(view.usable, [true, true, false]);
        let two_disabled = key(
            KeyState::Active,
            2,
            vec![
                receipt(true, attested),
                receipt(false, attested),
                receipt(false, attested),
            ],
        );
        assert_eq!(
            quorum_view(&two_disabled, 90, now).health,
            QuorumHealth::AtRisk
        );
        let stale = key(KeyState::Active, 2, vec![receipt(true, attested); 3]);
        assert_eq!(
            quorum_view(&stale, 5, now).health,
            QuorumHealth::AtRisk,
            "attestations older than the window do not count"
        );
    }

    #[test]
    fn a_new_key_awaits_its_receipts_only_while_they_could_still_make_the_quorum() {
        let fresh = key(KeyState::AwaitingReceipts, 2, vec![receipt(true, None); 3]);
        let view = quorum_view(&fresh, 90, CREATED_UNIX + DAY);
        assert_eq!(view.health, QuorumHealth::AwaitingReceipts);
        assert_eq!(view.receipts_due.as_deref(), Some("2026-12-08T00:00:00Z"));
        assert_eq!(
            quorum_view(&fresh, 90, CREATED_UNIX + 8 * DAY).health,
            QuorumHealth::AtRisk,
            "after the receipt window a key is judged like any other"
        );
        let cannot = key(
            KeyState::AwaitingReceipts,
            2,
            vec![
                receipt(true, None),
                receipt(false, None),
                receipt(false, None),
            ],
        );
        assert_eq!(
            quorum_view(&cannot, 90, CREATED_UNIX + DAY).health,
            QuorumHealth::AtRisk,
            "two of three disabled: the key cannot become recoverable"
        );
    }
}
