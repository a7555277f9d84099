//! The real `rkmd` binary against a fresh token and state directory, and the
//! real `rkm` binary pointed at it. The daemon is killed when dropped (exactly
//! the process this fixture started).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::SoftHsmToken;
use crate::binaries::{binary, with_clean_env};

/// How long a daemon may take to start serving before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A state directory and token for one `rkmd`, and the daemon once started.
#[derive(Debug)]
pub struct Daemon {
    pub token: SoftHsmToken,
    state: tempfile::TempDir,
    child: Option<Child>,
    env: Vec<(String, String)>,
    /// The development PKI, when rkmd also listens on TCP with TLS.
    pki: Option<PathBuf>,
    /// `https://127.0.0.1:PORT`, once serving with TLS.
    endpoint: Option<String>,
    /// Everything `rkm` wrote (stdout and stderr) in this fixture's runs,
    /// for the tests that no secret reaches the client's output.
    transcript: std::sync::Mutex<Transcript>,
    /// The state directory's own filesystem, if it has one.
    mounted: Option<PathBuf>,
}

/// The client's output, kept up to [`MAX_TRANSCRIPT`] bytes.
#[derive(Debug, Default)]
struct Transcript {
    bytes: Vec<u8>,
    dropped: bool,
}

/// Enough for a ceremony's every command; suites that dump large audit logs
/// go past it, and then [`Daemon::client_transcript`] says so.
const MAX_TRANSCRIPT: usize = 32 << 20;

/// The client certificate (a `rkmd dev-pki` file stem) that [`Daemon::rkm`]
/// presents over TLS for staff commands: it holds the admin, operator and
/// auditor roles, so suites written for the socket run unchanged over TLS.
pub const STAFF_CLIENT: &str = "rkm-staff";

/// Builds a [`Daemon`] fixture.
#[derive(Debug, Default)]
pub struct DaemonBuilder {
    workers: Option<usize>,
    tls: bool,
    state_filesystem_mb: Option<u64>,
}

impl DaemonBuilder {
    /// Number of HSM workers.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    /// Also listen on loopback TCP with TLS, with a development PKI made by
    /// `rkmd dev-pki`; [`Daemon::rkm`] then talks TLS, as a custodian (no
    /// certificate) when the command names an `--identity`, else with the
    /// [`STAFF_CLIENT`] certificate.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Puts the state directory on its own tmpfs of `mb` MiB, for the tests
    /// of a full disk (real ENOSPC). Needs root, as CI runs; unmounted when
    /// the fixture is dropped.
    pub fn state_filesystem_mb(mut self, mb: u64) -> Self {
        self.state_filesystem_mb = Some(mb);
        self
    }

    /// Makes a fresh token and state directory and runs `rkmd init`.
    ///
    /// # Errors
    /// The token cannot be made or `rkmd init` fails.
    pub fn initialised(self) -> anyhow::Result<Daemon> {
        let daemon = self.uninitialised()?;
        let init = daemon.rkmd(&["init"])?;
        if !init.status.success() {
            bail!(
                "rkmd init failed: {}",
                String::from_utf8_lossy(&init.stderr)
            );
        }
        Ok(daemon)
    }

    /// Makes a fresh token and state directory without running anything.
    ///
    /// # Errors
    /// The token cannot be made.
    pub fn uninitialised(self) -> anyhow::Result<Daemon> {
        let token = SoftHsmToken::create("rkm")?;
        let state = tempfile::Builder::new().prefix("rkm-state-").tempdir()?;
        let mounted = match self.state_filesystem_mb {
            Some(mb) => Some(mount_tmpfs(&state.path().join("state"), mb)?),
            None => None,
        };
        let mut env = vec![
            (
                "SOFTHSM2_CONF".to_owned(),
                path_string(&token.config_file()),
            ),
            (
                "RKM_STATE_DIR".to_owned(),
                path_string(&state.path().join("state")),
            ),
            ("RKM_HSM_MODULE".to_owned(), path_string(token.module())),
            ("RKM_HSM_TOKEN_LABEL".to_owned(), token.label().to_owned()),
            (
                "RKM_HSM_PIN_FILE".to_owned(),
                path_string(&token.pin_file()),
            ),
            ("RKM_LOG_LEVEL".to_owned(), "info".to_owned()),
        ];
        if let Some(workers) = self.workers {
            env.push(("RKM_HSM_WORKERS".to_owned(), workers.to_string()));
        }
        let pki = if self.tls {
            let pki = state.path().join("pki");
            make_dev_pki(&pki, &[STAFF_CLIENT])?;
            let file = |name: &str| path_string(&pki.join(name));
            let staff = format!("cn:{STAFF_CLIENT}");
            env.extend([
                ("RKM_LISTEN_TCP".to_owned(), "127.0.0.1:0".to_owned()),
                ("RKM_TLS_CERTIFICATE".to_owned(), file("server.pem")),
                ("RKM_TLS_PRIVATE_KEY".to_owned(), file("server-key.pem")),
                ("RKM_TLS_CLIENT_CA".to_owned(), file("ca.pem")),
                (
                    "RKM_ACCESS_ADMIN".to_owned(),
                    format!("cn:rkm-admin,{staff}"),
                ),
                (
                    "RKM_ACCESS_OPERATOR".to_owned(),
                    format!("cn:rkm-operator,{staff}"),
                ),
                (
                    "RKM_ACCESS_AUDITOR".to_owned(),
                    format!("cn:rkm-auditor,{staff}"),
                ),
            ]);
            Some(pki)
        } else {
            None
        };
        Ok(Daemon {
            token,
            state,
            child: None,
            env,
            pki,
            endpoint: None,
            transcript: std::sync::Mutex::default(),
            mounted,
        })
    }
}

/// Runs the real `rkmd dev-pki DIR`, with `extra_clients` certificates
/// besides the admin, operator and auditor ones.
///
/// # Errors
/// rkmd cannot be run or refuses.
pub fn make_dev_pki(dir: &Path, extra_clients: &[&str]) -> anyhow::Result<()> {
    let mut command = Command::new(binary("rkmd"));
    with_clean_env(&mut command).arg("dev-pki").arg(dir);
    for client in extra_clients {
        command.args(["--client", client]);
    }
    let made = command
        .stdin(Stdio::null())
        .output()
        .context("running rkmd dev-pki")?;
    if !made.status.success() {
        bail!(
            "rkmd dev-pki failed: {}",
            String::from_utf8_lossy(&made.stderr)
        );
    }
    Ok(())
}

/// Mounts a tmpfs of `mb` MiB at `dir` (created).
fn mount_tmpfs(dir: &Path, mb: u64) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let mounted = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={mb}m,mode=0700"),
            "tmpfs",
        ])
        .arg(dir)
        .output()
        .context("running mount")?;
    if !mounted.status.success() {
        bail!(
            "cannot mount a {mb} MiB tmpfs at {} (the full-disk tests need root, as CI has): {}",
            dir.display(),
            String::from_utf8_lossy(&mounted.stderr)
        );
    }
    Ok(dir.to_owned())
}

fn path_string(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

impl Daemon {
    /// A fresh token and state directory, initialised and serving.
    ///
    /// # Errors
    /// Any step of making, initialising or starting fails.
    pub fn start() -> anyhow::Result<Self> {
        let mut daemon = DaemonBuilder::default().initialised()?;
        daemon.serve()?;
        Ok(daemon)
    }

    /// [`Daemon::start`], also serving TLS on loopback TCP: [`Daemon::rkm`]
    /// then runs every command over TLS, as the end-to-end suites do.
    ///
    /// # Errors
    /// Any step of making, initialising or starting fails.
    pub fn start_tls() -> anyhow::Result<Self> {
        let mut daemon = DaemonBuilder::default().tls().initialised()?;
        daemon.serve()?;
        Ok(daemon)
    }

    /// Overrides one environment variable of every later `rkmd`/`rkm` run.
    pub fn set_env(&mut self, name: &str, value: impl Into<String>) {
        self.env.retain(|(existing, _)| existing != name);
        self.env.push((name.to_owned(), value.into()));
    }

    /// The process id of the running `rkmd serve`, if this fixture started it.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The daemon's state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.state.path().join("state")
    }

    /// The Unix socket rkmd listens on.
    pub fn socket(&self) -> PathBuf {
        self.state_dir().join("rkmd.sock")
    }

    /// The file that collects rkmd's standard error (its log).
    pub fn log_file(&self) -> PathBuf {
        self.state.path().join("rkmd.log")
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    /// The development PKI's directory, for a daemon built with
    /// [`DaemonBuilder::tls`].
    pub fn pki_dir(&self) -> Option<&Path> {
        self.pki.as_deref()
    }

    /// `https://127.0.0.1:PORT` of the TLS listener, once serving.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// A command running `binary_name` (`rkm` or `rkmd`) with this daemon's
    /// environment, for tests that must start it without waiting.
    pub fn command(&self, binary_name: &str) -> Command {
        let mut command = Command::new(binary(binary_name));
        with_clean_env(&mut command);
        command.envs(self.env.iter().map(|(name, value)| (name, value)));
        command.env("RKM_SOCKET", self.socket());
        command
    }

    /// `rkm` pointed at the TLS endpoint with the PKI's CA, presenting the
    /// client certificate `client` (a dev-pki file stem), or none.
    fn tls_command(&self, endpoint: &str, client: Option<&str>) -> Command {
        let mut command = Command::new(binary("rkm"));
        with_clean_env(&mut command);
        command.envs(self.env.iter().map(|(name, value)| (name, value)));
        command.env("RKM_ENDPOINT", endpoint);
        if let Some(pki) = &self.pki {
            command.env("RKM_CA", pki.join("ca.pem"));
            if let Some(client) = client {
                command
                    .env("RKM_CERT", pki.join(format!("{client}.pem")))
                    .env("RKM_CERT_KEY", pki.join(format!("{client}-key.pem")));
            }
        }
        command
    }

    /// Runs `rkm ARGS` over TLS presenting the certificate `client` (a
    /// dev-pki file stem such as `operator`), or none (as custodians do).
    ///
    /// # Errors
    /// The daemon does not serve TLS, or the binary cannot be run.
    pub fn rkm_over_tls(&self, client: Option<&str>, args: &[&str]) -> anyhow::Result<Output> {
        let endpoint = self
            .endpoint
            .as_deref()
            .context("rkmd does not serve TLS")?;
        let output = self
            .tls_command(endpoint, client)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running rkm")?;
        self.keep_output(&output);
        Ok(output)
    }

    fn keep_output(&self, output: &Output) {
        let mut transcript = self
            .transcript
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if transcript.bytes.len() + output.stdout.len() + output.stderr.len() > MAX_TRANSCRIPT {
            transcript.dropped = true;
            return;
        }
        transcript.bytes.extend_from_slice(&output.stdout);
        transcript.bytes.extend_from_slice(&output.stderr);
    }

    /// Everything `rkm` printed, stdout and stderr, in every run through
    /// this fixture ([`Daemon::rkm`], over TLS or the socket).
    ///
    /// # Panics
    /// The runs printed more than the transcript keeps.
    pub fn client_transcript(&self) -> Vec<u8> {
        let transcript = self
            .transcript
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        assert!(
            !transcript.dropped,
            "the client printed more than {MAX_TRANSCRIPT} bytes"
        );
        transcript.bytes.clone()
    }

    /// Runs `rkmd ARGS` to completion (not `serve`: see [`Daemon::serve`]).
    ///
    /// # Errors
    /// The binary cannot be run.
    pub fn rkmd(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.command("rkmd")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running rkmd")
    }

    /// Runs `rkm ARGS` against this daemon.
    ///
    /// # Errors
    /// The binary cannot be run.
    pub fn rkm(&self, args: &[&str]) -> anyhow::Result<Output> {
        if self.endpoint.is_some() {
            let as_custodian = args.contains(&"--identity");
            return self.rkm_over_tls((!as_custodian).then_some(STAFF_CLIENT), args);
        }
        self.rkm_over_socket(args)
    }

    /// Runs `rkm ARGS` over the Unix socket, even when rkmd serves TLS.
    ///
    /// # Errors
    /// The binary cannot be run.
    pub fn rkm_over_socket(&self, args: &[&str]) -> anyhow::Result<Output> {
        let output = self
            .command("rkm")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running rkm")?;
        self.keep_output(&output);
        Ok(output)
    }

    /// Starts `rkmd serve` and waits, with bounded retries, until its socket
    /// accepts connections.
    ///
    /// # Errors
    /// rkmd exits or does not listen within the start timeout; the error holds
    /// its log.
    pub fn serve(&mut self) -> anyhow::Result<()> {
        // The log is appended to across restarts: only this start's lines
        // tell its TCP port.
        let log_start = self.log().len();
        let child = self.spawn_serve()?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        let mut pause = Duration::from_millis(5);
        loop {
            if std::os::unix::net::UnixStream::connect(self.socket()).is_ok() {
                if self.pki.is_none() {
                    return Ok(());
                }
                // rkmd binds TCP after the socket and logs the port it got.
                if let Some(addr) = tls_address(self.log().get(log_start..).unwrap_or("")) {
                    self.endpoint = Some(format!("https://{addr}"));
                    return Ok(());
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                bail!("rkmd exited with {status} before serving:\n{}", self.log());
            }
            if Instant::now() > deadline {
                bail!(
                    "rkmd did not listen within {START_TIMEOUT:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// Starts `rkmd serve` without waiting (for tests that expect it to fail).
    ///
    /// # Errors
    /// The binary cannot be run.
    pub fn spawn_serve(&self) -> anyhow::Result<Child> {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.log_file())?;
        self.command("rkmd")
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting rkmd serve")
    }

    /// Sends `signal` (e.g. `TERM`, `KILL`) to the daemon and waits for it.
    ///
    /// # Errors
    /// No daemon is running or `kill` fails.
    pub fn stop_with(&mut self, signal: &str) -> anyhow::Result<ExitStatus> {
        let signal = match signal {
            "TERM" => rustix::process::Signal::TERM,
            "INT" => rustix::process::Signal::INT,
            "KILL" => rustix::process::Signal::KILL,
            other => bail!("unsupported signal {other}: use TERM, INT or KILL"),
        };
        let mut child = self.child.take().context("rkmd is not running")?;
        rustix::process::kill_process(rustix::process::Pid::from_child(&child), signal)
            .context("signalling rkmd")?;
        Ok(child.wait()?)
    }
}

/// The address in rkmd's "listening on TCP with TLS 1.3" log line.
fn tls_address(log: &str) -> Option<String> {
    let line = log
        .lines()
        .find(|line| line.contains("listening on TCP with TLS 1.3"))?;
    let (_, after) = line.split_once("addr=")?;
    Some(
        after
            .split_whitespace()
            .next()?
            .trim_matches('"')
            .to_owned(),
    )
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = self.mounted.take() {
            let _ = Command::new("umount").arg("-l").arg(&dir).output();
        }
    }
}
