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
}

/// Builds a [`Daemon`] fixture.
#[derive(Debug, Default)]
pub struct DaemonBuilder {
    workers: Option<usize>,
}

impl DaemonBuilder {
    /// Number of HSM workers.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
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
        Ok(Daemon {
            token,
            state,
            child: None,
            env,
        })
    }
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

    fn command(&self, binary_name: &str) -> Command {
        let mut command = Command::new(binary(binary_name));
        with_clean_env(&mut command);
        command.envs(self.env.iter().map(|(name, value)| (name, value)));
        command.env("RKM_SOCKET", self.socket());
        command
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
        self.command("rkm")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running rkm")
    }

    /// Starts `rkmd serve` and waits, with bounded retries, until its socket
    /// accepts connections.
    ///
    /// # Errors
    /// rkmd exits or does not listen within the start timeout; the error holds
    /// its log.
    pub fn serve(&mut self) -> anyhow::Result<()> {
        let child = self.spawn_serve()?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        let mut pause = Duration::from_millis(5);
        loop {
            if std::os::unix::net::UnixStream::connect(self.socket()).is_ok() {
                return Ok(());
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

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
