//! What `rkmd init` and `rkmd serve` share: opening the store and the HSM, and
//! binding the two to each other through the audit key.

use rkm_proto::audit_entry::action;
use rkm_proto::fingerprint::fingerprint;

use crate::audit::{AuditLog, Event, SignedCheckpoint};
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
    let store = Store::open_with_limits(
        &settings.state_dir,
        settings.store.max_size_mb,
        settings.store.min_free_mb,
    )?;
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
    /// The checkpoint that covers the `daemon.init` entry.
    pub checkpoint: SignedCheckpoint,
}

/// Creates the audit key if the token has none, binds the database to it and
/// records the initialisation in the audit log. An existing audit key is
/// never replaced, and a token that already holds the checkpoint of another
/// log is refused.
///
/// # Errors
/// The database is bound to a different audit key, the store does not match
/// the token's checkpoint, or the HSM or store fails.
pub async fn initialise(
    settings: &Settings,
    store: &Store,
    hsm: &Hsm,
) -> Result<Initialised, DaemonError> {
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
    let (log, _) = AuditLog::open(
        store.clone(),
        hsm.clone(),
        audit_key,
        &settings.audit_config(),
    )
    .await?;
    let token = hsm.description();
    let event = Event::ok("rkmd", action::DAEMON_INIT)
        .detail("audit_key", fingerprint(&audit_key.public_key))
        .detail("audit_key_created", created.to_string())
        .detail("token_label", token.label.clone())
        .detail("token_serial", token.serial_number.clone())
        .detail("version", env!("CARGO_PKG_VERSION"));
    let bind = stored.is_none();
    let public_key = audit_key.public_key.to_vec();
    log.record_with(event, move |tx| {
        if bind {
            crate::store::insert_meta(tx, AUDIT_PUBLIC_KEY, &public_key)?;
        }
        Ok::<_, crate::store::StoreError>(())
    })
    .await?;
    let checkpoint = log.checkpoint().await?;
    Ok(Initialised {
        audit_key,
        created,
        checkpoint,
    })
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
