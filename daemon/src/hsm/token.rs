//! Loading the PKCS#11 module and finding rkm's token by label (never by slot
//! number: slot numbers change when tokens are added), plus what the token
//! says about itself.

use std::path::Path;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::RvError;
use cryptoki::mechanism::MechanismType;
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use super::error::{HsmError, return_value};
use crate::secrets::UserPin;

/// A mechanism rkm needs and what for.
#[derive(Debug, Clone, Copy)]
pub struct RequiredMechanism {
    pub name: &'static str,
    pub purpose: &'static str,
    mechanism: MechanismType,
}

/// Every mechanism the design relies on. Start-up refuses a token without one.
pub const REQUIRED_MECHANISMS: [RequiredMechanism; 6] = [
    RequiredMechanism {
        name: "CKM_EC_KEY_PAIR_GEN",
        purpose: "generate recovery keys (ECDSA P-256)",
        mechanism: MechanismType::ECC_KEY_PAIR_GEN,
    },
    RequiredMechanism {
        name: "CKM_ECDSA",
        purpose: "sign recovery commands",
        mechanism: MechanismType::ECDSA,
    },
    RequiredMechanism {
        name: "CKM_AES_KEY_WRAP_PAD",
        purpose: "wrap recovery keys under the KEK (RFC 5649)",
        mechanism: MechanismType::AES_KEY_WRAP_PAD,
    },
    RequiredMechanism {
        name: "CKM_EC_EDWARDS_KEY_PAIR_GEN",
        purpose: "generate the audit key (Ed25519)",
        mechanism: MechanismType::ECC_EDWARDS_KEY_PAIR_GEN,
    },
    RequiredMechanism {
        name: "CKM_EDDSA",
        purpose: "sign audit checkpoints and key records",
        mechanism: MechanismType::EDDSA,
    },
    RequiredMechanism {
        name: "CKM_AES_GCM",
        purpose: "hold submitted shares encrypted under a holding key",
        mechanism: MechanismType::AES_GCM,
    },
];

/// What the token and its library say about themselves.
#[derive(Debug, Clone)]
pub struct TokenDescription {
    pub label: String,
    pub manufacturer: String,
    pub model: String,
    pub serial_number: String,
    pub library_description: String,
    pub library_version: String,
    /// Each required mechanism and whether the token has it.
    pub mechanisms: Vec<(RequiredMechanism, bool)>,
}

/// Loads and initialises the module at `path` with OS locking (without it,
/// concurrent sessions crash SoftHSM).
pub fn load_module(path: &Path) -> Result<Pkcs11, HsmError> {
    if !path.exists() {
        return Err(HsmError::ModuleMissing {
            path: path.to_owned(),
        });
    }
    let pkcs11 = Pkcs11::new(path).map_err(|error| HsmError::ModuleLoad {
        path: path.to_owned(),
        detail: error.to_string(),
    })?;
    pkcs11
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(|error| HsmError::ModuleLoad {
            path: path.to_owned(),
            detail: format!("C_Initialize failed: {error}"),
        })?;
    Ok(pkcs11)
}

/// Finds the one slot whose token is labelled `label`.
pub fn find_slot(pkcs11: &Pkcs11, label: &str) -> Result<Slot, HsmError> {
    let mut matching = Vec::new();
    let mut available = Vec::new();
    for slot in pkcs11.get_slots_with_token()? {
        let info = pkcs11.get_token_info(slot)?;
        let token_label = info.label().trim_end().to_owned();
        if !info.token_initialized() {
            continue;
        }
        if token_label == label {
            matching.push(slot);
        }
        available.push(token_label);
    }
    match matching.as_slice() {
        [slot] => Ok(*slot),
        [] => Err(HsmError::TokenNotFound {
            label: label.to_owned(),
            available,
        }),
        _ => Err(HsmError::TokenLabelAmbiguous {
            label: label.to_owned(),
            count: matching.len(),
        }),
    }
}

/// Opens a read-write session and logs the user in. Another session of this
/// process having logged in already is fine: PKCS#11 logins are per token.
pub fn open_logged_in_session(
    pkcs11: &Pkcs11,
    slot: Slot,
    label: &str,
    pin: &UserPin,
) -> Result<Session, HsmError> {
    let session = pkcs11.open_rw_session(slot)?;
    let auth_pin = AuthPin::from(pin.expose_secret());
    match session.login(UserType::User, Some(&auth_pin)) {
        Ok(()) => Ok(session),
        Err(error) => match return_value(&error) {
            Some(RvError::UserAlreadyLoggedIn) => Ok(session),
            Some(RvError::PinIncorrect | RvError::PinLenRange | RvError::PinInvalid) => {
                Err(HsmError::WrongPin {
                    label: label.to_owned(),
                })
            }
            Some(RvError::PinLocked) => Err(HsmError::PinLocked {
                label: label.to_owned(),
            }),
            _ => Err(error.into()),
        },
    }
}

/// Describes the token in `slot` and checks the mechanisms rkm needs.
pub fn describe(pkcs11: &Pkcs11, slot: Slot) -> Result<TokenDescription, HsmError> {
    let token = pkcs11.get_token_info(slot)?;
    let library = pkcs11.get_library_info()?;
    // One query per mechanism rather than C_GetMechanismList: the list holds
    // vendor mechanisms that the binding cannot name and logs as errors.
    let mechanisms = REQUIRED_MECHANISMS
        .iter()
        .map(|required| {
            let present = pkcs11.get_mechanism_info(slot, required.mechanism).is_ok();
            (*required, present)
        })
        .collect();
    Ok(TokenDescription {
        label: token.label().trim_end().to_owned(),
        manufacturer: token.manufacturer_id().trim_end().to_owned(),
        model: token.model().trim_end().to_owned(),
        serial_number: token.serial_number().trim_end().to_owned(),
        library_description: library.library_description().trim_end().to_owned(),
        library_version: library.library_version().to_string(),
        mechanisms,
    })
}

/// Fails with the first required mechanism the token lacks.
pub fn require_mechanisms(description: &TokenDescription) -> Result<(), HsmError> {
    match description.mechanisms.iter().find(|(_, present)| !present) {
        Some((missing, _)) => Err(HsmError::MechanismUnsupported {
            label: description.label.clone(),
            mechanism: missing.name,
            purpose: missing.purpose,
        }),
        None => Ok(()),
    }
}
