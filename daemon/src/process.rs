//! Process hardening at start: no core dumps, not dumpable (so neither a crash
//! nor ptrace by another user of the same uid reads secrets out of memory).

use rustix::process::{
    DumpableBehavior, Resource, Rlimit, dumpable_behavior, set_dumpable_behavior, setrlimit,
};

/// Errors of process hardening.
#[derive(Debug, thiserror::Error)]
pub enum HardeningError {
    #[error("cannot disable core dumps (setrlimit RLIMIT_CORE): {0}")]
    CoreLimit(rustix::io::Errno),
    #[error("cannot mark the process non-dumpable (prctl PR_SET_DUMPABLE): {0}")]
    Dumpable(rustix::io::Errno),
    #[error("the process is still dumpable after PR_SET_DUMPABLE; refusing to hold secrets")]
    StillDumpable,
}

/// Disables core dumps, marks the process non-dumpable (and checks that it
/// worked), and sets the umask so every file rkmd creates is private to it.
///
/// # Errors
/// The kernel refuses either setting.
pub fn harden() -> Result<(), HardeningError> {
    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )
    .map_err(HardeningError::CoreLimit)?;
    set_dumpable_behavior(DumpableBehavior::NotDumpable).map_err(HardeningError::Dumpable)?;
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    match dumpable_behavior() {
        Ok(DumpableBehavior::NotDumpable) => Ok(()),
        Ok(_) => Err(HardeningError::StillDumpable),
        Err(errno) => Err(HardeningError::Dumpable(errno)),
    }
}
