//! The ceremony state machine (DESIGN: "every ceremony is a persisted state
//! machine"): the kinds of ceremony, their states as stored, which
//! transitions are allowed, and the one function that makes a transition.
//! Key states live here too, since a key generation's receipts move both.

use super::{CeremonyError, Services, now};
use crate::audit::Event;
use crate::store::{StoreError, Tx, ceremonies};

/// What kind of ceremony a row of `ceremonies` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeremonyKind {
    KeyGeneration,
    KeyImport,
    Recovery,
}

impl CeremonyKind {
    /// The stored string (tests and auditors read the database).
    pub fn as_str(self) -> &'static str {
        match self {
            CeremonyKind::KeyGeneration => "key-generation",
            CeremonyKind::KeyImport => "key-import",
            CeremonyKind::Recovery => "recovery",
        }
    }
}

/// A ceremony's state. Recovery ceremonies (and drills) use open, signing
/// and the final states; key generations use generating, awaiting-receipts
/// and the final states; an import is completed as it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeremonyState {
    Generating,
    AwaitingReceipts,
    Open,
    Signing,
    Completed,
    Failed,
    Expired,
    Cancelled,
}

/// Every allowed transition, from → to. Anything else is a bug.
const TRANSITIONS: &[(CeremonyState, CeremonyState)] = {
    use CeremonyState::*;
    &[
        (Generating, AwaitingReceipts),
        (Generating, Failed),
        (AwaitingReceipts, Completed),
        (AwaitingReceipts, Expired),
        (Open, Signing),
        (Open, Cancelled),
        (Open, Expired),
        (Signing, Completed),
        (Signing, Failed),
    ]
};

impl CeremonyState {
    const ALL: [CeremonyState; 8] = [
        CeremonyState::Generating,
        CeremonyState::AwaitingReceipts,
        CeremonyState::Open,
        CeremonyState::Signing,
        CeremonyState::Completed,
        CeremonyState::Failed,
        CeremonyState::Expired,
        CeremonyState::Cancelled,
    ];

    /// The stored string (tests and auditors read the database).
    pub fn as_str(self) -> &'static str {
        match self {
            CeremonyState::Generating => "generating",
            CeremonyState::AwaitingReceipts => "awaiting-receipts",
            CeremonyState::Open => "open",
            CeremonyState::Signing => "signing",
            CeremonyState::Completed => "completed",
            CeremonyState::Failed => "failed",
            CeremonyState::Expired => "expired",
            CeremonyState::Cancelled => "cancelled",
        }
    }

    /// The state a stored string names.
    ///
    /// # Errors
    /// A string no rkmd writes: the store was edited or is newer.
    pub fn parse(text: &str) -> Result<Self, CeremonyError> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| {
                CeremonyError::Internal(format!("stored ceremony state {text:?} is unknown"))
            })
    }

    /// Whether the table allows going from `self` to `to`.
    pub fn may_become(self, to: CeremonyState) -> bool {
        TRANSITIONS.contains(&(self, to))
    }

    /// A final state: the ceremony is closed and nothing moves it again.
    pub fn is_final(self) -> bool {
        !TRANSITIONS.iter().any(|(from, _)| *from == self)
    }
}

/// A key's state as operators and custodians see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    AwaitingReceipts,
    Active,
}

impl KeyState {
    /// The stored string.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::AwaitingReceipts => "awaiting-receipts",
            KeyState::Active => "active",
        }
    }

    /// The state a stored string names; a key is usable only when the
    /// store says so in as many letters.
    pub fn parse(text: &str) -> Self {
        if text == KeyState::Active.as_str() {
            KeyState::Active
        } else {
            KeyState::AwaitingReceipts
        }
    }
}

/// Moves ceremony `ceremony_id` from `from` to `to` inside `tx`, closing it
/// if `to` is final.
///
/// # Errors
/// [`CeremonyError::NoLongerIn`] if the row is not in `from` (another
/// request moved it first), [`CeremonyError::Internal`] for a transition the
/// table does not allow, or the store fails.
pub fn transition(
    tx: &mut Tx<'_>,
    ceremony_id: &str,
    from: CeremonyState,
    to: CeremonyState,
) -> Result<(), CeremonyError> {
    if !from.may_become(to) {
        return Err(CeremonyError::Internal(format!(
            "ceremony {ceremony_id} may not go from {} to {}",
            from.as_str(),
            to.as_str()
        )));
    }
    let closed_at = to.is_final().then(now);
    if ceremonies::transition(
        tx,
        ceremony_id,
        from.as_str(),
        to.as_str(),
        closed_at.as_deref(),
    )? {
        Ok(())
    } else {
        Err(CeremonyError::NoLongerIn {
            ceremony_id: ceremony_id.to_owned(),
            state: from,
        })
    }
}

impl Services {
    /// Ceremonies of `kind` still in `state` whose deadline has passed; None
    /// if the store failed (logged: the sweeper looks again later).
    pub(super) async fn overdue(
        &self,
        kind: CeremonyKind,
        state: CeremonyState,
    ) -> Option<Vec<ceremonies::DueCeremony>> {
        let current = now();
        let due = self
            .store
            .read(move |tx| ceremonies::due(tx, kind.as_str(), state.as_str(), &current))
            .await;
        due.inspect_err(|error| tracing::error!(%error, "store read for overdue ceremonies failed"))
            .ok()
    }

    /// Closes a ceremony as `to` (failed, expired, cancelled), with `cleanup`
    /// (destroying what the ceremony held) in the same transaction as
    /// `event`'s audit entry: all of it happens, or none.
    ///
    /// # Errors
    /// As [`transition`], or the audit entry cannot be written.
    pub(super) async fn close_ceremony<F>(
        &self,
        event: Event,
        ceremony_id: &str,
        from: CeremonyState,
        to: CeremonyState,
        cleanup: F,
    ) -> Result<(), CeremonyError>
    where
        F: FnOnce(&mut Tx<'_>, &str) -> Result<(), StoreError> + Send + 'static,
    {
        let id = ceremony_id.to_owned();
        self.audit
            .record_with(event, move |tx| {
                transition(tx, &id, from, to)?;
                cleanup(tx, &id)?;
                Ok::<_, CeremonyError>(())
            })
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::CeremonyState::*;
    use super::*;

    #[test]
    fn every_state_parses_back_from_its_stored_string() {
        for state in CeremonyState::ALL {
            assert_eq!(CeremonyState::parse(state.as_str()).unwrap(), state);
        }
        assert!(CeremonyState::parse("opened").is_err());
    }

    #[test]
    fn recovery_moves_only_forward_from_open() {
        assert!(Open.may_become(Signing));
        assert!(Open.may_become(Cancelled));
        assert!(Open.may_become(Expired));
        assert!(Signing.may_become(Completed));
        assert!(Signing.may_become(Failed));
        assert!(!Signing.may_become(Open));
        assert!(!Signing.may_become(Cancelled));
        assert!(!Open.may_become(Completed));
    }

    #[test]
    fn key_generation_completes_or_expires_only_after_the_key_is_stored() {
        assert!(Generating.may_become(AwaitingReceipts));
        assert!(Generating.may_become(Failed));
        assert!(!Generating.may_become(Completed));
        assert!(AwaitingReceipts.may_become(Completed));
        assert!(AwaitingReceipts.may_become(Expired));
        assert!(!AwaitingReceipts.may_become(Failed));
    }

    #[test]
    fn final_states_never_move_again() {
        for closed in [Completed, Failed, Expired, Cancelled] {
            assert!(closed.is_final(), "{closed:?}");
            for to in CeremonyState::ALL {
                assert!(!closed.may_become(to), "{closed:?} -> {to:?}");
            }
        }
        for live in [Generating, AwaitingReceipts, Open, Signing] {
            assert!(!live.is_final(), "{live:?}");
        }
    }

    #[test]
    fn a_key_is_active_only_when_stored_as_active() {
        assert_eq!(KeyState::parse("active"), KeyState::Active);
        assert_eq!(
            KeyState::parse("awaiting-receipts"),
            KeyState::AwaitingReceipts
        );
        assert_eq!(KeyState::parse("Active"), KeyState::AwaitingReceipts);
    }
}
