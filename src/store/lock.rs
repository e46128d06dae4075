//! The one-writer-per-directory lock: an exclusive advisory lock (`flock`) on the file
//! `LOCK` in the data directory, held for the writer's lifetime and released when the file
//! handle is dropped (also by the kernel when the process dies, so a crash leaves no stale
//! lock behind). Read-only opens take no lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use super::StoreError;

pub const LOCK_FILE: &str = "LOCK";

/// Holds the lock while alive.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
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
            Ok(()) => Ok(DirLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(StoreError::Locked {
                dir: dir.to_path_buf(),
            }),
            Err(TryLockError::Error(source)) => {
                Err(StoreError::io(format!("lock {}", path.display()), source))
            }
        }
    }
}
