//! The release binaries the bench runs: built when missing or older than
//! their sources, unless `RKM_BIN_DIR` names them.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, bail, ensure};
use rkm_tests::binaries::{BINARIES, bin_dir, check_fresh};

/// Makes sure `rkm` and `rkmd` in the fixture's binary directory are built
/// from the current sources, building them (release) when the bench runs
/// from the workspace's target directory; refuses stale ones in
/// `RKM_BIN_DIR`, as the end-to-end tests do.
pub(crate) fn ensure_binaries() -> anyhow::Result<PathBuf> {
    let dir = bin_dir();
    let Err(stale) = check_fresh(&dir) else {
        return Ok(dir);
    };
    if std::env::var_os("RKM_BIN_DIR").is_some() {
        bail!("RKM_BIN_DIR={}: {stale:#}", dir.display());
    }
    eprintln!("{stale:#}\nrunning `cargo build --release --bins`");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--bins"])
        .current_dir(rkm_tests::workspace_root())
        .status()
        .context("running cargo build --release --bins")?;
    ensure!(status.success(), "cargo build --release --bins failed");
    ensure!(
        BINARIES.iter().all(|name| dir.join(name).exists()),
        "rkm/rkmd are still not in {} after building: set RKM_BIN_DIR",
        dir.display()
    );
    // Cargo is the judge now: a change it builds nothing for (a lock entry
    // of the tests alone) leaves the binaries as they were, and right.
    Ok(dir)
}
