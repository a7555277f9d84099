//! The key generation ceremony (DESIGN "Ceremonies" 1): the HSM generates the
//! recovery key and the KEK bytes; the key is wrapped under the KEK (RFC
//! 5649); the KEK is split k-of-n and each share, with a salted commitment, is
//! sealed to its custodian; the HSM objects are destroyed and the KEK wiped;
//! the key record is signed by the audit key. The key becomes active when
//! every custodian has fetched, verified and signed a receipt for their share.

use std::str::FromStr as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rkm_proto::commitment::{PossessionKey, share_commitment};
use rkm_proto::envelope::{EnvelopeContents, seal};
use rkm_proto::key_record::{KeyCustodian, KeyRecord, SignedKeyRecord, key_id_for};
use rkm_proto::messages::{
    envelope_fetch_message, share_receipt_message, verify_custodian_signature,
};
use rkm_proto::secret::Kek;
use rkm_proto::shamir::{self, Threshold};
use rusqlite::{OptionalExtension as _, params};

use super::custodians::{self, Custodian};
use super::{CeremonyError, Services, now};
use crate::audit::Event;
use crate::hsm::HsmObject;

/// How long custodians have to fetch their shares and send receipts.
pub const RECEIPT_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);
/// How far a custodian's clock may be from rkmd's for a signed fetch.
pub(super) const FETCH_CLOCK_SKEW: u64 = 300;
const ALGORITHM: &str = "ECDSA-P256-SHA256";

/// A key's state as operators and custodians see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    AwaitingReceipts,
    Active,
}

impl KeyState {
    fn as_str(self) -> &'static str {
        match self {
            KeyState::AwaitingReceipts => "awaiting-receipts",
            KeyState::Active => "active",
        }
    }

    fn parse(text: &str) -> Self {
        if text == "active" {
            KeyState::Active
        } else {
            KeyState::AwaitingReceipts
        }
    }
}

/// One custodian's receipt status for a key.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub custodian: String,
    pub received_at: Option<String>,
    /// The custodian's latest share attestation: RFC 3339 and Unix seconds.
    pub attested: Option<(String, u64)>,
}

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

/// Labels and key ids share one namespace in lookups, so a label may not look
/// like a key id.
fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && !label.starts_with("rk-")
        && label.len() <= 64
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Reads a key summary by label or key id.
fn load_key(connection: &rusqlite::Connection, key: &str) -> rusqlite::Result<Option<KeySummary>> {
    let Some(mut summary) = connection
        .query_row(
            "SELECT key_id, label, state, threshold, public_key_spki, signed_record, ceremony_id, created_at,
                    record_audit_key
             FROM keys WHERE key_id = ?1 OR label = ?1",
            [key],
            |row| {
                Ok(KeySummary {
                    key_id: row.get(0)?,
                    label: row.get(1)?,
                    state: KeyState::parse(&row.get::<_, String>(2)?),
                    threshold: row.get(3)?,
                    public_key_spki: row.get(4)?,
                    signed_key_record: row.get(5)?,
                    ceremony_id: row.get(6)?,
                    created_at: row.get(7)?,
                    record_audit_key: row.get(8)?,
                    receipts: Vec::new(),
                })
            },
        )
        .optional()?
    else {
        return Ok(None);
    };
    let mut statement = connection.prepare_cached(
        "SELECT custodian, received_at, attested_at, attested_unix FROM key_custodians WHERE key_id = ?1 ORDER BY x",
    )?;
    summary.receipts = statement
        .query_map([&summary.key_id], |row| {
            let received_at: String = row.get(1)?;
            let attested_at: String = row.get(2)?;
            Ok(Receipt {
                custodian: row.get(0)?,
                received_at: (!received_at.is_empty()).then_some(received_at),
                attested: (!attested_at.is_empty()).then(|| (attested_at, row.get(3).unwrap_or(0))),
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(Some(summary))
}

/// What the HSM part of the ceremony produced: nothing secret.
struct Generated {
    record: KeyRecord,
    signed: SignedKeyRecord,
    /// (custodian, age ciphertext of their share).
    envelopes: Vec<(String, Vec<u8>)>,
    /// Per custodian, in record order: the public key that checks proofs of
    /// possession of their share ([`PossessionKey`]).
    possession_keys: Vec<[u8; 32]>,
}

impl Services {
    /// Runs the key generation ceremony.
    ///
    /// # Errors
    /// Invalid label or threshold, unknown, disabled or duplicate custodians,
    /// a label in use, a public key equal to an existing key's, or HSM/store
    /// failures; each refusal is audited and leaves nothing behind.
    pub async fn create_key(
        &self,
        actor: &str,
        request: KeyRequest,
    ) -> Result<KeySummary, CeremonyError> {
        let event = Event::ok(actor, "key.create")
            .detail("label", request.label.clone())
            .detail("threshold", request.threshold.to_string())
            .detail("custodians", request.custodians.join(","));
        let (members, threshold) = match self.check_key_request(&request).await {
            Ok(checked) => checked,
            Err(error) => return self.refuse(event, error).await,
        };
        let ceremony_id = self.open_ceremony(actor, &request.label).await?;
        let mut objects = Vec::new();
        let generated = self
            .generate_key_material(&request, &members, threshold, &ceremony_id, &mut objects)
            .await;
        // The recovery key and the KEK never outlive this step in the HSM.
        for object in objects {
            if let Err(error) = self.hsm.destroy(object).await {
                tracing::error!(%error, "could not destroy a ceremony's HSM object");
            }
        }
        let stored = match generated {
            Ok(generated) => self.store_key(event, &ceremony_id, generated).await,
            Err(error) => Err(error),
        };
        let key_id = match stored {
            Ok(key_id) => key_id,
            Err(error) => {
                self.fail_ceremony(actor, &ceremony_id, &error).await;
                return Err(error);
            }
        };
        for member in &members {
            let text = format!(
                "You are a custodian of recovery key {:?} ({key_id}). Run `rkm share fetch --key {}` to fetch, verify and store your share, before {}.",
                request.label,
                request.label,
                humantime::format_rfc3339_seconds(SystemTime::now() + RECEIPT_WINDOW)
            );
            self.send_notice(actor, &ceremony_id, &member.name, text)
                .await?;
        }
        self.audit.checkpoint().await?;
        self.get_key(key_id).await
    }

    /// Validates the request against the enrolled custodians.
    async fn check_key_request(
        &self,
        request: &KeyRequest,
    ) -> Result<(Vec<Custodian>, Threshold), CeremonyError> {
        if !valid_label(&request.label) {
            return Err(CeremonyError::InvalidArgument(format!(
                "label {:?} is not valid: use 1 to 64 letters, digits, '-', '_' or '.', not starting with \"rk-\" (key ids do)",
                request.label
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        for name in &request.custodians {
            if !seen.insert(name.as_str()) {
                return Err(CeremonyError::InvalidArgument(format!(
                    "custodian {name:?} is listed twice; each custodian holds one share"
                )));
            }
        }
        let n = request.custodians.len();
        let k = request.threshold;
        if k == 0 {
            return Err(CeremonyError::InvalidArgument(
                "a threshold of 0 is meaningless; use at least 2".to_owned(),
            ));
        }
        if k < 2 && !request.allow_single_custodian {
            return Err(CeremonyError::InvalidArgument(format!(
                "a threshold of {k} lets one custodian use the key alone; use at least 2, or pass --allow-single-custodian if that is really intended"
            )));
        }
        if n == 0 || n > 255 {
            return Err(CeremonyError::InvalidArgument(format!(
                "{n} custodians listed; a key needs 1 to 255"
            )));
        }
        if k == 0 || usize::try_from(k).map_or(true, |k| k > n) {
            return Err(CeremonyError::InvalidArgument(format!(
                "threshold {k} is larger than the {n} custodians listed (or zero): no quorum could ever use the key"
            )));
        }
        let threshold = if request.allow_single_custodian {
            Threshold::new_allowing_single(k as u8, n as u8)
        } else {
            Threshold::new(k as u8, n as u8)
        }
        .map_err(|e| CeremonyError::InvalidArgument(e.to_string()))?;
        let names = request.custodians.clone();
        let label = request.label.clone();
        let (members, label_taken) = self
            .store
            .with(move |connection| {
                let members = names
                    .iter()
                    .map(|name| Ok((name.clone(), custodians::load(connection, name)?)))
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let taken: Option<String> = connection
                    .query_row(
                        "SELECT key_id FROM keys WHERE label = ?1",
                        [&label],
                        |row| row.get(0),
                    )
                    .optional()?;
                Ok((members, taken))
            })
            .await?;
        if let Some(existing) = label_taken {
            return Err(CeremonyError::FailedPrecondition(format!(
                "label {:?} is already used by key {existing}; choose another label",
                request.label
            )));
        }
        let mut enrolled = Vec::with_capacity(members.len());
        for (name, member) in members {
            match member {
                None => {
                    return Err(CeremonyError::not_found(
                        "custodian",
                        name,
                        "; enrol them first with `rkm custodian enrol CARD`",
                    ));
                }
                Some(member) if !member.enabled => {
                    return Err(CeremonyError::FailedPrecondition(format!(
                        "custodian {name:?} is disabled ({}); choose another custodian",
                        member.disabled_reason
                    )));
                }
                Some(member) => enrolled.push(member),
            }
        }
        Ok((enrolled, threshold))
    }

    async fn open_ceremony(&self, actor: &str, label: &str) -> Result<String, CeremonyError> {
        let ceremony_id = self.new_id("cer").await?;
        let opened_at = now();
        let expires_at =
            humantime::format_rfc3339_seconds(SystemTime::now() + RECEIPT_WINDOW).to_string();
        let event = Event::ok(actor, "ceremony.open")
            .subject(ceremony_id.clone())
            .detail("kind", "key-generation")
            .detail("label", label)
            .detail("expires_at", expires_at.clone());
        let (id, opener) = (ceremony_id.clone(), actor.to_owned());
        self.audit
            .record_with(event, move |connection| {
                connection
                    .execute(
                        "INSERT INTO ceremonies (id, kind, state, subject, opened_by, opened_at, expires_at)
                         VALUES (?1, 'key-generation', 'generating', '', ?2, ?3, ?4)",
                        params![id, opener, opened_at, expires_at],
                    )
                    .map_err(crate::store::StoreError::from)?;
                Ok(())
            })
            .await?;
        Ok(ceremony_id)
    }

    async fn fail_ceremony(&self, actor: &str, ceremony_id: &str, error: &CeremonyError) {
        let event = Event::ok(actor, "ceremony.fail")
            .subject(ceremony_id)
            .with_outcome(error.outcome())
            .detail("reason", error.to_string());
        let id = ceremony_id.to_owned();
        let recorded = self
            .audit
            .record_with(event, move |connection| {
                connection
                    .execute(
                        "UPDATE ceremonies SET state = 'failed', closed_at = ?2 WHERE id = ?1",
                        params![id, now()],
                    )
                    .map_err(crate::store::StoreError::from)?;
                Ok(())
            })
            .await;
        if let Err(audit_error) = recorded {
            tracing::error!(%audit_error, "could not record a failed ceremony");
        }
    }

    /// The HSM part: generate, wrap, split, commit, seal, sign. Every HSM
    /// object created is pushed to `objects` for the caller to destroy.
    async fn generate_key_material(
        &self,
        request: &KeyRequest,
        members: &[Custodian],
        threshold: Threshold,
        ceremony_id: &str,
        objects: &mut Vec<HsmObject>,
    ) -> Result<Generated, CeremonyError> {
        let key = self.hsm.generate_recovery_key().await?;
        objects.push(key.private.into());
        objects.push(key.public);
        let kek_bytes = self.hsm.random_kek().await?;
        let kek = Kek::from_bytes(kek_bytes.expose_secret());
        let kek_object = self.hsm.import_kek(kek_bytes).await?;
        objects.push(kek_object.into());
        let wrapped_key = self.hsm.wrap(kek_object, key.private).await?;

        // One seed for the polynomial, one salt per share, all from the HSM.
        let randomness = self.hsm.random(32 * (1 + members.len())).await?;
        let (seed, salts) = randomness.split_at(32);
        let seed: &[u8; 32] = seed.try_into().expect("32 bytes");
        let shares = shamir::split(&kek, threshold, seed)
            .map_err(|e| CeremonyError::Internal(format!("splitting the KEK failed: {e}")))?;
        let kek_check_value = rkm_proto::kek_check::kek_check_value(&kek);
        drop(kek);

        let key_id = key_id_for(&key.public_key_spki);
        let mut custodians = Vec::with_capacity(members.len());
        let mut envelopes = Vec::with_capacity(members.len());
        let mut possession_keys = Vec::with_capacity(members.len());
        for ((member, share), salt) in members.iter().zip(shares).zip(salts.chunks_exact(32)) {
            let salt: [u8; 32] = salt.try_into().expect("32 bytes");
            let commitment = share_commitment(&key_id, &share, &salt);
            possession_keys.push(PossessionKey::derive(&key_id, &share, &salt).public_key());
            let recipient =
                age::x25519::Recipient::from_str(&member.age_recipient).map_err(|e| {
                    CeremonyError::Internal(format!(
                        "custodian {:?} has an unusable age recipient: {e}",
                        member.name
                    ))
                })?;
            custodians.push(KeyCustodian {
                name: member.name.clone(),
                ed25519_public_key: member.ed25519_public_key,
                age_recipient: member.age_recipient.clone(),
                x: share.x(),
                commitment,
            });
            let contents = EnvelopeContents {
                key_id: key_id.clone(),
                custodian: member.name.clone(),
                threshold: threshold.k(),
                share,
                salt,
            };
            let envelope = seal(&contents, &recipient).map_err(|e| {
                CeremonyError::Internal(format!(
                    "sealing the share of {:?} failed: {e}",
                    member.name
                ))
            })?;
            envelopes.push((member.name.clone(), envelope));
        }
        let record = KeyRecord {
            key_id,
            label: request.label.clone(),
            algorithm: ALGORITHM.to_owned(),
            public_key_spki: key.public_key_spki,
            wrapped_key,
            kek_check_value,
            threshold: threshold.k(),
            custodians,
            ceremony_id: ceremony_id.to_owned(),
            created_at: now(),
        };
        let encoded = record.encode();
        let signature = self
            .hsm
            .sign_with_audit_key(self.audit_key, KeyRecord::signing_message(&encoded))
            .await?;
        let signed = SignedKeyRecord {
            record: encoded,
            signature,
            audit_verifier_key: self.audit.verifier().to_string(),
        };
        Ok(Generated {
            record,
            signed,
            envelopes,
            possession_keys,
        })
    }

    /// Stores the key, its custodians' commitments and envelopes, in one
    /// audited transaction; refuses a public key that an existing key has.
    async fn store_key(
        &self,
        event: Event,
        ceremony_id: &str,
        generated: Generated,
    ) -> Result<String, CeremonyError> {
        let Generated {
            record,
            signed,
            envelopes,
            possession_keys,
        } = generated;
        let event = event
            .subject(record.key_id.clone())
            .detail("ceremony_id", ceremony_id)
            .detail("key_id", record.key_id.clone())
            .detail(
                "public_key_fingerprint",
                rkm_proto::fingerprint::fingerprint(&record.public_key_spki),
            );
        let duplicate_spki = record.public_key_spki.clone();
        let duplicate: Option<String> = self
            .store
            .with(move |connection| {
                Ok(connection
                    .query_row(
                        "SELECT key_id FROM keys WHERE public_key_spki = ?1",
                        [&duplicate_spki],
                        |row| row.get(0),
                    )
                    .optional()?)
            })
            .await?;
        if let Some(existing) = duplicate {
            let error = CeremonyError::FailedPrecondition(format!(
                "the generated public key equals key {existing}'s: refused, two keys must never share key material"
            ));
            return self.refuse(event, error).await;
        }
        let key_id = record.key_id.clone();
        let signed_file = signed.to_file();
        let id = ceremony_id.to_owned();
        self.audit
            .record_with(event, move |connection| {
                connection
                    .execute(
                        "INSERT INTO keys (key_id, label, public_key_spki, signed_record, threshold, state, ceremony_id, created_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, 'awaiting-receipts', ?6, ?7)",
                        params![
                            record.key_id,
                            record.label,
                            record.public_key_spki,
                            signed_file,
                            record.threshold,
                            id,
                            record.created_at
                        ],
                    )
                    .map_err(crate::store::StoreError::from)?;
                for ((custodian, (name, envelope)), possession) in
                    record.custodians.iter().zip(envelopes).zip(&possession_keys)
                {
                    debug_assert_eq!(custodian.name, name);
                    connection
                        .execute(
                            "INSERT INTO key_custodians (key_id, custodian, x, commitment, envelope, possession_public_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                            params![record.key_id, custodian.name, custodian.x, custodian.commitment.to_vec(), envelope, possession.as_slice()],
                        )
                        .map_err(crate::store::StoreError::from)?;
                }
                connection
                    .execute(
                        "UPDATE ceremonies SET state = 'awaiting-receipts', subject = ?2 WHERE id = ?1",
                        params![id, record.key_id],
                    )
                    .map_err(crate::store::StoreError::from)?;
                Ok(())
            })
            .await?;
        Ok(key_id)
    }

    /// Refuses a step of a key generation ceremony whose receipt window has
    /// passed (and expires it: its envelopes are deleted).
    async fn check_not_expired(&self, ceremony_id: &str) -> Result<(), CeremonyError> {
        let id = ceremony_id.to_owned();
        let (state, expires_at): (String, String) = self
            .store
            .with(move |c| {
                Ok(c.query_row(
                    "SELECT state, expires_at FROM ceremonies WHERE id = ?1",
                    [id],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )?)
            })
            .await?;
        if state == "expired" || expires_at <= now() {
            self.expire_key_generations().await;
            return Err(CeremonyError::FailedPrecondition(format!(
                "the key generation ceremony {ceremony_id} expired at {expires_at}; run a new key generation ceremony"
            )));
        }
        Ok(())
    }

    /// Expires key generation ceremonies whose receipt window has passed:
    /// their remaining envelopes are deleted and the key stays unusable.
    pub async fn expire_key_generations(&self) {
        let current = now();
        let due: Vec<(String, String)> = match self
            .store
            .with(move |connection| {
                Ok(connection
                    .prepare("SELECT id, subject FROM ceremonies WHERE kind = 'key-generation' AND state = 'awaiting-receipts' AND expires_at <= ?1")?
                    .query_map([current], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect::<Result<_, _>>()?)
            })
            .await
        {
            Ok(due) => due,
            Err(error) => {
                tracing::error!(%error, "could not look for expired key generation ceremonies");
                return;
            }
        };
        for (id, key_id) in due {
            let event = Event::ok("rkmd", "ceremony.expire")
                .subject(id.clone())
                .detail("key_id", key_id.clone())
                .detail("envelopes", "deleted");
            let recorded = self
                .audit
                .record_with(event, move |connection| {
                    connection
                        .execute(
                            "UPDATE ceremonies SET state = 'expired', closed_at = ?2 WHERE id = ?1",
                            params![id, now()],
                        )
                        .map_err(crate::store::StoreError::from)?;
                    connection
                        .execute(
                            "UPDATE key_custodians SET envelope = NULL WHERE key_id = ?1",
                            [key_id],
                        )
                        .map_err(crate::store::StoreError::from)?;
                    Ok(())
                })
                .await;
            if let Err(error) = recorded {
                tracing::error!(%error, "could not expire a key generation ceremony");
            }
        }
    }

    /// A key by label or key id.
    ///
    /// # Errors
    /// No such key.
    pub async fn get_key(&self, key: String) -> Result<KeySummary, CeremonyError> {
        let lookup = key.clone();
        self.store
            .with(move |connection| Ok(load_key(connection, &lookup)?))
            .await?
            .ok_or_else(|| CeremonyError::not_found("key", key, "; `rkm key list` shows the keys"))
    }

    /// Every key, by label.
    ///
    /// # Errors
    /// The store fails.
    pub async fn list_keys(&self) -> Result<Vec<KeySummary>, CeremonyError> {
        Ok(self
            .store
            .with(|connection| {
                let ids: Vec<String> = connection
                    .prepare("SELECT key_id FROM keys ORDER BY label")?
                    .query_map([], |row| row.get(0))?
                    .collect::<Result<_, _>>()?;
                let mut keys = Vec::with_capacity(ids.len());
                for id in ids {
                    keys.extend(load_key(connection, &id)?);
                }
                Ok(keys)
            })
            .await?)
    }

    /// Hands a custodian their sealed share, after checking their signature.
    ///
    /// # Errors
    /// Unknown key, not a custodian of it, a bad or stale signature, or a
    /// receipt already in (the envelope is then deleted).
    pub async fn fetch_envelope(
        &self,
        peer: &str,
        key: String,
        custodian: String,
        unix_time: u64,
        signature: Vec<u8>,
    ) -> Result<FetchedEnvelope, CeremonyError> {
        // Refusals name the caller; only a verified signature makes the
        // custodian the actor.
        let event = Event::ok(peer, "envelope.fetch").detail("custodian", custodian.clone());
        let summary = match self.get_key(key).await {
            Ok(summary) => summary,
            Err(error) => return self.refuse(event, error).await,
        };
        let event = event.subject(summary.key_id.clone());
        let (key_id, name) = (summary.key_id.clone(), custodian.clone());
        let (holder, envelope) = self
            .store
            .with(move |connection| {
                let holder = custodians::load(connection, &name)?;
                let envelope: Option<Option<Vec<u8>>> = connection
                    .query_row(
                        "SELECT envelope FROM key_custodians WHERE key_id = ?1 AND custodian = ?2",
                        params![key_id, name],
                        |row| row.get(0),
                    )
                    .optional()?;
                Ok((holder, envelope))
            })
            .await?;
        let (Some(holder), Some(envelope)) = (holder, envelope) else {
            let error = CeremonyError::PermissionDenied(format!(
                "{custodian:?} is not a custodian of key {}",
                summary.label
            ));
            return self.refuse(event, error).await;
        };
        let message = envelope_fetch_message(&summary.key_id, &custodian, unix_time);
        if let Err(error) =
            verify_custodian_signature(&holder.ed25519_public_key, &message, &signature)
        {
            let error = CeremonyError::PermissionDenied(format!(
                "the request is not signed by custodian {custodian:?}'s identity: {error}"
            ));
            return self.refuse(event, error).await;
        }
        if unix_now().abs_diff(unix_time) > FETCH_CLOCK_SKEW {
            let error = CeremonyError::PermissionDenied(format!(
                "the request's time is more than {FETCH_CLOCK_SKEW} s from rkmd's clock; check the clock and retry"
            ));
            return self.refuse(event, error).await;
        }
        let event = Event {
            actor: custodian.clone(),
            ..event
        };
        let Some(envelope) = envelope else {
            let error = CeremonyError::FailedPrecondition(format!(
                "{custodian:?} already confirmed their share of key {}; the envelope was deleted. Use the share stored by `rkm share fetch`",
                summary.label
            ));
            return self.refuse(event, error).await;
        };
        if let Err(error) = self.check_not_expired(&summary.ceremony_id).await {
            return self.refuse(event, error).await;
        }
        self.audit.record(event).await?;
        Ok(FetchedEnvelope {
            key_id: summary.key_id,
            envelope,
            signed_key_record: summary.signed_key_record,
        })
    }

    /// Records a custodian's signed receipt for their share and deletes the
    /// envelope; the key becomes active with the last receipt.
    ///
    /// # Errors
    /// Unknown key, not a custodian of it, a bad signature, a receipt already
    /// in, or an expired ceremony.
    pub async fn submit_receipt(
        &self,
        peer: &str,
        key: String,
        custodian: String,
        signature: Vec<u8>,
        possession_proof: Vec<u8>,
    ) -> Result<KeySummary, CeremonyError> {
        let event = Event::ok(peer, "share.receipt").detail("custodian", custodian.clone());
        let summary = match self.get_key(key).await {
            Ok(summary) => summary,
            Err(error) => return self.refuse(event, error).await,
        };
        let event = event
            .subject(summary.key_id.clone())
            .detail("ceremony_id", summary.ceremony_id.clone());
        let (key_id, name, ceremony) = (
            summary.key_id.clone(),
            custodian.clone(),
            summary.ceremony_id.clone(),
        );
        let (holder, slot, expires_at) = self
            .store
            .with(move |connection| {
                let holder = custodians::load(connection, &name)?;
                let slot = custodians::load_slot(connection, &key_id, &name)?;
                let expires_at: String = connection.query_row(
                    "SELECT expires_at FROM ceremonies WHERE id = ?1",
                    [&ceremony],
                    |row| row.get(0),
                )?;
                Ok((holder, slot, expires_at))
            })
            .await?;
        let (Some(holder), Some(slot)) = (holder, slot) else {
            let error = CeremonyError::PermissionDenied(format!(
                "{custodian:?} is not a custodian of key {}",
                summary.label
            ));
            return self.refuse(event, error).await;
        };
        let (x, received_at, possession) = (slot.x, slot.received_at, slot.possession_public_key);
        let commitment = custodians::stored_commitment(slot.commitment)?;
        let message = share_receipt_message(&summary.key_id, &custodian, x, &commitment);
        if let Err(error) =
            custodians::check_signed_over_share(&holder, &message, &signature, "receipt")
        {
            return self.refuse(event, error).await;
        }
        if let Err(error) =
            custodians::check_possession(possession, &message, &possession_proof, "receipt")
        {
            return self.refuse(event, error).await;
        }
        let event = Event {
            actor: custodian.clone(),
            ..event
        };
        if !received_at.is_empty() {
            let error = CeremonyError::FailedPrecondition(format!(
                "{custodian:?} already sent a receipt for key {} at {received_at}",
                summary.label
            ));
            return self.refuse(event, error).await;
        }
        let _ = expires_at;
        if let Err(error) = self.check_not_expired(&summary.ceremony_id).await {
            return self.refuse(event, error).await;
        }
        let (key_id, name, ceremony) = (
            summary.key_id.clone(),
            custodian.clone(),
            summary.ceremony_id.clone(),
        );
        let (_, completed) = self
            .audit
            .record_with(event, move |connection| {
                let at = now();
                // The receipt follows the same offline check as an
                // attestation, so it is the custodian's first attestation.
                connection
                    .execute(
                        "UPDATE key_custodians SET envelope = NULL, receipt_signature = ?3, received_at = ?4,
                                attested_at = ?4, attested_unix = ?5
                         WHERE key_id = ?1 AND custodian = ?2",
                        params![key_id, name, signature, at, unix_now()],
                    )
                    .map_err(crate::store::StoreError::from)?;
                let missing: i64 = connection
                    .query_row(
                        "SELECT COUNT(*) FROM key_custodians WHERE key_id = ?1 AND received_at = ''",
                        [&key_id],
                        |row| row.get(0),
                    )
                    .map_err(crate::store::StoreError::from)?;
                if missing == 0 {
                    connection
                        .execute("UPDATE keys SET state = ?2 WHERE key_id = ?1", params![key_id, KeyState::Active.as_str()])
                        .map_err(crate::store::StoreError::from)?;
                    connection
                        .execute(
                            "UPDATE ceremonies SET state = 'completed', closed_at = ?2 WHERE id = ?1",
                            params![ceremony, at],
                        )
                        .map_err(crate::store::StoreError::from)?;
                }
                Ok(missing == 0)
            })
            .await?;
        if completed {
            self.audit
                .record(
                    Event::ok("rkmd", "ceremony.complete")
                        .subject(summary.ceremony_id.clone())
                        .detail("key_id", summary.key_id.clone())
                        .detail("state", KeyState::Active.as_str()),
                )
                .await?;
        }
        self.audit.checkpoint().await?;
        self.get_key(summary.key_id).await
    }
}
