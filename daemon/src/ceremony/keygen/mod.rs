//! The key generation ceremony (DESIGN "Ceremonies" 1): the HSM generates the
//! recovery key and the KEK bytes; the key is wrapped under the KEK (RFC
//! 5649); the KEK is split k-of-n and each share, with a salted commitment, is
//! sealed to its custodian; the HSM objects are destroyed and the KEK wiped;
//! the key record is signed by the audit key. The key becomes active when
//! every custodian has fetched, verified and signed a receipt for their share.
//!
//! `generate.rs` runs the ceremony up to the stored key, `envelopes.rs` hands
//! out the envelopes and takes the receipts, `expiry.rs` closes ceremonies
//! whose receipt window passed; this file holds the shared types and reads.

mod envelopes;
mod expiry;
mod generate;
pub mod quorum;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use super::state::KeyState;
use super::{CeremonyError, Services};
pub use crate::store::keys::Receipt;
use crate::store::{self, keys::KeyRow};

/// How long custodians have to fetch their shares and send receipts.
pub const RECEIPT_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);
/// How far a custodian's clock may be from rkmd's for a signed fetch.
pub(super) const FETCH_CLOCK_SKEW: u64 = 300;

/// A key and who has confirmed their share.
#[derive(Debug, Clone)]
pub struct KeySummary {
    pub key_id: String,
    pub label: String,
    pub state: KeyState,
    pub threshold: u8,
    pub public_key_spki: Vec<u8>,
    pub signed_key_record: String,
    pub receipts: Vec<Receipt>,
    pub ceremony_id: String,
    pub created_at: String,
    /// Verifier key that signed the record if it was imported ('' for ours).
    pub record_audit_key: String,
}

impl From<KeyRow> for KeySummary {
    fn from(row: KeyRow) -> Self {
        Self {
            key_id: row.key_id,
            label: row.label,
            state: KeyState::parse(&row.state),
            threshold: row.threshold,
            public_key_spki: row.public_key_spki,
            signed_key_record: row.signed_key_record,
            receipts: row.receipts,
            ceremony_id: row.ceremony_id,
            created_at: row.created_at,
            record_audit_key: row.record_audit_key,
        }
    }
}

/// What the operator asks for.
#[derive(Debug, Clone)]
pub struct KeyRequest {
    pub label: String,
    pub threshold: u32,
    pub custodians: Vec<String>,
    pub allow_single_custodian: bool,
}

/// An envelope handed to its custodian.
#[derive(Debug, Clone)]
pub struct FetchedEnvelope {
    pub key_id: String,
    pub envelope: Vec<u8>,
    pub signed_key_record: String,
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether a signed time is close enough to rkmd's clock to count.
pub(super) fn within_clock_skew(now_unix: u64, signed_unix: u64) -> bool {
    now_unix.abs_diff(signed_unix) <= FETCH_CLOCK_SKEW
}

impl Services {
    /// A key by label or key id.
    ///
    /// # Errors
    /// No such key.
    pub async fn get_key(&self, key: String) -> Result<KeySummary, CeremonyError> {
        let lookup = key.clone();
        self.store
            .read(move |tx| store::keys::load(tx, &lookup))
            .await?
            .map(KeySummary::from)
            .ok_or_else(|| CeremonyError::not_found("key", key, "; `rkm key list` shows the keys"))
    }

    /// Every key, by label.
    ///
    /// # Errors
    /// The store fails.
    pub async fn list_keys(&self) -> Result<Vec<KeySummary>, CeremonyError> {
        let rows = self.store.read(store::keys::list).await?;
        Ok(rows.into_iter().map(KeySummary::from).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_times_count_within_five_minutes_either_way() {
        assert!(within_clock_skew(1_000, 1_000));
        assert!(within_clock_skew(1_000, 1_300));
        assert!(within_clock_skew(1_300, 1_000));
        assert!(!within_clock_skew(1_000, 1_301));
        assert!(!within_clock_skew(1_301, 1_000));
    }
}
