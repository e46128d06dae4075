//! The one-writer-per-directory lock: an exclusive advisory lock (`flock`) on the file
//! `LOCK` in the data directory, held for the writer's lifetime and released when it is
//! dropped (also by the kernel when the process dies, so a crash leaves no stale lock
//! behind). Read-only opens take no lock.
//!
//! Dropping unlocks explicitly before closing. An `flock` belongs to the open file
//! description, which every duplicate of the descriptor shares: a child process this
//! process forks (any `Command` spawned meanwhile, on any thread) holds a duplicate until it
//! calls `exec`, and closing our descriptor alone would leave the lock held by that copy
//! for that long, so a reopen right after a shutdown could be refused as "locked". An
//! explicit unlock releases it for every copy at once.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use super::StoreError;

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "LOCK";

/// Holds the lock while alive.
#[derive(Debug)]
pub struct DirLock {
    file: File,
}

impl Drop for DirLock {
    fn drop(&mut self) {
        if let Err(e) = self.file.unlock() {
            // Closing the file still releases it once no copy of the descriptor is left.
            tracing::warn!(error = %e, "unlocking the data directory failed");
        }
    }
}

impl DirLock {
    /// Takes the exclusive lock on `dir/LOCK` (creating it), without waiting:
    /// [`StoreError::Locked`] if another writer holds it.
    pub fn acquire(dir: &Path) -> Result<DirLock, StoreError> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| {
                StoreError::io(format!("open lock file {}", path.display()), source)
            })?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { file }),
            Err(TryLockError::WouldBlock) => Err(StoreError::Locked {
                dir: dir.to_path_buf(),
            }),
            Err(TryLockError::Error(source)) => {
                Err(StoreError::io(format!("lock {}", path.display()), source))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A duplicate of the lock's descriptor (what a forked child holds until it execs) does
    /// not keep the directory locked once the lock is dropped.
    #[test]
    fn a_duplicate_descriptor_does_not_outlive_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DirLock::acquire(dir.path()).unwrap();
        assert!(matches!(
            DirLock::acquire(dir.path()),
            Err(StoreError::Locked { .. })
        ));
        let duplicate = lock.file.try_clone().unwrap();
        drop(lock);
        let again = DirLock::acquire(dir.path());
        assert!(again.is_ok(), "still locked by the duplicate: {again:?}");
        drop(duplicate);
    }
}
