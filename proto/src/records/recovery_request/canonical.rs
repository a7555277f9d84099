//! The canonical request custodians approve: its one JSON encoding, its
//! strict decoding, the description a custodian reads and its digest.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::anchor::{AnchorKind, anchor_kind};
use super::{
    CANONICAL_REQUEST_VERSION, Command, MAX_CANONICAL_REQUEST_LEN, MAX_INCIDENT_LEN,
    MAX_KEY_ID_LEN, MAX_REASON_LEN, REQUEST_DIGEST_LABEL, RecoveryRequest, RequestError,
    TargetsDigest, check_window,
};
use crate::encoding::field::invalid;
use crate::encoding::fingerprint::fingerprint;
use crate::encoding::hex::lower_hex;
use crate::encoding::text::{check_text, excerpt};

/// Whether a ceremony signs commands (recovery) or only a drill challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CeremonyKind {
    /// Signs one command per target.
    Recovery,
    /// Signs a drill challenge; never a command.
    Drill,
}

impl CeremonyKind {
    /// `recovery` or `drill`, as encoded.
    pub fn as_str(&self) -> &'static str {
        match self {
            CeremonyKind::Recovery => "recovery",
            CeremonyKind::Drill => "drill",
        }
    }
}

impl fmt::Display for CeremonyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The request custodians approve: the request file's contents, the key,
/// the kind of ceremony, the target commitment and the emergency flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalRequest {
    /// Recovery or drill.
    pub ceremony_kind: CeremonyKind,
    /// The recovery key asked to sign.
    pub key_id: String,
    /// What to sign.
    pub command: Command,
    /// Why.
    pub reason: String,
    /// Incident reference.
    pub incident: String,
    /// Start of the validity window, `YYYY-MM-DDTHH:MM:SSZ`.
    pub not_before: String,
    /// End of the validity window, `YYYY-MM-DDTHH:MM:SSZ`.
    pub not_after: String,
    /// Commitment to the targets.
    pub targets: TargetsDigest,
    /// Opened as an emergency.
    pub emergency: bool,
    /// Why it is an emergency; empty unless `emergency`.
    pub justification: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CanonicalJson {
    rkm_recovery_request: u64,
    ceremony_kind: String,
    key_id: String,
    command: CommandJson,
    reason: String,
    incident: String,
    not_before: String,
    not_after: String,
    targets: TargetsJson,
    emergency: bool,
    justification: String,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
enum CommandJson {
    ReplaceTrustAnchor {
        anchor_slot: u32,
        new_anchor: String,
    },
    RevokeCertificate {
        issuer: String,
        serial: String,
    },
    Custom {
        #[serde(rename = "type")]
        type_name: String,
        payload: String,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetsJson {
    count: u64,
    sha256: String,
}

#[derive(Deserialize)]
struct VersionOnly {
    rkm_recovery_request: u64,
}

impl CanonicalRequest {
    /// Builds and checks the canonical request for a parsed request file.
    ///
    /// # Errors
    ///
    /// Every error of [`CanonicalRequest::validate`].
    pub fn from_request(
        ceremony_kind: CeremonyKind,
        key_id: &str,
        request: &RecoveryRequest,
        targets: TargetsDigest,
        emergency: bool,
        justification: &str,
    ) -> Result<Self, RequestError> {
        let canonical = CanonicalRequest {
            ceremony_kind,
            key_id: key_id.to_owned(),
            command: request.command.clone(),
            reason: request.reason.clone(),
            incident: request.incident.clone(),
            not_before: request.not_before.clone(),
            not_after: request.not_after.clone(),
            targets,
            emergency,
            justification: justification.to_owned(),
        };
        canonical.validate()?;
        Ok(canonical)
    }

    /// Checks every field: the command, the texts, the key id (1..=64 bytes
    /// of printable ASCII), times in normalised UTC with `not_before <
    /// not_after`, at least one target for a recovery, and a justification
    /// exactly when `emergency`.
    ///
    /// # Errors
    ///
    /// [`RequestError::InvalidField`], [`RequestError::InvalidTime`],
    /// [`RequestError::EmptyWindow`], [`RequestError::NoTargets`],
    /// [`RequestError::MissingJustification`],
    /// [`RequestError::UnexpectedJustification`].
    pub fn validate(&self) -> Result<(), RequestError> {
        if self.key_id.is_empty()
            || self.key_id.len() > MAX_KEY_ID_LEN
            || !self.key_id.bytes().all(|b| (0x21..=0x7e).contains(&b))
        {
            return Err(invalid(
                "key_id",
                "it must be 1 to 64 bytes of printable ASCII without spaces",
            ));
        }
        self.command.validate()?;
        check_text("reason", &self.reason, MAX_REASON_LEN)?;
        check_text("incident", &self.incident, MAX_INCIDENT_LEN)?;
        check_window(&self.not_before, &self.not_after)?;
        if self.ceremony_kind == CeremonyKind::Recovery && self.targets.count == 0 {
            return Err(RequestError::NoTargets);
        }
        match (self.emergency, self.justification.is_empty()) {
            (true, true) => return Err(RequestError::MissingJustification),
            (false, false) => return Err(RequestError::UnexpectedJustification),
            (true, false) => check_text("justification", &self.justification, MAX_REASON_LEN)?,
            (false, true) => {}
        }
        Ok(())
    }

    /// The canonical encoding: compact JSON in this field order,
    /// `{"rkm_recovery_request":1,"ceremony_kind":"recovery"|"drill",
    /// "key_id":…,"command":{"kind":…,<parameters>},"reason":…,"incident":…,
    /// "not_before":…,"not_after":…,"targets":{"count":N,"sha256":"<hex>"},
    /// "emergency":bool,"justification":…}`; bytes as lowercase hex; command
    /// parameters `anchor_slot`, `new_anchor` | `issuer`, `serial` | `type`,
    /// `payload`.
    ///
    /// Call [`CanonicalRequest::validate`] first: an invalid request encodes,
    /// but [`CanonicalRequest::decode`] refuses it.
    pub fn encode(&self) -> Vec<u8> {
        let command = match &self.command {
            Command::ReplaceTrustAnchor {
                anchor_slot,
                new_anchor,
            } => CommandJson::ReplaceTrustAnchor {
                anchor_slot: *anchor_slot,
                new_anchor: hex::encode(new_anchor),
            },
            Command::RevokeCertificate { issuer, serial } => CommandJson::RevokeCertificate {
                issuer: issuer.clone(),
                serial: hex::encode(serial),
            },
            Command::Custom { type_name, payload } => CommandJson::Custom {
                type_name: type_name.clone(),
                payload: hex::encode(payload),
            },
        };
        let json = CanonicalJson {
            rkm_recovery_request: CANONICAL_REQUEST_VERSION,
            ceremony_kind: self.ceremony_kind.as_str().to_owned(),
            key_id: self.key_id.clone(),
            command,
            reason: self.reason.clone(),
            incident: self.incident.clone(),
            not_before: self.not_before.clone(),
            not_after: self.not_after.clone(),
            targets: TargetsJson {
                count: self.targets.count,
                sha256: hex::encode(self.targets.sha256),
            },
            emergency: self.emergency,
            justification: self.justification.clone(),
        };
        serde_json::to_vec(&json).expect("canonical request JSON serialises")
    }

    /// Decodes untrusted canonical request bytes: size first, then the
    /// version, then strict JSON (no unknown or duplicate fields), then
    /// [`CanonicalRequest::validate`], then that the input is exactly
    /// [`CanonicalRequest::encode`] of the result.
    ///
    /// # Errors
    ///
    /// [`RequestError::TooLarge`], [`RequestError::Malformed`],
    /// [`RequestError::UnsupportedVersion`], every error of
    /// [`CanonicalRequest::validate`], [`RequestError::NotCanonical`].
    pub fn decode(bytes: &[u8]) -> Result<Self, RequestError> {
        if bytes.len() > MAX_CANONICAL_REQUEST_LEN {
            return Err(RequestError::TooLarge {
                what: "canonical request",
                size: bytes.len(),
                max: MAX_CANONICAL_REQUEST_LEN,
            });
        }
        let malformed = |e: serde_json::Error| RequestError::Malformed(e.to_string());
        let version: VersionOnly = serde_json::from_slice(bytes).map_err(malformed)?;
        if version.rkm_recovery_request != CANONICAL_REQUEST_VERSION {
            return Err(RequestError::UnsupportedVersion {
                found: version.rkm_recovery_request,
            });
        }
        let json: CanonicalJson = serde_json::from_slice(bytes).map_err(malformed)?;
        let ceremony_kind = match json.ceremony_kind.as_str() {
            "recovery" => CeremonyKind::Recovery,
            "drill" => CeremonyKind::Drill,
            other => {
                return Err(invalid(
                    "ceremony_kind",
                    format!("{:?} is neither \"recovery\" nor \"drill\"", excerpt(other)),
                ));
            }
        };
        let command = match json.command {
            CommandJson::ReplaceTrustAnchor {
                anchor_slot,
                new_anchor,
            } => Command::ReplaceTrustAnchor {
                anchor_slot,
                new_anchor: lower_hex("command.new_anchor", &new_anchor)?,
            },
            CommandJson::RevokeCertificate { issuer, serial } => Command::RevokeCertificate {
                issuer,
                serial: lower_hex("command.serial", &serial)?,
            },
            CommandJson::Custom { type_name, payload } => Command::Custom {
                type_name,
                payload: lower_hex("command.payload", &payload)?,
            },
        };
        let sha256 = lower_hex("targets.sha256", &json.targets.sha256)?
            .try_into()
            .map_err(|_| invalid("targets.sha256", "it is not 32 bytes"))?;
        let request = CanonicalRequest {
            ceremony_kind,
            key_id: json.key_id,
            command,
            reason: json.reason,
            incident: json.incident,
            not_before: json.not_before,
            not_after: json.not_after,
            targets: TargetsDigest {
                count: json.targets.count,
                sha256,
            },
            emergency: json.emergency,
            justification: json.justification,
        };
        request.validate()?;
        if request.encode() != bytes {
            return Err(RequestError::NotCanonical);
        }
        Ok(request)
    }

    /// The request digest custodians approve: [`request_digest`] of
    /// [`CanonicalRequest::encode`].
    pub fn digest(&self) -> [u8; 32] {
        request_digest(&self.encode())
    }

    /// A multi-line description for the custodian who is asked to approve:
    /// what kind of ceremony, which key, the command and its parameters (long
    /// byte strings as length and fingerprint), the target count, the reason,
    /// the incident, the validity window, and the emergency justification.
    /// Every line ends with a newline.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let mut line = |label: &str, value: &str| {
            out.push_str(&format!("{label:<14}{value}\n"));
        };
        match self.ceremony_kind {
            CeremonyKind::Recovery => line(
                "ceremony:",
                "RECOVERY (the key will sign one command per target)",
            ),
            CeremonyKind::Drill => line(
                "ceremony:",
                "drill (the key signs a drill challenge; no command is issued)",
            ),
        }
        line("key:", &self.key_id);
        line("command:", self.command.kind());
        match &self.command {
            Command::ReplaceTrustAnchor {
                anchor_slot,
                new_anchor,
            } => {
                line("  slot:", &anchor_slot.to_string());
                let what = match anchor_kind(new_anchor) {
                    Ok(AnchorKind::Certificate) => "X.509 certificate",
                    Ok(AnchorKind::PublicKey) => "SubjectPublicKeyInfo",
                    Err(_) => "DER",
                };
                line(
                    "  new anchor:",
                    &format!("{what}, {} bytes", new_anchor.len()),
                );
                line("  SHA-256:", &fingerprint(new_anchor));
            }
            Command::RevokeCertificate { issuer, serial } => {
                line("  issuer:", issuer);
                line("  serial:", &hex::encode(serial));
            }
            Command::Custom { type_name, payload } => {
                line("  type:", type_name);
                if payload.len() <= 32 {
                    line(
                        "  payload:",
                        &format!("{} bytes: {}", payload.len(), hex::encode(payload)),
                    );
                } else {
                    line("  payload:", &format!("{} bytes", payload.len()));
                    line("  SHA-256:", &fingerprint(payload));
                }
            }
        }
        line(
            "targets:",
            &format!(
                "{} device{} (list SHA-256 {})",
                self.targets.count,
                if self.targets.count == 1 { "" } else { "s" },
                hex::encode(self.targets.sha256)
            ),
        );
        line("reason:", &self.reason);
        line("incident:", &self.incident);
        line(
            "valid:",
            &format!("from {} to {}", self.not_before, self.not_after),
        );
        if self.emergency {
            line("EMERGENCY:", &self.justification);
        } else {
            line("emergency:", "no");
        }
        out
    }
}

/// SHA-256(`"rkm/v1/recovery-request\0"` ‖ `encoded`), the request digest.
pub fn request_digest(encoded: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(REQUEST_DIGEST_LABEL);
    hasher.update(encoded);
    hasher.finalize().into()
}
