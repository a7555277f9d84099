//! The key survives the loss of the daemon, its database and its HSM: any
//! quorum of custodians, with nothing but their own files (identity, stored
//! share, key record copy), reconstitutes the KEK outside rkmd, unwraps the
//! recovery key into a fresh, different SoftHSM token and signs with it; no
//! smaller set of custodians can.

use std::path::{Path, PathBuf};
use std::process::Output;

use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;
use rkm_daemon::hsm::{Hsm, HsmConfig, HsmError};
use rkm_daemon::secrets::{KekBytes, UserPin};
use rkm_proto::checkpoint::VerifierKey;
use rkm_proto::envelope;
use rkm_proto::identity::CustodianIdentity;
use rkm_proto::kek_check::kek_matches;
use rkm_proto::key_record::{KeyRecord, SignedKeyRecord};
use rkm_proto::secret::Share;
use rkm_proto::shamir;
use rkm_tests::env::use_token_in_this_process;
use rkm_tests::{Daemon, SoftHsmToken};
use secrecy::SecretString;
use sha2::{Digest as _, Sha256};

const NAMES: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];

fn ok(output: Output, what: &str) -> Output {
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

struct Custodian {
    identity_file: PathBuf,
    passphrase: String,
    share_dir: PathBuf,
}

/// Runs a 3-of-5 key generation ceremony with the real CLI; returns each
/// custodian's files.
fn ceremony(daemon: &Daemon, dir: &Path) -> Vec<Custodian> {
    let mut custodians = Vec::new();
    for name in NAMES {
        let identity_file = dir.join(format!("{name}.identity"));
        let card = dir.join(format!("{name}.card"));
        let passphrase_file = dir.join(format!("{name}.passphrase"));
        let passphrase = format!("correct horse battery {name}");
        std::fs::write(&passphrase_file, &passphrase).unwrap();
        let share_dir = dir.join(format!("{name}-shares"));
        let args = [
            "custodian",
            "init",
            "--name",
            name,
            "--identity",
            identity_file.to_str().unwrap(),
            "--card",
            card.to_str().unwrap(),
            "--passphrase-file",
            passphrase_file.to_str().unwrap(),
        ];
        ok(daemon.rkm(&args).unwrap(), "custodian init");
        ok(
            daemon
                .rkm(&["custodian", "enrol", card.to_str().unwrap()])
                .unwrap(),
            "custodian enrol",
        );
        custodians.push((name, identity_file, passphrase_file, passphrase, share_dir));
    }
    ok(
        daemon
            .rkm(&[
                "key",
                "create",
                "--label",
                "fleet-root",
                "--threshold",
                "3",
                "--custodians",
                &NAMES.join(","),
            ])
            .unwrap(),
        "key create",
    );
    custodians
        .into_iter()
        .map(
            |(_, identity_file, passphrase_file, passphrase, share_dir)| {
                let args = [
                    "share",
                    "fetch",
                    "--key",
                    "fleet-root",
                    "--identity",
                    identity_file.to_str().unwrap(),
                    "--passphrase-file",
                    passphrase_file.to_str().unwrap(),
                    "--share-dir",
                    share_dir.to_str().unwrap(),
                ];
                ok(daemon.rkm(&args).unwrap(), "share fetch");
                Custodian {
                    identity_file,
                    passphrase,
                    share_dir,
                }
            },
        )
        .collect()
}

/// What one custodian's files give: their share and their key record copy.
fn held_share(custodian: &Custodian) -> (Share, SignedKeyRecord) {
    let key_dir = std::fs::read_dir(&custodian.share_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.is_dir())
        .expect("share fetch stored a key directory");
    let identity = CustodianIdentity::decrypt(
        &std::fs::read(&custodian.identity_file).unwrap(),
        &SecretString::from(custodian.passphrase.clone()),
    )
    .unwrap();
    let sealed = std::fs::read(key_dir.join("share.age")).unwrap();
    let contents = envelope::open(&sealed, identity.age_identity()).unwrap();
    let record = SignedKeyRecord::from_file(
        &std::fs::read_to_string(key_dir.join("key-record.json")).unwrap(),
    )
    .unwrap();
    (contents.share, record)
}

fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
    (0u32..1 << n)
        .filter(|mask| mask.count_ones() as usize == k)
        .map(|mask| (0..n).filter(|i| mask & (1 << i) != 0).collect())
        .collect()
}

#[test]
fn every_quorum_restores_the_key_into_another_hsm_and_no_smaller_set_does() {
    // The "other HSM": a fresh token in its own directory, used in-process.
    let other = SoftHsmToken::create("replacement-hsm").unwrap();
    use_token_in_this_process(&other);

    let daemon = Daemon::start().unwrap();
    let files = tempfile::tempdir().unwrap();
    let custodians = ceremony(&daemon, files.path());
    let audit_key = {
        let status = ok(
            daemon.rkm(&["status", "--output", "json"]).unwrap(),
            "status",
        );
        let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        VerifierKey::parse(json["audit_key"]["verifier_key"].as_str().unwrap()).unwrap()
    };
    drop(daemon); // the daemon, its database and its HSM are gone from here on

    let held: Vec<(Share, SignedKeyRecord)> = custodians.iter().map(held_share).collect();
    let record: KeyRecord = held[0]
        .1
        .verify(&audit_key)
        .expect("the key record copy verifies");
    for (_, copy) in &held {
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
            let shares: Vec<Share> = quorum
                .iter()
                .map(|&i| Share::new(held[i].0.x(), held[i].0.expose_y()).unwrap())
                .collect();
            let kek = shamir::combine(&shares, 3).unwrap();
            assert!(
                kek_matches(&kek, &record.kek_check_value),
                "quorum {quorum:?}: KEK check value"
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
            let shares: Vec<Share> = pair
                .iter()
                .map(|&i| Share::new(held[i].0.x(), held[i].0.expose_y()).unwrap())
                .collect();
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
