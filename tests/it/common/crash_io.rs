//! A [`MemoryIo`] whose power goes at a chosen call: the backend of the power-cut tests
//! (`store_crash`, `witness_crash`, `checkpoint_book_crash`).
//!
//! It counts the calls that change a file (writes, syncs, cuts, renames, directory syncs).
//! At the chosen one the power goes: a write reaches the page cache, then the machine stops;
//! a sync, cut, rename or directory sync never happens. From then on every call fails (the
//! process is gone, no more bytes reach the disk). The images a crash leaves are drawn then,
//! one per seed ([`MemoryIo::crash`]: any subset of the unsynced changes, the last one kept
//! torn at any byte; a name whose directory was never synced may vanish, a rename be undone).

use std::io;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use kappalog::store::io::memory::MemoryIo;
use kappalog::store::io::{LogFile, LogIo, OpenMode};

#[derive(Debug, Default)]
pub struct CrashState {
    /// Calls that change a file, so far.
    pub calls: u64,
    /// The call at which the power goes (`None`: never).
    crash_at: Option<u64>,
    /// The power is gone: every call fails.
    dead: bool,
    /// The images drawn at the crash.
    pub images: Vec<MemoryIo>,
}

/// See the module docs.
#[derive(Debug)]
pub struct CrashIo {
    pub memory: MemoryIo,
    seeds: u64,
    state: Mutex<CrashState>,
}

fn gone() -> io::Error {
    io::Error::other("the power is gone")
}

impl CrashIo {
    /// Files in memory whose power goes at call `crash_at` (never if `None`), leaving one
    /// image per seed in `0..seeds`.
    pub fn new(crash_at: Option<u64>, seeds: u64) -> CrashIo {
        CrashIo {
            memory: MemoryIo::new(),
            seeds,
            state: Mutex::new(CrashState {
                crash_at,
                ..CrashState::default()
            }),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, CrashState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn alive(&self) -> io::Result<()> {
        if self.state().dead {
            return Err(gone());
        }
        Ok(())
    }

    /// A call that changes a file: `apply` runs unless the power is (or goes) out first; a
    /// write that is the crash point runs, then the power goes (`write_lands`).
    fn change(&self, write_lands: bool, apply: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        let mut state = self.state();
        if state.dead {
            return Err(gone());
        }
        state.calls += 1;
        if state.crash_at != Some(state.calls) {
            drop(state);
            return apply();
        }
        if write_lands {
            apply()?;
        }
        state.dead = true;
        state.images = (0..self.seeds)
            .map(|seed| self.memory.crash(seed))
            .collect();
        Err(gone())
    }
}

impl LogIo for CrashIo {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<LogFile> {
        self.alive()?;
        self.memory.open(path, mode)
    }

    fn write_all_at(&self, file: &LogFile, buf: &[u8], offset: u64) -> io::Result<()> {
        self.change(true, || file.write_all_at(buf, offset))
    }

    fn read_at(&self, file: &LogFile, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.alive()?;
        file.read_at(buf, offset)
    }

    fn sync_data(&self, file: &LogFile) -> io::Result<()> {
        self.change(false, || file.sync_data())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.change(false, || self.memory.sync_dir(dir))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.change(false, || self.memory.rename(from, to))
    }

    fn set_len(&self, file: &LogFile, len: u64) -> io::Result<()> {
        self.change(false, || file.set_len(len))
    }

    fn len(&self, file: &LogFile) -> io::Result<u64> {
        self.alive()?;
        file.len()
    }
}
