//! The worker's lost-session path against a real SoftHSM2 token: the login is
//! taken from under the worker (C_Logout is per application, so logging out
//! any session of this process logs out the worker's too), and what the
//! caller then sees is checked — the way rust-cryptoki's
//! `drop_error_handling.rs` tests failure on purpose, without a mock module.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use rkm_tests::SoftHsmToken;
use rkm_tests::env::use_token_in_this_process;

use super::{AuditKey, Hsm, HsmConfig, HsmError, Retry, ops, token};
use crate::secrets::{KekBytes, UserPin};

const MESSAGE: &[u8] = b"checkpoint after a lost session";

/// One worker, so the next job surely runs on the session that lost its login.
async fn one_worker_hsm() -> (SoftHsmToken, Hsm, AuditKey) {
    let token = SoftHsmToken::create("rkm-session-loss").unwrap();
    use_token_in_this_process(&token);
    let hsm = Hsm::open(HsmConfig {
        module: token.module().to_owned(),
        token_label: token.label().to_owned(),
        pin: UserPin::from_env_value(token.user_pin().to_owned()),
        workers: 1,
    })
    .unwrap();
    let (audit_key, _) = hsm.get_or_create_audit_key().await.unwrap();
    (token, hsm, audit_key)
}

/// Logs this process out of the token from a session of its own, as a token
/// that drops its logins (a reset, a fail-over) would.
fn log_out_under_the_worker(token: &SoftHsmToken, hsm: &Hsm) {
    let pkcs11 = hsm.inner.shared.current.read().unwrap().pkcs11.clone();
    let slot = token::find_slot(&pkcs11, token.label()).unwrap();
    let session = pkcs11.open_ro_session(slot).unwrap();
    session.logout().unwrap();
    session.close().unwrap();
}

fn assert_verifies(audit_key: &AuditKey, signature: &[u8; 64]) {
    VerifyingKey::from_bytes(&audit_key.public_key)
        .unwrap()
        .verify(MESSAGE, &Signature::from_bytes(signature))
        .expect("the audit signature verifies off the HSM");
}

#[tokio::test]
async fn lost_login_is_reopened_once_and_the_operation_succeeds_logged_in() {
    let (token, hsm, audit_key) = one_worker_hsm().await;
    log_out_under_the_worker(&token, &hsm);

    // A KEK is a private object: only a logged-in session may create it.
    let kek = hsm
        .import_kek(KekBytes::from_bytes(&[7; 32]))
        .await
        .expect("the operation runs again on a reopened, logged-in session");
    assert_eq!(
        hsm.count_objects().await.unwrap().session_objects,
        1,
        "the KEK exists once: the failed first attempt created nothing"
    );
    let found = hsm
        .find_audit_key()
        .await
        .unwrap()
        .expect("the reopened session sees private objects");
    assert_eq!(found.public_key, audit_key.public_key);
    let signature = hsm
        .sign_with_audit_key(found, MESSAGE.to_vec())
        .await
        .unwrap();
    assert_verifies(&audit_key, &signature);
    hsm.destroy(kek).await.unwrap();
}

#[tokio::test]
async fn session_lost_again_in_the_same_job_is_reported_and_the_next_job_reopens() {
    let (_token, hsm, _audit_key) = one_worker_hsm().await;
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&attempts);
    let kek = KekBytes::from_bytes(&[7; 32]);
    let lost_twice = hsm
        .submit(
            "import while the token drops every login",
            Retry::OnceAfterReopen,
            move |session| {
                counted.fetch_add(1, Ordering::SeqCst);
                session.logout()?;
                ops::import_kek(session, &kek)
            },
        )
        .await;

    assert_eq!(attempts.load(Ordering::SeqCst), 2, "reopened exactly once");
    let error = lost_twice.expect_err("a second loss is not retried");
    assert!(
        matches!(error, HsmError::SessionLost { operation } if operation == "import while the token drops every login"),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("check the HSM and run the step again"),
        "{error}"
    );
    let kek = hsm
        .import_kek(KekBytes::from_bytes(&[7; 32]))
        .await
        .expect("the next job runs on a fresh, logged-in session");
    assert_eq!(hsm.count_objects().await.unwrap().session_objects, 1);
    hsm.destroy(kek).await.unwrap();
}

#[tokio::test]
async fn lost_login_during_key_generation_is_reported_and_not_retried() {
    let (token, hsm, _audit_key) = one_worker_hsm().await;
    log_out_under_the_worker(&token, &hsm);

    let error = hsm
        .generate_recovery_key()
        .await
        .expect_err("key generation is never retried: the first attempt may have succeeded");
    assert!(
        matches!(
            error,
            HsmError::SessionLost {
                operation: "generate recovery key"
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        hsm.count_objects().await.unwrap().session_objects,
        0,
        "no key pair was generated on the reopened session"
    );

    // The session was reopened and logged in: the operator's next attempt works.
    let generated = hsm.generate_recovery_key().await.unwrap();
    assert!(!generated.public_key_spki.is_empty());
    hsm.destroy(generated.private).await.unwrap();
    hsm.destroy(generated.public).await.unwrap();
    assert_eq!(hsm.count_objects().await.unwrap().session_objects, 0);
}

#[tokio::test]
async fn a_session_key_from_before_a_reinitialisation_is_refused_not_confused_with_a_new_one() {
    let (_token, hsm, audit_key) = one_worker_hsm().await;
    hsm.supervise(audit_key);
    let before = hsm.generate_recovery_key().await.unwrap();
    super::health::recover(&hsm.inner.shared).expect("the token is there to re-initialise");

    // After C_Finalize/C_Initialize the module may hand out the same handle
    // numbers for new objects; the old key must not sign as whatever they are.
    let after = hsm.generate_recovery_key().await.unwrap();
    let error = hsm
        .sign_digest(before.private, [1; 32])
        .await
        .expect_err("a key of the old generation is gone");
    assert!(
        matches!(
            error,
            HsmError::ObjectLost {
                what: "recovery key"
            }
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("run the step from its start again"),
        "{error}"
    );
    hsm.sign_digest(after.private, [1; 32])
        .await
        .expect("a key of the new generation signs");
    // The audit key is found again by label in the new generation.
    let signature = hsm
        .sign_with_audit_key(audit_key, MESSAGE.to_vec())
        .await
        .unwrap();
    assert_verifies(&audit_key, &signature);
}
