//! Replacing a journal file by a snapshot of its live records, crash-safely: the new bytes go
//! to a tmp file beside it, which is fsynced, renamed over the old file, and the directory
//! fsynced, so a crash at any point leaves the old file or the new one, whole. Used at open
//! by the journals that compact themselves (`DATA_DIR/witness`, `DATA_DIR/checkpoints`).
//!
//! Every step goes through a [`LogIo`], so the power-cut tests cut it at each one
//! ([`crate::store::io::memory::MemoryIo`] models the rename a crash may undo).

use std::io;
use std::path::Path;

use crate::store::io::{LogFile, LogIo, OpenMode};

/// Replaces `dir/name` by `bytes` through `io` (via `dir/name.tmp`, module docs) and returns
/// it opened for reading and writing; its length is `bytes.len()`.
pub fn replace_with_snapshot_via(
    io: &dyn LogIo,
    dir: &Path,
    name: &str,
    bytes: &[u8],
) -> io::Result<LogFile> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let out = io.open(&tmp, OpenMode::ReadWrite)?;
    // A tmp file left by a crash in an earlier compaction is only a failed attempt.
    io.set_len(&out, 0)?;
    io.write_all_at(&out, bytes, 0)?;
    io.sync_data(&out)?;
    drop(out);
    io.rename(&tmp, &path)?;
    io.sync_dir(dir)?;
    io.open(&path, OpenMode::ReadWrite)
}
