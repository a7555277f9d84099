//! One initialisation of the PKCS#11 module and everything valid only within
//! it: the slot, the workers' sessions, and the handles of the token objects
//! rkm found by label. Recovering from an outage replaces the generation
//! whole (C_Finalize, C_Initialize, find the token again): after that every
//! old handle is meaningless, and a session object handle of the old
//! generation might even name another key in the new one — so handles rkm
//! gives out carry their generation and are refused once it has passed.

use std::ops::Deref;
use std::sync::{Mutex, MutexGuard, PoisonError};

use cryptoki::context::Pkcs11;
use cryptoki::object::ObjectHandle;
use cryptoki::session::Session;
use cryptoki::slot::Slot;

use super::error::HsmError;
use super::ops::{self, Failure, OpResult};

/// The handles of rkm's persistent objects, found by label when first needed
/// in a generation and forgotten when the token says a handle is invalid.
#[derive(Debug, Default)]
struct TokenObjects {
    audit_key: Option<ObjectHandle>,
    holding_key: Option<ObjectHandle>,
}

/// A persistent object rkm finds by label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenObject {
    AuditKey,
    HoldingKey,
}

impl TokenObject {
    fn name(self) -> &'static str {
        match self {
            TokenObject::AuditKey => "audit key (rkm-audit-key)",
            TokenObject::HoldingKey => "share holding key (rkm-share-holding-key)",
        }
    }
}

pub struct Generation {
    /// Counts initialisations of the module in this process, from 1.
    pub number: u64,
    pub pkcs11: Pkcs11,
    pub slot: Slot,
    /// One session per worker, opened when the worker first needs it.
    pub sessions: Vec<Mutex<Option<Session>>>,
    objects: Mutex<TokenObjects>,
}

impl Generation {
    pub fn new(number: u64, pkcs11: Pkcs11, slot: Slot, sessions: Vec<Option<Session>>) -> Self {
        Self {
            number,
            pkcs11,
            slot,
            sessions: sessions.into_iter().map(Mutex::new).collect(),
            objects: Mutex::default(),
        }
    }

    fn objects(&self) -> MutexGuard<'_, TokenObjects> {
        self.objects.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes every session while the module is still initialised, so that no
    /// stale handle is ever closed under a later initialisation.
    pub fn close_sessions(&self) {
        for slot in &self.sessions {
            let session = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(session) = session
                && let Err(error) = session.close()
            {
                tracing::debug!(%error, "closing an HSM session of a failed generation");
            }
        }
    }
}

/// What an operation runs with: a logged-in session of the current
/// generation (it dereferences to the [`Session`]) and the generation's
/// token objects.
pub struct Context<'a> {
    pub(super) session: &'a Session,
    pub(super) generation: &'a Generation,
}

impl Deref for Context<'_> {
    type Target = Session;

    fn deref(&self) -> &Session {
        self.session
    }
}

impl Context<'_> {
    /// The generation this operation runs in, for the handles it returns.
    pub fn generation(&self) -> u64 {
        self.generation.number
    }

    /// `handle` if it was made in this generation.
    ///
    /// # Errors
    /// [`HsmError::ObjectLost`] for a handle from before the HSM was reset.
    pub fn live(
        &self,
        handle: ObjectHandle,
        made_in: u64,
        what: &'static str,
    ) -> OpResult<ObjectHandle> {
        if made_in == self.generation.number {
            Ok(handle)
        } else {
            Err(Failure::Domain(HsmError::ObjectLost { what }))
        }
    }

    fn find(&self, object: TokenObject) -> OpResult<ObjectHandle> {
        let found = match object {
            TokenObject::AuditKey => ops::find_audit_key(self.session)?.map(|(private, _)| private),
            TokenObject::HoldingKey => ops::find_holding_key(self.session)?,
        };
        found.ok_or(Failure::Domain(HsmError::TokenObjectMissing {
            what: object.name(),
        }))
    }

    /// Runs `op` with the handle of `object`, found by label the first time in
    /// this generation; a handle the token no longer knows is looked up once
    /// more (another application may have re-created the object).
    pub fn with_token_object<T>(
        &self,
        object: TokenObject,
        op: impl Fn(ObjectHandle) -> OpResult<T>,
    ) -> OpResult<T> {
        let cached = match object {
            TokenObject::AuditKey => self.generation.objects().audit_key,
            TokenObject::HoldingKey => self.generation.objects().holding_key,
        };
        let handle = match cached {
            Some(handle) => handle,
            None => self.remember(object, self.find(object)?),
        };
        match op(handle) {
            Err(Failure::Pkcs11(error)) if super::error::is_handle_invalid(&error) => {
                tracing::warn!(
                    object = object.name(),
                    "the token no longer knows the object's handle; finding it again"
                );
                let handle = self.remember(object, self.find(object)?);
                op(handle)
            }
            other => other,
        }
    }

    fn remember(&self, object: TokenObject, handle: ObjectHandle) -> ObjectHandle {
        let mut objects = self.generation.objects();
        match object {
            TokenObject::AuditKey => objects.audit_key = Some(handle),
            TokenObject::HoldingKey => objects.holding_key = Some(handle),
        }
        handle
    }

    /// Whether the token still shows rkm's audit key with `public_key`: the
    /// health probe, always a fresh search (a cached handle would hide a token
    /// whose files went away).
    pub fn audit_key_present(&self, public_key: &[u8; 32]) -> OpResult<()> {
        match ops::find_audit_key(self.session)? {
            Some((private, found)) if &found == public_key => {
                self.remember(TokenObject::AuditKey, private);
                Ok(())
            }
            Some(_) => Err(Failure::Domain(HsmError::TokenObjectMissing {
                what: "audit key with the public key rkmd started with (the token holds another)",
            })),
            None => Err(Failure::Domain(HsmError::TokenObjectMissing {
                what: TokenObject::AuditKey.name(),
            })),
        }
    }
}
