//! The HSM boundary: the only module that talks PKCS#11. The rest of the daemon
//! sees [`Hsm`], an async, cloneable handle with domain operations, and opaque
//! handles to the objects it creates.
//!
//! Behind the handle, `workers` threads each use one logged-in session and
//! take jobs from one bounded queue. Session objects (recovery keys, KEKs) live as
//! long as the session that created them, and every session of this process
//! can use them, so any worker may sign with a key another worker unwrapped.
//! A supervisor thread watches the token and brings it back after an outage
//! (`health.rs`), replacing the module's initialisation (`generation.rs`).

mod ceremony_objects;
mod error;
mod generation;
mod health;
mod ops;
#[cfg(test)]
mod session_loss_tests;
mod templates;
mod token;
mod token_keys;
mod worker;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use cryptoki::context::Pkcs11;
use cryptoki::object::ObjectHandle;
use tokio::sync::{oneshot, watch};

pub use error::HsmError;
pub use health::{HsmHealth, Outage};
pub use token::{REQUIRED_MECHANISMS, RequiredMechanism, TokenDescription};

use crate::secrets::UserPin;
use generation::{Context, Generation};
use health::Shared;
use ops::OpResult;
use worker::{Job, Retry, SessionConfig, Worker};

/// Jobs that may wait per worker before a caller waits for room.
const QUEUE_DEPTH_PER_WORKER: usize = 64;
/// How long a caller waits for room in a full queue before giving up as busy.
const QUEUE_WAIT: Duration = Duration::from_secs(30);

/// Where the HSM is and how to log in.
#[derive(Debug)]
pub struct HsmConfig {
    pub module: PathBuf,
    pub token_label: String,
    pub pin: UserPin,
    /// Number of worker sessions (at least 1).
    pub workers: usize,
}

/// A session object's handle and the generation it was made in (see
/// `generation.rs`: a handle outlives its meaning when the module is reset).
#[derive(Debug, Clone, Copy)]
struct Made {
    handle: ObjectHandle,
    generation: u64,
}

impl Made {
    fn new(ctx: &Context<'_>, handle: ObjectHandle) -> Self {
        Self {
            handle,
            generation: ctx.generation(),
        }
    }

    fn live(self, ctx: &Context<'_>, what: &'static str) -> OpResult<ObjectHandle> {
        ctx.live(self.handle, self.generation, what)
    }
}

/// A recovery private key held by the HSM as a session object.
#[derive(Debug, Clone, Copy)]
pub struct SigningKey(Made);

/// A KEK held by the HSM as a session object.
#[derive(Debug, Clone, Copy)]
pub struct KekKey(Made);

/// Any object rkm created in the HSM, for destroying it.
#[derive(Debug, Clone, Copy)]
pub struct HsmObject(Made);

impl From<SigningKey> for HsmObject {
    fn from(key: SigningKey) -> Self {
        HsmObject(key.0)
    }
}

impl From<KekKey> for HsmObject {
    fn from(key: KekKey) -> Self {
        HsmObject(key.0)
    }
}

/// A freshly generated recovery key pair.
#[derive(Debug)]
pub struct GeneratedKey {
    /// Public key as SubjectPublicKeyInfo DER.
    pub public_key_spki: Vec<u8>,
    /// The private half (session object; extractable only by wrapping).
    pub private: SigningKey,
    /// The public half (session object), to destroy with the private half.
    pub public: HsmObject,
}

/// The persistent Ed25519 audit key (its private half is found by label in
/// each generation).
#[derive(Debug, Clone, Copy)]
pub struct AuditKey {
    /// Raw 32-byte Ed25519 public key.
    pub public_key: [u8; 32],
}

/// The persistent AES key that holds submitted shares: proof that the token
/// has it (it is found by label in each generation).
#[derive(Debug, Clone, Copy)]
pub struct HoldingKey(());

/// Objects visible to rkm's sessions, for checks that nothing was left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectCounts {
    pub session_objects: usize,
    pub token_objects: usize,
}

/// Async, cloneable handle to the HSM workers.
#[derive(Clone)]
pub struct Hsm {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Hsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hsm")
            .field("token", &self.inner.description.label)
            .field("workers", &self.inner.worker_count)
            .finish()
    }
}

struct Inner {
    jobs: Option<flume::Sender<Job>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
    shared: Arc<Shared>,
    description: TokenDescription,
    worker_count: usize,
}

impl Hsm {
    /// Loads the module, finds the token by label, checks its mechanisms and
    /// logs in `config.workers` sessions. Blocking; call before serving.
    ///
    /// # Errors
    /// A missing module, an unknown token label, a wrong or locked PIN, or a
    /// token without a mechanism rkm needs, each with what to do about it.
    pub fn open(config: HsmConfig) -> Result<Self, HsmError> {
        let pkcs11 = token::load_module(&config.module)?;
        match Self::start(pkcs11.clone(), config) {
            Ok(hsm) => Ok(hsm),
            Err(error) => {
                if let Err(finalize) = pkcs11.finalize() {
                    tracing::debug!(%finalize, "finalizing PKCS#11 after a failed start");
                }
                Err(error)
            }
        }
    }

    fn start(pkcs11: Pkcs11, config: HsmConfig) -> Result<Self, HsmError> {
        let slot = token::find_slot(&pkcs11, &config.token_label)?;
        let description = token::describe(&pkcs11, slot)?;
        let session_config = SessionConfig {
            label: config.token_label,
            pin: Arc::new(config.pin),
        };
        // Open every worker's session before any thread starts, so a wrong PIN
        // fails here; the last slot is the supervisor's, opened when it probes.
        let worker_count = config.workers.max(1);
        let mut sessions = (0..worker_count)
            .map(|_| {
                token::open_logged_in_session(
                    &pkcs11,
                    slot,
                    &session_config.label,
                    &session_config.pin,
                )
                .map(Some)
            })
            .collect::<Result<Vec<_>, _>>()?;
        sessions.push(None);
        token::require_mechanisms(&description)?;
        let shared = Arc::new(Shared::new(
            session_config,
            Generation::new(1, pkcs11, slot, sessions),
        ));

        let (sender, receiver) = flume::bounded::<Job>(worker_count * QUEUE_DEPTH_PER_WORKER);
        let mut handles = Vec::with_capacity(worker_count);
        for index in 0..worker_count {
            let worker = Worker::new(index, Arc::clone(&shared));
            let jobs = receiver.clone();
            let handle = std::thread::Builder::new()
                .name(format!("hsm-worker-{index}"))
                .spawn(move || worker.run(jobs))
                .map_err(|error| HsmError::Malformed {
                    what: "worker thread",
                    detail: error.to_string(),
                })?;
            handles.push(handle);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                jobs: Some(sender),
                workers: Mutex::new(handles),
                supervisor: Mutex::new(None),
                shared,
                description,
                worker_count,
            }),
        })
    }

    /// What the token says about itself, read at start-up.
    pub fn description(&self) -> &TokenDescription {
        &self.inner.description
    }

    /// Number of worker sessions.
    pub fn worker_count(&self) -> usize {
        self.inner.worker_count
    }

    /// Whether the HSM serves now.
    pub fn health(&self) -> HsmHealth {
        self.inner.shared.health()
    }

    /// The HSM's health as it changes.
    pub fn watch_health(&self) -> watch::Receiver<HsmHealth> {
        self.inner.shared.watch()
    }

    /// Starts watching the token: a probe every few seconds that it still
    /// shows `audit_key`, and recovery with backoff when it does not. Called
    /// once rkmd serves (before that, start-up itself checks the token).
    pub fn supervise(&self, audit_key: AuditKey) {
        self.inner.shared.expect_audit_key(audit_key.public_key);
        let mut supervisor = self
            .inner
            .supervisor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if supervisor.is_some() {
            return;
        }
        let shared = Arc::clone(&self.inner.shared);
        match std::thread::Builder::new()
            .name("hsm-supervisor".to_owned())
            .spawn(move || health::supervise(&shared))
        {
            Ok(handle) => *supervisor = Some(handle),
            Err(error) => tracing::error!(%error, "could not start the HSM supervisor"),
        }
    }

    /// Marks the HSM as failing from outside the HSM layer (an audit
    /// checkpoint that could not be signed in time).
    pub fn report_outage(&self, cause: String) {
        self.inner.shared.report_outage(cause);
    }

    async fn submit<T, F>(
        &self,
        operation: &'static str,
        retry: Retry,
        op: F,
    ) -> Result<T, HsmError>
    where
        T: Send + 'static,
        F: Fn(&Context<'_>) -> OpResult<T> + Send + 'static,
    {
        // During an outage nothing is sent to a token known to be failing.
        if let Some(outage) = self.inner.shared.outage() {
            return Err(HsmError::Unavailable {
                cause: outage.cause,
            });
        }
        let sender = self.inner.jobs.as_ref().ok_or(HsmError::ShutDown)?;
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |worker: &mut Worker| {
            // The caller may have gone away; its answer is then not needed.
            let _ = reply.send(worker.execute(operation, retry, &op));
        });
        match tokio::time::timeout(QUEUE_WAIT, sender.send_async(job)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(HsmError::ShutDown),
            Err(_) => {
                return Err(HsmError::Busy {
                    capacity: sender.capacity().unwrap_or_default(),
                });
            }
        }
        answer.await.map_err(|_| HsmError::ShutDown)?
    }
}

impl Drop for Inner {
    /// Stops the supervisor and the workers, closes their sessions (which
    /// destroys any session object left) and finalizes PKCS#11.
    fn drop(&mut self) {
        self.shared.stop_supervisor();
        let supervisor = self
            .supervisor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(handle) = supervisor
            && handle.join().is_err()
        {
            tracing::error!("the HSM supervisor panicked");
        }
        drop(self.jobs.take());
        let handles = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|e| e.into_inner()));
        for handle in handles {
            if handle.join().is_err() {
                tracing::error!("an HSM worker panicked");
            }
        }
        let generation = self
            .shared
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner());
        generation.close_sessions();
        if let Err(error) = generation.pkcs11.clone().finalize() {
            tracing::warn!(%error, "C_Finalize failed at shutdown");
        }
    }
}
