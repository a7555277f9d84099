//! A fresh SoftHSM2 token per test: its own token directory and configuration
//! file, initialised with `softhsm2-util` and found by label. Tests never share
//! a token directory, so they run in parallel.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

/// Where the SoftHSM2 module is, asking `softhsm-config/install.sh` (which
/// installs SoftHSM2 first if needed).
pub fn softhsm_module() -> anyhow::Result<PathBuf> {
    let script = crate::workspace_root().join("softhsm-config/install.sh");
    let output = Command::new("bash")
        .arg(&script)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(PathBuf::from(
        String::from_utf8(output.stdout)?.trim().to_owned(),
    ))
}

/// One initialised token in a temporary directory that is removed on drop.
#[derive(Debug)]
pub struct SoftHsmToken {
    dir: tempfile::TempDir,
    label: String,
    user_pin: String,
    module: PathBuf,
}

impl SoftHsmToken {
    /// Makes a token labelled `label` with a random user PIN.
    ///
    /// # Errors
    /// SoftHSM2 is missing and cannot be installed, or `softhsm2-util` fails.
    pub fn create(label: &str) -> anyhow::Result<Self> {
        let module = softhsm_module()?;
        let dir = tempfile::Builder::new().prefix("rkm-token-").tempdir()?;
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens)?;
        let template = std::fs::read_to_string(
            crate::workspace_root().join("softhsm-config/softhsm2.conf.template"),
        )?;
        let config = template.replace("@TOKENDIR@", &tokens.to_string_lossy());
        std::fs::write(dir.path().join("softhsm2.conf"), config)?;
        let user_pin = format!("user-{}", std::process::id());
        let token = Self {
            dir,
            label: label.to_owned(),
            user_pin,
            module,
        };
        token.init_token(label)?;
        std::fs::write(token.pin_file(), &token.user_pin)?;
        std::fs::set_permissions(
            token.pin_file(),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )?;
        Ok(token)
    }

    /// Initialises one more token labelled `label` in the same directory.
    ///
    /// # Errors
    /// `softhsm2-util` fails.
    pub fn init_token(&self, label: &str) -> anyhow::Result<()> {
        let output = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", self.config_file())
            .args(["--init-token", "--free", "--label", label])
            .args(["--so-pin", "so-pin-1234", "--pin", &self.user_pin])
            .output()
            .context("running softhsm2-util (install softhsm2 with softhsm-config/install.sh)")?;
        if !output.status.success() {
            bail!(
                "softhsm2-util --init-token failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// The directory that holds the token, its configuration and PIN file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `softhsm2.conf` to export as `SOFTHSM2_CONF`.
    pub fn config_file(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    /// A file holding the user PIN.
    pub fn pin_file(&self) -> PathBuf {
        self.dir.path().join("user.pin")
    }

    pub fn user_pin(&self) -> &str {
        &self.user_pin
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn module(&self) -> &Path {
        &self.module
    }
}
