//! Restoring a key into this rkmd — another HSM, after the old one was lost or
//! upgraded — from nothing but its signed key record: the record is checked
//! with the audit key that signed it, its custodians must be enrolled here
//! with exactly the keys it names, and the key becomes active. The recovery
//! key stays wrapped: a recovery ceremony's quorum unwraps it into this HSM.

use rkm_proto::audit_entry::action;
use rkm_proto::checkpoint::VerifierKey;
use rkm_proto::key_record::SignedKeyRecord;

use super::keygen::KeySummary;
use super::state::{CeremonyKind, CeremonyState, KeyState};
use super::{CeremonyError, Services, now};
use crate::audit::{Event, RecordError};
use crate::store::{self, StoreError, Tx};

impl Services {
    /// Imports a signed key record.
    ///
    /// # Errors
    /// A record that does not verify with `record_audit_key`, a key, label or
    /// public key already here, or custodians not enrolled with the record's
    /// keys; each refusal is audited.
    pub async fn import_key(
        &self,
        actor: &str,
        signed_key_record: String,
        record_audit_key: String,
    ) -> Result<KeySummary, CeremonyError> {
        let event = Event::ok(actor, action::KEY_IMPORT)
            .detail("record_audit_key", record_audit_key.clone());
        let record = match self
            .check_import(&signed_key_record, &record_audit_key)
            .await
        {
            Ok(record) => record,
            Err(error) => return self.refuse(event, error).await,
        };
        let ceremony_id = self.new_id("cer").await?;
        let event = event
            .subject(record.key_id.clone())
            .detail("key_id", record.key_id.clone())
            .detail("label", record.label.clone())
            .detail("ceremony_id", ceremony_id.clone())
            .detail(
                "public_key_fingerprint",
                rkm_proto::fingerprint::fingerprint(&record.public_key_spki),
            );
        let (id, opener, key_id) = (ceremony_id.clone(), actor.to_owned(), record.key_id.clone());
        let recorded = self
            .audit
            .record_with(event.clone(), move |tx| {
                // Two imports of one record race past the check above: the
                // first to commit wins, the other is refused here.
                if let Some(existing) = same_key_here(tx, &record)? {
                    return Err(CeremonyError::FailedPrecondition(already_here(&existing)));
                }
                let at = now();
                store::ceremonies::insert(
                    tx,
                    &store::ceremonies::NewCeremony {
                        id: &id,
                        kind: CeremonyKind::KeyImport.as_str(),
                        state: CeremonyState::Completed.as_str(),
                        subject: &record.key_id,
                        opened_by: &opener,
                        opened_at: &at,
                        expires_at: &at,
                        closed_at: &at,
                    },
                )?;
                let slots: Vec<_> = record
                    .custodians
                    .iter()
                    .map(|custodian| store::keys::NewSlot {
                        custodian: &custodian.name,
                        x: custodian.x,
                        commitment: &custodian.commitment,
                        envelope: None,
                        possession_public_key: None,
                        received_at: &at,
                    })
                    .collect();
                let key = store::keys::NewKey {
                    key_id: &record.key_id,
                    label: &record.label,
                    public_key_spki: &record.public_key_spki,
                    signed_key_record: &signed_key_record,
                    threshold: record.threshold,
                    state: KeyState::Active.as_str(),
                    ceremony_id: &id,
                    created_at: &record.created_at,
                    record_audit_key: &record_audit_key,
                };
                store::keys::insert(tx, &key, &slots)?;
                Ok(())
            })
            .await;
        match recorded {
            Ok(_) => {}
            // Lost the race: refused like any other import of a key here.
            Err(RecordError::Change(error @ CeremonyError::FailedPrecondition(_))) => {
                return self.refuse(event, error).await;
            }
            Err(error) => return Err(error.into()),
        }
        self.audit.checkpoint().await?;
        self.get_key(key_id).await
    }

    async fn check_import(
        &self,
        signed_key_record: &str,
        record_audit_key: &str,
    ) -> Result<rkm_proto::key_record::KeyRecord, CeremonyError> {
        let verifier = VerifierKey::parse(record_audit_key).map_err(|e| {
            CeremonyError::InvalidArgument(format!(
                "the record's audit key is not a verifier key: {e}"
            ))
        })?;
        let signed = SignedKeyRecord::from_file(signed_key_record).map_err(|e| {
            CeremonyError::InvalidArgument(format!("the key record file is not valid: {e}"))
        })?;
        let record = signed.verify(&verifier).map_err(|e| {
            CeremonyError::PermissionDenied(format!(
                "the key record does not verify with audit key {}: {e}",
                verifier.name()
            ))
        })?;
        record.validate().map_err(|e| {
            CeremonyError::InvalidArgument(format!("the key record is not valid: {e}"))
        })?;
        let same_key = record.clone();
        let names: Vec<String> = record.custodians.iter().map(|c| c.name.clone()).collect();
        let (existing, enrolled) = self
            .store
            .read(move |tx| {
                let existing = same_key_here(tx, &same_key)?;
                let enrolled = names
                    .iter()
                    .map(|name| store::custodians::load(tx, name))
                    .collect::<Result<Vec<_>, StoreError>>()?;
                Ok((existing, enrolled))
            })
            .await?;
        if let Some(existing) = existing {
            return Err(CeremonyError::FailedPrecondition(already_here(&existing)));
        }
        for (entry, enrolled) in record.custodians.iter().zip(enrolled) {
            match enrolled {
                None => {
                    return Err(CeremonyError::FailedPrecondition(format!(
                        "custodian {:?} of this key is not enrolled here: enrol their card first (rkm custodian enrol CARD)",
                        entry.name
                    )));
                }
                Some(enrolled)
                    if enrolled.ed25519_public_key != entry.ed25519_public_key
                        || enrolled.age_recipient != entry.age_recipient =>
                {
                    return Err(CeremonyError::FailedPrecondition(format!(
                        "custodian {:?} is enrolled here with other keys than the key record names: enrol the card they used for this key",
                        entry.name
                    )));
                }
                Some(enrolled) if !enrolled.enabled => {
                    return Err(CeremonyError::FailedPrecondition(format!(
                        "custodian {:?} of this key is disabled here ({}): they could never approve",
                        entry.name, enrolled.disabled_reason
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(record)
    }
}

/// The key here with the record's key id, label or public key, if any.
fn same_key_here(
    tx: &Tx<'_>,
    record: &rkm_proto::key_record::KeyRecord,
) -> Result<Option<String>, StoreError> {
    store::keys::same_key(tx, &record.key_id, &record.label, &record.public_key_spki)
}

fn already_here(existing: &str) -> String {
    format!("key {existing} here already has this key id, label or public key")
}
