//! Approval nonces: single use, bound to one ceremony and one custodian,
//! valid for ten minutes. A custodian signs one into their approval, so an
//! approval cannot be replayed or moved to another ceremony.

use rkm_proto::audit_entry::action;
use std::time::Duration;

use super::super::{CeremonyError, Services};
use super::rfc3339_after;
use crate::audit::Event;
use crate::store::{self, approvals::IssuedNonce};

/// How long an approval nonce stays valid.
const NONCE_LIFETIME: Duration = Duration::from_secs(600);

/// Checks that `issued` (the stored nonce an approval names, if this rkmd
/// issued it) is for `ceremony_id` and `custodian`, unused, and not expired
/// at `now` (RFC 3339 UTC).
pub(super) fn check_nonce(
    issued: Option<&IssuedNonce>,
    ceremony_id: &str,
    custodian: &str,
    now: &str,
) -> Result<(), CeremonyError> {
    let Some(issued) = issued else {
        return Err(CeremonyError::PermissionDenied(
            "the approval's nonce was not issued by this rkmd; get a fresh one (rkm recovery approve does)".to_owned(),
        ));
    };
    if issued.ceremony_id != ceremony_id || issued.custodian != custodian {
        return Err(CeremonyError::PermissionDenied(format!(
            "the approval's nonce was issued for ceremony {} and custodian {:?}, not this one",
            issued.ceremony_id, issued.custodian
        )));
    }
    if issued.used {
        return Err(CeremonyError::PermissionDenied(
            "the approval's nonce was already used: a replayed approval is refused".to_owned(),
        ));
    }
    if issued.expires_at.as_str() <= now {
        return Err(CeremonyError::PermissionDenied(format!(
            "the approval's nonce expired at {}; get a fresh one",
            issued.expires_at
        )));
    }
    Ok(())
}

impl Services {
    /// A fresh single-use nonce for one custodian's approval.
    ///
    /// # Errors
    /// Unknown ceremony, not open, or not a custodian of its key.
    pub async fn approval_nonce(
        &self,
        peer: &str,
        ceremony_id: String,
        custodian: String,
    ) -> Result<(Vec<u8>, String), CeremonyError> {
        match self
            .issue_nonce(ceremony_id.clone(), custodian.clone())
            .await
        {
            Ok(issued) => Ok(issued),
            // A refused nonce is a refused approval: audit it as one.
            Err(error) => {
                let event = Event::ok(peer, action::RECOVERY_APPROVE)
                    .subject(ceremony_id)
                    .detail("custodian", custodian)
                    .detail("step", "nonce");
                self.refuse(event, error).await
            }
        }
    }

    async fn issue_nonce(
        &self,
        ceremony_id: String,
        custodian: String,
    ) -> Result<(Vec<u8>, String), CeremonyError> {
        self.approver(&ceremony_id, &custodian).await?;
        let nonce = self.hsm.random(32).await?.to_vec();
        let expires_at = rfc3339_after(NONCE_LIFETIME);
        let (stored, expires) = (nonce.clone(), expires_at.clone());
        self.store
            .transact(move |tx| {
                store::approvals::insert_nonce(tx, &stored, &ceremony_id, &custodian, &expires)
            })
            .await?;
        Ok((nonce, expires_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-12-02T10:00:00Z";

    fn issued(used: bool, expires_at: &str) -> IssuedNonce {
        IssuedNonce {
            ceremony_id: "rec-1".to_owned(),
            custodian: "alice".to_owned(),
            expires_at: expires_at.to_owned(),
            used,
        }
    }

    fn refusal(result: Result<(), CeremonyError>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn fresh_nonce_for_this_ceremony_and_custodian_is_accepted() {
        let nonce = issued(false, "2026-12-02T10:10:00Z");
        check_nonce(Some(&nonce), "rec-1", "alice", NOW).unwrap();
    }

    #[test]
    fn nonce_not_issued_here_is_refused() {
        assert!(
            refusal(check_nonce(None, "rec-1", "alice", NOW)).contains("not issued by this rkmd")
        );
    }

    #[test]
    fn nonce_of_another_ceremony_or_custodian_is_refused() {
        let nonce = issued(false, "2026-12-02T10:10:00Z");
        let other_ceremony = refusal(check_nonce(Some(&nonce), "rec-2", "alice", NOW));
        assert!(
            other_ceremony.contains("issued for ceremony rec-1"),
            "{other_ceremony}"
        );
        let other_custodian = refusal(check_nonce(Some(&nonce), "rec-1", "bob", NOW));
        assert!(
            other_custodian.contains("custodian \"alice\""),
            "{other_custodian}"
        );
    }

    #[test]
    fn used_nonce_is_a_replay() {
        let nonce = issued(true, "2026-12-02T10:10:00Z");
        assert!(
            refusal(check_nonce(Some(&nonce), "rec-1", "alice", NOW)).contains("replayed approval")
        );
    }

    #[test]
    fn nonce_expires_at_its_deadline() {
        let nonce = issued(false, NOW);
        assert!(refusal(check_nonce(Some(&nonce), "rec-1", "alice", NOW)).contains("expired at"));
    }
}
