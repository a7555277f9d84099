//! Which audit key rkm trusts: parsing a key the user gives, showing its
//! fingerprint, trusting rkmd's key on first use, and the one rule that picks
//! the key a custodian's stored key record is verified with (the pin in the
//! share directory).

use crate::connect::stubs;
use anyhow::Context as _;
use rkm_proto::checkpoint::VerifierKey;
use rkm_proto::fingerprint::fingerprint;
use rkm_proto::key_record::SignedKeyRecord;
use rkm_proto::v1::GetAuditKeyRequest;
use rkm_proto::v1::audit_service_client::AuditServiceClient;
use tonic::transport::Channel;

use crate::exit::{RpcResultExt as _, VerificationFailed};
use crate::share_store::{ShareDir, TRUSTED_KEYS_FILE};

/// Parses an audit key option for clap, so that a malformed key is a usage
/// error (exit 2).
///
/// # Errors
///
/// The string is not a C2SP Ed25519 verifier key; the message says where to
/// find the right one.
pub fn parse_audit_key(text: &str) -> Result<VerifierKey, String> {
    VerifierKey::parse(text.trim()).map_err(|error| {
        format!("{error}; `rkmd init` and `rkm status` print the audit key to pass here")
    })
}

/// Parses the `--audit-key` of `rkm share`, which is read only once the share
/// directory and identity are open, so a malformed key ends the command
/// (exit 1) rather than its parsing.
///
/// # Errors
///
/// The string is not a verifier key.
pub fn parse_given_audit_key(text: &str) -> anyhow::Result<VerifierKey> {
    VerifierKey::parse(text.trim()).map_err(|error| {
        anyhow::anyhow!(
            "--audit-key {:?} is not a verifier key: {error}; `rkmd init` and `rkm status` print it",
            text.trim()
        )
    })
}

/// The audit key's fingerprint, as `rkmd init` prints it for comparison.
pub fn key_fingerprint(key: &VerifierKey) -> String {
    fingerprint(&key.public_key())
}

/// rkmd's audit key and origin, checked against the key the user trusts.
#[derive(Debug)]
pub struct TrustedLog {
    /// The key checkpoints must be signed with.
    pub key: VerifierKey,
    /// The origin checkpoints must name.
    pub origin: String,
}

/// rkmd's audit key as it states it, and the origin it names for its log.
async fn daemon_audit_key(
    client: &mut AuditServiceClient<Channel>,
    request: tonic::Request<GetAuditKeyRequest>,
) -> anyhow::Result<(VerifierKey, String)> {
    let response = client
        .get_audit_key(request)
        .await
        .rpc("asking rkmd for its audit key")?
        .into_inner();
    let key = VerifierKey::parse(&response.verifier_key).map_err(|error| {
        VerificationFailed::error(format!(
            "rkmd's audit key {:?} is not a valid verifier key: {error}",
            response.verifier_key
        ))
    })?;
    Ok((key, response.origin))
}

/// Asks rkmd for its audit key and checks it against `trusted`, the key the
/// user gave or one already on file. Without one, trusts rkmd's key on first
/// use and says so on stderr, with the fingerprint to compare.
///
/// # Errors
///
/// rkmd cannot be asked; its key is malformed; or it differs from `trusted`
/// ([`VerificationFailed`]).
pub async fn trust_daemon_key(
    client: &mut AuditServiceClient<Channel>,
    trusted: Option<(&VerifierKey, &str)>,
) -> anyhow::Result<TrustedLog> {
    let (daemon_key, origin) =
        daemon_audit_key(client, tonic::Request::new(GetAuditKeyRequest {})).await?;
    if origin != daemon_key.name() {
        return Err(VerificationFailed::error(format!(
            "rkmd's log origin {origin:?} is not the name of its audit key {:?}",
            daemon_key.name()
        )));
    }
    match trusted {
        Some((key, source)) if *key != daemon_key => Err(VerificationFailed::error(format!(
            "rkmd's audit key is {daemon_key} (fingerprint {}), not the trusted key {key} from {source} (fingerprint {}): refusing to trust another log's key",
            key_fingerprint(&daemon_key),
            key_fingerprint(key),
        ))),
        Some(_) => Ok(TrustedLog {
            key: daemon_key,
            origin,
        }),
        None => {
            eprintln!(
                "rkm: trusting rkmd's audit key on first use: {daemon_key}\nrkm: fingerprint {} — compare it with the one `rkmd init` printed, and pass --audit-key to pin it",
                key_fingerprint(&daemon_key)
            );
            Ok(TrustedLog {
                key: daemon_key,
                origin,
            })
        }
    }
}

/// Refuses `key` if the share directory pins another key for `origin`;
/// returns whether a pin was found.
fn check_pin(
    dir: &ShareDir,
    origin: &str,
    key: &VerifierKey,
    source: &str,
) -> anyhow::Result<bool> {
    match dir.pinned_audit_key(origin)? {
        Some(pinned) if pinned != *key => Err(VerificationFailed::error(format!(
            "{} pins audit key {pinned} (fingerprint {}) for {origin:?}, but {source} is {key} (fingerprint {}): refusing. If this is another rkmd, use another --share-dir; if rkmd's audit key was really replaced, remove the pin after checking the new fingerprint",
            dir.path().join(TRUSTED_KEYS_FILE).display(),
            key_fingerprint(&pinned),
            key_fingerprint(key),
        ))),
        Some(_) => Ok(true),
        None => Ok(false),
    }
}

/// The audit key a share being fetched is verified with: `given`
/// (`--audit-key`), else rkmd's, trusted on first use and said so. Either
/// must be the key the share directory pins for its origin.
///
/// # Errors
///
/// `given` is malformed; rkmd cannot be asked or states a malformed key; the
/// key differs from the pin ([`VerificationFailed`]).
pub async fn audit_key_for_fetch(
    given: Option<&str>,
    dir: &ShareDir,
    channel: Channel,
    identity: &rkm_proto::identity::CustodianIdentity,
) -> anyhow::Result<VerifierKey> {
    if let Some(text) = given {
        let key = parse_given_audit_key(text)?;
        check_pin(dir, key.name(), &key, "--audit-key")?;
        return Ok(key);
    }
    let request = crate::custodian_auth::signed_request(
        &channel,
        identity,
        crate::custodian_auth::method::GET_AUDIT_KEY,
        GetAuditKeyRequest {},
    )
    .await?;
    let (key, _) = daemon_audit_key(&mut stubs::audit(channel), request).await?;
    if !check_pin(dir, key.name(), &key, "rkmd's audit key")? {
        eprintln!(
            "rkm: trusting rkmd's audit key on first use: {key}\nrkm: fingerprint {} — compare it with the one `rkmd init` printed; {} will pin it",
            key_fingerprint(&key),
            dir.path().join(TRUSTED_KEYS_FILE).display()
        );
    }
    Ok(key)
}

/// The audit key a stored key record is verified with — the one rule for
/// `share verify` and `recovery approve`.
///
/// `given` (`--audit-key`) must agree with the directory's pin, both for its
/// own origin and for the origin the record names; without `given`, the pin
/// for the record's origin. Nothing is trusted on first use here: the pin was
/// set when the share was fetched, from a key the custodian checked.
///
/// The pin is looked up by the origin the record names, i.e. the rkmd that
/// signed it when the share was fetched. After a restore into another rkmd
/// (another HSM, another audit key) that pin is still the right trust root:
/// the record, the share and the custodian are unchanged, and the new rkmd's
/// audit key plays no part in what the custodian signs.
///
/// # Errors
///
/// The record names a malformed key, or `given` differs from a pin
/// ([`VerificationFailed`]); no key is given and none is pinned.
pub fn stored_record_audit_key(
    given: Option<&VerifierKey>,
    dir: &ShareDir,
    signed: &SignedKeyRecord,
) -> anyhow::Result<VerifierKey> {
    let stated = VerifierKey::parse(&signed.audit_verifier_key).map_err(|error| {
        VerificationFailed::error(format!(
            "the stored key record names a bad audit key: {error}"
        ))
    })?;
    match given {
        Some(key) => {
            check_pin(dir, key.name(), key, "--audit-key")?;
            if stated.name() != key.name() {
                check_pin(dir, stated.name(), key, "--audit-key")?;
            }
            Ok(key.clone())
        }
        None => dir.pinned_audit_key(stated.name())?.with_context(|| {
            format!(
                "{} pins no audit key for {:?}: give --audit-key (as `rkmd init` printed it; for a restored key, the old rkmd's)",
                dir.path().join(TRUSTED_KEYS_FILE).display(),
                stated.name()
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::{Exit, classify};
    use crate::share_store::ShareDirArgs;

    fn key(name: &str, seed: u8) -> VerifierKey {
        let public = ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
            .verifying_key()
            .to_bytes();
        VerifierKey::new(name, &public).unwrap()
    }

    fn record_signed_by(key: &VerifierKey) -> SignedKeyRecord {
        SignedKeyRecord {
            record: Vec::new(),
            signature: [0; 64],
            audit_verifier_key: key.to_string(),
        }
    }

    fn share_dir(dir: &tempfile::TempDir) -> ShareDir {
        ShareDirArgs {
            share_dir: Some(dir.path().join("shares")),
        }
        .resolve()
        .unwrap()
    }

    #[test]
    fn stored_record_without_a_given_key_uses_the_pin_and_refuses_without_one() {
        let temp = tempfile::tempdir().unwrap();
        let dir = share_dir(&temp);
        let audit = key("rkm.local/audit", 1);
        let record = record_signed_by(&audit);
        let error = stored_record_audit_key(None, &dir, &record).unwrap_err();
        assert!(error.to_string().contains("pins no audit key"), "{error:#}");
        dir.pin_audit_key(&audit).unwrap();
        assert_eq!(stored_record_audit_key(None, &dir, &record).unwrap(), audit);
    }

    #[test]
    fn a_given_key_must_match_the_pin_of_its_origin() {
        let temp = tempfile::tempdir().unwrap();
        let dir = share_dir(&temp);
        let audit = key("rkm.local/audit", 1);
        let other = key("rkm.local/audit", 2);
        let record = record_signed_by(&audit);
        // Nothing pinned yet: the given key is taken.
        assert_eq!(
            stored_record_audit_key(Some(&other), &dir, &record).unwrap(),
            other
        );
        dir.pin_audit_key(&audit).unwrap();
        assert_eq!(
            stored_record_audit_key(Some(&audit), &dir, &record).unwrap(),
            audit
        );
        let error = stored_record_audit_key(Some(&other), &dir, &record).unwrap_err();
        assert_eq!(classify(&error), Exit::VerificationFailed);
        assert!(error.to_string().contains("pins audit key"), "{error:#}");
    }

    #[test]
    fn a_given_key_of_another_origin_cannot_bypass_the_pin_of_the_record() {
        let temp = tempfile::tempdir().unwrap();
        let dir = share_dir(&temp);
        let audit = key("rkm.local/audit", 1);
        let elsewhere = key("elsewhere.example/audit", 3);
        let record = record_signed_by(&audit);
        dir.pin_audit_key(&audit).unwrap();
        let error = stored_record_audit_key(Some(&elsewhere), &dir, &record).unwrap_err();
        assert_eq!(classify(&error), Exit::VerificationFailed);
        assert!(error.to_string().contains("pins audit key"), "{error:#}");
    }

    #[test]
    fn a_record_naming_a_malformed_audit_key_is_refused() {
        let temp = tempfile::tempdir().unwrap();
        let dir = share_dir(&temp);
        let record = SignedKeyRecord {
            record: Vec::new(),
            signature: [0; 64],
            audit_verifier_key: "not a key".to_owned(),
        };
        let error = stored_record_audit_key(None, &dir, &record).unwrap_err();
        assert_eq!(classify(&error), Exit::VerificationFailed);
    }
}
