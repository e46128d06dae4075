//! A [`LogIo`] that fails on purpose: each operation (write, read, sync, directory sync, cut,
//! length) is counted, and a chosen call of a chosen operation fails with a chosen fault (an
//! I/O error, a full disk, a write cut short, a slow call), once or from then on until
//! [`FaultyIo::heal`]. It wraps a backend ([`SystemIo`] by default, or files in memory:
//! [`FaultyIo::over`]), so the same matrix runs on both.

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kappalog::store::io::{LogFile, LogIo, OpenMode, SystemIo};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Write,
    Sync,
    SetLen,
    Len,
    /// A read: of the log by an open, or of an import's sort file.
    Read,
    /// The `fsync` of the data directory at a writable open.
    SyncDir,
}

/// The writer's operations (the append matrix of `tests/it/store_faults.rs`).
pub const OPS: [Op; 4] = [Op::Write, Op::Sync, Op::SetLen, Op::Len];

/// Every operation of [`LogIo`].
pub const ALL_OPS: [Op; 6] = [
    Op::Write,
    Op::Sync,
    Op::SetLen,
    Op::Len,
    Op::Read,
    Op::SyncDir,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `EIO`, nothing done.
    Eio,
    /// `ENOSPC`, nothing done.
    NoSpace,
    /// A write: the first half of the buffer reaches the file, then `ENOSPC` (what a
    /// disk filling up mid-write does). A read: at most half the bytes asked for (a short
    /// read, which is legal: the caller must ask again, not take it for the end). Other
    /// operations: `EIO`.
    Short,
    /// The operation succeeds after this long (a slow disk).
    Slow(Duration),
}

pub const FAULTS: [Fault; 4] = [
    Fault::Eio,
    Fault::NoSpace,
    Fault::Short,
    Fault::Slow(Duration::from_millis(20)),
];

#[derive(Debug, Default)]
struct State {
    calls: [u64; 6],
    /// (operation, first failing call, fault, lasting): a lasting fault fails every call of
    /// the operation from that one on, until healed.
    plans: Vec<(Op, u64, Fault, bool)>,
    injected: u64,
}

#[derive(Debug)]
pub struct FaultyIo {
    state: Mutex<State>,
    /// The backend that opens the files and syncs their directory.
    inner: Arc<dyn LogIo>,
}

impl Default for FaultyIo {
    fn default() -> FaultyIo {
        FaultyIo::over(Arc::new(SystemIo))
    }
}

fn index(op: Op) -> usize {
    match op {
        Op::Write => 0,
        Op::Sync => 1,
        Op::SetLen => 2,
        Op::Len => 3,
        Op::Read => 4,
        Op::SyncDir => 5,
    }
}

impl FaultyIo {
    /// Faults over `inner`'s files (opening a file is passed on, never counted or failed).
    pub fn over(inner: Arc<dyn LogIo>) -> FaultyIo {
        FaultyIo {
            state: Mutex::default(),
            inner,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Call number `call` (1-based, counted from now on) of `op` fails with `fault` (plans
    /// add up: several operations can be made to fail).
    pub fn fail_once(&self, op: Op, call: u64, fault: Fault) {
        let mut state = self.state();
        let at = state.calls[index(op)] + call;
        state.plans.push((op, at, fault, false));
    }

    /// Every call of `op` from the next one on fails with `fault`, until [`FaultyIo::heal`].
    pub fn fail_from_now(&self, op: Op, fault: Fault) {
        let mut state = self.state();
        let at = state.calls[index(op)] + 1;
        state.plans.push((op, at, fault, true));
    }

    pub fn heal(&self) {
        self.state().plans.clear();
    }

    /// Calls of `op` so far (a clean run counts the calls a matrix then fails one by one).
    pub fn calls(&self, op: Op) -> u64 {
        self.state().calls[index(op)]
    }

    /// Faults injected so far (slow ones included).
    pub fn injected(&self) -> u64 {
        self.state().injected
    }

    /// The fault for this call of `op`, if any (counts the call).
    fn next(&self, op: Op) -> Option<Fault> {
        let mut state = self.state();
        state.calls[index(op)] += 1;
        let call = state.calls[index(op)];
        let fault = state
            .plans
            .iter()
            .find(|&&(planned, at, _, lasting)| {
                planned == op && (call == at || (lasting && call > at))
            })
            .map(|&(_, _, fault, _)| fault);
        if fault.is_some() {
            state.injected += 1;
        }
        fault
    }
}

fn injected(kind: io::ErrorKind, what: &str) -> io::Error {
    io::Error::new(kind, format!("injected fault: {what}"))
}

fn fail(fault: Fault, what: &str) -> io::Result<()> {
    match fault {
        Fault::NoSpace => Err(injected(io::ErrorKind::StorageFull, what)),
        Fault::Slow(pause) => {
            // Simulates a slow disk, not a synchronisation: the caller waits for it.
            std::thread::sleep(pause);
            Ok(())
        }
        Fault::Eio | Fault::Short => Err(io::Error::other(format!("injected fault: {what}"))),
    }
}

impl LogIo for FaultyIo {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<LogFile> {
        self.inner.open(path, mode)
    }

    fn write_all_at(&self, file: &LogFile, buf: &[u8], offset: u64) -> io::Result<()> {
        match self.next(Op::Write) {
            None => file.write_all_at(buf, offset),
            Some(Fault::Short) => {
                file.write_all_at(&buf[..buf.len() / 2], offset)?;
                Err(injected(io::ErrorKind::StorageFull, "write cut short"))
            }
            Some(fault) => {
                fail(fault, "write")?;
                file.write_all_at(buf, offset)
            }
        }
    }

    fn read_at(&self, file: &LogFile, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        match self.next(Op::Read) {
            None => file.read_at(buf, offset),
            Some(Fault::Short) => {
                let half = buf.len().div_ceil(2);
                file.read_at(&mut buf[..half], offset)
            }
            Some(fault) => {
                fail(fault, "read")?;
                file.read_at(buf, offset)
            }
        }
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        match self.next(Op::SyncDir) {
            None => self.inner.sync_dir(dir),
            Some(fault) => {
                fail(fault, "directory fsync")?;
                self.inner.sync_dir(dir)
            }
        }
    }

    fn sync_data(&self, file: &LogFile) -> io::Result<()> {
        match self.next(Op::Sync) {
            None => file.sync_data(),
            Some(fault) => {
                fail(fault, "fdatasync")?;
                file.sync_data()
            }
        }
    }

    fn set_len(&self, file: &LogFile, len: u64) -> io::Result<()> {
        match self.next(Op::SetLen) {
            None => file.set_len(len),
            Some(fault) => {
                fail(fault, "truncate")?;
                file.set_len(len)
            }
        }
    }

    fn len(&self, file: &LogFile) -> io::Result<u64> {
        match self.next(Op::Len) {
            None => file.len(),
            Some(fault) => {
                fail(fault, "stat")?;
                file.len()
            }
        }
    }
}
