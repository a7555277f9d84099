//! A recovery ceremony done with the pure code alone, for the request,
//! approval and artefact tests: a real P-256 recovery key and key record,
//! custodians with real Ed25519 identities, an audit log of real entries in
//! an RFC 9162 tree with a checkpoint signed by an Ed25519 audit key, and an
//! artefact bundle written with `ArtefactWriter`.

#![allow(dead_code)]

use std::collections::BTreeMap;

use ed25519_dalek::Signer as _;
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::pkcs8::EncodePublicKey;
use rkm_proto::approval::{Approval, approval_message};
use rkm_proto::artefact::{
    ArtefactHeader, ArtefactWriter, AuditProof, ISSUE_ACTION_DRILL, ISSUE_ACTION_RECOVERY,
    issue_entry_details,
};
use rkm_proto::audit_entry::{AuditEntry, ENTRY_VERSION, Outcome};
use rkm_proto::checkpoint::{Checkpoint, VerifierKey, format_signed_note};
use rkm_proto::command::{command_digest, normalize_signature};
use rkm_proto::commitment::share_commitment;
use rkm_proto::identity::CustodianIdentity;
use rkm_proto::kek_check::kek_check_value;
use rkm_proto::key_record::{ALGORITHM_ECDSA_P256_SHA256, KeyCustodian, KeyRecord, key_id_for};
use rkm_proto::merkle::{Hash, inclusion_proof, leaf_hash, root_from_leaf_hashes};
use rkm_proto::recovery_request::{CanonicalRequest, CeremonyKind, Command, TargetsHasher};
use rkm_proto::secret::Kek;
use rkm_proto::shamir::{Threshold, split};

/// Name and origin of the test audit log.
pub const AUDIT_KEY_NAME: &str = "rkm-recovery-test";
pub const LOG_ORIGIN: &str = "rkm.example/test-log";
pub const CEREMONY_ID: &str = "rec-0001";

/// A key with its custodians, recovery key and audit key.
pub struct Fixture {
    pub recovery_key: p256::ecdsa::SigningKey,
    pub audit_signing: ed25519_dalek::SigningKey,
    pub audit_key: VerifierKey,
    pub identities: Vec<CustodianIdentity>,
    pub record: KeyRecord,
}

/// A k-of-n key whose custodians are "c1".."cn"; `seed` varies every key.
pub fn fixture(k: u8, n: u8, seed: u8) -> Fixture {
    let recovery_key = p256::ecdsa::SigningKey::from_slice(&[seed.max(1); 32]).unwrap();
    let spki = p256::PublicKey::from(recovery_key.verifying_key())
        .to_public_key_der()
        .unwrap()
        .as_bytes()
        .to_vec();
    let key_id = key_id_for(&spki);
    let identities: Vec<CustodianIdentity> = (1..=n)
        .map(|i| {
            let mut seed_bytes = [i; 64];
            seed_bytes[0] = seed;
            CustodianIdentity::generate(&format!("c{i}"), &seed_bytes).unwrap()
        })
        .collect();
    let kek = Kek::from_bytes(&[seed; 32]);
    let shares = split(
        &kek,
        Threshold::new_allowing_single(k, n).unwrap(),
        &[seed; 32],
    )
    .unwrap();
    let custodians = identities
        .iter()
        .zip(&shares)
        .map(|(identity, share)| {
            let card = identity.card();
            KeyCustodian {
                name: card.name,
                ed25519_public_key: card.ed25519_public_key,
                age_recipient: card.age_recipient,
                x: share.x(),
                commitment: share_commitment(&key_id, share, &[share.x(); 32]),
            }
        })
        .collect();
    let record = KeyRecord {
        key_id,
        label: "fleet recovery key".to_owned(),
        algorithm: ALGORITHM_ECDSA_P256_SHA256.to_owned(),
        public_key_spki: spki,
        wrapped_key: vec![0xee; 48],
        kek_check_value: kek_check_value(&kek),
        threshold: k,
        custodians,
        ceremony_id: "gen-0001".to_owned(),
        created_at: "2026-01-05T10:00:00Z".to_owned(),
    };
    record.validate().unwrap();
    let audit_signing = ed25519_dalek::SigningKey::from_bytes(&[seed ^ 0xa5; 32]);
    let audit_key =
        VerifierKey::new(AUDIT_KEY_NAME, audit_signing.verifying_key().as_bytes()).unwrap();
    Fixture {
        recovery_key,
        audit_signing,
        audit_key,
        identities,
        record,
    }
}

pub fn device_ids(count: usize) -> Vec<String> {
    (1..=count).map(|i| format!("meter-{i:06}")).collect()
}

pub fn replace_anchor_command() -> Command {
    // A P-256 SubjectPublicKeyInfo as the new anchor.
    let anchor = p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).unwrap();
    Command::ReplaceTrustAnchor {
        anchor_slot: 1,
        new_anchor: p256::PublicKey::from(anchor.verifying_key())
            .to_public_key_der()
            .unwrap()
            .as_bytes()
            .to_vec(),
    }
}

impl Fixture {
    /// A canonical request for this key over `targets`.
    pub fn request(&self, kind: CeremonyKind, targets: &[String]) -> CanonicalRequest {
        let mut hasher = TargetsHasher::new();
        for id in targets {
            hasher.push(id).unwrap();
        }
        CanonicalRequest {
            ceremony_kind: kind,
            key_id: self.record.key_id.clone(),
            command: replace_anchor_command(),
            reason: "Issuing CA key compromised (INC-4711)".to_owned(),
            incident: "INC-4711".to_owned(),
            not_before: "2026-11-27T00:00:00Z".to_owned(),
            not_after: "2026-12-04T00:00:00Z".to_owned(),
            targets: hasher.finish(),
            emergency: false,
            justification: String::new(),
        }
    }

    /// Custodian `index` (0-based) approves.
    pub fn approval(&self, index: usize, ceremony_id: &str, digest: &[u8; 32]) -> Approval {
        let custodian = &self.record.custodians[index];
        let nonce = [index as u8 + 0x10; 32];
        let signature = self.identities[index].sign(&approval_message(
            ceremony_id,
            digest,
            &nonce,
            &custodian.commitment,
        ));
        Approval {
            custodian: custodian.name.clone(),
            nonce,
            commitment: custodian.commitment,
            signature,
            approved_at: format!("2026-11-27T04:2{index}:21.123Z"),
        }
    }

    pub fn approvals(
        &self,
        which: &[usize],
        ceremony_id: &str,
        digest: &[u8; 32],
    ) -> Vec<Approval> {
        which
            .iter()
            .map(|&i| self.approval(i, ceremony_id, digest))
            .collect()
    }

    /// The audit entry that issues the artefact.
    pub fn issue_entry(
        &self,
        kind: CeremonyKind,
        ceremony_id: &str,
        digest: &[u8; 32],
        approvals: &[Approval],
    ) -> AuditEntry {
        let mut details = issue_entry_details(digest, approvals);
        details.insert("key_id".to_owned(), self.record.key_id.clone());
        if kind == CeremonyKind::Drill {
            // What rkmd's drill signs, and records in the issuing entry.
            let signature: p256::ecdsa::Signature = self
                .recovery_key
                .sign_prehash(&rkm_proto::command::drill_challenge_digest(
                    digest,
                    ceremony_id,
                ))
                .unwrap();
            let signature = normalize_signature(&signature.to_bytes().into()).unwrap();
            details.insert(
                rkm_proto::artefact::DETAIL_DRILL_SIGNATURE.to_owned(),
                hex::encode(signature),
            );
        }
        AuditEntry {
            v: ENTRY_VERSION,
            time: "2026-11-27T04:30:00.000Z".to_owned(),
            actor: "rkmd".to_owned(),
            action: match kind {
                CeremonyKind::Recovery => ISSUE_ACTION_RECOVERY,
                CeremonyKind::Drill => ISSUE_ACTION_DRILL,
            }
            .to_owned(),
            subject: ceremony_id.to_owned(),
            outcome: Outcome::Ok,
            details,
        }
    }

    /// A log of seven entries whose fifth (index 4) is `entry`, a checkpoint
    /// over it signed by the audit key, and the entry's inclusion proof.
    pub fn audit_proof(&self, entry: &AuditEntry) -> AuditProof {
        let entry_bytes = entry.encode().unwrap();
        let filler = |i: usize| {
            AuditEntry {
                v: ENTRY_VERSION,
                time: format!("2026-11-27T04:0{i}:00.000Z"),
                actor: "rkmd".to_owned(),
                action: "audit.note".to_owned(),
                subject: String::new(),
                outcome: Outcome::Ok,
                details: BTreeMap::from([("n".to_owned(), i.to_string())]),
            }
            .encode()
            .unwrap()
        };
        let mut entries: Vec<Vec<u8>> = (0..4).map(filler).collect();
        entries.push(entry_bytes.clone());
        entries.extend((5..7).map(filler));
        let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(e)).collect();
        let size = leaves.len() as u64;
        let root = root_from_leaf_hashes(&leaves);
        let proof = inclusion_proof::<rkm_proto::merkle::ProofError, _>(4, size, |s, e| {
            Ok(root_from_leaf_hashes(&leaves[s as usize..e as usize]))
        })
        .unwrap();
        AuditProof {
            signed_checkpoint: self.signed_checkpoint(size, root),
            entry_index: 4,
            entry: entry_bytes,
            inclusion_proof: proof,
        }
    }

    pub fn signed_checkpoint(&self, size: u64, root: Hash) -> String {
        let body = Checkpoint::new(LOG_ORIGIN, size, root, vec![])
            .unwrap()
            .to_body();
        let signature = self.audit_signing.sign(body.as_bytes()).to_bytes();
        format_signed_note(&body, AUDIT_KEY_NAME, self.audit_key.key_id(), &signature).unwrap()
    }

    /// A complete, valid header for `request` approved by `approvers`.
    pub fn header(&self, request: &CanonicalRequest, approvers: &[usize]) -> ArtefactHeader {
        let canonical = request.encode();
        let digest = request.digest();
        let approvals = self.approvals(approvers, CEREMONY_ID, &digest);
        let entry = self.issue_entry(request.ceremony_kind, CEREMONY_ID, &digest, &approvals);
        ArtefactHeader {
            ceremony_id: CEREMONY_ID.to_owned(),
            key_id: self.record.key_id.clone(),
            public_key_spki: self.record.public_key_spki.clone(),
            canonical_request: canonical,
            request_digest: digest,
            approvals,
            audit: self.audit_proof(&entry),
            target_count: request.targets.count,
        }
    }

    /// The recovery key's low-S signature of one command, as rkmd writes it.
    pub fn sign(&self, digest: &[u8; 32], sequence: u64, device_id: &str) -> [u8; 64] {
        let signature: p256::ecdsa::Signature = self
            .recovery_key
            .sign_prehash(&command_digest(digest, sequence, device_id))
            .unwrap();
        normalize_signature(&signature.to_bytes().into()).unwrap()
    }

    /// The same signature with S replaced by n - S (valid, but high-S).
    pub fn sign_high_s(&self, digest: &[u8; 32], sequence: u64, device_id: &str) -> [u8; 64] {
        let low =
            p256::ecdsa::Signature::from_slice(&self.sign(digest, sequence, device_id)).unwrap();
        let (r, s) = low.split_scalars();
        p256::ecdsa::Signature::from_scalars(r, -*s)
            .unwrap()
            .to_bytes()
            .into()
    }

    /// A bundle for `header` signing `targets` in order.
    pub fn bundle(&self, header: &ArtefactHeader, targets: &[String]) -> Vec<u8> {
        let mut writer = ArtefactWriter::new(Vec::new(), header).unwrap();
        for (sequence, id) in targets.iter().enumerate() {
            let signature = self.sign(&header.request_digest, sequence as u64, id);
            writer.signed(sequence as u64, id, &signature).unwrap();
        }
        writer.finish().unwrap()
    }

    /// A valid recovery bundle over `count` targets approved by the first k
    /// custodians.
    pub fn recovery_bundle(&self, count: usize) -> (Vec<u8>, ArtefactHeader, Vec<String>) {
        let targets = device_ids(count);
        let request = self.request(CeremonyKind::Recovery, &targets);
        let approvers: Vec<usize> = (0..usize::from(self.record.threshold)).collect();
        let header = self.header(&request, &approvers);
        let bytes = self.bundle(&header, &targets);
        (bytes, header, targets)
    }
}
