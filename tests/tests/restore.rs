//! The key survives the loss of the daemon, its database and its HSM: any
//! quorum of custodians, with nothing but their own files (identity, stored
//! share, key record copy), reconstitutes the KEK outside rkmd, unwraps the
//! recovery key into a fresh, different SoftHSM token and signs with it; no
//! smaller set of custodians can.

use std::path::Path;

use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePublicKey as _};
use rkm_daemon::hsm::{Hsm, HsmConfig, HsmError};
use rkm_daemon::secrets::{KekBytes, UserPin};
use rkm_proto::checkpoint::VerifierKey;
use rkm_proto::kek_check::kek_matches;
use rkm_proto::key_record::{KeyRecord, SignedKeyRecord};
use rkm_proto::secret::Share;
use rkm_proto::shamir;
use rkm_proto::sharing::wrap::unwrap_pkcs8_strict;
use rkm_tests::custodians::{
    Custodian, NAMES, audit_key, custodians, enrol_and_create_key, fetch_all, pick_shares, subsets,
};
use rkm_tests::env::use_token_in_this_process;
use rkm_tests::{Daemon, SoftHsmToken};
use sha2::{Digest as _, Sha256};

/// Runs a 3-of-5 key generation ceremony with the real CLI (`custodian
/// init`, `custodian enrol`, `key create`, `share fetch`); returns each
/// custodian's files and the key id.
fn ceremony(daemon: &Daemon, dir: &Path) -> (Vec<Custodian>, String) {
    let custodians = custodians(dir, &NAMES);
    for custodian in &custodians {
        custodian.init(daemon);
    }
    let key_id = enrol_and_create_key(daemon, &custodians, "fleet-root", 3);
    fetch_all(daemon, &custodians, "fleet-root", &[]);
    (custodians, key_id)
}

#[test]
fn every_quorum_restores_the_key_into_another_hsm_and_no_smaller_set_does() {
    // The "other HSM": a fresh token in its own directory, used in-process.
    let other = SoftHsmToken::create("replacement-hsm").unwrap();
    use_token_in_this_process(&other);

    let daemon = Daemon::start().unwrap();
    let files = tempfile::tempdir().unwrap();
    let (custodians, key_id) = ceremony(&daemon, files.path());
    let audit_key = VerifierKey::parse(&audit_key(&daemon)).unwrap();
    drop(daemon); // the daemon, its database and its HSM are gone from here on

    // What each custodian's files give: their share and key record copy.
    let shares: Vec<Share> = custodians.iter().map(|c| c.held_share(&key_id)).collect();
    let copies: Vec<SignedKeyRecord> = custodians
        .iter()
        .map(|c| c.signed_key_record(&key_id))
        .collect();
    let record: KeyRecord = copies[0]
        .verify(&audit_key)
        .expect("the key record copy verifies");
    for copy in &copies {
        assert_eq!(
            copy.verify(&audit_key).unwrap(),
            record,
            "every custodian holds the same record"
        );
    }
    let spki = VerifyingKey::from_public_key_der(&record.public_key_spki).unwrap();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let hsm = Hsm::open(HsmConfig {
        module: other.module().to_owned(),
        token_label: other.label().to_owned(),
        pin: UserPin::from_env_value(other.user_pin().to_owned()),
        workers: 1,
    })
    .unwrap();
    runtime.block_on(async {
        for quorum in subsets(5, 3) {
            let kek = shamir::combine(&pick_shares(&shares, &quorum), 3).unwrap();
            assert!(
                kek_matches(&kek, &record.kek_check_value),
                "quorum {quorum:?}: KEK check value"
            );
            // Outside any HSM (aes-kw, and DER read strictly): exactly one
            // PrivateKeyInfo of the recovery key, nothing after it.
            let der = unwrap_pkcs8_strict(&kek, &record.wrapped_key)
                .unwrap_or_else(|e| panic!("quorum {quorum:?}: {e}"));
            let private = p256::SecretKey::from_pkcs8_der(&der).unwrap();
            assert_eq!(
                private.public_key().to_public_key_der().unwrap().as_bytes(),
                record.public_key_spki.as_slice(),
                "quorum {quorum:?}: the wrapped key is the record's key"
            );
            let kek_object = hsm
                .import_kek(KekBytes::from_bytes(kek.expose_secret()))
                .await
                .unwrap();
            let key = hsm
                .unwrap(kek_object, record.wrapped_key.clone())
                .await
                .unwrap();
            let digest: [u8; 32] = Sha256::digest(format!("drill {quorum:?}")).into();
            let signature = hsm.sign_digest(key, digest).await.unwrap();
            spki.verify_prehash(&digest, &Signature::from_slice(&signature).unwrap())
                .unwrap_or_else(|e| panic!("quorum {quorum:?}: signature does not verify: {e}"));
            hsm.destroy(key).await.unwrap();
            hsm.destroy(kek_object).await.unwrap();
        }
        for pair in subsets(5, 2) {
            let shares = pick_shares(&shares, &pair);
            assert!(
                shamir::combine(&shares, 3).is_err(),
                "two shares are not a quorum of three"
            );
            let wrong = shamir::combine(&shares, 2).unwrap();
            assert!(
                !kek_matches(&wrong, &record.kek_check_value),
                "pair {pair:?} reconstituted the KEK"
            );
            let kek_object = hsm
                .import_kek(KekBytes::from_bytes(wrong.expose_secret()))
                .await
                .unwrap();
            let unwrapped = hsm.unwrap(kek_object, record.wrapped_key.clone()).await;
            assert!(
                matches!(unwrapped, Err(HsmError::UnwrapFailed)),
                "pair {pair:?}: {unwrapped:?}"
            );
            hsm.destroy(kek_object).await.unwrap();
        }
        assert_eq!(hsm.count_objects().await.unwrap().session_objects, 0);
    });
}
