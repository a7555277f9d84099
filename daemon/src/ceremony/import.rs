//! Restoring a key into this rkmd — another HSM, after the old one was lost or
//! upgraded — from nothing but its signed key record: the record is checked
//! with the audit key that signed it, its custodians must be enrolled here
//! with exactly the keys it names, and the key becomes active. The recovery
//! key stays wrapped: a recovery ceremony's quorum unwraps it into this HSM.

use rkm_proto::checkpoint::VerifierKey;
use rkm_proto::key_record::SignedKeyRecord;
use rusqlite::{OptionalExtension as _, params};

use super::keygen::KeySummary;
use super::{CeremonyError, Services, custodians, now};
use crate::audit::Event;

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
        let event =
            Event::ok(actor, "key.import").detail("record_audit_key", record_audit_key.clone());
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
            .record_with(event.clone(), move |connection| {
                // Two imports of one record race past the check above: the
                // first to commit wins, the other is refused here.
                if let Some(existing) = same_key_here(connection, &record)
                    .map_err(crate::store::StoreError::from)?
                {
                    return Err(crate::audit::AuditError::Refused(already_here(&existing)));
                }
                let at = now();
                let insert = |sql: &str, values: &[&dyn rusqlite::ToSql]| {
                    connection
                        .execute(sql, values)
                        .map_err(crate::store::StoreError::from)
                };
                insert(
                    "INSERT INTO ceremonies (id, kind, state, subject, opened_by, opened_at, expires_at, closed_at)
                     VALUES (?1, 'key-import', 'completed', ?2, ?3, ?4, ?4, ?4)",
                    params![id, record.key_id, opener, at],
                )?;
                insert(
                    "INSERT INTO keys (key_id, label, public_key_spki, signed_record, threshold, state, ceremony_id, created_at, record_audit_key)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'active', ?6, ?7, ?8)",
                    params![
                        record.key_id,
                        record.label,
                        record.public_key_spki,
                        signed_key_record,
                        record.threshold,
                        id,
                        record.created_at,
                        record_audit_key
                    ],
                )?;
                for custodian in &record.custodians {
                    insert(
                        "INSERT INTO key_custodians (key_id, custodian, x, commitment, received_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![record.key_id, custodian.name, custodian.x, custodian.commitment.to_vec(), at],
                    )?;
                }
                Ok(())
            })
            .await;
        match recorded {
            Ok(_) => {}
            Err(crate::audit::AuditError::Refused(reason)) => {
                return self
                    .refuse(event, CeremonyError::FailedPrecondition(reason))
                    .await;
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
            .with(move |connection| {
                let existing = same_key_here(connection, &same_key)?;
                let enrolled = names
                    .iter()
                    .map(|name| custodians::load(connection, name))
                    .collect::<rusqlite::Result<Vec<_>>>()?;
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
    connection: &rusqlite::Connection,
    record: &rkm_proto::key_record::KeyRecord,
) -> rusqlite::Result<Option<String>> {
    connection
        .query_row(
            "SELECT key_id FROM keys WHERE key_id = ?1 OR label = ?2 OR public_key_spki = ?3",
            params![record.key_id, record.label, record.public_key_spki],
            |row| row.get(0),
        )
        .optional()
}

fn already_here(existing: &str) -> String {
    format!("key {existing} here already has this key id, label or public key")
}
