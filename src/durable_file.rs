//! Replacing a journal file by a snapshot of its live records, crash-safely: the new bytes go
//! to a tmp file beside it, which is fsynced, renamed over the old file, and the directory
//! fsynced, so a crash at any point leaves the old file or the new one, whole. Used at open
//! by the journals that compact themselves (`DATA_DIR/witness`, `DATA_DIR/checkpoints`).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// Replaces `dir/name` by what `write` writes (through `dir/name.tmp`, module docs) and
/// returns it opened for appending.
pub fn replace_with_snapshot(
    dir: &Path,
    name: &str,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<File> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let mut out = BufWriter::new(File::create(&tmp)?);
    write(&mut out)?;
    let out = out.into_inner().map_err(|e| e.into_error())?;
    out.sync_all()?;
    drop(out);
    std::fs::rename(&tmp, &path)?;
    sync_dir(dir)?;
    OpenOptions::new().append(true).open(path)
}

/// Makes `dir`'s entries (a created or renamed file) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
