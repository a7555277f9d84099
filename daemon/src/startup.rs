//! What `rkmd init` and `rkmd serve` share: opening the store and the HSM, and
//! binding the two to each other through the audit key.

use rkm_proto::fingerprint::fingerprint;

use crate::config::Settings;
use crate::error::DaemonError;
use crate::hsm::{AuditKey, Hsm, HsmConfig};
use crate::store::Store;

/// Meta key of the audit public key this database belongs to.
const AUDIT_PUBLIC_KEY: &str = "audit_public_key";

/// Opens the store (creating and migrating it) and the HSM.
///
/// # Errors
/// Configuration, store or HSM failures, each saying what to do.
pub async fn open(settings: &Settings) -> Result<(Store, Hsm), DaemonError> {
    settings.validate()?;
    let pin = settings.read_pin()?;
    let store = Store::open(&settings.state_dir)?;
    let config = HsmConfig {
        module: settings.hsm.module.clone(),
        token_label: settings.hsm.token_label.clone(),
        pin,
        workers: settings.hsm.workers,
    };
    let hsm = tokio::task::spawn_blocking(move || Hsm::open(config))
        .await
        .map_err(|_| crate::hsm::HsmError::ShutDown)??;
    Ok((store, hsm))
}

/// Outcome of [`initialise`].
#[derive(Debug)]
pub struct Initialised {
    pub audit_key: AuditKey,
    /// Whether this run generated the audit key (false: it existed already).
    pub created: bool,
}

/// Creates the audit key if the token has none and binds the database to it.
/// An existing audit key is never replaced.
///
/// # Errors
/// The database is bound to a different audit key, or the HSM fails.
pub async fn initialise(store: &Store, hsm: &Hsm) -> Result<Initialised, DaemonError> {
    let stored = store.meta(AUDIT_PUBLIC_KEY).await?;
    let (audit_key, created) = match stored {
        Some(_) => {
            let key = hsm
                .find_audit_key()
                .await?
                .ok_or_else(|| DaemonError::AuditKeyMissing {
                    label: hsm.description().label.clone(),
                })?;
            (key, false)
        }
        None => hsm.get_or_create_audit_key().await?,
    };
    check_binding(stored.as_deref(), &audit_key, hsm)?;
    if stored.is_none() {
        store
            .set_meta(AUDIT_PUBLIC_KEY, audit_key.public_key.to_vec())
            .await?;
    }
    Ok(Initialised { audit_key, created })
}

/// The audit key of an initialised state directory, checked against the token.
///
/// # Errors
/// The state is not initialised, or the token's audit key is missing or
/// another one.
pub async fn bound_audit_key(
    settings: &Settings,
    store: &Store,
    hsm: &Hsm,
) -> Result<AuditKey, DaemonError> {
    let stored =
        store
            .meta(AUDIT_PUBLIC_KEY)
            .await?
            .ok_or_else(|| DaemonError::NotInitialised {
                state_dir: settings.state_dir.clone(),
            })?;
    let audit_key = hsm
        .find_audit_key()
        .await?
        .ok_or_else(|| DaemonError::AuditKeyMissing {
            label: hsm.description().label.clone(),
        })?;
    check_binding(Some(&stored), &audit_key, hsm)?;
    Ok(audit_key)
}

fn check_binding(
    stored: Option<&[u8]>,
    audit_key: &AuditKey,
    hsm: &Hsm,
) -> Result<(), DaemonError> {
    match stored {
        Some(stored) if stored != audit_key.public_key.as_slice() => {
            Err(DaemonError::AuditKeyMismatch {
                label: hsm.description().label.clone(),
                token_fingerprint: fingerprint(&audit_key.public_key),
                store_fingerprint: fingerprint(stored),
            })
        }
        _ => Ok(()),
    }
}
