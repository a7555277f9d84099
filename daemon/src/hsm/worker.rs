//! Long-lived worker threads, each using one logged-in PKCS#11 session of
//! the current generation and answering jobs from a shared queue. PKCS#11
//! calls block, so they never run on the async executor.

use std::sync::{Arc, PoisonError};

use cryptoki::session::Session;

use super::error::{HsmError, is_session_lost};
use super::generation::{Context, Generation};
use super::health::Shared;
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

/// What opening a session needs, in every generation.
pub struct SessionConfig {
    pub label: String,
    pub pin: Arc<UserPin>,
}

/// Runs `op` on session `index` of `generation`, opening it if needed and
/// reopening a lost session once (unless `retry` forbids running `op` again).
pub fn run_in_session<T>(
    generation: &Generation,
    index: usize,
    config: &SessionConfig,
    operation: &'static str,
    retry: Retry,
    op: &dyn Fn(&Context<'_>) -> OpResult<T>,
) -> Result<T, HsmError> {
    let mut slot = generation.sessions[index]
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let open = |slot: &mut Option<Session>| -> Result<(), HsmError> {
        if slot.is_none() {
            *slot = Some(open_logged_in_session(
                &generation.pkcs11,
                generation.slot,
                &config.label,
                &config.pin,
            )?);
        }
        Ok(())
    };
    open(&mut slot)?;
    let run = |session: &Session| {
        op(&Context {
            session,
            generation,
        })
    };
    match run(slot.as_ref().expect("the session was just opened")) {
        Ok(value) => Ok(value),
        Err(Failure::Pkcs11(error)) if is_session_lost(&error) => {
            tracing::warn!(operation, "HSM session lost; reopening it");
            *slot = None;
            open(&mut slot)?;
            if retry == Retry::Never {
                return Err(HsmError::SessionLost { operation });
            }
            match run(slot.as_ref().expect("the session was just reopened")) {
                Err(Failure::Pkcs11(error)) if is_session_lost(&error) => {
                    tracing::warn!(operation, "HSM session lost again; giving up");
                    *slot = None;
                    Err(HsmError::SessionLost { operation })
                }
                other => other.map_err(into_hsm_error),
            }
        }
        Err(failure) => Err(into_hsm_error(failure)),
    }
}

pub struct Worker {
    index: usize,
    shared: Arc<Shared>,
}

impl Worker {
    pub fn new(index: usize, shared: Arc<Shared>) -> Self {
        Self { index, shared }
    }

    /// Runs `op` in the current generation. A failure that says the token
    /// itself is gone starts an outage and is answered as
    /// [`HsmError::Unavailable`], with its cause.
    pub fn execute<T>(
        &mut self,
        operation: &'static str,
        retry: Retry,
        op: &dyn Fn(&Context<'_>) -> OpResult<T>,
    ) -> Result<T, HsmError> {
        let generation = self
            .shared
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        match run_in_session(
            &generation,
            self.index,
            &self.shared.config,
            operation,
            retry,
            op,
        ) {
            Err(error) if error.means_token_failed() => {
                let cause = format!("{operation}: {error}");
                self.shared.report_outage(cause.clone());
                Err(HsmError::Unavailable { cause })
            }
            other => other,
        }
    }

    /// Serves jobs until every sender is gone.
    pub fn run(mut self, jobs: flume::Receiver<Job>) {
        while let Ok(job) = jobs.recv() {
            job(&mut self);
        }
    }
}

fn into_hsm_error(failure: Failure) -> HsmError {
    match failure {
        Failure::Pkcs11(error) => error.into(),
        Failure::Domain(error) => error,
    }
}
