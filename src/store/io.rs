//! [`LogIo`]: the seam between kappalog and the file operations whose failure it must
//! survive.
//!
//! Code that writes the log (the writer, the open's header write and torn-tail cut) and the
//! import's temporary sort files never call `write_all_at`, `sync_data`, `set_len` or
//! `read_at` on those files themselves; they call them through the [`LogIo`] of the store's
//! [`super::StoreOptions`] (the import's sort takes one too, [`crate::import::SpillSorter`]).
//! [`SystemIo`], the default, does exactly the system calls. A test supplies its own
//! implementation to make a chosen call slow (held until the test lets it go) or fail, and
//! so observes what clients are told while an `fdatasync` is outstanding or after it failed,
//! what an open leaves behind when its cut fails, and what an import reports when the disk
//! fills under it. Each method has the real behaviour as its default, so an implementation
//! overrides only what it perturbs.
//!
//! A writable open reads the log through the seam too (its header, the recovery scan, and
//! the searches that tell a torn tail from damage), so a test can fail any of those reads
//! and check that a failed read fails the open: it is never taken for a torn tail, and
//! nothing is cut because of it. Readers of an open store (`GET /entries`, the live tail,
//! `kappalog verify`) read with [`SystemIo`].

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// File operations that can fail. Implementations are shared (`Arc`) between the writer's
/// sync thread, the open and an import's thread, so calls may come from several threads.
pub trait LogIo: Send + Sync + fmt::Debug {
    /// Writes all of `buf` at byte `offset` (one positional write).
    fn write_all_at(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        file.write_all_at(buf, offset)
    }

    /// Reads up to `buf.len()` bytes at byte `offset`; `Ok(0)` at the end of the file. A
    /// short read is legal: callers ask again ([`read_exact_at`]).
    fn read_at(&self, file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        file.read_at(buf, offset)
    }

    /// `fdatasync`: returns once every byte written so far, and the file's length, are
    /// durable.
    fn sync_data(&self, file: &File) -> io::Result<()> {
        file.sync_data()
    }

    /// Makes the directory's entries durable (`fsync` of the directory), so a file created
    /// in it survives a crash.
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    /// Cuts the file back to `len` bytes (a torn tail at open, or after a failed write or
    /// sync).
    fn set_len(&self, file: &File, len: u64) -> io::Result<()> {
        file.set_len(len)
    }

    /// The file's length, as the open and the recovery check it after a cut.
    fn len(&self, file: &File) -> io::Result<u64> {
        Ok(file.metadata()?.len())
    }
}

/// Reads exactly `buf.len()` bytes at `offset` through `io`, asking again after a short
/// read (and after `EINTR`). The end of the file before that is `UnexpectedEof`.
pub fn read_exact_at(io: &dyn LogIo, file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
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

/// The real system calls: what every store uses unless a test says otherwise.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemIo;

impl LogIo for SystemIo {}
