//! The benchmarks' baseline: ECDSA P-256 signing straight through `cryptoki`,
//! one thread per session, with none of rkm in the way, and the child process
//! each measurement runs in.
//!
//! PKCS#11 allows one `C_Initialize` per process and SoftHSM2 reads
//! `SOFTHSM2_CONF` only then, so every measurement runs in a child (the bench
//! binary re-executed) against a fresh token; the child prints one
//! [`Measurement`] as a JSON line on stdout, which the parent reads back.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CryptokiError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::SoftHsmToken;

/// DER of the OID of NIST P-256 (secp256r1, 1.2.840.10045.3.1.7).
const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// Label of each fresh bench token.
const TOKEN_LABEL: &str = "rkm-bench";
/// Environment variable that carries the user PIN to the child.
const PIN_ENV: &str = "RKM_BENCH_PIN";
/// Untimed signing before each measurement (session caches, thread start-up).
pub const WARM_UP: Duration = Duration::from_millis(300);
/// Longest a [`Budget::Signatures`] phase may sign before it stops short.
const SIGNATURES_GIVE_UP: Duration = Duration::from_secs(1800);

/// What one timed phase signed.
#[derive(Debug, Clone, Copy)]
pub struct Measurement {
    pub signatures: u64,
    pub elapsed: Duration,
    /// CPU time (user + system) of the process in the timed part, where the
    /// bench measures it.
    pub cpu: Option<Duration>,
}

impl Measurement {
    pub fn per_second(self) -> f64 {
        self.signatures as f64 / self.elapsed.as_secs_f64()
    }

    /// The line a child prints for its parent.
    pub fn to_json_line(self) -> String {
        let mut line = json!({
            "signatures": self.signatures,
            "elapsed_s": self.elapsed.as_secs_f64(),
        });
        if let Some(cpu) = self.cpu {
            line["cpu_s"] = json!(cpu.as_secs_f64());
        }
        line.to_string()
    }

    /// Reads a child's line back.
    ///
    /// # Errors
    /// The line is not JSON or lacks a field.
    pub fn from_json_line(line: &str) -> anyhow::Result<Self> {
        let value: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("child printed {line:?}"))?;
        let signatures = value["signatures"]
            .as_u64()
            .context("child output lacks signatures")?;
        let elapsed = value["elapsed_s"]
            .as_f64()
            .context("child output lacks elapsed_s")?;
        Ok(Self {
            signatures,
            elapsed: Duration::from_secs_f64(elapsed),
            cpu: value["cpu_s"].as_f64().map(Duration::from_secs_f64),
        })
    }
}

/// The digest signed at iteration `counter` (a new one each time, as in use).
pub fn digest(counter: u64) -> [u8; 32] {
    Sha256::digest(counter.to_le_bytes()).into()
}

// ---------------------------------------------------------------------------
// The child process.

/// Runs this bench binary again with `args` against a fresh token, the
/// token's module and label appended as `--module` and `--label` and its PIN
/// in the environment; returns the measurement the child printed.
///
/// # Errors
/// The token cannot be made, or the child fails or prints no measurement.
pub fn run_measuring_child(what: &str, args: &[String]) -> anyhow::Result<Measurement> {
    let token = SoftHsmToken::create(TOKEN_LABEL)?;
    let exe = std::env::current_exe().context("finding this bench binary")?;
    let output = Command::new(exe)
        .args(args)
        .arg("--module")
        .arg(token.module())
        .args(["--label", token.label()])
        .env("SOFTHSM2_CONF", token.config_file())
        .env(PIN_ENV, token.user_pin())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("starting the child measuring {what}"))?;
    ensure!(
        output.status.success(),
        "measuring {what} failed: {}",
        output.status
    );
    let stdout = String::from_utf8(output.stdout).context("child output is not UTF-8")?;
    Measurement::from_json_line(stdout.lines().last().context("child printed nothing")?)
}

/// Prints a child's measurement for its parent.
///
/// # Errors
/// Standard output is closed.
pub fn print_for_parent(measurement: Measurement) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", measurement.to_json_line())?;
    stdout.flush()?;
    Ok(())
}

/// The fresh token a child was started against.
#[derive(Debug)]
pub struct ChildToken {
    pub module: PathBuf,
    pub label: String,
    pub pin: String,
}

impl ChildToken {
    /// The token from the child's `--module` and `--label` and the PIN from
    /// its environment.
    ///
    /// # Errors
    /// This is not a child started by [`run_measuring_child`].
    pub fn of_child(module: Option<&Path>, label: Option<&str>) -> anyhow::Result<Self> {
        if std::env::var_os("SOFTHSM2_CONF").is_none() {
            bail!("measuring is for the child process; SOFTHSM2_CONF is not set");
        }
        Ok(Self {
            module: module.context("--module is missing")?.to_owned(),
            label: label.context("--label is missing")?.to_owned(),
            pin: std::env::var(PIN_ENV).with_context(|| format!("{PIN_ENV} is not set"))?,
        })
    }
}

// ---------------------------------------------------------------------------
// The raw signing loop.

/// How long a raw phase signs.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    Time(Duration),
    /// This many signatures in all, shared evenly by the sessions.
    Signatures(u64),
}

/// Logged-in sessions on one token and a session key pair to sign with.
pub struct RawSigner {
    pkcs11: Pkcs11,
    sessions: Vec<Session>,
    public: ObjectHandle,
    private: ObjectHandle,
}

impl RawSigner {
    /// Initialises the module, logs `sessions` sessions in and generates a
    /// P-256 key pair as session objects.
    ///
    /// # Errors
    /// Any PKCS#11 call fails, or no token has the label.
    pub fn open(token: &ChildToken, sessions: usize) -> anyhow::Result<Self> {
        ensure!(sessions > 0, "the raw loop needs at least one session");
        let pkcs11 = Pkcs11::new(&token.module)
            .with_context(|| format!("loading {}", token.module.display()))?;
        pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))?;
        let slot = find_slot(&pkcs11, &token.label)?;
        let pin = AuthPin::from(token.pin.as_str());
        let sessions = (0..sessions)
            .map(|_| open_logged_in(&pkcs11, slot, &pin))
            .collect::<anyhow::Result<Vec<_>>>()?;
        // Session objects of one session are usable from every session of
        // the process, as the HSM layer's workers use them.
        let (public, private) = sessions[0].generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::Token(false),
                Attribute::EcParams(P256_PARAMS.to_vec()),
                Attribute::Verify(true),
            ],
            &[
                Attribute::Token(false),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Sign(true),
            ],
        )?;
        Ok(Self {
            pkcs11,
            sessions,
            public,
            private,
        })
    }

    /// Signs untimed for [`WARM_UP`].
    ///
    /// # Errors
    /// A signature fails, or none was made.
    pub fn warm_up(&mut self) -> anyhow::Result<()> {
        let warm_up = self.sign(Budget::Time(WARM_UP))?;
        ensure!(warm_up.signatures > 0, "no signature during warm-up");
        Ok(())
    }

    /// Signs on every session, each on its own thread, within `budget`.
    ///
    /// # Errors
    /// A signature fails.
    pub fn sign(&mut self, budget: Budget) -> anyhow::Result<Measurement> {
        let sessions = std::mem::take(&mut self.sessions);
        let (sessions, measurement) = raw_phase(sessions, self.private, budget);
        self.sessions = sessions;
        measurement
    }

    /// Destroys the key pair, closes the sessions and finalises the module.
    ///
    /// # Errors
    /// A PKCS#11 call fails.
    pub fn close(self) -> anyhow::Result<()> {
        let first = self.sessions.first().context("no session left")?;
        first.destroy_object(self.private)?;
        first.destroy_object(self.public)?;
        for session in self.sessions {
            session.close()?;
        }
        self.pkcs11.finalize()?;
        Ok(())
    }
}

fn find_slot(pkcs11: &Pkcs11, label: &str) -> anyhow::Result<Slot> {
    for slot in pkcs11.get_slots_with_token()? {
        if pkcs11.get_token_info(slot)?.label().trim_end() == label {
            return Ok(slot);
        }
    }
    bail!("no token labelled {label:?}")
}

fn open_logged_in(pkcs11: &Pkcs11, slot: Slot, pin: &AuthPin) -> anyhow::Result<Session> {
    let session = pkcs11.open_rw_session(slot)?;
    match session.login(UserType::User, Some(pin)) {
        // Logins are per token: the second session finds the user logged in.
        Ok(()) | Err(CryptokiError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
        Err(error) => Err(error.into()),
    }
}

/// Signs on every session, each on its own thread, within `budget`; gives
/// the sessions back, whatever happened, with the count.
fn raw_phase(
    sessions: Vec<Session>,
    key: ObjectHandle,
    budget: Budget,
) -> (Vec<Session>, anyhow::Result<Measurement>) {
    let count = sessions.len() as u64;
    let barrier = Barrier::new(sessions.len() + 1);
    let (results, elapsed) = std::thread::scope(|scope| {
        let barrier = &barrier;
        let threads: Vec<_> = sessions
            .into_iter()
            .enumerate()
            .map(|(index, session)| {
                scope.spawn(move || -> (Session, cryptoki::error::Result<u64>) {
                    barrier.wait();
                    let start = Instant::now();
                    let (deadline, quota) = match budget {
                        Budget::Time(duration) => (start + duration, u64::MAX),
                        Budget::Signatures(total) => (
                            start + SIGNATURES_GIVE_UP,
                            total / count + u64::from((index as u64) < total % count),
                        ),
                    };
                    // Distinct digests per session, as distinct requests have.
                    let mut counter = (index as u64) << 40;
                    let mut signatures = 0u64;
                    while signatures < quota && Instant::now() < deadline {
                        if let Err(error) = session.sign(&Mechanism::Ecdsa, key, &digest(counter)) {
                            return (session, Err(error));
                        }
                        counter += 1;
                        signatures += 1;
                    }
                    (session, Ok(signatures))
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let results: Vec<_> = threads
            .into_iter()
            .map(|thread| thread.join().expect("a signing thread panicked"))
            .collect();
        (results, start.elapsed())
    });
    let mut sessions = Vec::with_capacity(results.len());
    let mut signatures = Ok(0);
    for (session, count) in results {
        sessions.push(session);
        signatures = match (signatures, count) {
            (Ok(total), Ok(count)) => Ok(total + count),
            (Err(error), _) => Err(error),
            (Ok(_), Err(error)) => Err(anyhow::Error::from(error)),
        };
    }
    let measurement = signatures.map(|signatures| Measurement {
        signatures,
        elapsed,
        cpu: None,
    });
    (sessions, measurement)
}
