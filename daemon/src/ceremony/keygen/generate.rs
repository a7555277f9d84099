//! Key generation up to the stored key: the request checked against the
//! enrolled custodians, the ceremony opened, the key material made in the HSM
//! and sealed to the custodians, and the key stored with its envelopes in one
//! audited transaction (or the ceremony failed, with why).

use rkm_proto::audit_entry::action;
use std::str::FromStr as _;
use std::time::SystemTime;

use rkm_proto::commitment::{PossessionKey, share_commitment};
use rkm_proto::envelope::{EnvelopeContents, seal};
use rkm_proto::key_record::{KeyCustodian, KeyRecord, SignedKeyRecord, key_id_for};
use rkm_proto::secret::Kek;
use rkm_proto::shamir::{self, Threshold};
use rkm_proto::sharing::wrap::WrapCheck;

use super::super::custodians::Custodian;
use super::super::state::{CeremonyKind, CeremonyState, KeyState, transition};
use super::super::{CeremonyError, Services, now};
use super::{KeyRequest, KeySummary, RECEIPT_WINDOW};
use rkm_proto::encoding::text::check_key_label;

use crate::audit::Event;
use crate::hsm::HsmObject;
use crate::store::{self, StoreError};

const ALGORITHM: &str = "ECDSA-P256-SHA256";

/// The k-of-n rule for `k` of the `n` custodians listed: at least 2 unless
/// one custodian alone is explicitly allowed, at most n, n from 1 to 255.
fn check_threshold(k: u32, n: usize, allow_single: bool) -> Result<Threshold, CeremonyError> {
    if k == 0 {
        return Err(CeremonyError::InvalidArgument(
            "a threshold of 0 is meaningless; use at least 2".to_owned(),
        ));
    }
    if k < 2 && !allow_single {
        return Err(CeremonyError::InvalidArgument(format!(
            "a threshold of {k} lets one custodian use the key alone; use at least 2, or pass --allow-single-custodian if that is really intended"
        )));
    }
    if n == 0 || n > 255 {
        return Err(CeremonyError::InvalidArgument(format!(
            "{n} custodians listed; a key needs 1 to 255"
        )));
    }
    if usize::try_from(k).map_or(true, |k| k > n) {
        return Err(CeremonyError::InvalidArgument(format!(
            "threshold {k} is larger than the {n} custodians listed (or zero): no quorum could ever use the key"
        )));
    }
    if allow_single {
        Threshold::new_allowing_single(k as u8, n as u8)
    } else {
        Threshold::new(k as u8, n as u8)
    }
    .map_err(|e| CeremonyError::InvalidArgument(e.to_string()))
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
        let event = Event::ok(actor, action::KEY_CREATE)
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
                rkm_proto::encoding::time::format_rfc3339_seconds(
                    SystemTime::now() + RECEIPT_WINDOW
                )
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
        // One label rule for daemon and client (proto's text rule included):
        // labels and key ids share one namespace in lookups.
        if check_key_label(&request.label).is_err() {
            return Err(CeremonyError::InvalidArgument(format!(
                "label {:?} is not valid: use 1 to 64 letters, digits, '-', '_' or '.', not starting with \"rk-\" (key ids do)",
                request.label
            )));
        }
        let mut seen = std::collections::BTreeMap::new();
        for (position, name) in request.custodians.iter().enumerate() {
            if let Some(first) = seen.insert(name.as_str(), position + 1) {
                return Err(CeremonyError::InvalidArgument(format!(
                    "custodian {name:?} is listed twice (entries {first} and {} of the custodian list); each custodian holds one share: remove one",
                    position + 1
                )));
            }
        }
        let threshold = check_threshold(
            request.threshold,
            request.custodians.len(),
            request.allow_single_custodian,
        )?;
        let names = request.custodians.clone();
        let label = request.label.clone();
        let (members, label_taken) = self
            .store
            .read(move |tx| {
                let members = names
                    .iter()
                    .map(|name| Ok((name.clone(), store::custodians::load(tx, name)?)))
                    .collect::<Result<Vec<_>, StoreError>>()?;
                let taken = match store::keys::with_label(tx, &label)? {
                    Some(key_id) => store::keys::load(tx, &key_id)?,
                    None => None,
                };
                Ok((members, taken))
            })
            .await?;
        if let Some(existing) = label_taken {
            return Err(CeremonyError::FailedPrecondition(format!(
                "label {label:?} is already used by key {} (created {} in ceremony {}, {}): if you are retrying an interrupted `rkm key create`, that ceremony completed — `rkm key show {label}` shows the key, and its custodians fetch their shares as usual; otherwise choose another label",
                existing.key_id,
                existing.created_at,
                existing.ceremony_id,
                KeyState::parse(&existing.state).as_str(),
                label = request.label,
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
            rkm_proto::encoding::time::format_rfc3339_seconds(SystemTime::now() + RECEIPT_WINDOW);
        let event = Event::ok(actor, action::CEREMONY_OPEN)
            .subject(ceremony_id.clone())
            .detail("kind", CeremonyKind::KeyGeneration.as_str())
            .detail("label", label)
            .detail("expires_at", expires_at.clone());
        let (id, opener) = (ceremony_id.clone(), actor.to_owned());
        self.audit
            .record_with(event, move |tx| {
                store::ceremonies::insert(
                    tx,
                    &store::ceremonies::NewCeremony {
                        id: &id,
                        kind: CeremonyKind::KeyGeneration.as_str(),
                        state: CeremonyState::Generating.as_str(),
                        subject: "",
                        opened_by: &opener,
                        opened_at: &opened_at,
                        expires_at: &expires_at,
                        closed_at: "",
                    },
                )
            })
            .await?;
        Ok(ceremony_id)
    }

    async fn fail_ceremony(&self, actor: &str, ceremony_id: &str, error: &CeremonyError) {
        let event = Event::ok(actor, action::CEREMONY_FAIL)
            .subject(ceremony_id)
            .with_outcome(error.outcome())
            .detail("reason", error.to_string());
        let closed = self
            .close_ceremony(
                event,
                ceremony_id,
                CeremonyState::Generating,
                CeremonyState::Failed,
                |_, _| Ok(()),
            )
            .await;
        if let Err(audit_error) = closed {
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
        let hsm_blob = self.hsm.wrap(kek_object, key.private).await?;
        let wrapped_key = self
            .exact_wrapped_key(&kek, kek_object, hsm_blob, &key.public_key_spki, objects)
            .await?;

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

    /// The wrapped key as any HSM accepts it: exactly one PrivateKeyInfo of
    /// this key inside the RFC 5649 wrap (see `rkm_proto::sharing::wrap`).
    /// A blob rewrapped in software is unwrapped by the HSM once before it is
    /// kept, so the record never holds a blob this HSM cannot restore.
    async fn exact_wrapped_key(
        &self,
        kek: &Kek,
        kek_object: crate::hsm::KekKey,
        hsm_blob: Vec<u8>,
        public_key_spki: &[u8],
        objects: &mut Vec<HsmObject>,
    ) -> Result<Vec<u8>, CeremonyError> {
        let checked = rkm_proto::sharing::wrap::exact_wrapped_key(kek, &hsm_blob, public_key_spki)
            .map_err(|e| {
                CeremonyError::Internal(format!("the HSM's wrapped key failed its check: {e}"))
            })?;
        match checked {
            WrapCheck::Exact => Ok(hsm_blob),
            WrapCheck::Rewrapped(exact) => {
                tracing::info!(
                    hsm_blob_len = hsm_blob.len(),
                    exact_blob_len = exact.len(),
                    "the HSM padded the PKCS#8 inside its wrap; the exact DER was wrapped again under the same KEK"
                );
                let unwrapped = self.hsm.unwrap(kek_object, exact.clone()).await?;
                objects.push(unwrapped.into());
                Ok(exact)
            }
        }
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
        let duplicate = self
            .store
            .read(move |tx| store::keys::with_public_key(tx, &duplicate_spki))
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
            .record_with(event, move |tx| {
                let slots: Vec<_> = record
                    .custodians
                    .iter()
                    .zip(&envelopes)
                    .zip(&possession_keys)
                    .map(|((custodian, (name, envelope)), possession)| {
                        debug_assert_eq!(&custodian.name, name);
                        store::keys::NewSlot {
                            custodian: &custodian.name,
                            x: custodian.x,
                            commitment: &custodian.commitment,
                            envelope: Some(envelope.as_slice()),
                            possession_public_key: Some(possession.as_slice()),
                            received_at: "",
                        }
                    })
                    .collect();
                let key = store::keys::NewKey {
                    key_id: &record.key_id,
                    label: &record.label,
                    public_key_spki: &record.public_key_spki,
                    signed_key_record: &signed_file,
                    threshold: record.threshold,
                    state: KeyState::AwaitingReceipts.as_str(),
                    ceremony_id: &id,
                    created_at: &record.created_at,
                    record_audit_key: "",
                };
                store::keys::insert(tx, &key, &slots)?;
                transition(
                    tx,
                    &id,
                    CeremonyState::Generating,
                    CeremonyState::AwaitingReceipts,
                )?;
                store::ceremonies::set_subject(tx, &id, &record.key_id)?;
                Ok::<_, CeremonyError>(())
            })
            .await?;
        Ok(key_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_needs_two_unless_one_is_allowed() {
        assert!(
            check_threshold(0, 3, true)
                .unwrap_err()
                .to_string()
                .contains("threshold of 0")
        );
        let single = check_threshold(1, 3, false).unwrap_err().to_string();
        assert!(single.contains("--allow-single-custodian"), "{single}");
        assert_eq!(check_threshold(1, 3, true).unwrap().k(), 1);
        assert_eq!(check_threshold(2, 3, false).unwrap().k(), 2);
    }

    #[test]
    fn threshold_above_the_custodians_listed_is_refused() {
        let error = check_threshold(4, 3, false).unwrap_err().to_string();
        assert!(error.contains("larger than the 3 custodians"), "{error}");
        assert_eq!(check_threshold(3, 3, false).unwrap().k(), 3);
    }

    #[test]
    fn custodian_count_must_be_1_to_255() {
        assert!(
            check_threshold(2, 0, false)
                .unwrap_err()
                .to_string()
                .contains("0 custodians")
        );
        assert!(
            check_threshold(2, 256, false)
                .unwrap_err()
                .to_string()
                .contains("256 custodians")
        );
    }

    #[test]
    fn labels_may_not_look_like_key_ids() {
        assert!(check_key_label("fleet-2026.a_b").is_ok());
        assert!(check_key_label("rk-1234").is_err());
        assert!(check_key_label("").is_err());
        assert!(check_key_label(&"a".repeat(65)).is_err());
        assert!(check_key_label("with space").is_err());
    }
}
