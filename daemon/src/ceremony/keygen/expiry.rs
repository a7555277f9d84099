//! The end of a key generation's receipt window: a step after it is refused,
//! and the ceremony expires with its remaining envelopes deleted, so a share
//! nobody confirmed in time is not left waiting in the store. And the end of
//! a generation that rkmd stopped in the middle of.

use super::super::state::{CeremonyKind, CeremonyState};
use super::super::{CeremonyError, Services, now};
use crate::audit::Event;
use crate::store;
use rkm_proto::audit_entry::action;

/// Whether a key generation in `state`, due at `expires_at`, takes no more
/// steps at `now` (RFC 3339 UTC strings of one format compare as times).
fn receipt_window_closed(state: CeremonyState, expires_at: &str, now: &str) -> bool {
    state == CeremonyState::Expired || expires_at <= now
}

impl Services {
    /// Refuses a step of a key generation ceremony whose receipt window has
    /// passed (and expires it: its envelopes are deleted).
    pub(super) async fn check_not_expired(&self, ceremony_id: &str) -> Result<(), CeremonyError> {
        let id = ceremony_id.to_owned();
        let status = self
            .store
            .read(move |tx| store::ceremonies::status(tx, &id))
            .await?;
        let state = CeremonyState::parse(&status.state)?;
        if receipt_window_closed(state, &status.expires_at, &now()) {
            self.expire_key_generations().await;
            return Err(CeremonyError::FailedPrecondition(format!(
                "the key generation ceremony {ceremony_id} expired at {}; run a new key generation ceremony",
                status.expires_at
            )));
        }
        Ok(())
    }

    /// Fails, with the reason audited, every key generation that was still
    /// generating when rkmd stopped. Its key was never stored (the key is
    /// stored in the same transaction that moves the ceremony on) and lived
    /// only as session objects, which died with rkmd's sessions; so the
    /// operator runs `rkm key create` again. Call before serving.
    ///
    /// # Errors
    /// The store or the audit log fails.
    pub async fn fail_interrupted_key_generations(&self) -> Result<usize, CeremonyError> {
        let interrupted = self
            .store
            .read(|tx| {
                store::ceremonies::ids_in(
                    tx,
                    CeremonyKind::KeyGeneration.as_str(),
                    CeremonyState::Generating.as_str(),
                )
            })
            .await?;
        for id in &interrupted {
            tracing::warn!(ceremony = %id, "a key generation was cut short when rkmd stopped; it is marked failed");
            let event = Event::ok("rkmd", action::CEREMONY_FAIL)
                .subject(id.clone())
                .with_outcome(rkm_proto::audit_entry::Outcome::Failed)
                .detail("interrupted", "true")
                .detail(
                    "reason",
                    "rkmd stopped while this key was being generated: no key was stored, and the key's HSM objects were session objects that ended with rkmd; run `rkm key create` again",
                );
            self.close_ceremony(
                event,
                id,
                CeremonyState::Generating,
                CeremonyState::Failed,
                |_, _| Ok(()),
            )
            .await?;
        }
        Ok(interrupted.len())
    }

    /// Expires key generation ceremonies whose receipt window has passed:
    /// their remaining envelopes are deleted and the key stays unusable.
    pub async fn expire_key_generations(&self) {
        let Some(due) = self
            .overdue(CeremonyKind::KeyGeneration, CeremonyState::AwaitingReceipts)
            .await
        else {
            tracing::error!("could not look for expired key generation ceremonies");
            return;
        };
        for ceremony in due {
            let key_id = ceremony.subject;
            let event = Event::ok("rkmd", action::CEREMONY_EXPIRE)
                .subject(ceremony.id.clone())
                .detail("key_id", key_id.clone())
                .detail("envelopes", "deleted");
            let closed = self
                .close_ceremony(
                    event,
                    &ceremony.id,
                    CeremonyState::AwaitingReceipts,
                    CeremonyState::Expired,
                    move |tx, _| store::keys::delete_envelopes(tx, &key_id),
                )
                .await;
            if let Err(error) = closed {
                tracing::error!(%error, "could not expire a key generation ceremony");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_window_closes_at_its_deadline_or_once_expired() {
        let open = CeremonyState::AwaitingReceipts;
        assert!(!receipt_window_closed(
            open,
            "2026-12-09T10:00:00Z",
            "2026-12-02T10:00:00Z"
        ));
        assert!(receipt_window_closed(
            open,
            "2026-12-02T10:00:00Z",
            "2026-12-02T10:00:00Z"
        ));
        assert!(receipt_window_closed(
            open,
            "2026-12-01T10:00:00Z",
            "2026-12-02T10:00:00Z"
        ));
        assert!(receipt_window_closed(
            CeremonyState::Expired,
            "2026-12-09T10:00:00Z",
            "2026-12-02T10:00:00Z"
        ));
    }
}
