//! Whether the HSM works, and getting it back when it does not.
//!
//! A worker whose operation fails in a way that says the token itself is
//! gone (a lost session that reopening did not mend, a device error, rkm's
//! audit key no longer visible) reports an outage. From then on every HSM
//! operation is refused at once with the cause, the audit log refuses
//! state changes (they could not be checkpointed), and the health service says
//! NOT_SERVING. A supervisor thread probes the token every few seconds while
//! it serves, and while it does not, re-initialises the module with a growing
//! pause between attempts, finds the token by label and the audit key by its
//! label and public key, and returns to serving on its own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use cryptoki::context::{CInitializeArgs, CInitializeFlags};
use tokio::sync::watch;

use super::error::HsmError;
use super::generation::{Context, Generation};
use super::token;
use super::worker::{Retry, SessionConfig, run_in_session};

/// How often a serving token is probed.
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// The first pause after a failed attempt to recover, doubled after each.
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// The longest pause between attempts.
const LONGEST_RETRY: Duration = Duration::from_secs(30);

/// Whether the HSM serves, as `rkm status` and the health service show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HsmHealth {
    Serving,
    Failing(Outage),
}

/// An HSM outage in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    /// What failed first, in words for the operator.
    pub cause: String,
    pub since: SystemTime,
    /// Attempts to recover so far.
    pub attempts: u32,
    /// Why the latest attempt failed ('' before the first).
    pub last_attempt: String,
    /// When the next attempt is due; `None` when rkmd stopped retrying
    /// (a rejected PIN: retrying would lock it).
    pub next_attempt_in: Option<Duration>,
}

/// What the workers and the supervisor share.
pub struct Shared {
    pub config: SessionConfig,
    pub current: RwLock<Generation>,
    health: watch::Sender<HsmHealth>,
    /// The audit key rkmd serves with, once known: the probe looks for it.
    audit_public_key: Mutex<Option<[u8; 32]>>,
    wake: Condvar,
    woken: Mutex<bool>,
    stopping: AtomicBool,
}

impl Shared {
    pub fn new(config: SessionConfig, generation: Generation) -> Self {
        Self {
            config,
            current: RwLock::new(generation),
            health: watch::Sender::new(HsmHealth::Serving),
            audit_public_key: Mutex::new(None),
            wake: Condvar::new(),
            woken: Mutex::new(false),
            stopping: AtomicBool::new(false),
        }
    }

    pub fn health(&self) -> HsmHealth {
        self.health.borrow().clone()
    }

    pub fn watch(&self) -> watch::Receiver<HsmHealth> {
        self.health.subscribe()
    }

    pub fn outage(&self) -> Option<Outage> {
        match &*self.health.borrow() {
            HsmHealth::Serving => None,
            HsmHealth::Failing(outage) => Some(outage.clone()),
        }
    }

    pub fn expect_audit_key(&self, public_key: [u8; 32]) {
        *self
            .audit_public_key
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(public_key);
    }

    fn expected_audit_key(&self) -> Option<[u8; 32]> {
        *self
            .audit_public_key
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the HSM as failing (once per outage) and wakes the supervisor.
    pub fn report_outage(&self, cause: String) {
        let began = self.health.send_if_modified(|health| match health {
            HsmHealth::Serving => {
                *health = HsmHealth::Failing(Outage {
                    cause: cause.clone(),
                    since: SystemTime::now(),
                    attempts: 0,
                    last_attempt: String::new(),
                    next_attempt_in: Some(FIRST_RETRY),
                });
                true
            }
            HsmHealth::Failing(_) => false,
        });
        if began {
            tracing::error!(%cause, "the HSM failed; rkmd refuses state changes until it works again and retries on its own");
            self.wake_supervisor();
        }
    }

    fn wake_supervisor(&self) {
        *self.woken.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.wake.notify_all();
    }

    pub fn stop_supervisor(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake_supervisor();
    }

    /// Sleeps `pause` or until woken; false when the supervisor should stop.
    fn pause(&self, pause: Option<Duration>) -> bool {
        let woken = self.woken.lock().unwrap_or_else(PoisonError::into_inner);
        let mut woken = match pause {
            Some(pause) => {
                self.wake
                    .wait_timeout_while(woken, pause, |woken| !*woken)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
            None => self
                .wake
                .wait_while(woken, |woken| !*woken)
                .unwrap_or_else(PoisonError::into_inner),
        };
        *woken = false;
        !self.stopping.load(Ordering::SeqCst)
    }
}

/// The supervisor thread's loop: probe while serving, recover while not.
pub fn supervise(shared: &Arc<Shared>) {
    let mut retry = FIRST_RETRY;
    loop {
        let pause = match shared.outage() {
            None => Some(PROBE_EVERY),
            Some(outage) => outage.next_attempt_in,
        };
        if !shared.pause(pause) {
            return;
        }
        match shared.outage() {
            None => {
                if let Err(error) = probe(shared) {
                    shared.report_outage(format!("the health probe failed: {error}"));
                    retry = FIRST_RETRY;
                }
            }
            Some(outage) => {
                let started = Instant::now();
                match recover(shared) {
                    Ok(number) => {
                        let down = outage.since.elapsed().unwrap_or_default();
                        tracing::info!(
                            cause = %outage.cause,
                            attempts = outage.attempts + 1,
                            down_seconds = down.as_secs(),
                            generation = number,
                            "the HSM works again: rkmd re-initialised the module, found its token and audit key, and serves"
                        );
                        shared.health.send_replace(HsmHealth::Serving);
                        retry = FIRST_RETRY;
                    }
                    Err(error) => {
                        let gives_up = matches!(
                            error,
                            HsmError::WrongPin { .. } | HsmError::PinLocked { .. }
                        );
                        let next = (!gives_up).then_some(retry);
                        tracing::warn!(
                            %error,
                            attempt = outage.attempts + 1,
                            took_ms = started.elapsed().as_millis() as u64,
                            next_attempt_ms = next.map(|pause| pause.as_millis() as u64),
                            "the HSM is still unavailable"
                        );
                        let last_attempt = if gives_up {
                            format!(
                                "{error}; rkmd stopped retrying so as not to lock the PIN: correct hsm.pin_file and restart rkmd"
                            )
                        } else {
                            error.to_string()
                        };
                        shared.health.send_modify(|health| {
                            if let HsmHealth::Failing(outage) = health {
                                outage.attempts += 1;
                                outage.last_attempt = last_attempt;
                                outage.next_attempt_in = next;
                            }
                        });
                        retry = (retry * 2).min(LONGEST_RETRY);
                    }
                }
            }
        }
    }
}

/// Runs `op` on the control session (the last slot of the generation, the
/// supervisor's): for the probe and for reads that must not queue behind the
/// workers' jobs. Blocking.
pub fn on_control_session<T>(
    shared: &Shared,
    operation: &'static str,
    op: impl Fn(&Context<'_>) -> super::ops::OpResult<T>,
) -> Result<T, HsmError> {
    let generation = shared
        .current
        .read()
        .unwrap_or_else(PoisonError::into_inner);
    let control = generation.sessions.len() - 1;
    run_in_session(
        &generation,
        control,
        &shared.config,
        operation,
        Retry::OnceAfterReopen,
        &op,
    )
}

/// Checks that the token still shows rkm's audit key.
fn probe(shared: &Shared) -> Result<(), HsmError> {
    let Some(public_key) = shared.expected_audit_key() else {
        return Ok(());
    };
    on_control_session(shared, "health probe", |ctx| {
        ctx.audit_key_present(&public_key)
    })
}

/// Replaces the generation: closes its sessions, finalizes and initialises
/// the module again, finds the token by label and the audit key in it.
/// Returns the new generation's number.
pub(super) fn recover(shared: &Shared) -> Result<u64, HsmError> {
    let mut generation = shared
        .current
        .write()
        .unwrap_or_else(PoisonError::into_inner);
    generation.close_sessions();
    let pkcs11 = generation.pkcs11.clone();
    if let Err(error) = pkcs11.clone().finalize() {
        tracing::debug!(%error, "C_Finalize before re-initialising");
    }
    pkcs11
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(HsmError::from)?;
    let slot = token::find_slot(&pkcs11, &shared.config.label)?;
    let session =
        token::open_logged_in_session(&pkcs11, slot, &shared.config.label, &shared.config.pin)?;
    let number = generation.number + 1;
    let mut sessions: Vec<_> = (0..generation.sessions.len()).map(|_| None).collect();
    let probe_slot = sessions.len() - 1;
    sessions[probe_slot] = Some(session);
    let fresh = Generation::new(number, pkcs11, slot, sessions);
    if let Some(public_key) = shared.expected_audit_key() {
        run_in_session(
            &fresh,
            probe_slot,
            &shared.config,
            "finding the audit key",
            Retry::Never,
            &|ctx: &Context<'_>| ctx.audit_key_present(&public_key),
        )?;
    }
    *generation = fresh;
    Ok(number)
}
