//! What a test token holds, read straight through PKCS#11 from the test
//! process (rkmd stopped or not: SoftHSM2 keeps its objects in files), a way
//! to plant what a crash inside `C_CreateObject` leaves behind, and a PIN
//! change. Call
//! [`crate::env::use_token_in_this_process`] first.

use anyhow::{Context as _, bail};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;

use crate::SoftHsmToken;

/// One token object as an operator listing the token would see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub class: String,
    pub label: String,
    pub application: String,
}

fn with_user_session<T>(
    token: &SoftHsmToken,
    work: impl FnOnce(&Session) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let pkcs11 = Pkcs11::new(token.module())?;
    pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))?;
    let result = (|| {
        let slot = pkcs11
            .get_slots_with_token()?
            .into_iter()
            .find(|slot| {
                pkcs11
                    .get_token_info(*slot)
                    .is_ok_and(|info| info.label().trim_end() == token.label())
            })
            .context("the test token is not in any slot")?;
        let session = pkcs11.open_rw_session(slot)?;
        session.login(UserType::User, Some(&AuthPin::from(token.user_pin())))?;
        let result = work(&session);
        session.logout().ok();
        result
    })();
    pkcs11.finalize()?;
    result
}

/// Every token object, private ones included.
///
/// # Errors
/// A PKCS#11 call fails.
pub fn list_token_objects(token: &SoftHsmToken) -> anyhow::Result<Vec<ListedObject>> {
    with_user_session(token, |session| {
        let mut listed = Vec::new();
        for object in session.find_objects(&[Attribute::Token(true)])? {
            let mut entry = ListedObject {
                class: String::new(),
                label: String::new(),
                application: String::new(),
            };
            let wanted = [
                AttributeType::Class,
                AttributeType::Label,
                AttributeType::Application,
            ];
            for attribute in session.get_attributes(object, &wanted)? {
                match attribute {
                    Attribute::Class(class) => entry.class = class.to_string(),
                    Attribute::Label(label) => entry.label = String::from_utf8_lossy(&label).into(),
                    Attribute::Application(application) => {
                        entry.application = String::from_utf8_lossy(&application).into();
                    }
                    _ => {}
                }
            }
            listed.push(entry);
        }
        listed.sort_by(|a, b| (&a.label, &a.class).cmp(&(&b.label, &b.class)));
        Ok(listed)
    })
}

/// Creates a private token data object with no label and no application:
/// what SoftHSM2 has written of a checkpoint object when a process is killed
/// inside `C_CreateObject`, before the template's attributes are stored.
///
/// # Errors
/// A PKCS#11 call fails.
pub fn plant_half_made_data_object(token: &SoftHsmToken) -> anyhow::Result<()> {
    with_user_session(token, |session| {
        session.create_object(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Modifiable(true),
        ])?;
        Ok(())
    })
}

/// Fails unless the token holds exactly rkm's own objects: the audit key
/// pair, the share holding key and one checkpoint, nothing unnamed. List with
/// rkmd stopped: while it writes a checkpoint there are two for a moment.
///
/// # Errors
/// Something else is there, with the listing.
pub fn expect_only_rkm_objects(token: &SoftHsmToken) -> anyhow::Result<Vec<ListedObject>> {
    let listed = list_token_objects(token)?;
    let checkpoints = listed
        .iter()
        .filter(|o| o.label == "rkm-audit-checkpoint")
        .count();
    let others: Vec<_> = listed
        .iter()
        .filter(|o| {
            !matches!(
                o.label.as_str(),
                "rkm-audit-checkpoint" | "rkm-audit-key" | "rkm-share-holding-key"
            )
        })
        .collect();
    if !others.is_empty() || checkpoints != 1 || listed.len() != 4 {
        bail!("the token holds more or less than rkm's own objects: {listed:#?}");
    }
    Ok(listed)
}

/// Changes the token's user PIN to `new_pin` (as an HSM administrator would,
/// under a running rkmd).
///
/// # Errors
/// A PKCS#11 call fails.
pub fn change_user_pin(token: &SoftHsmToken, new_pin: &str) -> anyhow::Result<()> {
    with_user_session(token, |session| {
        session.set_pin(&AuthPin::from(token.user_pin()), &AuthPin::from(new_pin))?;
        Ok(())
    })
}
