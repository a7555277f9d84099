//! Free space in the state directory. Below `store.min_free_mb` rkmd refuses
//! state-changing actions in advance, with the numbers, while refusals and
//! failures are still recorded (they are small and aggregated). A reserve
//! file is kept beside the database and released when the disk is nearly
//! full anyway (another program filled it, or an artefact did), so that
//! the entry saying what failed can still be committed.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Bytes of the reserve file: room for the audit entries that record a
/// failure and its checkpoint, many times over.
const RESERVE_BYTES: u64 = 4 << 20;
/// Below this much free space the reserve is released.
const NEARLY_FULL: u64 = 1 << 20;
const RESERVE_FILE: &str = "space-reserve";
const MIB: u64 = 1 << 20;

/// Space needed for something rkmd is asked to do was not there.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the state directory {} has {} free; {what} needs {} and store.min_free_mb keeps {} free: free space there (or lower store.min_free_mb), then retry",
    dir.display(),
    human(*free),
    human(*needed),
    human(*min_free)
)]
pub struct NoSpace {
    pub dir: PathBuf,
    pub what: String,
    pub free: u64,
    pub needed: u64,
    pub min_free: u64,
}

/// `bytes` in MiB, or KiB below one MiB.
fn human(bytes: u64) -> String {
    if bytes >= MIB {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{} KiB", bytes.div_ceil(1024))
    }
}

/// The state directory's free space and its reserve.
#[derive(Debug)]
pub struct Space {
    dir: PathBuf,
    min_free: u64,
}

impl Space {
    /// Keeps `min_free_mb` MiB free in `dir`, and makes the reserve if there
    /// is room for it.
    pub fn new(dir: &Path, min_free_mb: u64) -> Self {
        let space = Self {
            dir: dir.to_owned(),
            min_free: min_free_mb * MIB,
        };
        space.ensure_reserve();
        space
    }

    /// Bytes free for rkmd in the state directory.
    ///
    /// # Errors
    /// statvfs fails.
    pub fn free(&self) -> std::io::Result<u64> {
        let stat = rustix::fs::statvfs(&self.dir)?;
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    }

    /// Whether `needed` bytes more leave `store.min_free_mb` free. A
    /// failing statvfs is not taken for a full disk: the write will tell.
    ///
    /// # Errors
    /// [`NoSpace`] with the numbers.
    pub fn check(&self, needed: u64, what: &str) -> Result<(), NoSpace> {
        let Ok(free) = self.free() else {
            return Ok(());
        };
        if free < needed.saturating_add(self.min_free) {
            return Err(NoSpace {
                dir: self.dir.clone(),
                what: what.to_owned(),
                free,
                needed,
                min_free: self.min_free,
            });
        }
        Ok(())
    }

    fn reserve_path(&self) -> PathBuf {
        self.dir.join(RESERVE_FILE)
    }

    /// Writes the reserve file if it is missing and the disk has room for it
    /// and the floor (written, not sparse: it must hold real blocks).
    pub fn ensure_reserve(&self) {
        let path = self.reserve_path();
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == RESERVE_BYTES) {
            return;
        }
        if self
            .free()
            .is_ok_and(|free| free < RESERVE_BYTES + self.min_free + NEARLY_FULL)
        {
            return;
        }
        let written = std::fs::File::create(&path).and_then(|mut file| {
            let zeros = vec![0u8; 64 * 1024];
            for _ in 0..RESERVE_BYTES / zeros.len() as u64 {
                file.write_all(&zeros)?;
            }
            file.sync_all()
        });
        if let Err(error) = written {
            tracing::warn!(%error, path = %path.display(), "could not write the space reserve");
            let _ = std::fs::remove_file(&path);
        }
    }

    /// Releases the reserve if the disk is nearly full, so that what is being
    /// recorded now still fits. Returns whether it did.
    pub fn release_if_nearly_full(&self) -> bool {
        if !self.free().is_ok_and(|free| free < NEARLY_FULL) {
            return false;
        }
        let released = std::fs::remove_file(self.reserve_path()).is_ok();
        if released {
            tracing::warn!(
                dir = %self.dir.display(),
                "the state directory is nearly full: released the {} MiB reserve so that failures are still recorded",
                RESERVE_BYTES / MIB
            );
        }
        released
    }
}
