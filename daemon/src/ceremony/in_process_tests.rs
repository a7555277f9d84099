//! The approval rules of a recovery, tested in-process: `Services` against a
//! real SoftHSM token and a fresh store, no binaries, so each refusal is
//! named by the rule that made it (between the unit tests beside the rules
//! and the end-to-end tests in `rkm-tests`).

use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use rkm_proto::approval::approval_message;
use rkm_proto::commitment::{PossessionKey, share_commitment};
use rkm_proto::envelope::{self, EnvelopeContents};
use rkm_proto::identity::CustodianIdentity;
use rkm_proto::messages::{envelope_fetch_message, share_receipt_message};
use rkm_tests::SoftHsmToken;
use rkm_tests::env::use_token_in_this_process;

use super::keygen::{KeyRequest, KeyState, unix_now};
use super::recovery::{ApprovalSubmission, OpenRequest, RecoveryRuntime, RecoveryState};
use super::{CeremonyError, Services};
use crate::audit::{AuditConfig, AuditLog};
use crate::hsm::{Hsm, HsmConfig};
use crate::secrets::UserPin;
use crate::store::Store;

const NAMES: [&str; 3] = ["alice", "bob", "carol"];
const REQUEST: &str = "reason = \"Issuing CA 2 key compromised\"\nincident = \"INC-4711\"\nnot_before = \"2026-11-27T00:00:00Z\"\nnot_after = \"2026-12-04T00:00:00Z\"\ntargets = [\"meter-1\"]\n\n[command]\nkind = \"revoke-certificate\"\nissuer = \"CN=Issuing CA 2, O=Grid\"\nserial = \"01\"\n";

/// A daemon's services with an active 3-of-3 key, its custodians and their
/// opened shares.
struct Fixture {
    _token: SoftHsmToken,
    _dir: tempfile::TempDir,
    services: Services,
    identities: Vec<CustodianIdentity>,
    shares: Vec<EnvelopeContents>,
    key_id: String,
}

async fn services(token: &SoftHsmToken, dir: &std::path::Path) -> Services {
    let hsm = Hsm::open(HsmConfig {
        module: token.module().to_owned(),
        token_label: token.label().to_owned(),
        pin: UserPin::from_env_value(token.user_pin().to_owned()),
        workers: 2,
    })
    .unwrap();
    let store = Store::open(dir).unwrap();
    let (audit_key, _) = hsm.get_or_create_audit_key().await.unwrap();
    let config = AuditConfig {
        origin: "rkm.local/audit".to_owned(),
        checkpoint_interval: Duration::from_secs(60),
        max_batch: 64,
    };
    let (audit, _) = AuditLog::open(store.clone(), hsm.clone(), audit_key, &config)
        .await
        .unwrap();
    let holding_key = hsm.holding_key().await.unwrap();
    Services {
        hsm,
        store,
        audit,
        audit_key,
        recovery: Some(Arc::new(RecoveryRuntime::new(
            holding_key,
            dir.join("artefacts"),
        ))),
        attestation_window_days: 90,
        two_person_rule: false,
        max_targets: crate::access::settings::DEFAULT_MAX_TARGETS,
    }
}

async fn fixture() -> Fixture {
    let token = SoftHsmToken::create("rkm-test").unwrap();
    use_token_in_this_process(&token);
    let dir = tempfile::tempdir().unwrap();
    let services = services(&token, dir.path()).await;
    let identities: Vec<_> = NAMES
        .iter()
        .zip(1u8..)
        .map(|(name, seed)| CustodianIdentity::generate(name, &[seed; 64]).unwrap())
        .collect();
    for identity in &identities {
        services
            .enrol_custodian("test", identity.card().to_json())
            .await
            .unwrap();
    }
    let key = services
        .create_key(
            "test",
            KeyRequest {
                label: "fleet".to_owned(),
                threshold: 3,
                custodians: NAMES.iter().map(|n| (*n).to_owned()).collect(),
                allow_single_custodian: false,
            },
        )
        .await
        .unwrap();
    let mut shares = Vec::new();
    for identity in &identities {
        let name = identity.name().to_owned();
        let now = unix_now();
        let signature = identity.sign(&envelope_fetch_message(&key.key_id, &name, now));
        let fetched = services
            .fetch_envelope(
                "test",
                key.key_id.clone(),
                name.clone(),
                now,
                signature.to_vec(),
            )
            .await
            .unwrap();
        let contents = envelope::open(&fetched.envelope, identity.age_identity()).unwrap();
        let commitment = share_commitment(&key.key_id, &contents.share, &contents.salt);
        let message = share_receipt_message(&key.key_id, &name, contents.share.x(), &commitment);
        let proof =
            PossessionKey::derive(&key.key_id, &contents.share, &contents.salt).prove(&message);
        services
            .submit_receipt(
                "test",
                key.key_id.clone(),
                name,
                identity.sign(&message).to_vec(),
                proof.to_vec(),
            )
            .await
            .unwrap();
        shares.push(contents);
    }
    let key = services.get_key(key.key_id).await.unwrap();
    assert_eq!(key.state, KeyState::Active);
    Fixture {
        _token: token,
        _dir: dir,
        services,
        identities,
        shares,
        key_id: key.key_id,
    }
}

impl Fixture {
    async fn open_recovery(&self) -> String {
        let request = OpenRequest {
            key: "fleet".to_owned(),
            request_toml: REQUEST.to_owned(),
            expires_in: Duration::from_secs(600),
            emergency: false,
            justification: String::new(),
            drill: false,
        };
        let manifest = tokio_stream::empty::<Result<Vec<u8>, CeremonyError>>();
        self.services
            .open_recovery("test", request, manifest)
            .await
            .unwrap()
            .ceremony_id
    }

    /// `who`'s approval of `ceremony_id` with a fresh nonce, signing over
    /// `commitment_of`'s commitment and sealing `share_of`'s share.
    async fn approval(
        &self,
        ceremony_id: &str,
        who: usize,
        commitment_of: usize,
        share_of: usize,
    ) -> ApprovalSubmission {
        let name = NAMES[who].to_owned();
        let (nonce, _) = self
            .services
            .approval_nonce("test", ceremony_id.to_owned(), name.clone())
            .await
            .unwrap();
        self.approval_with_nonce(ceremony_id, who, commitment_of, share_of, nonce)
            .await
    }

    async fn approval_with_nonce(
        &self,
        ceremony_id: &str,
        who: usize,
        commitment_of: usize,
        share_of: usize,
        nonce: Vec<u8>,
    ) -> ApprovalSubmission {
        let summary = self
            .services
            .get_recovery(ceremony_id.to_owned())
            .await
            .unwrap();
        let digest: [u8; 32] = summary.request_digest.as_slice().try_into().unwrap();
        let committed = &self.shares[commitment_of];
        let commitment = share_commitment(&self.key_id, &committed.share, &committed.salt);
        let nonce32: [u8; 32] = nonce.as_slice().try_into().unwrap();
        let message = approval_message(ceremony_id, &digest, &nonce32, &commitment);
        let recipient = age::x25519::Recipient::from_str(&summary.ceremony_recipient).unwrap();
        let sealed = envelope::seal(&self.shares[share_of], &recipient).unwrap();
        ApprovalSubmission {
            ceremony_id: ceremony_id.to_owned(),
            custodian: NAMES[who].to_owned(),
            nonce,
            commitment: commitment.to_vec(),
            signature: self.identities[who].sign(&message).to_vec(),
            sealed_share: sealed,
        }
    }

    async fn refusal(&self, approval: ApprovalSubmission) -> CeremonyError {
        self.services.approve("test", approval).await.unwrap_err()
    }
}

#[tokio::test]
async fn approval_rules_refuse_each_bad_approval_and_keep_the_good_ones() {
    let fixture = fixture().await;
    let ceremony = fixture.open_recovery().await;

    let alice = fixture.approval(&ceremony, 0, 0, 0).await;
    let alice_nonce = alice.nonce.clone();
    let approved = fixture
        .services
        .approve("test", alice.clone())
        .await
        .unwrap();
    assert_eq!(approved.approvals.len(), 1);

    let again = fixture
        .refusal(fixture.approval(&ceremony, 0, 0, 0).await)
        .await;
    assert!(
        matches!(&again, CeremonyError::FailedPrecondition(m) if m.contains("has already approved")),
        "{again}"
    );

    let borrowed = fixture
        .approval_with_nonce(&ceremony, 1, 1, 1, alice_nonce)
        .await;
    let borrowed = fixture.refusal(borrowed).await;
    assert!(
        matches!(&borrowed, CeremonyError::PermissionDenied(m) if m.contains("custodian \"alice\", not this one")),
        "{borrowed}"
    );

    let not_theirs = fixture
        .refusal(fixture.approval(&ceremony, 1, 2, 1).await)
        .await;
    assert!(
        matches!(&not_theirs, CeremonyError::InvalidArgument(m) if m.contains("names a share commitment that is not theirs")),
        "{not_theirs}"
    );

    let other_share = fixture
        .refusal(fixture.approval(&ceremony, 1, 1, 2).await)
        .await;
    assert!(
        matches!(&other_share, CeremonyError::InvalidArgument(m) if m.contains("\"bob\" fails its commitment")),
        "{other_share}"
    );

    let bob = fixture.approval(&ceremony, 1, 1, 1).await;
    let approved = fixture.services.approve("test", bob).await.unwrap();
    assert_eq!(approved.approvals.len(), 2, "the refusals kept nothing");
    assert_eq!(approved.state, RecoveryState::Open);
}

#[tokio::test]
async fn cancelled_ceremony_takes_no_approval_and_cannot_be_cancelled_twice() {
    let fixture = fixture().await;
    let ceremony = fixture.open_recovery().await;
    let carol = fixture.approval(&ceremony, 2, 2, 2).await;
    let cancelled = fixture
        .services
        .cancel_recovery("test", ceremony.clone(), "drill postponed".to_owned())
        .await
        .unwrap();
    assert_eq!(cancelled.state, RecoveryState::Cancelled);

    let late = fixture.refusal(carol).await;
    assert!(
        matches!(&late, CeremonyError::FailedPrecondition(m) if m.contains("is cancelled; it takes no more approvals")),
        "{late}"
    );
    let twice = fixture
        .services
        .cancel_recovery("test", ceremony.clone(), "again".to_owned())
        .await
        .unwrap_err();
    assert!(
        twice.to_string().contains("can no longer be cancelled"),
        "{twice}"
    );
}
