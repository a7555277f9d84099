//! Long-lived worker threads, each owning one logged-in PKCS#11 session and
//! answering jobs from a shared queue. PKCS#11 calls block, so they never run
//! on the async executor.

use std::sync::Arc;

use cryptoki::context::Pkcs11;
use cryptoki::session::Session;
use cryptoki::slot::Slot;

use super::error::{HsmError, is_session_lost};
use super::ops::{Failure, OpResult};
use super::token::open_logged_in_session;
use crate::secrets::UserPin;

/// Whether an operation may run a second time after its session was lost and
/// reopened. Key generation must not: the first attempt may have succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    OnceAfterReopen,
    Never,
}

/// A unit of work for whichever worker is free.
pub type Job = Box<dyn FnOnce(&mut Worker) + Send>;

/// What a worker needs to (re)open its session.
#[derive(Clone)]
pub struct SessionSource {
    pub pkcs11: Pkcs11,
    pub slot: Slot,
    pub label: String,
    pub pin: Arc<UserPin>,
}

impl SessionSource {
    pub fn open(&self) -> Result<Session, HsmError> {
        open_logged_in_session(&self.pkcs11, self.slot, &self.label, &self.pin)
    }
}

pub struct Worker {
    source: SessionSource,
    session: Option<Session>,
}

impl Worker {
    pub fn new(source: SessionSource, session: Session) -> Self {
        Self {
            source,
            session: Some(session),
        }
    }

    /// Runs `op` on this worker's session, reopening a lost session once.
    /// A session lost again on the second attempt is reported as
    /// [`HsmError::SessionLost`], and the next job opens a fresh one.
    pub fn execute<T>(
        &mut self,
        operation: &'static str,
        retry: Retry,
        op: &dyn Fn(&Session) -> OpResult<T>,
    ) -> Result<T, HsmError> {
        let session = self.session()?;
        match op(session) {
            Ok(value) => Ok(value),
            Err(Failure::Pkcs11(error)) if is_session_lost(&error) => {
                tracing::warn!(operation, "HSM session lost; reopening it");
                self.session = None;
                let session = self.session()?;
                if retry == Retry::Never {
                    return Err(HsmError::SessionLost { operation });
                }
                match op(session) {
                    Err(Failure::Pkcs11(error)) if is_session_lost(&error) => {
                        tracing::warn!(operation, "HSM session lost again; giving up");
                        self.session = None;
                        Err(HsmError::SessionLost { operation })
                    }
                    other => other.map_err(into_hsm_error),
                }
            }
            Err(failure) => Err(into_hsm_error(failure)),
        }
    }

    fn session(&mut self) -> Result<&Session, HsmError> {
        if self.session.is_none() {
            self.session = Some(self.source.open()?);
        }
        Ok(self.session.as_ref().expect("session was just opened"))
    }

    /// Serves jobs until every sender is gone, then closes the session.
    pub fn run(mut self, jobs: flume::Receiver<Job>) {
        while let Ok(job) = jobs.recv() {
            job(&mut self);
        }
        if let Some(session) = self.session.take()
            && let Err(error) = session.close()
        {
            tracing::debug!(%error, "closing HSM session at shutdown");
        }
    }
}

fn into_hsm_error(failure: Failure) -> HsmError {
    match failure {
        Failure::Pkcs11(error) => error.into(),
        Failure::Domain(error) => error,
    }
}
