//! [`LogIo`]: the seam between the writer and the log file's durable operations.
//!
//! The writer never calls `write_all_at`, `sync_data` or `set_len` on the log file itself;
//! it calls them through the [`LogIo`] of its [`super::StoreOptions`]. [`SystemIo`], the
//! default, does exactly the system calls. A test supplies its own implementation to make a
//! chosen call slow (held until the test lets it go) or fail, and so observes what clients
//! are told while an `fdatasync` is outstanding or after it failed. The trait is meant to
//! grow into a full fault-injecting file layer (issue 11); each method has the real
//! behaviour as its default, so an implementation overrides only what it perturbs.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The writer's operations on the log file. Called from the writer's sync thread only, one
/// call at a time.
pub trait LogIo: Send + Sync + fmt::Debug {
    /// Writes all of `buf` at byte `offset` (one positional write).
    fn write_all_at(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        file.write_all_at(buf, offset)
    }

    /// `fdatasync`: returns once every byte written so far is durable.
    fn sync_data(&self, file: &File) -> io::Result<()> {
        file.sync_data()
    }

    /// Cuts the file back to `len` bytes (after a failed write or sync).
    fn set_len(&self, file: &File, len: u64) -> io::Result<()> {
        file.set_len(len)
    }

    /// The file's length, as the recovery checks it after a cut.
    fn len(&self, file: &File) -> io::Result<u64> {
        Ok(file.metadata()?.len())
    }
}

/// The real system calls: what every store uses unless a test says otherwise.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemIo;

impl LogIo for SystemIo {}
