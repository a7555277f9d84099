//! Where the built `rkm` and `rkmd` are, and the refusal to test binaries
//! that are older than their sources.
//!
//! `cargo nextest run -p rkm-tests` builds the test crate and the libraries
//! it links, but not the binaries of the other packages, so without this check
//! the end-to-end tests would pass or fail against whatever was built last.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

use anyhow::{Context as _, bail};

use crate::workspace_root;

/// The binaries the end-to-end tests run.
pub const BINARIES: [&str; 2] = ["rkm", "rkmd"];

/// What each binary is built from, relative to the workspace root. Tests,
/// benches and the test crate are left out on purpose: changing them does not
/// make cargo relink the binaries, so counting them would refuse for ever.
/// Each binary is held only to its own crate's sources: a change to the
/// daemon does not relink `rkm`, so counting it would refuse a fresh build.
fn sources_of(binary: &str) -> [&'static str; 5] {
    let own = if binary == "rkmd" {
        "daemon/src"
    } else {
        "client/src"
    };
    [
        "proto/src",
        "proto/rkm",
        "proto/build.rs",
        own,
        "Cargo.lock",
    ]
}

/// How to get fresh binaries, for every refusal.
const HOW_TO_BUILD: &str = "build them with `cargo build --bins` before `cargo nextest run -p rkm-tests`, or run `cargo nextest run --workspace`, which builds them";

/// Directory of the workspace's built binaries (`target/<profile>`), or
/// `RKM_BIN_DIR`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RKM_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("the test binary has a path");
    // target/<profile>/deps/<test binary>
    exe.parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps")
        .to_owned()
}

/// Path of a workspace binary, failing clearly when it was not built or is
/// older than its sources.
///
/// The check runs once per process (nextest runs every test in its own), on
/// the first call.
///
/// # Panics
/// The binary is missing or stale; the message says how to build it.
pub fn binary(name: &str) -> PathBuf {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let dir = bin_dir();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: {HOW_TO_BUILD}",
        path.display()
    );
    if let Err(refusal) = CHECKED.get_or_init(|| check_fresh(&dir).map_err(|e| format!("{e:#}"))) {
        panic!("{refusal}");
    }
    path
}

/// Clears `command`'s environment but for `PATH`, `HOME` and `LANG`: the
/// tester's own `RKM_*` settings must not reach the rkm or rkmd under test.
pub fn with_clean_env(command: &mut Command) -> &mut Command {
    command.env_clear();
    for name in ["PATH", "HOME", "LANG"] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command
}

/// Checks that every binary in `dir` is newer than every source it is built
/// from.
///
/// # Errors
/// A binary is missing, or a source file was changed after it was built
/// (the error names both and says how to build).
pub fn check_fresh(dir: &Path) -> anyhow::Result<()> {
    let root = workspace_root();
    for name in BINARIES {
        let binary = dir.join(name);
        let built = modified(&binary)
            .with_context(|| format!("{} is missing: {HOW_TO_BUILD}", binary.display()))?;
        let newest = sources_of(name)
            .iter()
            .filter_map(|source| newest_file(&root.join(source)))
            .max_by_key(|(time, _)| *time);
        if let Some((changed, source)) = newest
            && changed > built
        {
            // A lock change that concerns only tests or benches does not
            // relink the binaries; say so rather than refuse without a way out.
            let lock_only = if source.ends_with("Cargo.lock") {
                "; if cargo then builds nothing, the lock's change does not concern them: `touch` them"
            } else {
                ""
            };
            bail!(
                "{} is older than {}: {HOW_TO_BUILD}{lock_only}",
                binary.display(),
                source.display()
            );
        }
    }
    Ok(())
}

fn modified(path: &Path) -> Option<SystemTime> {
    path.metadata().ok()?.modified().ok()
}

/// The most recently modified file at or under `path`, skipping hidden
/// entries (editor swap files are not sources).
fn newest_file(path: &Path) -> Option<(SystemTime, PathBuf)> {
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    let mut pending = vec![path.to_owned()];
    while let Some(path) = pending.pop() {
        let Ok(metadata) = path.metadata() else {
            continue;
        };
        if metadata.is_dir() {
            let Ok(entries) = std::fs::read_dir(&path) else {
                continue;
            };
            pending.extend(
                entries
                    .flatten()
                    .filter(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
                    .map(|entry| entry.path()),
            );
        } else if let Ok(time) = metadata.modified()
            && newest.as_ref().is_none_or(|(newest, _)| time > *newest)
        {
            newest = Some((time, path));
        }
    }
    newest
}
