//! The HSM layer against a real SoftHSM2 token, one fresh token per test.

use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;
use rkm_daemon::hsm::{Hsm, HsmConfig, HsmError};
use rkm_daemon::secrets::{KekBytes, UserPin};
use rkm_tests::SoftHsmToken;
use rkm_tests::env::use_token_in_this_process;
use sha2::{Digest as _, Sha256};

fn open(token: &SoftHsmToken, workers: usize) -> Result<Hsm, HsmError> {
    Hsm::open(HsmConfig {
        module: token.module().to_owned(),
        token_label: token.label().to_owned(),
        pin: UserPin::from_env_value(token.user_pin().to_owned()),
        workers,
    })
}

fn fresh_hsm(workers: usize) -> (SoftHsmToken, Hsm) {
    let token = SoftHsmToken::create("rkm-test").unwrap();
    use_token_in_this_process(&token);
    let hsm = open(&token, workers).unwrap();
    (token, hsm)
}

fn verify(spki: &[u8], digest: &[u8; 32], signature: &[u8; 64]) -> Signature {
    let key = VerifyingKey::from_public_key_der(spki).unwrap();
    let signature = Signature::from_slice(signature).unwrap();
    key.verify_prehash(digest, &signature)
        .expect("the signature verifies off the HSM");
    signature
}

/// Generates, wraps and destroys a key, then unwraps it again under a KEK
/// rebuilt from the same 32 bytes, as a recovery does.
async fn wrapped_key(hsm: &Hsm) -> (Vec<u8>, Vec<u8>, [u8; 32]) {
    let kek_bytes = hsm.random_kek().await.unwrap();
    let kek_copy = *kek_bytes.expose_secret();
    let generated = hsm.generate_recovery_key().await.unwrap();
    let kek = hsm.import_kek(kek_bytes).await.unwrap();
    let blob = hsm.wrap(kek, generated.private).await.unwrap();
    hsm.destroy(generated.private).await.unwrap();
    hsm.destroy(generated.public).await.unwrap();
    hsm.destroy(kek).await.unwrap();
    (generated.public_key_spki, blob, kek_copy)
}

#[tokio::test]
async fn wrap_destroy_unwrap_sign_verifies_off_hsm_with_low_s() {
    let (_token, hsm) = fresh_hsm(2);
    let (spki, blob, kek_copy) = wrapped_key(&hsm).await;
    assert_eq!(hsm.count_objects().await.unwrap().session_objects, 0);

    let kek = hsm
        .import_kek(KekBytes::from_bytes(&kek_copy))
        .await
        .unwrap();
    let key = hsm.unwrap(kek, blob).await.unwrap();
    hsm.destroy(kek).await.unwrap();
    for message in [b"replace trust anchor".as_slice(), b"second command"] {
        let digest: [u8; 32] = Sha256::digest(message).into();
        let signature = hsm.sign_digest(key, digest).await.unwrap();
        let parsed = verify(&spki, &digest, &signature);
        assert!(parsed.normalize_s().is_none(), "signature is not low-S");
    }
    hsm.destroy(key).await.unwrap();
    assert_eq!(hsm.count_objects().await.unwrap().session_objects, 0);
}

#[tokio::test]
async fn damaged_blob_or_wrong_kek_fails_to_unwrap_and_leaves_nothing() {
    let (_token, hsm) = fresh_hsm(1);
    let (_spki, blob, kek_copy) = wrapped_key(&hsm).await;

    let mut flipped = blob.clone();
    flipped[blob.len() / 2] ^= 0x01;
    let truncated = blob[..blob.len() - 8].to_vec();
    let mut other_kek = kek_copy;
    other_kek[0] ^= 0x80;
    let cases = [
        ("one flipped bit", flipped, kek_copy),
        ("truncated blob", truncated, kek_copy),
        ("wrong KEK", blob.clone(), other_kek),
    ];
    for (case, blob, kek_bytes) in cases {
        let kek = hsm
            .import_kek(KekBytes::from_bytes(&kek_bytes))
            .await
            .unwrap();
        let error = hsm.unwrap(kek, blob).await.unwrap_err();
        assert!(matches!(error, HsmError::UnwrapFailed), "{case}: {error:?}");
        assert!(
            error.to_string().contains("does not unwrap under this KEK"),
            "{case}: {error}"
        );
        hsm.destroy(kek).await.unwrap();
        let counts = hsm.count_objects().await.unwrap();
        assert_eq!(
            counts.session_objects, 0,
            "{case}: an object was left behind"
        );
    }
}

#[tokio::test]
async fn audit_key_is_created_once_and_signs_ed25519() {
    let (_token, hsm) = fresh_hsm(1);
    assert!(hsm.find_audit_key().await.unwrap().is_none());
    let (key, created) = hsm.get_or_create_audit_key().await.unwrap();
    assert!(created);
    let (again, created_again) = hsm.get_or_create_audit_key().await.unwrap();
    assert!(
        !created_again,
        "an existing audit key must never be replaced"
    );
    assert_eq!(key.public_key, again.public_key);

    let message = b"rkm checkpoint\n1\nroot\n".to_vec();
    let signature = hsm.sign_with_audit_key(key, message.clone()).await.unwrap();
    let verifying = ed25519_dalek::VerifyingKey::from_bytes(&key.public_key).unwrap();
    verifying
        .verify_strict(&message, &ed25519_dalek::Signature::from_bytes(&signature))
        .expect("audit signature verifies");
    assert_eq!(hsm.count_objects().await.unwrap().token_objects, 2);
}

#[tokio::test]
async fn many_concurrent_signs_across_workers_all_verify() {
    let (_token, hsm) = fresh_hsm(4);
    let generated = hsm.generate_recovery_key().await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..2_000u32 {
        let hsm = hsm.clone();
        tasks.spawn(async move {
            let digest: [u8; 32] = Sha256::digest(index.to_be_bytes()).into();
            let signature = hsm.sign_digest(generated.private, digest).await?;
            Ok::<_, HsmError>((digest, signature))
        });
    }
    let mut verified = 0;
    while let Some(result) = tasks.join_next().await {
        let (digest, signature) = result.unwrap().unwrap();
        verify(&generated.public_key_spki, &digest, &signature);
        verified += 1;
    }
    assert_eq!(verified, 2_000);
}

#[tokio::test]
async fn batched_signatures_come_back_in_order_low_s_and_fail_whole_on_a_gone_key() {
    let (_token, hsm) = fresh_hsm(2);
    let generated = hsm.generate_recovery_key().await.unwrap();
    let digests: Vec<[u8; 32]> = (0..300u32)
        .map(|index| Sha256::digest(index.to_be_bytes()).into())
        .collect();
    let signatures = hsm
        .sign_digests(generated.private, digests.clone())
        .await
        .unwrap();
    assert_eq!(signatures.len(), digests.len());
    for (digest, signature) in digests.iter().zip(&signatures) {
        let signature = verify(&generated.public_key_spki, digest, signature);
        assert!(signature.normalize_s().is_none(), "S is low");
    }
    assert!(
        hsm.sign_digests(generated.private, Vec::new())
            .await
            .unwrap()
            .is_empty()
    );

    hsm.destroy(generated.private).await.unwrap();
    let error = hsm
        .sign_digests(generated.private, digests)
        .await
        .expect_err("a destroyed key signs nothing");
    assert!(
        error.to_string().contains("ObjectHandleInvalid"),
        "the error names the missing object: {error}"
    );
}

#[test]
fn wrong_pin_unknown_label_and_missing_module_fail_with_what_to_do() {
    let token = SoftHsmToken::create("rkm-test").unwrap();
    use_token_in_this_process(&token);
    let wrong_pin = Hsm::open(HsmConfig {
        module: token.module().to_owned(),
        token_label: token.label().to_owned(),
        pin: UserPin::from_env_value("not-the-pin".to_owned()),
        workers: 1,
    })
    .unwrap_err();
    assert!(
        matches!(wrong_pin, HsmError::WrongPin { .. }),
        "{wrong_pin:?}"
    );

    let unknown = Hsm::open(HsmConfig {
        module: token.module().to_owned(),
        token_label: "no-such-token".to_owned(),
        pin: UserPin::from_env_value(token.user_pin().to_owned()),
        workers: 1,
    })
    .unwrap_err();
    let message = unknown.to_string();
    assert!(
        message.contains("no-such-token") && message.contains("\"rkm-test\""),
        "{message}"
    );

    let missing = Hsm::open(HsmConfig {
        module: token.dir().join("libmissing.so"),
        token_label: token.label().to_owned(),
        pin: UserPin::from_env_value(token.user_pin().to_owned()),
        workers: 1,
    })
    .unwrap_err();
    assert!(
        missing.to_string().contains("softhsm-config/install.sh"),
        "{missing}"
    );
}

#[tokio::test]
async fn held_shares_round_trip_and_any_change_or_other_context_fails() {
    let (_token, hsm) = fresh_hsm(2);
    let key = hsm.holding_key().await.unwrap();
    let again = hsm.holding_key().await.unwrap();
    let share = zeroize::Zeroizing::new((0u8..65).collect::<Vec<u8>>());
    let held = hsm
        .hold(key, share.clone(), b"cer-1\0alice".to_vec())
        .await
        .unwrap();
    assert!(
        !held.windows(16).any(|w| w == &share[..16]),
        "the plaintext shows through"
    );
    let released = hsm
        .release(again, held.clone(), b"cer-1\0alice".to_vec())
        .await
        .unwrap();
    assert_eq!(&released[..], &share[..]);

    let other_context = hsm.release(key, held.clone(), b"cer-1\0bob".to_vec()).await;
    assert!(
        matches!(other_context, Err(HsmError::HeldDataInvalid)),
        "{other_context:?}"
    );
    for index in [0, 12, held.len() - 1] {
        let mut changed = held.clone();
        changed[index] ^= 0x01;
        let result = hsm.release(key, changed, b"cer-1\0alice".to_vec()).await;
        assert!(
            matches!(result, Err(HsmError::HeldDataInvalid)),
            "byte {index}: {result:?}"
        );
    }
    // Only the persistent holding key is left as a token object.
    assert_eq!(hsm.count_objects().await.unwrap().token_objects, 1);
}
