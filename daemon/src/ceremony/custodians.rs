//! Enrolling and disabling key custodians (operators), from the public card
//! each custodian made with `rkm custodian init`; and the check that a
//! custodian signed over their share (receipts, attestations).

use rkm_proto::custodian_card::CustodianCard;
use rusqlite::{OptionalExtension as _, params};

use super::{CeremonyError, Services, now};
use crate::audit::Event;

/// A custodian as the daemon knows them.
#[derive(Debug, Clone)]
pub struct Custodian {
    pub name: String,
    pub ed25519_public_key: [u8; 32],
    pub age_recipient: String,
    pub fingerprint: String,
    pub enabled: bool,
    pub enrolled_at: String,
    pub disabled_reason: String,
}

const COLUMNS: &str =
    "name, ed25519_public_key, age_recipient, fingerprint, enabled, enrolled_at, disabled_reason";

fn row_to_custodian(row: &rusqlite::Row<'_>) -> rusqlite::Result<Custodian> {
    let key: Vec<u8> = row.get(1)?;
    Ok(Custodian {
        name: row.get(0)?,
        ed25519_public_key: key.try_into().map_err(|_| {
            rusqlite::Error::InvalidColumnType(
                1,
                "ed25519_public_key".into(),
                rusqlite::types::Type::Blob,
            )
        })?,
        age_recipient: row.get(2)?,
        fingerprint: row.get(3)?,
        enabled: row.get(4)?,
        enrolled_at: row.get(5)?,
        disabled_reason: row.get(6)?,
    })
}

/// Checks that `signature` over `message` is by `custodian`'s enrolled
/// identity over their share's commitment; `what` names the signed thing in
/// the refusal ("receipt", "attestation").
pub fn check_signed_over_share(
    custodian: &Custodian,
    message: &[u8],
    signature: &[u8],
    what: &str,
) -> Result<(), CeremonyError> {
    rkm_proto::messages::verify_custodian_signature(
        &custodian.ed25519_public_key,
        message,
        signature,
    )
    .map_err(|error| {
        CeremonyError::PermissionDenied(format!(
            "the {what} is not signed by custodian {:?}'s identity over their share's commitment: {error}",
            custodian.name
        ))
    })
}

/// Checks a receipt's or an attestation's proof of possession of the share
/// against the public key rkmd kept from the key generation. Returns whether
/// it was checked: keys imported from a record have none here.
pub fn check_possession(
    stored: Option<Vec<u8>>,
    message: &[u8],
    proof: &[u8],
    what: &str,
) -> Result<bool, CeremonyError> {
    let Some(stored) = stored else {
        return Ok(false);
    };
    let key: [u8; 32] = stored.try_into().map_err(|_| {
        CeremonyError::Internal("stored possession public key is not 32 bytes".to_owned())
    })?;
    if rkm_proto::commitment::possession_proof_matches(&key, message, proof) {
        Ok(true)
    } else {
        Err(CeremonyError::PermissionDenied(format!(
            "the {what} does not prove possession of the share: it was made without the share (or with another one); check the share with `rkm share verify` and send it again"
        )))
    }
}

/// One custodian's place in one key, as stored.
#[derive(Debug)]
pub struct KeySlot {
    pub x: u8,
    pub commitment: Vec<u8>,
    /// '' until the receipt is in.
    pub received_at: String,
    /// Their latest attestation, Unix seconds (0: none).
    pub attested_unix: u64,
    /// Public half of `rkm_proto::commitment::PossessionKey`; None for
    /// imported keys.
    pub possession_public_key: Option<Vec<u8>>,
}

/// `custodian`'s slot in key `key_id`, if they are one of its custodians.
pub fn load_slot(
    connection: &rusqlite::Connection,
    key_id: &str,
    custodian: &str,
) -> rusqlite::Result<Option<KeySlot>> {
    connection
        .query_row(
            "SELECT x, commitment, received_at, attested_unix, possession_public_key
             FROM key_custodians WHERE key_id = ?1 AND custodian = ?2",
            params![key_id, custodian],
            |row| {
                Ok(KeySlot {
                    x: row.get(0)?,
                    commitment: row.get(1)?,
                    received_at: row.get(2)?,
                    attested_unix: row.get(3)?,
                    possession_public_key: row.get(4)?,
                })
            },
        )
        .optional()
}

/// A share commitment as stored.
pub fn stored_commitment(bytes: Vec<u8>) -> Result<[u8; 32], CeremonyError> {
    bytes
        .try_into()
        .map_err(|_| CeremonyError::Internal("stored commitment is not 32 bytes".to_owned()))
}

/// Reads one custodian.
pub fn load(connection: &rusqlite::Connection, name: &str) -> rusqlite::Result<Option<Custodian>> {
    connection
        .query_row(
            &format!("SELECT {COLUMNS} FROM custodians WHERE name = ?1"),
            [name],
            row_to_custodian,
        )
        .optional()
}

impl Services {
    /// Enrols the custodian of `card_text`.
    ///
    /// # Errors
    /// A malformed card, or a name, signing key or age recipient that another
    /// custodian already has.
    pub async fn enrol_custodian(
        &self,
        actor: &str,
        card_text: String,
    ) -> Result<Custodian, CeremonyError> {
        let event = Event::ok(actor, "custodian.enrol");
        let card = match CustodianCard::parse(&card_text) {
            Ok(card) => card,
            Err(error) => {
                let error = CeremonyError::InvalidArgument(format!(
                    "the custodian card is not valid: {error}"
                ));
                return self.refuse(event, error).await;
            }
        };
        let event = event
            .subject(card.name.clone())
            .detail("custodian", card.name.clone())
            .detail("fingerprint", card.fingerprint());
        let conflict = {
            let card = CustodianCard::parse(&card_text).expect("parsed above");
            self.store
                .with(move |connection| {
                    Ok(connection
                        .query_row(
                            "SELECT name FROM custodians WHERE name = ?1 OR ed25519_public_key = ?2 OR age_recipient = ?3",
                            params![card.name, card.ed25519_public_key.to_vec(), card.age_recipient],
                            |row| row.get::<_, String>(0),
                        )
                        .optional()?)
                })
                .await?
        };
        if let Some(existing) = conflict {
            let error = if existing == card.name {
                CeremonyError::FailedPrecondition(format!(
                    "a custodian named {existing:?} is already enrolled; a new card for the same person needs a new name, or disable the old one first"
                ))
            } else {
                CeremonyError::FailedPrecondition(format!(
                    "this card's keys already belong to custodian {existing:?}; each custodian needs their own identity"
                ))
            };
            return self.refuse(event, error).await;
        }
        let custodian = Custodian {
            name: card.name.clone(),
            ed25519_public_key: card.ed25519_public_key,
            age_recipient: card.age_recipient.clone(),
            fingerprint: card.fingerprint(),
            enabled: true,
            enrolled_at: now(),
            disabled_reason: String::new(),
        };
        let stored = custodian.clone();
        self.audit
            .record_with(event, move |connection| {
                connection
                    .execute(
                        "INSERT INTO custodians (name, ed25519_public_key, age_recipient, fingerprint, card, enabled, enrolled_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6)",
                        params![
                            stored.name,
                            stored.ed25519_public_key.to_vec(),
                            stored.age_recipient,
                            stored.fingerprint,
                            card_text,
                            stored.enrolled_at
                        ],
                    )
                    .map_err(crate::store::StoreError::from)?;
                Ok(())
            })
            .await?;
        Ok(custodian)
    }

    /// Every custodian, by name.
    ///
    /// # Errors
    /// The store fails.
    pub async fn list_custodians(&self) -> Result<Vec<Custodian>, CeremonyError> {
        Ok(self
            .store
            .with(|connection| {
                let mut statement = connection
                    .prepare(&format!("SELECT {COLUMNS} FROM custodians ORDER BY name"))?;
                let rows = statement.query_map([], row_to_custodian)?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await?)
    }

    /// Disables a custodian: no new key will include them.
    ///
    /// # Errors
    /// Unknown or already disabled custodian, or an empty reason.
    pub async fn disable_custodian(
        &self,
        actor: &str,
        name: String,
        reason: String,
    ) -> Result<Custodian, CeremonyError> {
        let event = Event::ok(actor, "custodian.disable")
            .subject(name.clone())
            .detail("custodian", name.clone())
            .detail("disable_reason", reason.clone());
        if reason.trim().is_empty() {
            let error = CeremonyError::InvalidArgument(
                "say why the custodian is disabled (--reason)".to_owned(),
            );
            return self.refuse(event, error).await;
        }
        let lookup = name.clone();
        let existing = self.store.with(move |c| Ok(load(c, &lookup)?)).await?;
        let Some(mut custodian) = existing else {
            let error = CeremonyError::not_found(
                "custodian",
                name,
                "; `rkm custodian list` shows who is enrolled",
            );
            return self.refuse(event, error).await;
        };
        if !custodian.enabled {
            let error = CeremonyError::FailedPrecondition(format!(
                "custodian {name:?} is already disabled ({})",
                custodian.disabled_reason
            ));
            return self.refuse(event, error).await;
        }
        let stored_reason = reason.clone();
        self.audit
            .record_with(event, move |connection| {
                connection
                    .execute(
                        "UPDATE custodians SET enabled = 0, disabled_reason = ?2 WHERE name = ?1",
                        params![name, stored_reason],
                    )
                    .map_err(crate::store::StoreError::from)?;
                Ok(())
            })
            .await?;
        custodian.enabled = false;
        custodian.disabled_reason = reason;
        Ok(custodian)
    }
}
