//! [`LogIo`]: the seam between kappalog and the file operations whose failure it must
//! survive.
//!
//! Every read and write of the log (the writer, the open's header write, recovery scan and
//! torn-tail cut, the record reads of the planner, the syncer and the idempotency key
//! table, and the readers of an open store), of the forks file ([`crate::store::fork_log`]) and of
//! the import's temporary sort files goes through a [`LogIo`]: the one in the store's
//! [`super::StoreOptions`] (`io` for the log, `forks_io` for the forks file), or the one an
//! import's sort was given ([`crate::import::SpillSorter`]). No code outside this module
//! calls `pwrite`, `pread`, `fdatasync` or `ftruncate` on those files itself.
//!
//! The backend opens a file and hands back a [`LogFile`], a handle that knows how to do the
//! operations itself: [`SystemIo`] (the default) makes handles over real files that do
//! exactly the system calls, [`memory::MemoryIo`] makes handles over files in memory that
//! remember what was synced, so a test can simulate a power cut
//! ([`memory::MemoryIo::crash`]). Each operation is a [`LogIo`] method whose default calls
//! the handle, so a test wraps any backend by overriding only the calls it perturbs: to make
//! a chosen call slow (held until the test lets it go) or fail, and so observe what clients
//! are told while an `fdatasync` is outstanding or after it failed, what an open leaves
//! behind when its cut or a read fails, and what an import reports when the disk fills under
//! it. A wrapper over [`memory::MemoryIo`] must pass [`LogIo::open`], [`LogIo::sync_dir`]
//! and [`LogIo::rename`] on to it, the three calls that are not made on a handle.
//!
//! The witness's journal (`DATA_DIR/witness`, [`crate::witness_state`]) and its compaction
//! ([`crate::durable_file`]) go through a [`LogIo`] too, so the power-cut tests cut it at
//! every call as they cut the log.
//!
//! Positional calls through a trait object cost one indirect call and a match per call
//! against the system call they make; the buffers are the callers' own, never copied.
//!
//! The directory lock ([`super::lock`]) is not a file of the log: it stays a real file
//! under any backend, because what it excludes is a second process on the same directory,
//! which only the real file system can see.

pub mod memory;

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// How [`LogIo::open`] opens a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Reading an existing file (`NotFound` if there is none).
    Read,
    /// Reading and writing, creating the file when missing and never truncating it.
    ReadWrite,
}

/// File operations that can fail. Implementations are shared (`Arc`) between the writer's
/// sync thread, the open, the readers and an import's thread, so calls may come from
/// several threads. Every method but [`LogIo::open`] and [`LogIo::sync_dir`] defaults to
/// the handle's own operation (see the module docs).
pub trait LogIo: Send + Sync + fmt::Debug {
    /// Opens `path` as `mode` says. The default opens a real file ([`SystemIo`]).
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<LogFile> {
        LogFile::open_system(path, mode)
    }

    /// Writes all of `buf` at byte `offset` (one positional write).
    fn write_all_at(&self, file: &LogFile, buf: &[u8], offset: u64) -> io::Result<()> {
        file.write_all_at(buf, offset)
    }

    /// Reads up to `buf.len()` bytes at byte `offset`; `Ok(0)` at the end of the file. A
    /// short read is legal: callers ask again ([`read_exact_at`]).
    fn read_at(&self, file: &LogFile, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        file.read_at(buf, offset)
    }

    /// `fdatasync`: returns once every byte written so far, and the file's length, are
    /// durable.
    fn sync_data(&self, file: &LogFile) -> io::Result<()> {
        file.sync_data()
    }

    /// Makes the directory's entries durable (`fsync` of the directory), so a file created
    /// in it survives a crash. The default syncs a real directory.
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    /// Renames `from` to `to`, replacing `to` (a snapshot over the journal it compacts). Like
    /// a created file, the new name is durable only after a [`LogIo::sync_dir`] of its
    /// directory. The default renames a real file.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    /// Cuts the file back to `len` bytes (a torn tail at open, or after a failed write or
    /// sync).
    fn set_len(&self, file: &LogFile, len: u64) -> io::Result<()> {
        file.set_len(len)
    }

    /// The file's length, as the open and the recovery check it after a cut.
    fn len(&self, file: &LogFile) -> io::Result<u64> {
        file.len()
    }
}

/// An open file, as a [`LogIo`] backend handed it out. Its methods are the backend's own
/// behaviour; code of the store calls them through its [`LogIo`] (so a test can intercept
/// them), and a test's [`LogIo`] calls them to do the real thing.
#[derive(Debug)]
pub struct LogFile {
    backing: Backing,
}

#[derive(Debug)]
enum Backing {
    System(File),
    Memory(memory::Handle),
}

impl LogFile {
    /// Opens a real file (what [`SystemIo`] does).
    pub fn open_system(path: &Path, mode: OpenMode) -> io::Result<LogFile> {
        let file = match mode {
            OpenMode::Read => File::open(path)?,
            OpenMode::ReadWrite => OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)?,
        };
        Ok(LogFile::from(file))
    }

    /// Writes all of `buf` at byte `offset` (no seek, no shared cursor).
    pub fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        match &self.backing {
            Backing::System(file) => file.write_all_at(buf, offset),
            Backing::Memory(handle) => handle.write_all_at(buf, offset),
        }
    }

    /// Reads up to `buf.len()` bytes at byte `offset`; returns how many (0 at the end).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        match &self.backing {
            Backing::System(file) => file.read_at(buf, offset),
            Backing::Memory(handle) => handle.read_at(buf, offset),
        }
    }

    /// Makes what was written durable (`fdatasync`; in memory, survives a simulated crash).
    pub fn sync_data(&self) -> io::Result<()> {
        match &self.backing {
            Backing::System(file) => file.sync_data(),
            Backing::Memory(handle) => handle.sync_data(),
        }
    }

    /// Truncates or extends the file to `len` bytes.
    pub fn set_len(&self, len: u64) -> io::Result<()> {
        match &self.backing {
            Backing::System(file) => file.set_len(len),
            Backing::Memory(handle) => handle.set_len(len),
        }
    }

    /// The file's length in bytes (fallible, hence no `is_empty`: callers compare it).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> io::Result<u64> {
        match &self.backing {
            Backing::System(file) => Ok(file.metadata()?.len()),
            Backing::Memory(handle) => Ok(handle.len()),
        }
    }
}

/// A real file opened elsewhere (the import's anonymous sort files).
impl From<File> for LogFile {
    fn from(file: File) -> LogFile {
        LogFile {
            backing: Backing::System(file),
        }
    }
}

impl From<memory::Handle> for LogFile {
    fn from(handle: memory::Handle) -> LogFile {
        LogFile {
            backing: Backing::Memory(handle),
        }
    }
}

/// Reads exactly `buf.len()` bytes at `offset` through `io`, asking again after a short
/// read (and after `EINTR`). The end of the file before that is `UnexpectedEof`.
pub fn read_exact_at(
    io: &dyn LogIo,
    file: &LogFile,
    buf: &mut [u8],
    offset: u64,
) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match io.read_at(file, &mut buf[done..], offset + done as u64) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the file ends before byte {}", offset + buf.len() as u64),
                ))
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads the whole of `file` through `io` (its length, then the bytes): for files small
/// enough to hold in memory, like the forks file.
pub fn read_to_end(io: &dyn LogIo, file: &LogFile) -> io::Result<Vec<u8>> {
    let len = usize::try_from(io.len(file)?).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidData, "file too large to read at once")
    })?;
    let mut bytes = vec![0; len];
    read_exact_at(io, file, &mut bytes, 0)?;
    Ok(bytes)
}

/// The real system calls: what every store uses unless a test says otherwise.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemIo;

impl LogIo for SystemIo {}
